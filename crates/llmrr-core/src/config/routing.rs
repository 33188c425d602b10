//! Resolved routing settings: routes, retry and breaker policy, tiers.

use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// The named strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    Balanced,
    QualityFirst,
    CostOptimized,
    SpeedPriority,
    RoundRobin,
    LeastLoaded,
    Random,
    Weighted,
    LatencyAware,
    CapabilityMatch,
    Complexity,
    Cascade,
}

impl StrategyKind {
    pub const ALL: [StrategyKind; 12] = [
        StrategyKind::Balanced,
        StrategyKind::QualityFirst,
        StrategyKind::CostOptimized,
        StrategyKind::SpeedPriority,
        StrategyKind::RoundRobin,
        StrategyKind::LeastLoaded,
        StrategyKind::Random,
        StrategyKind::Weighted,
        StrategyKind::LatencyAware,
        StrategyKind::CapabilityMatch,
        StrategyKind::Complexity,
        StrategyKind::Cascade,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Balanced => "balanced",
            StrategyKind::QualityFirst => "quality-first",
            StrategyKind::CostOptimized => "cost-optimized",
            StrategyKind::SpeedPriority => "speed-priority",
            StrategyKind::RoundRobin => "round-robin",
            StrategyKind::LeastLoaded => "least-loaded",
            StrategyKind::Random => "random",
            StrategyKind::Weighted => "weighted",
            StrategyKind::LatencyAware => "latency-aware",
            StrategyKind::CapabilityMatch => "capability-match",
            StrategyKind::Complexity => "complexity",
            StrategyKind::Cascade => "cascade",
        }
    }

    pub fn parse(s: &str) -> Option<StrategyKind> {
        let s = s.replace('_', "-");
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn names() -> String {
        Self::ALL.map(|k| k.as_str()).join(", ")
    }
}

/// Limits a candidate must meet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Constraints {
    pub min_quality: Option<f64>,
    pub max_cost_usd: Option<Decimal>,
    #[serde(with = "super::resolved::opt_secs")]
    pub max_latency: Option<Duration>,
}

/// Weights of `balanced`'s terms; normalized to sum to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BalancedWeights {
    pub quality: f64,
    pub cost: f64,
    pub latency: f64,
}

impl Default for BalancedWeights {
    fn default() -> Self {
        BalancedWeights {
            quality: 0.4,
            cost: 0.3,
            latency: 0.3,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteSpec {
    pub name: Arc<str>,
    pub strategy: StrategyKind,
    pub models: Vec<Arc<str>>,
    pub fallbacks: Vec<Arc<str>>,
    /// For `weighted`, aligned with `models`.
    pub weights: Vec<f64>,
    pub constraints: Constraints,
    pub expected_output_tokens: u32,
    pub content_fallback: Option<Arc<str>>,
    pub balanced: BalancedWeights,
    /// Input and output rules of requests naming this route.
    #[serde(skip)]
    pub guardrails: Option<Arc<crate::guardrails::Guardrails>>,
    /// The response cache of requests naming this route.
    pub cache: super::cache::CacheRule,
    /// How `complexity` maps a prompt's difficulty to the route's models.
    pub complexity: ComplexityRule,
    /// Keep what the difficulty scorer reads of each prompt in the request log.
    pub log_prompts: bool,
    pub cascade: CascadeRule,
}

/// How `complexity` maps difficulty to models (ordered by quality, weakest first).
#[derive(Debug, Clone, Serialize)]
pub struct ComplexityRule {
    /// Ascending, one fewer than the models: a score at or above `thresholds[i]` goes to the
    /// model `i + 1` or a stronger one. Empty: the scorer's default for the strongest (and
    /// evenly below it for the others).
    pub thresholds: Vec<f32>,
    /// Hold this share of requests on the strongest model instead (calibrated live).
    pub strong_share: Option<f64>,
    /// Where the weights came from (`None`: shipped).
    pub scorer: Option<String>,
    #[serde(skip)]
    pub weights: Arc<crate::routing::difficulty::Weights>,
}

impl ComplexityRule {
    pub fn shipped() -> Self {
        ComplexityRule {
            thresholds: Vec::new(),
            strong_share: None,
            scorer: None,
            weights: crate::routing::difficulty::shipped(),
        }
    }
}

/// What `cascade` checks of an answer before accepting it (besides: not empty, not a
/// refusal, not cut by the length limit, valid JSON when JSON was asked).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CascadeRule {
    pub min_mean_logprob: Option<f64>,
}

impl RouteSpec {
    /// Output tokens assumed for a cost estimate when neither the request nor the route says.
    pub const DEFAULT_EXPECTED_OUTPUT: u32 = 256;
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Attempts on one model, the first included.
    pub max_attempts: u32,
    #[serde(with = "super::resolved::secs")]
    pub base_delay: Duration,
    #[serde(with = "super::resolved::secs")]
    pub max_delay: Duration,
    /// All attempts on all models together.
    #[serde(with = "super::resolved::secs")]
    pub max_total: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BreakerConfig {
    pub consecutive_failures: u32,
    pub failure_ratio: f64,
    #[serde(with = "super::resolved::secs")]
    pub window: Duration,
    pub min_requests: u32,
    #[serde(with = "super::resolved::secs")]
    pub cooldown: Duration,
    pub half_open_probes: u32,
    pub close_after: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoutingConfig {
    pub retry: RetryPolicy,
    pub breaker: BreakerConfig,
    #[serde(with = "super::resolved::opt_secs")]
    pub health_probe_interval: Option<Duration>,
    #[serde(with = "super::resolved::secs")]
    pub stats_window: Duration,
    #[serde(with = "super::resolved::secs")]
    pub ewma_half_life: Duration,
    pub tiers: Vec<TierSpec>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TierSpec {
    pub name: String,
    /// `None`: every model.
    pub models: Option<HashSet<Arc<str>>>,
}

impl RoutingConfig {
    pub fn tier(&self, name: &str) -> Option<&TierSpec> {
        self.tiers.iter().find(|t| t.name == name)
    }
}

impl TierSpec {
    pub fn allows(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|m| m.contains(model))
    }

    /// Every model this tier reaches is reachable by `other` too.
    pub fn within(&self, other: &TierSpec) -> bool {
        match (&self.models, &other.models) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(mine), Some(theirs)) => mine.is_subset(theirs),
        }
    }
}
