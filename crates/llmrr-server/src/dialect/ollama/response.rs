//! The gateway's answers in Ollama's shapes: whole answers, NDJSON stream lines (one JSON
//! object a line; the last says `"done": true` with the counts), embeddings, and errors
//! (`{"error": "…"}` with the status).

use crate::error::error_response;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use llmrr_core::answer::{events_of, AnswerError, AnswerEvent, Completion, StreamItem};
use llmrr_core::Error;
use llmrr_types::openai::Usage;
use serde_json::{json, Map, Value};
use std::time::Instant;

/// Which endpoint's shape: `/api/chat` puts text in `message`, `/api/generate` in `response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Chat,
    Generate,
}

pub struct OllamaError(pub Error);

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&error_body(&AnswerError::from(&self.0))).unwrap_or_default();
        error_response(&self.0, body)
    }
}

fn error_body(e: &AnswerError) -> Value {
    json!({ "error": e.message })
}

/// Now, as Ollama writes `created_at` (RFC 3339, UTC).
pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// Ollama's `done_reason` for OpenAI's finish reason (a tool call is a stop to Ollama).
fn done_reason(finish: Option<&str>) -> &str {
    match finish {
        None | Some("stop" | "tool_calls" | "function_call") => "stop",
        Some(other) => other,
    }
}

/// The counts of the last object: durations in nanoseconds (only the total is known for a
/// gateway's models; Ollama's clients read the others as optional).
fn counts(out: &mut Map<String, Value>, usage: Option<&Usage>, started: Instant) {
    out.insert(
        "total_duration".into(),
        (started.elapsed().as_nanos().min(u64::MAX as u128) as u64).into(),
    );
    if let Some(u) = usage {
        out.insert("prompt_eval_count".into(), u.prompt_tokens.into());
        out.insert("eval_count".into(), u.completion_tokens.into());
    }
}

/// Ollama's clients read arguments as an object: empty, cut or non-object arguments (a
/// provider's `""` for a tool without parameters, a call cut by the length limit) become `{}`.
fn tool_calls(calls: &[(String, String)]) -> Value {
    Value::Array(
        calls
            .iter()
            .map(|(name, arguments)| {
                let args = match serde_json::from_str::<Value>(arguments) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({}),
                };
                json!({"function": {"name": name, "arguments": args}})
            })
            .collect(),
    )
}

/// Tool calls one answer may make (an upstream's index past this is ignored, not allocated).
const MAX_TOOL_CALLS: usize = 128;

fn message(text: &str, thinking: Option<&str>, calls: &[(String, String)]) -> Value {
    let mut m = json!({"role": "assistant", "content": text});
    if let Some(t) = thinking.filter(|t| !t.is_empty()) {
        m["thinking"] = t.into();
    }
    if !calls.is_empty() {
        m["tool_calls"] = tool_calls(calls);
    }
    m
}

/// A whole answer.
pub fn answer(shape: Shape, model: &str, c: &Completion, started: Instant) -> Value {
    let choice = c.choices.first();
    // A refusal is the answer's text to Ollama (as in its streams).
    let text = choice
        .and_then(|c| {
            c.text
                .as_deref()
                .filter(|t| !t.is_empty())
                .or(c.refusal.as_deref())
        })
        .unwrap_or("");
    let thinking = choice.and_then(|c| c.reasoning.as_deref());
    let calls: Vec<(String, String)> = choice
        .map(|c| {
            c.tool_calls
                .iter()
                .map(|t| (t.function.name.clone(), t.function.arguments.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Map::new();
    out.insert("model".into(), model.into());
    out.insert("created_at".into(), now().into());
    match shape {
        Shape::Chat => {
            out.insert("message".into(), message(text, thinking, &calls));
        }
        Shape::Generate => {
            out.insert("response".into(), text.into());
            if let Some(t) = thinking.filter(|t| !t.is_empty()) {
                out.insert("thinking".into(), t.into());
            }
        }
    }
    out.insert("done".into(), true.into());
    out.insert(
        "done_reason".into(),
        done_reason(choice.and_then(|c| c.finish_reason.as_deref())).into(),
    );
    counts(&mut out, c.usage.as_ref(), started);
    if let Some(ext) = &c.llmrr {
        out.insert("llmrr".into(), ext.clone());
    }
    Value::Object(out)
}

/// Writes a stream's items as NDJSON lines.
pub struct LineWriter {
    shape: Shape,
    model: String,
    started: Instant,
    /// Tool calls so far (name, arguments): Ollama sends each whole, at the end.
    calls: Vec<(String, String)>,
    finish: Option<String>,
    usage: Option<Usage>,
    ended: bool,
}

impl LineWriter {
    pub fn new(shape: Shape, model: &str, started: Instant) -> Self {
        LineWriter {
            shape,
            model: model.to_owned(),
            started,
            calls: Vec::new(),
            finish: None,
            usage: None,
            ended: false,
        }
    }

    fn line(&self, mut fields: Map<String, Value>, done: bool) -> Vec<u8> {
        let mut out = Map::new();
        out.insert("model".into(), self.model.clone().into());
        out.insert("created_at".into(), now().into());
        out.append(&mut fields);
        out.insert("done".into(), done.into());
        let mut bytes = serde_json::to_vec(&Value::Object(out)).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    fn delta(&self, text: &str, thinking: Option<&str>) -> Vec<u8> {
        let mut f = Map::new();
        match self.shape {
            Shape::Chat => {
                f.insert("message".into(), message(text, thinking, &[]));
            }
            Shape::Generate => {
                f.insert("response".into(), text.into());
                if let Some(t) = thinking {
                    f.insert("thinking".into(), t.into());
                }
            }
        }
        self.line(f, false)
    }

    pub fn write(&mut self, item: StreamItem) -> Bytes {
        if self.ended {
            return Bytes::new();
        }
        let mut out = Vec::new();
        match item {
            // The routing explanation has no place in NDJSON: `x-llmrr-route` says it.
            StreamItem::Explain(_) => {}
            StreamItem::Chunk(data) => {
                let Ok(events) = events_of(&data) else {
                    return Bytes::new();
                };
                for e in events.events {
                    match e {
                        AnswerEvent::Text { choice: 0, text } => {
                            out.extend(self.delta(&text, None));
                        }
                        AnswerEvent::Reasoning { choice: 0, text } => {
                            out.extend(self.delta("", Some(&text)));
                        }
                        AnswerEvent::Refusal { choice: 0, text } => {
                            out.extend(self.delta(&text, None));
                        }
                        AnswerEvent::ToolCall {
                            choice: 0,
                            index,
                            name,
                            arguments,
                            ..
                        } => {
                            let i = index as usize;
                            if i >= MAX_TOOL_CALLS {
                                continue;
                            }
                            if self.calls.len() <= i {
                                self.calls.resize(i + 1, (String::new(), String::new()));
                            }
                            if let Some(n) = name {
                                self.calls[i].0 = n;
                            }
                            self.calls[i].1.push_str(&arguments);
                        }
                        AnswerEvent::Finish { choice: 0, reason } => self.finish = Some(reason),
                        AnswerEvent::Usage { usage, .. } => self.usage = Some(usage),
                        _ => {}
                    }
                }
            }
            StreamItem::Done => {
                self.ended = true;
                if !self.calls.is_empty() && self.shape == Shape::Chat {
                    let mut f = Map::new();
                    f.insert("message".into(), message("", None, &self.calls));
                    out.extend(self.line(f, false));
                }
                let mut f = Map::new();
                match self.shape {
                    Shape::Chat => {
                        f.insert("message".into(), message("", None, &[]));
                    }
                    Shape::Generate => {
                        f.insert("response".into(), "".into());
                    }
                }
                f.insert(
                    "done_reason".into(),
                    done_reason(self.finish.as_deref()).into(),
                );
                counts(&mut f, self.usage.as_ref(), self.started);
                out.extend(self.line(f, true));
            }
            StreamItem::Error(e) => {
                self.ended = true;
                out.extend(serde_json::to_vec(&error_body(&e)).unwrap_or_default());
                out.push(b'\n');
            }
        }
        Bytes::from(out)
    }
}

/// An embeddings answer (OpenAI's) as `/api/embed`'s, or `/api/embeddings`' (`legacy`: one
/// vector under `embedding`).
pub fn embeddings(
    model: &str,
    openai: &[u8],
    legacy: bool,
    started: Instant,
) -> Result<Value, Error> {
    let v: Value = serde_json::from_slice(openai)
        .map_err(|e| Error::Internal(format!("an embeddings answer could not be read: {e}")))?;
    let mut vectors: Vec<(u64, Value)> = v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| (d["index"].as_u64().unwrap_or(0), d["embedding"].clone()))
        .collect();
    vectors.sort_by_key(|(i, _)| *i);
    if legacy {
        let first = vectors
            .into_iter()
            .next()
            .map(|(_, e)| e)
            .unwrap_or(json!([]));
        return Ok(json!({ "embedding": first }));
    }
    let mut out = json!({
        "model": model,
        "embeddings": vectors.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
        "total_duration": started.elapsed().as_nanos().min(u64::MAX as u128) as u64,
    });
    if let Some(n) = v["usage"]["prompt_tokens"].as_u64() {
        out["prompt_eval_count"] = n.into();
    }
    Ok(out)
}
