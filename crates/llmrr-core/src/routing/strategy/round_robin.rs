use super::*;
use std::sync::atomic::Ordering;

/// `round-robin`:
/// 1. Take the route's cursor and advance it (one atomic add, shared by every request).
/// 2. Start at candidate `cursor mod n` in the route's order; the rest follow in order.
pub struct RoundRobin;

impl Strategy for RoundRobin {
    fn kind(&self) -> StrategyKind {
        StrategyKind::RoundRobin
    }

    fn rank(&self, c: &[Candidate], input: &RankInput<'_>, _rng: &mut dyn RngCore) -> Vec<Ranked> {
        let n = c.len().max(1);
        let start = input.cursor.fetch_add(1, Ordering::Relaxed) % n;
        let mut order: Vec<usize> = (0..c.len()).collect();
        order.sort_by_key(|&i| c[i].order);
        order.rotate_left(start);
        order
            .into_iter()
            .enumerate()
            .map(|(pos, index)| Ranked {
                index,
                score: (n - pos) as f64 / n as f64,
            })
            .collect()
    }

    fn reason(&self, _w: &Candidate, _input: &RankInput<'_>) -> String {
        "next in rotation".into()
    }
}
