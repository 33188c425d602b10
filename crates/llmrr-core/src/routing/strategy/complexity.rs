use super::*;

/// `complexity`:
/// 1. The prompt's difficulty score (the route's scorer) is compared with the route's
///    thresholds (or the threshold that holds `strong_share` on the live scores): the number
///    of thresholds at or below it picks a model of the route ordered by quality, weakest
///    first; that model's quality is the target.
/// 2. First: the candidate of lowest quality that reaches the target (the cheaper on ties);
///    none left that reaches it: the strongest left.
/// 3. Then the stronger ones, weakest first (escalation), then the weaker ones, strongest
///    first.
pub struct Complexity;

impl Strategy for Complexity {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Complexity
    }

    fn rank(&self, c: &[Candidate], input: &RankInput<'_>, _rng: &mut dyn RngCore) -> Vec<Ranked> {
        let target = input.level.map_or(f64::NEG_INFINITY, |l| l.target_quality);
        let mut order: Vec<usize> = (0..c.len()).collect();
        // Weakest first; the cheaper, then the route's order, on ties.
        order.sort_by(|a, b| {
            c[*a]
                .quality
                .total_cmp(&c[*b].quality)
                .then(c[*a].est_cost_usd.total_cmp(&c[*b].est_cost_usd))
                .then(c[*a].order.cmp(&c[*b].order))
        });
        let first = order
            .iter()
            .position(|i| c[*i].quality >= target)
            .unwrap_or(order.len() - 1);
        let sequence = order[first..]
            .iter()
            .chain(order[..first].iter().rev())
            .copied();
        let n = c.len() as f64;
        sequence
            .enumerate()
            .map(|(place, index)| Ranked {
                index,
                score: 1.0 - place as f64 / n,
            })
            .collect()
    }

    fn reason(&self, w: &Candidate, input: &RankInput<'_>) -> String {
        match input.level {
            Some(l) if l.steps > 0 => format!(
                "difficulty {:.3} >= threshold {:.3} ({}): quality {:.2} needed",
                l.score, l.threshold, l.category, w.quality
            ),
            Some(l) => format!(
                "difficulty {:.3} < threshold {:.3} ({}): the cheaper model suffices",
                l.score, l.threshold, l.category
            ),
            None => "no difficulty score: the weakest model".into(),
        }
    }
}
