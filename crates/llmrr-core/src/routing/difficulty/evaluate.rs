//! Measuring a router on labelled prompts: APGR (the area under the curve of the quality gap
//! recovered as the share sent to the strong model goes from 0 to 100 %) and the share needed
//! for a given part of the gap, by k-fold cross-validation.

use super::train::{shuffle, SplitMix};

/// One prompt's outcome and a router's score for it (higher: send to the strong model).
#[derive(Debug, Clone, Copy)]
pub struct Scored {
    pub score: f64,
    pub weak: f64,
    pub strong: f64,
}

/// The curve of (share sent to strong, gap recovered), from (0, 0) to (1, 1). Prompts with
/// equal scores form one step whose quality grows linearly: the expected curve when ties are
/// broken at random.
pub fn pgr_curve(rows: &[Scored]) -> Vec<(f64, f64)> {
    let n = rows.len() as f64;
    let weak: f64 = rows.iter().map(|r| r.weak).sum();
    let strong: f64 = rows.iter().map(|r| r.strong).sum();
    let gap = strong - weak;
    let mut sorted: Vec<&Scored> = rows.iter().collect();
    sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut curve = vec![(0.0, 0.0)];
    let mut sent = 0usize;
    let mut gained = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].score == sorted[i].score {
            gained += sorted[j].strong - sorted[j].weak;
            j += 1;
        }
        sent += j - i;
        curve.push((sent as f64 / n, if gap == 0.0 { 0.0 } else { gained / gap }));
        i = j;
    }
    curve
}

/// Area under [`pgr_curve`] (trapezoids: exact for its linear steps).
pub fn apgr(rows: &[Scored]) -> f64 {
    pgr_curve(rows)
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum()
}

/// The smallest share of strong calls that recovers `target` of the gap (interpolated).
pub fn share_for(rows: &[Scored], target: f64) -> f64 {
    let curve = pgr_curve(rows);
    for w in curve.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if y1 >= target {
            if y1 == y0 {
                return x1;
            }
            return x0 + (x1 - x0) * ((target - y0) / (y1 - y0)).clamp(0.0, 1.0);
        }
    }
    1.0
}

/// Fold of each row for k-fold cross-validation: a seeded shuffle, so fixed for given rows.
pub fn folds(rows: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows).collect();
    shuffle(&mut order, &mut SplitMix(seed));
    let mut fold = vec![0; rows];
    for (position, row) in order.into_iter().enumerate() {
        fold[row] = position % k;
    }
    fold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(score: f64, weak: f64, strong: f64) -> Scored {
        Scored {
            score,
            weak,
            strong,
        }
    }

    #[test]
    fn an_oracle_a_random_router_and_ties() {
        // Two prompts need the strong model, one is lost by it, one is the same for both.
        let oracle = [
            row(3.0, 0.0, 1.0),
            row(2.0, 0.0, 1.0),
            row(1.0, 1.0, 1.0),
            row(0.0, 1.0, 0.0),
        ];
        // Gap = 1; the curve climbs to 2 at 50 %, stays, ends at 1: area 1.375.
        assert!((apgr(&oracle) - 1.375).abs() < 1e-12);
        assert!((share_for(&oracle, 0.5) - 0.125).abs() < 1e-12);
        // All equal scores: one linear step from (0,0) to (1,1), as random routing.
        let tied: Vec<Scored> = oracle.iter().map(|r| row(0.0, r.weak, r.strong)).collect();
        assert!((apgr(&tied) - 0.5).abs() < 1e-12);
        assert!((share_for(&tied, 0.8) - 0.8).abs() < 1e-12);
        // The reverse of the oracle.
        let worst: Vec<Scored> = oracle
            .iter()
            .map(|r| row(-r.score, r.weak, r.strong))
            .collect();
        assert!(apgr(&worst) < 0.0);
    }

    #[test]
    fn folds_are_fixed_and_balanced() {
        let a = folds(103, 5, 7);
        assert_eq!(a, folds(103, 5, 7));
        for k in 0..5 {
            let n = a.iter().filter(|f| **f == k).count();
            assert!((20..=21).contains(&n));
        }
    }
}
