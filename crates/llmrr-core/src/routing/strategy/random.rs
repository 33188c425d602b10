use super::*;
use rand::seq::SliceRandom;

/// `random`: a uniform shuffle; the shuffled order is the fallback plan.
pub struct Random;

impl Strategy for Random {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Random
    }

    fn rank(&self, c: &[Candidate], _input: &RankInput<'_>, rng: &mut dyn RngCore) -> Vec<Ranked> {
        let mut order: Vec<usize> = (0..c.len()).collect();
        order.shuffle(rng);
        let n = c.len().max(1) as f64;
        order
            .into_iter()
            .enumerate()
            .map(|(pos, index)| Ranked {
                index,
                score: (n - pos as f64) / n,
            })
            .collect()
    }

    fn reason(&self, _w: &Candidate, _input: &RankInput<'_>) -> String {
        "drawn at random".into()
    }
}
