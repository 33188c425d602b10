//! The configured models and everything kept per model: how to reach it, its metrics
//! handles, live stats, circuit breaker, and how long it is rate limited.

use crate::config::{Config, ModelSpec};
use crate::error::Result;
use crate::provider::{self, ClientPool, LocalBackend, Provider};
use crate::routing::breaker::Breaker;
use crate::routing::stats::ModelStats;
use crate::telemetry::ModelMetrics;
use rust_decimal::prelude::ToPrimitive;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub struct ModelEntry {
    pub spec: ModelSpec,
    pub provider: Arc<dyn Provider>,
    pub metrics: ModelMetrics,
    pub stats: ModelStats,
    pub breaker: Breaker,
    /// USD per token as `f64`, for ranking (money itself stays `Decimal`).
    pub input_per_token: f64,
    pub output_per_token: f64,
    /// Set from a 429's Retry-After: skipped by routing until then. Milliseconds since
    /// `origin`, 0 when not limited; an atomic so that routing reads it without a lock.
    limited_until_ms: AtomicU64,
    origin: Instant,
}

impl ModelEntry {
    fn ms_since_origin(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_millis() as u64
    }

    pub fn rate_limit_for(&self, d: Duration) {
        let until = self.ms_since_origin(Instant::now() + d).max(1);
        self.limited_until_ms.fetch_max(until, Ordering::Relaxed);
    }

    /// How much longer this model is rate limited, if it is.
    pub fn rate_limited(&self) -> Option<Duration> {
        let until = self.limited_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return None;
        }
        let now = self.ms_since_origin(Instant::now());
        (until > now).then(|| Duration::from_millis(until - now))
    }
}

/// A call in flight on a model, counted until dropped; owns its model (and its admission
/// slot, if the model has a queue) so it can be kept across tasks.
pub struct Flight(Arc<ModelEntry>, Option<crate::limits::Slot>);

impl Flight {
    pub fn start(entry: &Arc<ModelEntry>) -> Flight {
        entry.stats.enter();
        Flight(entry.clone(), None)
    }

    /// Keep the model's admission slot until the call ends.
    pub fn holding(mut self, slot: Option<crate::limits::Slot>) -> Flight {
        self.1 = slot;
        self
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.0.stats.leave();
    }
}

/// Read-only after start.
pub struct ModelRegistry {
    by_name: HashMap<Arc<str>, Arc<ModelEntry>>,
    ordered: Vec<Arc<ModelEntry>>,
    /// Whether any model is local (what only local models need is then worked out per request).
    has_local: bool,
}

impl ModelRegistry {
    pub fn build(config: &Config, local: Option<&dyn LocalBackend>) -> Result<Self> {
        let mut pool = ClientPool::new(config.secret_mask());
        let mut by_name = HashMap::new();
        let mut ordered = Vec::new();
        for spec in &config.models {
            let provider = provider::build(spec, &mut pool, local)?;
            let mut spec = spec.clone();
            if let Some(c) = provider
                .capabilities()
                .filter(|_| !spec.capabilities.declared)
            {
                spec.capabilities = c;
            }
            let entry = Arc::new(ModelEntry {
                provider,
                metrics: ModelMetrics::new(&spec.name, spec.provider.as_str()),
                stats: ModelStats::new(config.routing.stats_window, config.routing.ewma_half_life),
                breaker: Breaker::new(config.routing.breaker),
                limited_until_ms: AtomicU64::new(0),
                origin: Instant::now(),
                input_per_token: spec.pricing.input_per_mtok.to_f64().unwrap_or(0.0) / 1e6,
                output_per_token: spec.pricing.output_per_mtok.to_f64().unwrap_or(0.0) / 1e6,
                spec: spec.clone(),
            });
            by_name.insert(spec.name.clone(), entry.clone());
            ordered.push(entry);
        }
        let has_local = ordered.iter().any(|e| e.spec.local.is_some());
        Ok(ModelRegistry {
            by_name,
            ordered,
            has_local,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<ModelEntry>> {
        self.by_name.get(name)
    }

    pub fn has_local(&self) -> bool {
        self.has_local
    }

    pub fn all(&self) -> &[Arc<ModelEntry>] {
        &self.ordered
    }
}
