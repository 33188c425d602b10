//! Anthropic stream events -> OpenAI chat completion chunks.
//!
//! `message_start` opens the answer (role chunk; input usage remembered), text deltas become
//! content deltas, a `tool_use` block start becomes a tool call with its id and name and its
//! `input_json_delta`s become argument deltas, `message_delta` carries the finish reason and
//! output usage, `message_stop` ends the stream with a usage-only chunk. Thinking deltas become
//! `reasoning_content` deltas; the forced `response_format` tool's input deltas become content
//! deltas. `ping` is dropped;
//! an `error` event, or an end without `message_stop`, ends the stream with an error.

use super::super::http::Target;
use super::super::translated::{chunk, encode, translated, usage_chunk, Translate};
use super::super::{ChunkStream, StreamChunk};
use crate::error::Result;
use crate::provider::sse::SseEvent;
use futures_util::stream::BoxStream;
use llmrr_types::anthropic as a;
use llmrr_types::openai as o;
use std::collections::HashMap;

#[derive(Default)]
struct Translator {
    id: String,
    model: String,
    created: i64,
    usage: a::Usage,
    /// Anthropic block index -> OpenAI tool call index.
    tool_index: HashMap<u32, u32>,
    finished: bool,
    /// The request's `response_format` is answered through the forced tool: its input is
    /// streamed as content, and its block index is this.
    json_tool: bool,
    json_block: Option<u32>,
}

impl Translator {
    fn chunk(&self, delta: o::Delta, finish_reason: Option<String>) -> o::ChatCompletionChunk {
        chunk(&self.id, self.created, &self.model, delta, finish_reason)
    }
}

impl Translate for Translator {
    fn finished(&self) -> bool {
        self.finished
    }

    fn on_event(&mut self, target: &Target, ev: SseEvent) -> Result<Vec<StreamChunk>> {
        let event: a::StreamEvent = serde_json::from_str(&ev.data).map_err(|e| {
            target.protocol(format!(
                "unknown stream event {:?}: {e}",
                ev.event.unwrap_or_default()
            ))
        })?;
        let mut out = Vec::new();
        match event {
            a::StreamEvent::MessageStart { message } => {
                self.id = message.id;
                self.model = message.model;
                self.created = super::response::now_unix();
                self.usage = message.usage;
                let delta = o::Delta {
                    role: Some(o::Role::Assistant),
                    content: Some(String::new()),
                    ..Default::default()
                };
                out.push(encode(&self.chunk(delta, None), false, None)?);
            }
            a::StreamEvent::ContentBlockStart {
                index,
                content_block: a::ContentBlock::ToolUse { name, .. },
            } if self.json_tool && name == super::request::JSON_TOOL => {
                self.json_block = Some(index);
            }
            a::StreamEvent::ContentBlockStart {
                index,
                content_block: a::ContentBlock::ToolUse { id, name, .. },
            } => {
                let tool = self.tool_index.len() as u32;
                self.tool_index.insert(index, tool);
                let delta = o::Delta {
                    tool_calls: Some(vec![o::ToolCallDelta {
                        index: tool,
                        id: Some(id),
                        kind: Some(o::ToolKind::Function),
                        function: Some(o::FunctionCallDelta {
                            name: Some(name),
                            arguments: Some(String::new()),
                        }),
                    }]),
                    ..Default::default()
                };
                out.push(encode(&self.chunk(delta, None), true, None)?);
            }
            a::StreamEvent::ContentBlockStart {
                content_block: a::ContentBlock::Text { text },
                ..
            } if !text.is_empty() => {
                let delta = o::Delta {
                    content: Some(text),
                    ..Default::default()
                };
                out.push(encode(&self.chunk(delta, None), true, None)?);
            }
            a::StreamEvent::ContentBlockDelta { index, delta } => match delta {
                a::BlockDelta::TextDelta { text } => {
                    let delta = o::Delta {
                        content: Some(text),
                        ..Default::default()
                    };
                    out.push(encode(&self.chunk(delta, None), true, None)?);
                }
                // Anthropic's first input delta is often empty: nothing to send, no output yet.
                a::BlockDelta::InputJsonDelta { partial_json } if partial_json.is_empty() => {}
                a::BlockDelta::InputJsonDelta { partial_json }
                    if self.json_block == Some(index) =>
                {
                    let delta = o::Delta {
                        content: Some(partial_json),
                        ..Default::default()
                    };
                    out.push(encode(&self.chunk(delta, None), true, None)?);
                }
                a::BlockDelta::InputJsonDelta { partial_json } => {
                    let tool = self.tool_index.get(&index).copied().unwrap_or(0);
                    let delta = o::Delta {
                        tool_calls: Some(vec![o::ToolCallDelta {
                            index: tool,
                            id: None,
                            kind: None,
                            function: Some(o::FunctionCallDelta {
                                name: None,
                                arguments: Some(partial_json),
                            }),
                        }]),
                        ..Default::default()
                    };
                    out.push(encode(&self.chunk(delta, None), true, None)?);
                }
                // Reasoning, as DeepSeek and vLLM stream it; it counts as output.
                a::BlockDelta::ThinkingDelta { thinking } => {
                    let delta = o::Delta {
                        reasoning_content: Some(thinking),
                        ..Default::default()
                    };
                    out.push(encode(&self.chunk(delta, None), true, None)?);
                }
                // The signature a later turn must send back with the thinking (no output).
                a::BlockDelta::SignatureDelta { signature } => {
                    let delta = o::Delta {
                        thinking_blocks: Some(vec![serde_json::json!({"type": "thinking",
                            "thinking": "", "signature": signature})]),
                        ..Default::default()
                    };
                    out.push(encode(&self.chunk(delta, None), false, None)?);
                }
                a::BlockDelta::Unknown => {}
            },
            a::StreamEvent::ContentBlockStart {
                content_block: a::ContentBlock::RedactedThinking { data },
                ..
            } => {
                let delta = o::Delta {
                    thinking_blocks: Some(vec![
                        serde_json::json!({"type": "redacted_thinking", "data": data}),
                    ]),
                    ..Default::default()
                };
                out.push(encode(&self.chunk(delta, None), false, None)?);
            }
            a::StreamEvent::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.usage.output_tokens = u.output_tokens;
                    if let Some(input) = u.input_tokens {
                        self.usage.input_tokens = input;
                    }
                }
                if let Some(reason) = delta.stop_reason {
                    let finish = super::finish_reason(&reason, self.json_tool).to_owned();
                    out.push(encode(
                        &self.chunk(o::Delta::default(), Some(finish)),
                        false,
                        None,
                    )?);
                }
            }
            a::StreamEvent::MessageStop => {
                self.finished = true;
                let usage = super::usage(&self.usage);
                out.push(usage_chunk(&self.id, self.created, &self.model, usage)?);
            }
            a::StreamEvent::Error { error } => {
                let status = match error.kind.as_str() {
                    "overloaded_error" => 529,
                    "rate_limit_error" => 429,
                    "api_error" => 500,
                    "invalid_request_error" => 400,
                    _ => 502,
                };
                let body = serde_json::json!({"type": "error", "error": error}).to_string();
                return Err(target.error_from_body(status, body.as_bytes(), None));
            }
            a::StreamEvent::ContentBlockStart { .. }
            | a::StreamEvent::ContentBlockStop { .. }
            | a::StreamEvent::Ping
            | a::StreamEvent::Unknown => {}
        }
        Ok(out)
    }
}

/// `json_tool`: the request's `response_format` is answered through the forced tool.
pub fn translate(
    target: Target,
    events: BoxStream<'static, Result<SseEvent>>,
    json_tool: bool,
) -> ChunkStream {
    let tr = Translator {
        json_tool,
        ..Translator::default()
    };
    translated(target, events, tr, "message_stop")
}
