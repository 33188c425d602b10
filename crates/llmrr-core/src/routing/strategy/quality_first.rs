use super::*;

/// `quality-first`:
/// 1. Highest configured quality first.
/// 2. Ties: the cheaper estimate, then the route's order.
pub struct QualityFirst;

impl Strategy for QualityFirst {
    fn kind(&self) -> StrategyKind {
        StrategyKind::QualityFirst
    }

    fn rank(&self, c: &[Candidate], _input: &RankInput<'_>, _rng: &mut dyn RngCore) -> Vec<Ranked> {
        // Cost breaks ties only: scaled far below any quality difference that matters.
        by_score(c, |x| x.quality - x.est_cost_usd.min(1.0) * 1e-6)
    }

    fn reason(&self, w: &Candidate, _input: &RankInput<'_>) -> String {
        format!("highest quality ({:.2})", w.quality)
    }
}
