use super::*;

/// `cost-optimized`:
/// 1. (Constraints — min quality, max cost, max latency — were applied by the filter.)
/// 2. Lowest estimated cost first: prompt tokens (estimated) at the input price plus the
///    expected output tokens (the request's cap, else the route's `expected_output_tokens`) at
///    the output price.
/// 3. Ties: higher quality, then the route's order.
pub struct CostOptimized;

impl Strategy for CostOptimized {
    fn kind(&self) -> StrategyKind {
        StrategyKind::CostOptimized
    }

    fn rank(&self, c: &[Candidate], _input: &RankInput<'_>, _rng: &mut dyn RngCore) -> Vec<Ranked> {
        let mut ranked = by_score(c, |x| -x.est_cost_usd);
        ranked.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(c[b.index].quality.total_cmp(&c[a.index].quality))
                .then(c[a.index].order.cmp(&c[b.index].order))
        });
        ranked
    }

    fn reason(&self, w: &Candidate, _input: &RankInput<'_>) -> String {
        format!(
            "cheapest that meets the constraints (est. ${:.6})",
            w.est_cost_usd
        )
    }
}
