//! Labelled prompts for training and evaluation (JSON lines), and the cross-validated report
//! of the scorer beside the baselines a router must beat.

use super::evaluate::{apgr, folds, share_for, Scored};
use super::train::{train, Example, TrainParams};
use super::ChatText;
use crate::error::{Error, Result};
use llmrr_types::openai::ChatCompletionRequest;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One row: a prompt (`prompt`, or an OpenAI `messages` list) and how well a weak and a strong
/// model answered it, in [0, 1].
#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub messages: Option<serde_json::Value>,
    #[serde(default)]
    pub subject: Option<String>,
    pub weak: f32,
    pub strong: f32,
}

/// A row read and ready: its text as the scorer sees it.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub text: ChatText,
    pub subject: Option<String>,
    pub weak: f32,
    pub strong: f32,
}

impl Labelled {
    pub fn example(&self) -> Example {
        Example::new(&self.text.view(), self.weak, self.strong)
    }
}

/// Reads JSON lines (blank lines skipped); `origin` names the file in errors.
pub fn parse(jsonl: &str, origin: &str) -> Result<Vec<Labelled>> {
    let mut out = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| Error::Config {
            path: format!("{origin}:{}", i + 1),
            message,
        };
        let row: Row = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        if !(0.0..=1.0).contains(&row.weak) || !(0.0..=1.0).contains(&row.strong) {
            return Err(bad("`weak` and `strong` must be in [0, 1]".into()));
        }
        let text = match (row.prompt, row.messages) {
            (Some(prompt), _) => ChatText {
                text: prompt,
                context_chars: 0,
                turns: 1,
                tools: false,
                system: false,
            },
            (None, Some(messages)) => {
                let req: ChatCompletionRequest = serde_json::from_value(serde_json::json!({
                    "model": "-", "messages": messages
                }))
                .map_err(|e| bad(format!("`messages`: {e}")))?;
                ChatText::of(&req)
            }
            (None, None) => return Err(bad("a row needs `prompt` or `messages`".into())),
        };
        out.push(Labelled {
            text,
            subject: row.subject,
            weak: row.weak,
            strong: row.strong,
        });
    }
    Ok(out)
}

/// A router's numbers on one dataset, as the mean over the folds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Measured {
    pub apgr: f64,
    /// Share of calls to the strong model needed to recover 50 % and 80 % of the quality gap.
    pub share_50: f64,
    pub share_80: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasetReport {
    pub name: String,
    pub rows: usize,
    pub weak_quality: f64,
    pub strong_quality: f64,
    pub scorer: Measured,
    pub prompt_length: Measured,
    /// Only where the rows carry a `subject`.
    pub subject_prior: Option<Measured>,
    pub random: Measured,
}

pub const FOLDS: usize = 5;
const FOLD_SEED: u64 = 1;

/// k-fold cross-validation of the scorer on each dataset: each fold is scored by weights
/// trained on the other folds plus every other dataset whole (as the shipped weights see them).
pub fn cross_validate(
    sets: &[(String, Vec<Labelled>)],
    params: &TrainParams,
) -> Vec<DatasetReport> {
    let examples: Vec<Vec<Example>> = sets
        .iter()
        .map(|(_, rows)| rows.iter().map(Labelled::example).collect())
        .collect();
    let mut reports = Vec::new();
    for (d, (name, rows)) in sets.iter().enumerate() {
        let fold = folds(rows.len(), FOLDS, FOLD_SEED);
        let mut scorer = Vec::new();
        let mut length = Vec::new();
        let mut prior = Vec::new();
        let mut random = Vec::new();
        for k in 0..FOLDS {
            let mut training: Vec<Example> = Vec::new();
            for (o, other) in examples.iter().enumerate() {
                if o != d {
                    training.extend(other.iter().cloned());
                }
            }
            training.extend(
                examples[d]
                    .iter()
                    .zip(&fold)
                    .filter(|(_, f)| **f != k)
                    .map(|(e, _)| e.clone()),
            );
            let weights = train(&training, params);
            let priors = subject_priors(rows.iter().zip(&fold).filter(|(_, f)| **f != k));
            let held: Vec<(usize, &Labelled)> = rows
                .iter()
                .enumerate()
                .filter(|(i, _)| fold[*i] == k)
                .collect();
            let scored = |score: &dyn Fn(usize, &Labelled) -> f64| -> Vec<Scored> {
                held.iter()
                    .map(|(i, r)| Scored {
                        score: score(*i, r),
                        weak: f64::from(r.weak),
                        strong: f64::from(r.strong),
                    })
                    .collect()
            };
            scorer.push(scored(&|i, _| {
                f64::from(weights.logit_of(&examples[d][i].features))
            }));
            length.push(scored(&|_, r| r.text.text.len() as f64));
            random.push(scored(&|_, _| 0.0));
            if let Some(priors) = &priors {
                prior.push(scored(&|_, r| {
                    r.subject
                        .as_deref()
                        .and_then(|s| priors.get(s))
                        .copied()
                        .unwrap_or(0.0)
                }));
            }
        }
        let n = rows.len().max(1) as f64;
        reports.push(DatasetReport {
            name: name.clone(),
            rows: rows.len(),
            weak_quality: rows.iter().map(|r| f64::from(r.weak)).sum::<f64>() / n,
            strong_quality: rows.iter().map(|r| f64::from(r.strong)).sum::<f64>() / n,
            scorer: measure(&scorer),
            prompt_length: measure(&length),
            subject_prior: (prior.len() == FOLDS).then(|| measure(&prior)),
            random: measure(&random),
        });
    }
    reports
}

/// Mean gain of the strong model per subject; `None` when the rows carry no subject.
fn subject_priors<'a>(
    rows: impl Iterator<Item = (&'a Labelled, &'a usize)>,
) -> Option<HashMap<String, f64>> {
    let mut sums: HashMap<String, (f64, f64)> = HashMap::new();
    for (r, _) in rows {
        let subject = r.subject.clone()?;
        let e = sums.entry(subject).or_default();
        e.0 += f64::from(r.strong - r.weak);
        e.1 += 1.0;
    }
    Some(sums.into_iter().map(|(s, (g, n))| (s, g / n)).collect())
}

fn measure(folds: &[Vec<Scored>]) -> Measured {
    let n = folds.len().max(1) as f64;
    let mean = |f: &dyn Fn(&[Scored]) -> f64| folds.iter().map(|s| f(s)).sum::<f64>() / n;
    Measured {
        apgr: mean(&apgr),
        share_50: mean(&|s| share_for(s, 0.5)),
        share_80: mean(&|s| share_for(s, 0.8)),
    }
}
