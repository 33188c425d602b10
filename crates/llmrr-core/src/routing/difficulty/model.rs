//! The scorer's weights: a logistic model over [`super::features`], its file format, and the
//! score of one prompt.

use super::features::{self, PromptView, DENSE, HASH_BITS, HASH_SLOTS, WIDTH};
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"LLMRRDIF";
const VERSION: u32 = 1;
/// Magic, four counts, three numbers.
const HEADER: usize = 8 + 4 * 4 + 3 * 4;

/// A trained scorer.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// One per feature slot (`features::WIDTH`).
    pub values: Vec<f32>,
    /// The score above which a route with no threshold of its own calls its strongest model:
    /// the training data's share of prompts that needed the strong model, as a score.
    pub default_threshold: f32,
    /// Rows the weights were trained on.
    pub trained_rows: u32,
    /// Maps the model's logit to the chance that the strong model is needed (Platt scaling:
    /// `sigmoid(scale * logit + shift)`); `scale` is kept positive, so the order is the logit's.
    pub scale: f32,
    pub shift: f32,
}

impl Weights {
    pub fn zeroed() -> Self {
        Weights {
            values: vec![0.0; WIDTH],
            default_threshold: 0.5,
            trained_rows: 0,
            scale: 1.0,
            shift: 0.0,
        }
    }

    /// The estimated chance, in [0, 1], that a cheaper model fails `p` where the strongest
    /// succeeds.
    pub fn score(&self, p: &PromptView<'_>) -> f32 {
        self.calibrated(self.logit(p))
    }

    pub fn calibrated(&self, logit: f32) -> f32 {
        sigmoid(self.scale * logit + self.shift)
    }

    pub fn logit(&self, p: &PromptView<'_>) -> f32 {
        let mut sum = 0f32;
        let mut count = 0u32;
        let dense = features::extract(p, |slot| {
            sum += self.values[slot];
            count += 1;
        });
        let mut z: f32 = dense
            .iter()
            .zip(&self.values[HASH_SLOTS..])
            .map(|(x, w)| x * w)
            .sum();
        if count > 0 {
            z += sum / (count as f32).sqrt();
        }
        z
    }

    /// The logit of already extracted features.
    pub fn logit_of(&self, sparse: &[(u32, f32)]) -> f32 {
        sparse
            .iter()
            .map(|(s, v)| self.values[*s as usize] * v)
            .sum()
    }

    /// Little-endian: magic, version, hash bits, dense count, rows, default threshold, scale,
    /// shift, values.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 4 * self.values.len());
        out.extend_from_slice(MAGIC);
        for n in [VERSION, HASH_BITS, DENSE.len() as u32, self.trained_rows] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        for x in [self.default_threshold, self.scale, self.shift] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        for v in &self.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Reads weights written by [`Weights::to_bytes`]; `origin` names the file in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self> {
        let error = |message: String| Error::Config {
            path: origin.to_owned(),
            message,
        };
        let bad = |why: &str| error(format!("not a llmrr difficulty weights file: {why}"));
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(bad("no LLMRRDIF header"));
        }
        let word = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[8 + 4 * i..12 + 4 * i]);
            b
        };
        let version = u32::from_le_bytes(word(0));
        let bits = u32::from_le_bytes(word(1));
        let dense = u32::from_le_bytes(word(2));
        if version != VERSION || bits != HASH_BITS || dense as usize != DENSE.len() {
            return Err(error(format!(
                "weights of format {version} with {bits} hash bits and {dense} dense features; \
                 this llmrr reads format {VERSION}, {HASH_BITS} bits, {} dense (retrain with \
                 `llmrr router train`)",
                DENSE.len()
            )));
        }
        let trained_rows = u32::from_le_bytes(word(3));
        let default_threshold = f32::from_le_bytes(word(4));
        let scale = f32::from_le_bytes(word(5));
        let shift = f32::from_le_bytes(word(6));
        let body = &bytes[HEADER..];
        if body.len() != 4 * WIDTH {
            return Err(bad("wrong length"));
        }
        let values: Vec<f32> = body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if values
            .iter()
            .chain([&scale, &shift])
            .any(|v| !v.is_finite())
            || !(0.0..=1.0).contains(&default_threshold)
            || scale <= 0.0
        {
            return Err(bad("a weight is out of range"));
        }
        Ok(Weights {
            values,
            default_threshold,
            trained_rows,
            scale,
            shift,
        })
    }
}

pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}
