//! Holding a target share of strong calls: the threshold is the live score distribution's
//! quantile, over a window of the route's most recent scores.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Scores kept per route.
const WINDOW: usize = 1000;
/// Scores needed before the window's quantile replaces the starting threshold.
const WARM_UP: usize = 50;

pub struct ShareCalibrator {
    /// The share of requests the strongest model should get, in (0, 1).
    share: f64,
    /// The threshold until the window is warm.
    start: f32,
    recent: Mutex<VecDeque<f32>>,
}

impl ShareCalibrator {
    pub fn new(share: f64, start: f32) -> Self {
        ShareCalibrator {
            share,
            start,
            recent: Mutex::new(VecDeque::with_capacity(WINDOW)),
        }
    }

    /// Records `score` and returns the threshold to compare it with: the score at or above
    /// which `share` of the window lies.
    pub fn observe(&self, score: f32) -> f32 {
        let Ok(mut recent) = self.recent.lock() else {
            return self.start;
        };
        if recent.len() == WINDOW {
            recent.pop_front();
        }
        recent.push_back(score);
        self.threshold(&recent)
    }

    /// The threshold now, without recording a score.
    pub fn current(&self) -> f32 {
        match self.recent.lock() {
            Ok(recent) => self.threshold(&recent),
            Err(_) => self.start,
        }
    }

    fn threshold(&self, recent: &VecDeque<f32>) -> f32 {
        if recent.len() < WARM_UP {
            return self.start;
        }
        let mut sorted: Vec<f32> = recent.iter().copied().collect();
        let above = ((sorted.len() as f64) * self.share).round().max(1.0) as usize;
        // Scores at or above the `above`-th highest go to the strong model.
        let at = sorted.len().saturating_sub(above);
        let (_, nth, _) = sorted.select_nth_unstable_by(at, |a, b| a.total_cmp(b));
        *nth
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::difficulty::train::SplitMix;

    #[test]
    fn holds_the_target_share_on_a_stream_of_scores() {
        for share in [0.1, 0.2, 0.5] {
            let c = ShareCalibrator::new(share, 0.9);
            let mut rng = SplitMix(42);
            let mut strong = 0;
            let total = 20_000;
            for i in 0..total {
                // Scores drift upwards: a fixed threshold would send ever more to the strong model.
                let drift = i as f32 / total as f32 * 0.3;
                let score = (rng.next() % 10_000) as f32 / 10_000.0 * 0.6 + drift;
                let t = c.observe(score);
                strong += usize::from(score >= t);
            }
            let got = strong as f64 / total as f64;
            assert!((got - share).abs() < 0.02, "share {share}: got {got}");
        }
    }
}
