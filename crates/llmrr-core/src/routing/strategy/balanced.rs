use super::*;

/// `balanced`: a weighted score of quality, cost and latency.
///
/// 1. Normalize each term over the candidates to [0, 1]: quality (higher is better), estimated
///    cost and live latency (lower is better); when all candidates are equal on a term it
///    counts 1 for all. An unmeasured latency takes the best measured one (optimistic, so new
///    models get explored).
/// 2. Score = w_quality·q + w_cost·c + w_latency·l with the route's weights (summing to 1), so
///    every score lies in [0, 1] and no term can be infinite or dominate by construction.
/// 3. Highest score first; ties in the route's order.
pub struct Balanced;

fn normalize(v: f64, lo: f64, hi: f64, higher_is_better: bool) -> f64 {
    if hi - lo <= f64::EPSILON {
        return 1.0;
    }
    let x = (v - lo) / (hi - lo);
    if higher_is_better {
        x
    } else {
        1.0 - x
    }
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

impl Strategy for Balanced {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Balanced
    }

    fn rank(&self, c: &[Candidate], input: &RankInput<'_>, _rng: &mut dyn RngCore) -> Vec<Ranked> {
        let w = input.balanced;
        let (qlo, qhi) = range(c.iter().map(|x| x.quality));
        let (clo, chi) = range(c.iter().map(|x| x.est_cost_usd));
        let measured = range(c.iter().filter_map(|x| x.latency_ms(input.stream)));
        let prior = if measured.0.is_finite() {
            measured.0
        } else {
            0.0
        };
        let (llo, lhi) = range(
            c.iter()
                .map(|x| x.latency_ms(input.stream).unwrap_or(prior)),
        );
        by_score(c, |x| {
            w.quality * normalize(x.quality, qlo, qhi, true)
                + w.cost * normalize(x.est_cost_usd, clo, chi, false)
                + w.latency
                    * normalize(x.latency_ms(input.stream).unwrap_or(prior), llo, lhi, false)
        })
    }

    fn reason(&self, w: &Candidate, input: &RankInput<'_>) -> String {
        format!(
            "best balance of quality {:.2}, est. cost ${:.6} and latency {}",
            w.quality,
            w.est_cost_usd,
            fmt_latency(w.latency_ms(input.stream))
        )
    }
}
