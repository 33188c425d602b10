use super::*;

/// `capability-match`:
/// 1. (The filter already removed every model that lacks what the request needs: tools,
///    images, JSON mode, or a context window large enough for the prompt.)
/// 2. The capable models in the route's order: the operator's preference decides among them.
pub struct CapabilityMatch;

impl Strategy for CapabilityMatch {
    fn kind(&self) -> StrategyKind {
        StrategyKind::CapabilityMatch
    }

    fn rank(&self, c: &[Candidate], _input: &RankInput<'_>, _rng: &mut dyn RngCore) -> Vec<Ranked> {
        by_score(c, |x| -(x.order as f64))
    }

    fn reason(&self, _w: &Candidate, _input: &RankInput<'_>) -> String {
        "first capable model in the route's order".into()
    }
}
