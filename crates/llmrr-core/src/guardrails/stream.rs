//! Output rules on a stream. Each choice's text is held back by up to `max_match_chars` (and
//! to the start of any match that could still grow) until more text arrives, so a match is
//! never split across chunks; a chunk that carries the choice's `finish_reason` releases the
//! rest. The chunks keep their shape: only their text changes.

use super::{Guardrails, Side};
use crate::error::Result;
use bytes::Bytes;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct StreamGuard {
    rules: Arc<Guardrails>,
    /// Text not yet released, per choice index.
    pending: BTreeMap<u64, String>,
    /// The last chunk seen: the shape of the chunk that releases what is left when the
    /// stream ends without a `finish_reason`.
    last: Option<Value>,
}

impl StreamGuard {
    pub fn new(rules: Arc<Guardrails>) -> Option<StreamGuard> {
        rules.applies_to(Side::Output).then(|| StreamGuard {
            rules,
            pending: BTreeMap::new(),
            last: None,
        })
    }

    /// One chunk's JSON, its text replaced by what may be released now. `Err`: a deny rule
    /// matched (nothing of the match was sent).
    pub fn chunk(&mut self, data: &[u8]) -> Result<Bytes> {
        let Ok(mut chunk) = serde_json::from_slice::<Value>(data) else {
            return Ok(Bytes::copy_from_slice(data));
        };
        if let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) {
            for choice in choices {
                let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
                let done = choice.get("finish_reason").is_some_and(|f| !f.is_null());
                let slot = match choice.get_mut("delta") {
                    Some(delta) => delta.get_mut("content"),
                    None => choice.get_mut("text"),
                };
                let incoming = match &slot {
                    Some(Value::String(s)) => s.as_str(),
                    _ => "",
                };
                let pending = self.pending.entry(index).or_default();
                pending.push_str(incoming);
                if let Some(rule) = self.rules.denies(pending, Side::Output) {
                    return Err(super::denied(rule, Side::Output));
                }
                let cut = if done {
                    pending.len()
                } else {
                    self.rules.safe_cut(pending)
                };
                let rest = pending.split_off(cut);
                let release = self.rules.redact(pending, Side::Output).into_owned();
                *pending = rest;
                match slot {
                    Some(v) => *v = Value::String(release),
                    None if !release.is_empty() => {
                        if let Some(c) = choice.as_object_mut() {
                            let delta = c
                                .entry("delta")
                                .or_insert_with(|| Value::Object(Default::default()));
                            if let Some(d) = delta.as_object_mut() {
                                d.insert("content".into(), Value::String(release));
                            }
                        }
                    }
                    None => {}
                }
            }
        }
        self.last = Some(chunk.clone());
        Ok(serde_json::to_vec(&chunk)
            .map(Bytes::from)
            .unwrap_or_else(|_| Bytes::copy_from_slice(data)))
    }
}

impl StreamGuard {
    /// The stream ended: a chunk with whatever is still held back (none when nothing is).
    pub fn finish(&mut self) -> Result<Option<Bytes>> {
        let pending = std::mem::take(&mut self.pending);
        let mut choices = Vec::new();
        let completions = self
            .last
            .as_ref()
            .is_some_and(|c| c["choices"][0].get("text").is_some());
        for (index, text) in pending.into_iter().filter(|(_, t)| !t.is_empty()) {
            if let Some(rule) = self.rules.denies(&text, Side::Output) {
                return Err(super::denied(rule, Side::Output));
            }
            let text = self.rules.redact(&text, Side::Output).into_owned();
            choices.push(if completions {
                serde_json::json!({"index": index, "text": text, "finish_reason": null})
            } else {
                serde_json::json!({"index": index, "delta": {"content": text}, "finish_reason": null})
            });
        }
        if choices.is_empty() {
            return Ok(None);
        }
        let mut chunk = self.last.clone().unwrap_or_else(|| serde_json::json!({}));
        if let Some(map) = chunk.as_object_mut() {
            map.remove("usage");
            map.insert("choices".into(), Value::Array(choices));
        }
        Ok(serde_json::to_vec(&chunk).ok().map(Bytes::from))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Action, Masker, Rule};
    use super::*;

    fn chunk(text: &str, finish: bool) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": text},
                         "finish_reason": if finish { Value::from("stop") } else { Value::Null }}]
        }))
        .expect("json")
    }

    fn text(out: &Bytes) -> String {
        let v: Value = serde_json::from_slice(out).expect("json");
        v["choices"][0]["delta"]["content"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    #[test]
    fn a_match_split_across_chunks_is_still_masked() {
        let rules = Arc::new(Guardrails {
            rules: vec![Masker::Email.rule(Side::Output)],
            hold: 64,
        });
        let mut g = StreamGuard::new(rules).expect("output rules");
        let parts = ["Write to al", "ice@exam", "ple.com today. ", "Thanks!"];
        let mut seen = String::new();
        for (i, p) in parts.iter().enumerate() {
            seen += &text(&g.chunk(&chunk(p, i == parts.len() - 1)).expect("allowed"));
        }
        assert_eq!(seen, "Write to [EMAIL] today. Thanks!");
    }

    #[test]
    fn a_stream_without_finish_reason_still_releases_its_tail() {
        let rules = Arc::new(Guardrails {
            rules: vec![Masker::Email.rule(Side::Output)],
            hold: 8,
        });
        let mut g = StreamGuard::new(rules).expect("output rules");
        let mut seen = text(
            &g.chunk(&chunk("héllo wörld, mail a@b.io", false))
                .expect("ok"),
        );
        let tail = g.finish().expect("allowed").expect("a tail");
        seen += &text(&tail);
        assert_eq!(seen, "héllo wörld, mail [EMAIL]");
        assert!(g.finish().expect("ok").is_none());
    }

    #[test]
    fn a_deny_rule_stops_the_stream_before_the_match_is_sent() {
        let rules = Arc::new(Guardrails {
            rules: vec![Rule {
                name: "codename".into(),
                regex: regex::Regex::new("(?i)project falcon").expect("regex"),
                action: Action::Deny,
                side: Side::Output,
                luhn: false,
            }],
            hold: 32,
        });
        let mut g = StreamGuard::new(rules).expect("output rules");
        let first = g
            .chunk(&chunk("The plan is Project Fal", false))
            .expect("allowed");
        assert!(!text(&first).contains("Fal"), "held back: {}", text(&first));
        assert!(g.chunk(&chunk("con, of course.", true)).is_err());
    }
}
