//! Routing strategies: each is a type whose doc lists its steps. A strategy only orders the
//! candidates it is given (already filtered by capability, context window, key, tier,
//! constraints and breaker state); the order is the fallback plan.

mod balanced;
mod capability_match;
mod cascade;
mod complexity;
mod cost_optimized;
mod latency_aware;
mod least_loaded;
mod quality_first;
mod random;
mod round_robin;
mod speed_priority;
mod weighted;

use super::stats::StatsSnapshot;
use crate::config::routing::{BalancedWeights, StrategyKind};
use rand::RngCore;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

/// One model as a strategy sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: Arc<str>,
    pub quality: f64,
    /// Estimated cost of this request in USD (prompt estimate + expected output).
    pub est_cost_usd: f64,
    pub stats: StatsSnapshot,
    /// Share of traffic under `weighted`.
    pub weight: f64,
    /// Position in the route's model list (the operator's preference).
    pub order: usize,
}

impl Candidate {
    /// The latency that matters for this request: time to first token for streams, total
    /// latency otherwise. `None` when never measured.
    pub fn latency_ms(&self, stream: bool) -> Option<f64> {
        if stream {
            self.stats.ttft_ms.or(self.stats.latency_ms)
        } else {
            self.stats.latency_ms
        }
    }
}

pub struct RankInput<'a> {
    pub stream: bool,
    pub balanced: BalancedWeights,
    /// The route's round-robin position.
    pub cursor: &'a AtomicUsize,
    /// For `complexity`: where the prompt's difficulty puts it.
    pub level: Option<Level>,
}

/// Where a prompt's difficulty puts it on a `complexity` route.
#[derive(Debug, Clone, Copy)]
pub struct Level {
    pub score: f32,
    pub category: &'static str,
    /// The threshold it crossed last (the first one when it crossed none), as shown.
    pub threshold: f32,
    /// Thresholds at or below the score: the index of the target model, weakest first.
    pub steps: usize,
    /// The quality of that model.
    pub target_quality: f64,
}

/// A candidate's place: its index in the input, and its score (higher is better).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    pub index: usize,
    pub score: f64,
}

pub trait Strategy: Send + Sync {
    fn kind(&self) -> StrategyKind;
    /// All candidates, best first.
    fn rank(
        &self,
        candidates: &[Candidate],
        input: &RankInput<'_>,
        rng: &mut dyn RngCore,
    ) -> Vec<Ranked>;
    /// Why the first one won, in a few words.
    fn reason(&self, winner: &Candidate, input: &RankInput<'_>) -> String;
}

pub fn strategy(kind: StrategyKind) -> &'static dyn Strategy {
    match kind {
        StrategyKind::Balanced => &balanced::Balanced,
        StrategyKind::QualityFirst => &quality_first::QualityFirst,
        StrategyKind::CostOptimized => &cost_optimized::CostOptimized,
        StrategyKind::SpeedPriority => &speed_priority::SpeedPriority,
        StrategyKind::RoundRobin => &round_robin::RoundRobin,
        StrategyKind::LeastLoaded => &least_loaded::LeastLoaded,
        StrategyKind::Random => &random::Random,
        StrategyKind::Weighted => &weighted::Weighted,
        StrategyKind::LatencyAware => &latency_aware::LatencyAware,
        StrategyKind::CapabilityMatch => &capability_match::CapabilityMatch,
        StrategyKind::Complexity => &complexity::Complexity,
        StrategyKind::Cascade => &cascade::Cascade,
    }
}

/// Order by score, best first; ties go to the operator's order.
fn by_score(candidates: &[Candidate], score: impl Fn(&Candidate) -> f64) -> Vec<Ranked> {
    let mut out: Vec<Ranked> = candidates
        .iter()
        .enumerate()
        .map(|(index, c)| Ranked {
            index,
            score: score(c),
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(candidates[a.index].order.cmp(&candidates[b.index].order))
    });
    out
}

fn fmt_latency(ms: Option<f64>) -> String {
    ms.map(|m| format!("{m:.0} ms"))
        .unwrap_or_else(|| "unmeasured".into())
}

#[cfg(test)]
mod tests;
