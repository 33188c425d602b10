//! Reading OpenAI's chunk and answer objects as typed events. Lenient: an upstream that leaves
//! out a field OpenAI always sends (`created`, `object`) still reads.

use super::AnswerEvent;
use llmrr_types::openai::{ToolCall, Usage};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A field's value, or its default when the field is missing or `null` (servers built on
/// pydantic send `"tool_calls": null`).
fn or_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn blocks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items,
        _ => Vec::new(),
    })
}

/// The events of one chunk, with the answer's identity as the chunk gives it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkEvents {
    pub id: String,
    pub model: String,
    pub created: i64,
    pub events: Vec<AnswerEvent>,
}

/// A whole (non-streamed) chat answer, typed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub id: String,
    pub model: String,
    pub created: i64,
    pub choices: Vec<CompletionChoice>,
    pub usage: Option<Usage>,
    /// The gateway's cost of the answer (`llmrr.cost_usd`), where it was priced.
    pub cost_usd: Option<String>,
    /// The answer's whole `llmrr` extension (cost, cache, the routing explanation).
    pub llmrr: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompletionChoice {
    pub index: u32,
    pub text: Option<String>,
    pub reasoning: Option<String>,
    /// Anthropic's thinking blocks with their signatures, where the provider gave them.
    pub thinking_blocks: Vec<Value>,
    pub refusal: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<String>,
}

/// A chunk (`C` = its choices) or a whole answer: the same envelope.
#[derive(Deserialize)]
#[serde(bound(deserialize = "C: Deserialize<'de>"))]
struct RawAnswer<C> {
    #[serde(default, deserialize_with = "or_default")]
    id: String,
    #[serde(default, deserialize_with = "or_default")]
    model: String,
    #[serde(default, deserialize_with = "or_default")]
    created: i64,
    #[serde(default = "Vec::new", deserialize_with = "or_default")]
    choices: Vec<C>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    llmrr: Option<Value>,
}

#[derive(Deserialize)]
struct RawChunkChoice {
    #[serde(default, deserialize_with = "or_default")]
    index: u32,
    #[serde(default, deserialize_with = "or_default")]
    delta: RawDelta,
    #[serde(default)]
    finish_reason: Option<String>,
}

/// The text fields of a message or of a delta.
#[derive(Deserialize, Default)]
struct RawTexts {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    /// The field some OpenAI-compatible servers (OpenRouter, Ollama) use for reasoning.
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    /// Thinking blocks with their signatures (see `ResponseMessage::thinking_blocks`); any
    /// other shape an upstream sends under that name is ignored.
    #[serde(default, deserialize_with = "blocks")]
    thinking_blocks: Vec<Value>,
}

impl RawTexts {
    fn reasoning(&mut self) -> Option<String> {
        non_empty(self.reasoning_content.take().or(self.reasoning.take()))
    }
}

#[derive(Deserialize, Default)]
struct RawDelta {
    #[serde(flatten)]
    texts: RawTexts,
    #[serde(default, deserialize_with = "or_default")]
    tool_calls: Vec<RawToolCallDelta>,
}

#[derive(Deserialize)]
struct RawToolCallDelta {
    #[serde(default, deserialize_with = "or_default")]
    index: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<RawFunctionDelta>,
}

#[derive(Deserialize)]
struct RawFunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

fn cost_of(ext: Option<&Value>) -> Option<String> {
    ext?.get("cost_usd")?.as_str().map(str::to_owned)
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// Read one chunk (`chat.completion.chunk`) as typed events, in the order a client would see
/// them: per choice reasoning, text, refusal, tool calls, finish; then usage.
pub fn events_of(data: &[u8]) -> Result<ChunkEvents, String> {
    let raw: RawAnswer<RawChunkChoice> =
        serde_json::from_slice(data).map_err(|e| format!("not a chat completion chunk: {e}"))?;
    let mut events = Vec::new();
    for c in raw.choices {
        let choice = c.index;
        let mut d = c.delta;
        if let Some(text) = d.texts.reasoning() {
            events.push(AnswerEvent::Reasoning { choice, text });
        }
        for b in std::mem::take(&mut d.texts.thinking_blocks) {
            let text = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_owned);
            match (
                b.get("type").and_then(Value::as_str),
                text("signature"),
                text("data"),
            ) {
                (Some("thinking"), Some(signature), _) if !signature.is_empty() => {
                    events.push(AnswerEvent::ReasoningSignature { choice, signature })
                }
                (Some("redacted_thinking"), _, Some(data)) => {
                    events.push(AnswerEvent::RedactedReasoning { choice, data })
                }
                _ => {}
            }
        }
        if let Some(text) = non_empty(d.texts.content) {
            events.push(AnswerEvent::Text { choice, text });
        }
        if let Some(text) = non_empty(d.texts.refusal) {
            events.push(AnswerEvent::Refusal { choice, text });
        }
        for t in d.tool_calls {
            let (name, arguments) = match t.function {
                Some(f) => (f.name, f.arguments.unwrap_or_default()),
                None => (None, String::new()),
            };
            events.push(AnswerEvent::ToolCall {
                choice,
                index: t.index,
                id: t.id,
                name,
                arguments,
            });
        }
        if let Some(reason) = c.finish_reason {
            events.push(AnswerEvent::Finish { choice, reason });
        }
    }
    if let Some(usage) = raw.usage {
        events.push(AnswerEvent::Usage {
            usage,
            cost_usd: cost_of(raw.llmrr.as_ref()),
        });
    }
    Ok(ChunkEvents {
        id: raw.id,
        model: raw.model,
        created: raw.created,
        events,
    })
}

#[derive(Deserialize)]
struct RawChoice {
    #[serde(default, deserialize_with = "or_default")]
    index: u32,
    message: RawMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(flatten)]
    texts: RawTexts,
    #[serde(default, deserialize_with = "or_default")]
    tool_calls: Vec<ToolCall>,
}

/// Read a whole chat answer (`chat.completion`).
pub fn completion_of(body: &[u8]) -> Result<Completion, String> {
    let raw: RawAnswer<RawChoice> =
        serde_json::from_slice(body).map_err(|e| format!("not a chat completion: {e}"))?;
    Ok(Completion {
        id: raw.id,
        model: raw.model,
        created: raw.created,
        choices: raw
            .choices
            .into_iter()
            .map(|c| {
                let mut m = c.message;
                CompletionChoice {
                    index: c.index,
                    reasoning: m.texts.reasoning(),
                    thinking_blocks: std::mem::take(&mut m.texts.thinking_blocks),
                    text: m.texts.content,
                    refusal: non_empty(m.texts.refusal),
                    tool_calls: m.tool_calls,
                    finish_reason: c.finish_reason,
                }
            })
            .collect(),
        usage: raw.usage,
        cost_usd: cost_of(raw.llmrr.as_ref()),
        llmrr: raw.llmrr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_reads_as_events_in_order() {
        let chunk = br#"{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m",
            "choices":[{"index":0,"delta":{"reasoning_content":"hm","content":"Hi",
            "tool_calls":[{"index":1,"id":"call_1","type":"function",
            "function":{"name":"f","arguments":"{\"a\""}}]},"finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5},
            "llmrr":{"cost_usd":"0.01"}}"#;
        let read = events_of(chunk).unwrap();
        assert_eq!(
            (read.id.as_str(), read.model.as_str(), read.created),
            ("c1", "m", 7)
        );
        assert_eq!(
            read.events,
            vec![
                AnswerEvent::Reasoning {
                    choice: 0,
                    text: "hm".into()
                },
                AnswerEvent::Text {
                    choice: 0,
                    text: "Hi".into()
                },
                AnswerEvent::ToolCall {
                    choice: 0,
                    index: 1,
                    id: Some("call_1".into()),
                    name: Some("f".into()),
                    arguments: "{\"a\"".into()
                },
                AnswerEvent::Finish {
                    choice: 0,
                    reason: "tool_calls".into()
                },
                AnswerEvent::Usage {
                    usage: Usage {
                        prompt_tokens: 3,
                        completion_tokens: 2,
                        total_tokens: 5,
                        ..Usage::default()
                    },
                    cost_usd: Some("0.01".into())
                },
            ]
        );
        // A role-only first chunk and empty pieces say nothing.
        let read = events_of(
            br#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
        )
        .unwrap();
        assert!(read.events.is_empty());
        assert!(events_of(b"[1]").is_err());
        // Nulls where OpenAI leaves a field out (pydantic-based servers) read as absent.
        let read = events_of(br#"{"id":"c","model":null,"choices":[{"index":0,"delta":{"content":"x","tool_calls":null,"refusal":null},"finish_reason":null}],"usage":null}"#)
            .unwrap();
        assert_eq!(
            read.events,
            vec![AnswerEvent::Text {
                choice: 0,
                text: "x".into()
            }]
        );
        let c = completion_of(br#"{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"x","tool_calls":null}}]}"#).unwrap();
        assert!(c.choices[0].tool_calls.is_empty());
    }

    #[test]
    fn an_answer_reads_whole() {
        let body = br#"{"id":"x","object":"chat.completion","created":1,"model":"m",
            "choices":[{"index":0,"message":{"role":"assistant","content":null,
            "reasoning":"think","tool_calls":[{"id":"t","type":"function",
            "function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
        let c = completion_of(body).unwrap();
        assert_eq!(c.choices[0].reasoning.as_deref(), Some("think"));
        assert_eq!(c.choices[0].tool_calls[0].function.name, "f");
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(c.usage.unwrap().total_tokens, 2);
        assert_eq!(c.cost_usd, None);
    }
}
