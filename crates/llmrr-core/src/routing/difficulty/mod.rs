//! How hard a prompt is: a learned score in [0, 1] (the estimated chance that a route's cheaper
//! models fail where its strongest succeeds) and a category, in microseconds on the CPU.
//!
//! `features` reads a prompt (hashed word n-grams, dense signals); `model` holds the weights
//! and their file format; `train` fits them (reproducibly); `evaluate` measures a router (APGR
//! by cross-validation); `dataset` reads labelled prompts and reports the cross-validation;
//! `calibrate` holds a route's share of strong calls on the live scores. The category is the
//! one spend is grouped by ([`crate::money::category`]).
//!
//! The shipped weights (`weights/difficulty.bin`) are trained by `llmrr router train` on the
//! routing data in `training/routing/`; a test retrains them and compares the bytes.

pub mod calibrate;
pub mod dataset;
pub mod evaluate;
pub mod features;
pub mod model;
pub mod train;

pub use features::PromptView;
pub use model::Weights;

use llmrr_types::openai::{ChatCompletionRequest, ContentPart, MessageContent, Role};
use serde::Serialize;
use std::sync::{Arc, OnceLock};

/// The weights that ship with llmrr.
pub fn shipped() -> Arc<Weights> {
    static SHIPPED: OnceLock<Arc<Weights>> = OnceLock::new();
    SHIPPED
        .get_or_init(|| {
            Arc::new(
                Weights::from_bytes(
                    include_bytes!("../../../weights/difficulty.bin"),
                    "the shipped difficulty weights",
                )
                .unwrap_or_else(|e| panic!("{e}")),
            )
        })
        .clone()
}

/// A prompt's difficulty as the router explains it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Difficulty {
    pub score: f32,
    pub category: &'static str,
}

impl Difficulty {
    pub fn of(weights: &Weights, p: &PromptView<'_>) -> Self {
        Difficulty {
            score: (weights.score(p) * 1e4).round() / 1e4,
            category: crate::money::category::categorize(p.text),
        }
    }

    pub fn of_chat(weights: &Weights, req: &ChatCompletionRequest) -> Self {
        let text = ChatText::of(req);
        Self::of(weights, &text.view())
    }
}

/// The parts of a chat request the scorer reads, gathered once; also what the request log
/// keeps of a prompt for routes with `log_prompts = true` (as JSON, the text cut to what the
/// scorer reads).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ChatText {
    /// The last user turn's text (its text parts joined by newlines).
    pub text: String,
    pub context_chars: usize,
    pub turns: usize,
    pub tools: bool,
    pub system: bool,
}

impl ChatText {
    pub fn of(req: &ChatCompletionRequest) -> Self {
        let last_user = req.messages.iter().rposition(|m| m.role == Role::User);
        let mut context_chars = 0;
        let mut text = String::new();
        for (i, m) in req.messages.iter().enumerate() {
            if Some(i) == last_user {
                text = content_text(m.content.as_ref());
            } else {
                context_chars += match &m.content {
                    Some(MessageContent::Text(t)) => t.len(),
                    Some(MessageContent::Parts(parts)) => parts
                        .iter()
                        .map(|p| match p {
                            ContentPart::Text { text } => text.len(),
                            _ => 0,
                        })
                        .sum(),
                    None => 0,
                };
            }
        }
        ChatText {
            text,
            context_chars,
            turns: req.messages.len(),
            tools: req.tools.as_ref().is_some_and(|t| !t.is_empty()),
            system: req
                .messages
                .iter()
                .any(|m| matches!(m.role, Role::System | Role::Developer)),
        }
    }

    /// The JSON the request log keeps.
    pub fn logged(&self) -> String {
        let view = self.view();
        let kept = ChatText {
            text: features::clip(view.text).to_owned(),
            ..self.clone()
        };
        serde_json::to_string(&kept).unwrap_or_default()
    }

    pub fn view(&self) -> PromptView<'_> {
        PromptView {
            text: &self.text,
            context_chars: self.context_chars,
            turns: self.turns,
            tools: self.tools,
            system: self.system,
        }
    }
}

fn content_text(content: Option<&MessageContent>) -> String {
    match content {
        Some(MessageContent::Text(t)) => t.clone(),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::dataset::{self, Labelled};
    use super::train::{train, TrainParams};
    use super::*;

    fn data(file: &str) -> Vec<Labelled> {
        let path = format!(
            "{}/../../training/routing/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("the routing training data");
        dataset::parse(&text, &path).expect("rows")
    }

    #[test]
    fn the_shipped_weights_are_what_training_on_the_shipped_data_gives() {
        let mut rows = data("mmlu.train.jsonl");
        rows.extend(data("gsm8k.train.jsonl"));
        let examples: Vec<_> = rows.iter().map(Labelled::example).collect();
        let trained = train(&examples, &TrainParams::default());
        let file = shipped();
        // Byte for byte on the machine that made them; within float noise elsewhere (exp and
        // ln come from the platform's math library).
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * (1.0 + a.abs());
        let same = trained.values.len() == file.values.len()
            && trained
                .values
                .iter()
                .zip(&file.values)
                .all(|(a, b)| close(*a, *b))
            && close(trained.default_threshold, file.default_threshold)
            && close(trained.scale, file.scale)
            && close(trained.shift, file.shift);
        assert!(
            same,
            "retrain with `llmrr router train training/routing/mmlu.train.jsonl \
             training/routing/gsm8k.train.jsonl --out crates/llmrr-core/weights/difficulty.bin`"
        );
        assert_eq!(file.trained_rows, 7777);
    }

    #[test]
    fn training_is_reproducible_and_the_file_round_trips() {
        let rows = data("gsm8k.train.jsonl");
        let examples: Vec<_> = rows.iter().map(Labelled::example).collect();
        let a = train(&examples, &TrainParams::default());
        let b = train(&examples, &TrainParams::default());
        assert_eq!(a.to_bytes(), b.to_bytes());
        // Another order of the same rows is other weights (the order is part of SGD), and
        // another seed too: the reproducibility is not an accident of the data.
        let reseeded = train(
            &examples,
            &TrainParams {
                seed: 7,
                ..TrainParams::default()
            },
        );
        assert_ne!(a.to_bytes(), reseeded.to_bytes());
        let read = Weights::from_bytes(&a.to_bytes(), "t").expect("reads back");
        assert_eq!(read, a);
        let mut bad = a.to_bytes();
        bad[0] = b'X';
        assert!(Weights::from_bytes(&bad, "t").is_err());
        assert!(Weights::from_bytes(&a.to_bytes()[..100], "t").is_err());
    }

    #[test]
    fn scores_are_probabilities_that_order_plain_prompts_sensibly() {
        let w = shipped();
        let score = |text: &str| {
            Difficulty::of(
                &w,
                &PromptView {
                    text,
                    turns: 1,
                    ..Default::default()
                },
            )
            .score
        };
        let easy = score("hi");
        let hard = score(
            "Josh buys a house for $80,000 and puts in $50,000 in repairs. This increased \
             the value of the house by 150%. How much profit did he make?",
        );
        assert!((0.0..=1.0).contains(&easy) && (0.0..=1.0).contains(&hard));
        assert!(easy < hard, "easy {easy} hard {hard}");
        assert_eq!(score("hi"), easy, "deterministic");
        // Empty and enormous prompts are scored too (the text is clipped).
        assert!(score("").is_finite());
        assert!(score(&"word ".repeat(100_000)).is_finite());
    }
}
