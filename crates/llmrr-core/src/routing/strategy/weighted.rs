use super::*;
use rand::Rng;

/// `weighted` (traffic split, canary):
/// 1. Draw the first model with probability weight / sum of weights.
/// 2. Draw the next from the rest the same way, and so on (weighted sampling without
///    replacement), so fallbacks also follow the split; weight-0 models come last.
pub struct Weighted;

impl Strategy for Weighted {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Weighted
    }

    fn rank(&self, c: &[Candidate], _input: &RankInput<'_>, rng: &mut dyn RngCore) -> Vec<Ranked> {
        let mut left: Vec<usize> = (0..c.len()).collect();
        let mut out = Vec::with_capacity(c.len());
        while !left.is_empty() {
            let total: f64 = left.iter().map(|&i| c[i].weight.max(0.0)).sum();
            let pick = if total > 0.0 {
                let mut x = rng.gen_range(0.0..total);
                let mut chosen = left.len() - 1;
                for (pos, &i) in left.iter().enumerate() {
                    let w = c[i].weight.max(0.0);
                    if x < w {
                        chosen = pos;
                        break;
                    }
                    x -= w;
                }
                chosen
            } else {
                0
            };
            let index = left.remove(pick);
            out.push(Ranked {
                index,
                score: c[index].weight,
            });
        }
        out
    }

    fn reason(&self, w: &Candidate, _input: &RankInput<'_>) -> String {
        format!("traffic split (weight {})", w.weight)
    }
}
