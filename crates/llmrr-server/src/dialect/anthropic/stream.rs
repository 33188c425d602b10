//! Stream items as Anthropic's event sequence: `message_start` and a `ping`, then one
//! content block at a time (`content_block_start`, its `text_delta`, `thinking_delta` or
//! `input_json_delta` events, `content_block_stop`), then `message_delta` with the stop
//! reason and the usage, and `message_stop`. A stream that fails ends with an `error` event.
//! Only the first choice is written (the Messages API has no `n`).

use super::error::envelope;
use super::response::{message_id, stop_reason, usage};
use bytes::{BufMut, Bytes, BytesMut};
use llmrr_core::answer::{events_of, AnswerEvent, StreamItem};
use llmrr_types::anthropic as a;
use llmrr_types::openai::Usage;

/// The content block being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    /// A tool call, by its OpenAI index.
    Tool(u32),
}

/// Writes one stream's items as Anthropic events; it keeps what the sequence needs (whether
/// the message has started, the open block, the stop reason and usage seen so far).
pub struct EventWriter {
    /// The requested model, until a chunk names the one that answers.
    model: String,
    started: bool,
    open: Option<Block>,
    /// The index the next block gets.
    next_index: u32,
    /// The id of the open tool-use block.
    tool_id: Option<String>,
    finish: Option<String>,
    /// The answer was a refusal (its stop reason is `refusal`).
    refused: bool,
    usage: Option<Usage>,
    /// A chunk could not be read: the stream ended with an error event, and what follows
    /// is not written.
    failed: bool,
}

impl EventWriter {
    pub fn new(model: &str) -> Self {
        EventWriter {
            model: model.to_owned(),
            started: false,
            open: None,
            next_index: 0,
            tool_id: None,
            finish: None,
            refused: false,
            usage: None,
            failed: false,
        }
    }

    /// The SSE bytes of one item (empty when it says nothing an Anthropic client reads).
    pub fn write(&mut self, item: StreamItem) -> Bytes {
        let mut out = BytesMut::new();
        if self.failed {
            return out.freeze();
        }
        match item {
            StreamItem::Explain(json) => crate::dialect::explain_comment(&json, &mut out),
            StreamItem::Chunk(data) => match events_of(&data) {
                Ok(read) => {
                    self.start(&mut out, &read.id, &read.model);
                    for e in read.events {
                        self.event(&mut out, e);
                    }
                }
                Err(e) => {
                    // Never a silent gap: the stream ends here, with an error.
                    tracing::warn!(error = %e, "a stream chunk could not be read");
                    self.failed = true;
                    self.start(&mut out, "", "");
                    put(
                        &mut out,
                        &a::StreamEvent::Error {
                            error: a::ErrorDetail {
                                kind: "api_error".into(),
                                message: "the upstream sent a stream chunk llmrr could not read"
                                    .into(),
                            },
                        },
                    );
                }
            },
            StreamItem::Done => {
                self.start(&mut out, "", "");
                self.close(&mut out);
                let u = usage(&self.usage.unwrap_or_default());
                put(
                    &mut out,
                    &a::StreamEvent::MessageDelta {
                        delta: a::MessageDeltaBody {
                            stop_reason: Some(
                                if self.refused {
                                    "refusal"
                                } else {
                                    stop_reason(self.finish.as_deref())
                                }
                                .into(),
                            ),
                            stop_sequence: None,
                        },
                        usage: Some(a::DeltaUsage {
                            output_tokens: u.output_tokens,
                            input_tokens: Some(u.input_tokens),
                            cache_creation_input_tokens: u.cache_creation_input_tokens,
                            cache_read_input_tokens: u.cache_read_input_tokens,
                        }),
                    },
                );
                put(&mut out, &a::StreamEvent::MessageStop);
            }
            StreamItem::Error(e) => put(
                &mut out,
                &a::StreamEvent::Error {
                    error: envelope(&e).error,
                },
            ),
        }
        out.freeze()
    }

    fn start(&mut self, out: &mut BytesMut, id: &str, model: &str) {
        if self.started {
            return;
        }
        self.started = true;
        if !model.is_empty() {
            model.clone_into(&mut self.model);
        }
        let id = message_id(id);
        put(
            out,
            &a::StreamEvent::MessageStart {
                message: a::MessagesResponse {
                    id,
                    kind: "message".into(),
                    role: a::Role::Assistant,
                    content: Vec::new(),
                    model: self.model.clone(),
                    stop_reason: None,
                    stop_sequence: None,
                    usage: a::Usage::default(),
                },
            },
        );
        put(out, &a::StreamEvent::Ping);
    }

    fn event(&mut self, out: &mut BytesMut, e: AnswerEvent) {
        match e {
            AnswerEvent::Text { choice: 0, text } => self.text(out, text),
            AnswerEvent::Refusal { choice: 0, text } => {
                self.refused = true;
                self.text(out, text);
            }
            AnswerEvent::Reasoning { choice: 0, text } => {
                self.open_thinking(out);
                self.delta(out, a::BlockDelta::ThinkingDelta { thinking: text });
            }
            AnswerEvent::ToolCall {
                choice: 0,
                index,
                id,
                name,
                arguments,
            } => {
                // A piece with a new id starts a new call, whatever its index says.
                let continues =
                    self.open == Some(Block::Tool(index)) && (id.is_none() || id == self.tool_id);
                if !continues {
                    self.close(out);
                    let id =
                        id.unwrap_or_else(|| format!("toolu_{}", uuid::Uuid::now_v7().simple()));
                    self.tool_id = Some(id.clone());
                    self.open_block(
                        out,
                        Block::Tool(index),
                        a::ContentBlock::ToolUse {
                            id,
                            name: name.unwrap_or_default(),
                            input: serde_json::Value::Object(Default::default()),
                        },
                    );
                }
                if !arguments.is_empty() {
                    self.delta(
                        out,
                        a::BlockDelta::InputJsonDelta {
                            partial_json: arguments,
                        },
                    );
                }
            }
            // A signature ends its thinking block (the next thinking is a block of its own).
            AnswerEvent::ReasoningSignature {
                choice: 0,
                signature,
            } => {
                self.open_thinking(out);
                self.delta(out, a::BlockDelta::SignatureDelta { signature });
                self.close(out);
            }
            AnswerEvent::RedactedReasoning { choice: 0, data } => {
                self.close(out);
                put(
                    out,
                    &a::StreamEvent::ContentBlockStart {
                        index: self.next_index,
                        content_block: a::ContentBlock::RedactedThinking { data },
                    },
                );
                self.open = Some(Block::Thinking);
                self.close(out);
            }
            AnswerEvent::Finish { choice: 0, reason } => self.finish = Some(reason),
            AnswerEvent::Usage { usage, .. } => self.usage = Some(usage),
            _ => {} // another choice
        }
    }

    fn open_thinking(&mut self, out: &mut BytesMut) {
        self.open_block(
            out,
            Block::Thinking,
            a::ContentBlock::Thinking {
                thinking: String::new(),
                signature: Some(String::new()),
            },
        );
    }

    fn text(&mut self, out: &mut BytesMut, text: String) {
        self.open_block(
            out,
            Block::Text,
            a::ContentBlock::Text {
                text: String::new(),
            },
        );
        self.delta(out, a::BlockDelta::TextDelta { text });
    }

    /// Make `block` the open one (closing the one before), started as `start`.
    fn open_block(&mut self, out: &mut BytesMut, block: Block, start: a::ContentBlock) {
        if self.open == Some(block) {
            return;
        }
        self.close(out);
        put(
            out,
            &a::StreamEvent::ContentBlockStart {
                index: self.next_index,
                content_block: start,
            },
        );
        self.open = Some(block);
    }

    fn delta(&self, out: &mut BytesMut, delta: a::BlockDelta) {
        put(
            out,
            &a::StreamEvent::ContentBlockDelta {
                index: self.next_index,
                delta,
            },
        );
    }

    fn close(&mut self, out: &mut BytesMut) {
        if self.open.take().is_some() {
            put(
                out,
                &a::StreamEvent::ContentBlockStop {
                    index: self.next_index,
                },
            );
            self.next_index += 1;
        }
    }
}

/// One event: `event: <type>` and its JSON.
fn put(out: &mut BytesMut, event: &a::StreamEvent) {
    let name = match event {
        a::StreamEvent::MessageStart { .. } => "message_start",
        a::StreamEvent::ContentBlockStart { .. } => "content_block_start",
        a::StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
        a::StreamEvent::ContentBlockStop { .. } => "content_block_stop",
        a::StreamEvent::MessageDelta { .. } => "message_delta",
        a::StreamEvent::MessageStop => "message_stop",
        a::StreamEvent::Ping => "ping",
        a::StreamEvent::Error { .. } => "error",
        a::StreamEvent::Unknown => return, // never written
    };
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(&serde_json::to_vec(event).unwrap_or_default());
    out.put_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmrr_core::answer::AnswerError;
    use serde_json::Value;

    fn events(bytes: &[u8]) -> Vec<(String, serde_json::Value)> {
        String::from_utf8_lossy(bytes)
            .split("\n\n")
            .filter(|e| e.starts_with("event: "))
            .map(|e| {
                let (head, data) = e.split_once("\ndata: ").unwrap();
                (
                    head.trim_start_matches("event: ").to_owned(),
                    serde_json::from_str(data).unwrap(),
                )
            })
            .collect()
    }

    fn chunk(json: &str) -> StreamItem {
        StreamItem::Chunk(Bytes::from(json.to_owned()))
    }

    #[test]
    fn text_then_a_tool_call_then_the_end() {
        let mut w = EventWriter::new("asked");
        let mut all = Vec::new();
        for item in [
            chunk(
                r#"{"id":"chatcmpl-1","model":"m","choices":[{"index":0,"delta":{"role":"assistant","reasoning_content":"Hm."}}]}"#,
            ),
            chunk(
                r#"{"id":"chatcmpl-1","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
            ),
            chunk(
                r#"{"id":"chatcmpl-1","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","function":{"name":"f","arguments":""}}]}}]}"#,
            ),
            chunk(
                r#"{"id":"chatcmpl-1","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":1}"}}]}}]}"#,
            ),
            chunk(
                r#"{"id":"chatcmpl-1","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            ),
            chunk(
                r#"{"id":"chatcmpl-1","model":"m","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
            ),
            StreamItem::Done,
        ] {
            all.extend_from_slice(&w.write(item));
        }
        let ev = events(&all);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(ev[0].1["message"]["id"], "msg_1");
        assert_eq!(ev[0].1["message"]["model"], "m");
        assert_eq!(ev[2].1["content_block"]["type"], "thinking");
        assert_eq!(
            ev[6].1["delta"],
            serde_json::json!({"type": "text_delta", "text": "Hi"})
        );
        assert_eq!(ev[8].1["content_block"]["id"], "call_1");
        assert_eq!(ev[8].1["index"], 2);
        assert_eq!(ev[9].1["delta"]["partial_json"], "{\"a\":1}");
        assert_eq!(ev[11].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(ev[11].1["usage"]["output_tokens"], 3);
        assert_eq!(ev[11].1["usage"]["input_tokens"], 7);
    }

    #[test]
    fn a_new_tool_call_id_starts_a_new_block_and_a_bad_chunk_ends_the_stream() {
        let mut w = EventWriter::new("asked");
        let mut all = Vec::new();
        for item in [
            chunk(
                r#"{"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{}"}}]}}]}"#,
            ),
            chunk(
                r#"{"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"b","function":{"name":"g","arguments":"{}"}}]}}]}"#,
            ),
            chunk("{not json"),
            StreamItem::Done,
        ] {
            all.extend_from_slice(&w.write(item));
        }
        let ev = events(&all);
        let starts: Vec<&Value> = ev
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| &d["content_block"])
            .collect();
        assert_eq!(starts.len(), 2);
        assert_eq!(
            (&starts[0]["id"], &starts[1]["name"]),
            (&Value::from("a"), &Value::from("g"))
        );
        assert_eq!(ev.last().unwrap().0, "error");
        assert!(
            ev.iter().all(|(n, _)| n != "message_stop"),
            "nothing after the error"
        );
    }

    #[test]
    fn signatures_end_their_thinking_blocks_and_redacted_thinking_stands_alone() {
        let mut w = EventWriter::new("asked");
        let mut all = Vec::new();
        for item in [
            chunk(r#"{"id":"x","choices":[{"index":0,"delta":{"reasoning_content":"a"}}]}"#),
            chunk(
                r#"{"id":"x","choices":[{"index":0,"delta":{"thinking_blocks":[{"type":"thinking","thinking":"","signature":"s1"}]}}]}"#,
            ),
            chunk(r#"{"id":"x","choices":[{"index":0,"delta":{"reasoning_content":"b"}}]}"#),
            chunk(
                r#"{"id":"x","choices":[{"index":0,"delta":{"thinking_blocks":[{"type":"thinking","thinking":"","signature":"s2"}]}}]}"#,
            ),
            chunk(
                r#"{"id":"x","choices":[{"index":0,"delta":{"thinking_blocks":[{"type":"redacted_thinking","data":"enc"}]}}]}"#,
            ),
            chunk(r#"{"id":"x","choices":[{"index":0,"delta":{"content":"hi"}}]}"#),
            StreamItem::Done,
        ] {
            all.extend_from_slice(&w.write(item));
        }
        let ev = events(&all);
        let blocks: Vec<(u64, String)> = ev
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| {
                (
                    d["index"].as_u64().unwrap(),
                    d["content_block"]["type"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let want: Vec<(u64, String)> = [
            (0, "thinking"),
            (1, "thinking"),
            (2, "redacted_thinking"),
            (3, "text"),
        ]
        .iter()
        .map(|(i, t)| (*i, t.to_string()))
        .collect();
        assert_eq!(blocks, want);
        let signatures: Vec<(u64, String)> = ev
            .iter()
            .filter(|(_, d)| d["delta"]["type"] == "signature_delta")
            .map(|(_, d)| {
                (
                    d["index"].as_u64().unwrap(),
                    d["delta"]["signature"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(signatures, [(0, "s1".to_owned()), (1, "s2".to_owned())]);
        assert_eq!(
            ev.iter().filter(|(n, _)| n == "content_block_stop").count(),
            4
        );
    }

    #[test]
    fn a_failed_stream_ends_with_an_error_event() {
        let mut w = EventWriter::new("asked");
        let mut all = w
            .write(chunk(
                r#"{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
            ))
            .to_vec();
        all.extend_from_slice(&w.write(StreamItem::Error(AnswerError {
            status: 504,
            kind: "timeout".into(),
            message: "the upstream stalled".into(),
            param: None,
            code: None,
            retry_after: None,
        })));
        let ev = events(&all);
        let last = ev.last().unwrap();
        assert_eq!(last.0, "error");
        assert_eq!(last.1["error"]["type"], "timeout_error");
        assert!(ev.iter().all(|(n, _)| n != "message_stop"));
    }
}
