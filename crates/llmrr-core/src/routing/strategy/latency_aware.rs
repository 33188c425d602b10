use super::*;
use rand::Rng;

/// `latency-aware`: power of two choices over peak-EWMA latency (as in Finagle and tower's
/// balancer).
/// 1. Load of a candidate = its peak-EWMA latency × (calls in flight + 1); an unmeasured model
///    has load 0, so it is tried.
/// 2. Draw two distinct candidates at random; the one with the lower load goes first, the
///    other second.
/// 3. The rest follow by load.
pub struct LatencyAware;

fn load(c: &Candidate) -> f64 {
    c.stats.peak_latency_ms.unwrap_or(0.0) * f64::from(c.stats.in_flight + 1)
}

impl Strategy for LatencyAware {
    fn kind(&self) -> StrategyKind {
        StrategyKind::LatencyAware
    }

    fn rank(&self, c: &[Candidate], _input: &RankInput<'_>, rng: &mut dyn RngCore) -> Vec<Ranked> {
        let mut ranked = by_score(c, |x| -load(x));
        if c.len() >= 2 {
            let a = rng.gen_range(0..c.len());
            let mut b = rng.gen_range(0..c.len() - 1);
            if b >= a {
                b += 1;
            }
            let (first, second) = if load(&c[a]) <= load(&c[b]) {
                (a, b)
            } else {
                (b, a)
            };
            ranked.retain(|r| r.index != first && r.index != second);
            ranked.insert(
                0,
                Ranked {
                    index: second,
                    score: -load(&c[second]),
                },
            );
            ranked.insert(
                0,
                Ranked {
                    index: first,
                    score: -load(&c[first]),
                },
            );
        }
        ranked
    }

    fn reason(&self, w: &Candidate, _input: &RankInput<'_>) -> String {
        format!(
            "lower load of two random picks (peak latency {} x {} in flight)",
            fmt_latency(w.stats.peak_latency_ms),
            w.stats.in_flight + 1
        )
    }
}
