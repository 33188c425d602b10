//! Guardrails (off unless a route or model configures them): regex rules that deny or redact
//! text of the request (input) or of the answer (output), and built-in maskers for emails,
//! phone numbers, card numbers (Luhn-checked) and API-key-looking strings. Nothing is blocked
//! unless configured: prompts legitimately contain "drop table".
//!
//! `stream` applies the output rules to a streamed answer without splitting a match across
//! chunks: it holds back the last `max_match_chars` of text until more arrives.

mod apply;
mod maskers;
pub mod stream;

pub use apply::{redact_answer, redact_chat, redact_prompt};
pub use maskers::Masker;

use crate::error::Error;
use std::borrow::Cow;

/// Which text a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Input,
    Output,
    Both,
}

impl Side {
    fn covers(self, other: Side) -> bool {
        self == Side::Both || self == other
    }
}

#[derive(Debug, Clone)]
pub enum Action {
    Deny,
    Redact(String),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub regex: regex::Regex,
    pub action: Action,
    pub side: Side,
    /// Only matches whose digits pass the Luhn check count (card numbers).
    pub luhn: bool,
}

impl Rule {
    fn counts(&self, m: &str) -> bool {
        !self.luhn || maskers::luhn(m)
    }
}

#[derive(Debug, Clone)]
pub struct Guardrails {
    pub rules: Vec<Rule>,
    /// The longest match kept whole in a stream, in characters held back.
    pub hold: usize,
}

/// The error of a denied text (and its count, `llmrr_guardrail_denials_total`).
pub fn denied(rule: &str, side: Side) -> Error {
    let label = if side == Side::Output {
        "output"
    } else {
        "input"
    };
    metrics::counter!(crate::telemetry::GUARDRAIL_HITS, "side" => label).increment(1);
    Error::Guardrail {
        message: match side {
            Side::Output => format!("the answer was withheld: it matched the guardrail `{rule}`"),
            _ => format!("the request was refused: it matched the guardrail `{rule}`"),
        },
    }
}

impl Guardrails {
    pub fn applies_to(&self, side: Side) -> bool {
        self.rules.iter().any(|r| r.side.covers(side))
    }

    /// The first deny rule of `side` that `text` matches.
    pub fn denies(&self, text: &str, side: Side) -> Option<&str> {
        self.rules
            .iter()
            .filter(|r| matches!(r.action, Action::Deny) && r.side.covers(side))
            .find(|r| r.regex.find_iter(text).any(|m| r.counts(m.as_str())))
            .map(|r| r.name.as_str())
    }

    /// `text` with every redact rule of `side` applied, in order.
    pub fn redact<'t>(&self, text: &'t str, side: Side) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for r in &self.rules {
            let Action::Redact(with) = &r.action else {
                continue;
            };
            if !r.side.covers(side) || !r.regex.is_match(&out) {
                continue;
            }
            let replaced = r.regex.replace_all(&out, |c: &regex::Captures<'_>| {
                let m = c.get(0).map_or("", |m| m.as_str());
                if r.counts(m) {
                    with.clone()
                } else {
                    m.to_owned()
                }
            });
            if let Cow::Owned(s) = replaced {
                out = Cow::Owned(s);
            }
        }
        out
    }

    /// Deny, else redact: the text to use.
    pub fn check<'t>(&self, text: &'t str, side: Side) -> Result<Cow<'t, str>, Error> {
        if let Some(rule) = self.denies(text, side) {
            return Err(denied(rule, side));
        }
        Ok(self.redact(text, side))
    }

    /// The end of the longest prefix of `text` (all but its last `hold` characters) that no
    /// match still growing crosses: what a stream may release now. A match that began more
    /// than `2 × hold` characters back is longer than any the stream promises to keep whole
    /// and does not hold the text (so held text stays bounded).
    pub(crate) fn safe_cut(&self, text: &str) -> usize {
        let back = |chars: usize| {
            text.char_indices()
                .rev()
                .nth(chars.saturating_sub(1))
                .map_or(0, |(i, _)| i)
        };
        let mut cut = back(self.hold);
        let floor = back(self.hold.saturating_mul(2));
        loop {
            let crossing = self
                .rules
                .iter()
                .filter(|r| r.side.covers(Side::Output))
                .filter_map(|r| {
                    r.regex
                        .find_iter(text)
                        .find(|m| m.start() < cut && m.end() > cut && m.start() >= floor)
                        .map(|m| m.start())
                })
                .min();
            match crossing {
                Some(start) => cut = start,
                None => return cut,
            }
        }
    }
}
