//! Training the scorer: logistic regression on hashed features by AdaGrad SGD with L2, in a
//! fixed order drawn from a seeded generator, so the same rows always give the same weights.

use super::features::{self, PromptView, HASH_SLOTS, WIDTH};
use super::model::{sigmoid, Weights};

/// One labelled prompt.
#[derive(Debug, Clone)]
pub struct Example {
    pub features: Vec<(u32, f32)>,
    /// 1 when the cheaper model failed where the strongest succeeded.
    pub needs_strong: bool,
    /// The strong model's quality minus the weak one's on this prompt, in [-1, 1] (what
    /// sending it to the strong model gains).
    pub gain: f32,
}

impl Example {
    /// What the model learns: (1 + gain) / 2, so its output grows with the expected gain
    /// of the strong model (0.5: both models alike).
    fn target(&self) -> f32 {
        (1.0 + self.gain) / 2.0
    }

    pub fn new(p: &PromptView<'_>, weak: f32, strong: f32) -> Self {
        Example {
            features: features::sparse(p),
            needs_strong: strong > weak,
            gain: strong - weak,
        }
    }
}

/// Training settings; the defaults are what the shipped weights use (chosen on a small grid
/// — epochs 3 or 8, learning rate 0.02 to 0.1, L2 0.05 to 0.2 — by 5-fold cross-validation on
/// the routing data; every point of it was within 0.015 APGR of this one on MMLU and 0.03 on
/// GSM8K, so the choice matters less than the features).
#[derive(Debug, Clone, Copy)]
pub struct TrainParams {
    pub epochs: u32,
    pub learning_rate: f32,
    /// L2 strength per example update, on the hashed n-grams.
    pub l2: f32,
    /// L2 strength on the dense features (few, and shared by every prompt).
    pub l2_dense: f32,
    pub seed: u64,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            epochs: 3,
            learning_rate: 0.02,
            l2: 0.05,
            l2_dense: 1e-5,
            seed: 0x11_4d_52_52,
        }
    }
}

pub fn train(rows: &[Example], params: &TrainParams) -> Weights {
    let mut w = vec![0f32; WIDTH];
    let mut g2 = vec![1e-6f32; WIDTH];
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let mut rng = SplitMix(params.seed);
    for _ in 0..params.epochs {
        shuffle(&mut order, &mut rng);
        for &i in &order {
            let row = &rows[i];
            let z: f32 = row.features.iter().map(|(s, v)| w[*s as usize] * v).sum();
            let err = sigmoid(z) - row.target();
            for (s, v) in &row.features {
                let s = *s as usize;
                let l2 = if s >= HASH_SLOTS {
                    params.l2_dense
                } else {
                    params.l2
                };
                let grad = err * v + l2 * w[s];
                g2[s] += grad * grad;
                w[s] -= params.learning_rate * grad / g2[s].sqrt();
            }
        }
    }
    let mut weights = Weights {
        values: w,
        trained_rows: rows.len() as u32,
        ..Weights::zeroed()
    };
    let logits: Vec<f32> = rows.iter().map(|r| weights.logit_of(&r.features)).collect();
    (weights.scale, weights.shift) = platt(&logits, rows);
    weights.default_threshold = default_threshold(&weights, &logits, rows);
    weights
}

/// Fits `sigmoid(a * logit + b)` to "needed the strong model" by gradient descent on the log
/// loss (full batch, fixed steps: deterministic). `a` stays positive.
fn platt(logits: &[f32], rows: &[Example]) -> (f32, f32) {
    if rows.is_empty() {
        return (1.0, 0.0);
    }
    let n = rows.len() as f64;
    let (mut a, mut b) = (1.0f64, 0.0f64);
    for _ in 0..2000 {
        let (mut ga, mut gb) = (0.0f64, 0.0f64);
        for (z, r) in logits.iter().zip(rows) {
            let z = f64::from(*z);
            let err = 1.0 / (1.0 + (-(a * z + b)).exp()) - f64::from(u8::from(r.needs_strong));
            ga += err * z;
            gb += err;
        }
        a = (a - 0.5 * ga / n).max(1e-3);
        b -= 0.5 * gb / n;
    }
    (a as f32, b as f32)
}

/// The score at or above which as many training prompts go to the strong model as needed it.
fn default_threshold(w: &Weights, logits: &[f32], rows: &[Example]) -> f32 {
    let needing = rows.iter().filter(|r| r.needs_strong).count();
    if needing == 0 {
        return 1.0;
    }
    let mut scores: Vec<f32> = logits.iter().map(|z| w.calibrated(*z)).collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    scores[needing - 1]
}

/// splitmix64: a tiny generator whose sequence is fixed by its seed on every platform.
pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Fisher–Yates with [`SplitMix`].
pub(crate) fn shuffle<T>(items: &mut [T], rng: &mut SplitMix) {
    for i in (1..items.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
