//! The configured models and everything kept per model: how to reach it, its metrics
//! handles, live stats, circuit breaker, and how long it is rate limited.

use crate::config::{Config, ModelSpec};
use crate::error::Result;
use crate::provider::{self, ClientPool, Provider};
use crate::routing::breaker::Breaker;
use crate::routing::stats::ModelStats;
use crate::telemetry::ModelMetrics;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub struct ModelEntry {
    pub spec: ModelSpec,
    pub provider: Arc<dyn Provider>,
    pub metrics: ModelMetrics,
    pub stats: ModelStats,
    pub breaker: Breaker,
    /// Set from a 429's Retry-After: skipped by routing until then.
    limited_until: Mutex<Option<Instant>>,
}

impl ModelEntry {
    pub fn rate_limit_for(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut g = self.limited_until.lock().unwrap_or_else(|p| p.into_inner());
        *g = Some(g.map_or(until, |u| u.max(until)));
    }

    /// How much longer this model is rate limited, if it is.
    pub fn rate_limited(&self) -> Option<Duration> {
        let g = self.limited_until.lock().unwrap_or_else(|p| p.into_inner());
        g.and_then(|u| u.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }
}

/// A call in flight on a model, counted until dropped; owns its model so it can be kept
/// across tasks.
pub struct Flight(Arc<ModelEntry>);

impl Flight {
    pub fn start(entry: &Arc<ModelEntry>) -> Flight {
        entry.stats.enter();
        Flight(entry.clone())
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
}

impl ModelRegistry {
    pub fn build(config: &Config) -> Result<Self> {
        let mut pool = ClientPool::new();
        let mut by_name = HashMap::new();
        let mut ordered = Vec::new();
        for spec in &config.models {
            let entry = Arc::new(ModelEntry {
                provider: provider::build(spec, &mut pool)?,
                metrics: ModelMetrics::new(&spec.name, spec.provider.as_str()),
                stats: ModelStats::new(config.routing.stats_window, config.routing.ewma_half_life),
                breaker: Breaker::new(config.routing.breaker),
                limited_until: Mutex::new(None),
                spec: spec.clone(),
            });
            by_name.insert(spec.name.clone(), entry.clone());
            ordered.push(entry);
        }
        Ok(ModelRegistry { by_name, ordered })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<ModelEntry>> {
        self.by_name.get(name)
    }

    pub fn all(&self) -> &[Arc<ModelEntry>] {
        &self.ordered
    }
}
