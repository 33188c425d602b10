use super::*;

/// `speed-priority`:
/// 1. Lowest live latency first: the time-to-first-token EWMA for streams, the total-latency
///    EWMA otherwise.
/// 2. A model never measured gets an optimistic prior (0 ms), so it is tried and measured.
/// 3. Ties: the route's order.
pub struct SpeedPriority;

impl Strategy for SpeedPriority {
    fn kind(&self) -> StrategyKind {
        StrategyKind::SpeedPriority
    }

    fn rank(&self, c: &[Candidate], input: &RankInput<'_>, _rng: &mut dyn RngCore) -> Vec<Ranked> {
        by_score(c, |x| -x.latency_ms(input.stream).unwrap_or(0.0))
    }

    fn reason(&self, w: &Candidate, input: &RankInput<'_>) -> String {
        let what = if input.stream {
            "time to first token"
        } else {
            "latency"
        };
        match w.latency_ms(input.stream) {
            Some(ms) => format!("lowest {what} ({ms:.0} ms)"),
            None => format!("{what} not measured yet: explored first"),
        }
    }
}
