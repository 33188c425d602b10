use super::*;

/// `cascade`:
/// 1. Cheapest first (as `cost-optimized`), then ever more expensive.
/// 2. The gateway accepts an answer only when it passes the route's checks (not empty, not a
///    refusal, not cut by the length limit, valid JSON when JSON was asked, the mean token
///    log-probability above the route's floor when there is one); otherwise it calls the next.
pub struct Cascade;

impl Strategy for Cascade {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Cascade
    }

    fn rank(&self, c: &[Candidate], input: &RankInput<'_>, rng: &mut dyn RngCore) -> Vec<Ranked> {
        cost_optimized::CostOptimized.rank(c, input, rng)
    }

    fn reason(&self, w: &Candidate, _input: &RankInput<'_>) -> String {
        format!(
            "cascade: cheapest first (est. ${:.6}), escalated when its answer fails the checks",
            w.est_cost_usd
        )
    }
}
