use super::*;

/// `least-loaded`:
/// 1. Fewest calls in flight first (read from live stats, no lock).
/// 2. Ties: lower live latency (unmeasured counts as 0), then the route's order.
pub struct LeastLoaded;

impl Strategy for LeastLoaded {
    fn kind(&self) -> StrategyKind {
        StrategyKind::LeastLoaded
    }

    fn rank(&self, c: &[Candidate], input: &RankInput<'_>, _rng: &mut dyn RngCore) -> Vec<Ranked> {
        let mut ranked = by_score(c, |x| -f64::from(x.stats.in_flight));
        ranked.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(
                    c[a.index]
                        .latency_ms(input.stream)
                        .unwrap_or(0.0)
                        .total_cmp(&c[b.index].latency_ms(input.stream).unwrap_or(0.0)),
                )
                .then(c[a.index].order.cmp(&c[b.index].order))
        });
        ranked
    }

    fn reason(&self, w: &Candidate, _input: &RankInput<'_>) -> String {
        format!("fewest calls in flight ({})", w.stats.in_flight)
    }
}
