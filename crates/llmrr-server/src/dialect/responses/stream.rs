//! Stream items as the Responses API's semantic events: `response.created` and
//! `response.in_progress`; per output item `response.output_item.added`, its content
//! (`response.content_part.added`, `response.output_text.delta` / `response.refusal.delta`,
//! their `.done`s and `response.content_part.done`; `response.reasoning_summary_*` for
//! reasoning; `response.function_call_arguments.delta` / `.done` for a call) and
//! `response.output_item.done`; then `response.completed` (or `response.incomplete`) with the
//! whole response and its usage. A stream that fails ends with an `error` event. Every event
//! carries its `sequence_number`. Only the first choice is written.

use super::object::{item_status, new_id, Echo, Item};
use bytes::{BufMut, Bytes, BytesMut};
use llmrr_core::answer::{events_of, AnswerEvent, StreamItem};
use llmrr_types::openai::Usage;
use serde_json::{json, Value};

pub struct EventWriter {
    echo: Echo,
    seq: u64,
    started: bool,
    items: Vec<Item>,
    /// The last item is still being written.
    open: bool,
    finish: Option<String>,
    usage: Option<Usage>,
    /// The stream has ended: what follows is not written.
    ended: bool,
    /// The finished response and its items, once complete, until taken.
    finished: Option<(Value, Vec<Item>)>,
}

impl EventWriter {
    pub fn new(echo: Echo) -> Self {
        EventWriter {
            echo,
            seq: 0,
            started: false,
            items: Vec::new(),
            open: false,
            finish: None,
            usage: None,
            ended: false,
            finished: None,
        }
    }

    /// The finished response and its items, once the stream has completed (to store them
    /// before the last event goes out).
    pub fn take_finished(&mut self) -> Option<(Value, Vec<Item>)> {
        self.finished.take()
    }

    pub fn write(&mut self, item: StreamItem) -> Bytes {
        let mut out = BytesMut::new();
        if self.ended {
            return out.freeze();
        }
        match item {
            StreamItem::Explain(json) => crate::dialect::explain_comment(&json, &mut out),
            StreamItem::Chunk(data) => match events_of(&data) {
                Ok(read) => {
                    if !self.started && !read.model.is_empty() {
                        self.echo.model = read.model;
                    }
                    self.start(&mut out);
                    for e in read.events {
                        self.event(&mut out, e);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a stream chunk could not be read");
                    self.start(&mut out);
                    self.fail(
                        &mut out,
                        "server_error",
                        "server_error",
                        "the upstream sent a stream chunk llmrr could not read",
                        None,
                    );
                }
            },
            StreamItem::Done => {
                self.start(&mut out);
                self.close(&mut out);
                let response = self.echo.response(
                    &self.items,
                    true,
                    self.finish.as_deref(),
                    self.usage.as_ref(),
                );
                let kind = if response["status"] == "incomplete" {
                    "response.incomplete"
                } else {
                    "response.completed"
                };
                self.put(&mut out, kind, json!({ "response": response }));
                self.finished = Some((response, std::mem::take(&mut self.items)));
                self.ended = true;
            }
            StreamItem::Error(e) => {
                self.start(&mut out);
                let code = e.code.clone().unwrap_or_else(|| e.kind.clone());
                self.fail(&mut out, &e.kind, &code, &e.message, e.param.as_deref());
            }
        }
        out.freeze()
    }

    /// End the stream with `response.failed` and the `error` event (its fields both flat and
    /// under `error`, the shape OpenAI's API sends and its SDKs raise on).
    fn fail(
        &mut self,
        out: &mut BytesMut,
        kind: &str,
        code: &str,
        message: &str,
        param: Option<&str>,
    ) {
        let mut response = self
            .echo
            .response(&self.items, false, None, self.usage.as_ref());
        response["status"] = "failed".into();
        response["error"] = json!({"code": code, "message": message});
        self.put(out, "response.failed", json!({ "response": response }));
        self.put(
            out,
            "error",
            json!({"code": code, "message": message, "param": param,
                   "error": {"type": kind, "code": code, "message": message, "param": param}}),
        );
        self.ended = true;
    }

    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.echo.response(&[], false, None, None);
        self.put(out, "response.created", json!({ "response": response }));
        self.put(out, "response.in_progress", json!({ "response": response }));
    }

    fn event(&mut self, out: &mut BytesMut, e: AnswerEvent) {
        match e {
            AnswerEvent::Reasoning { choice: 0, text } => {
                if !matches!(self.open_item(), Some(Item::Reasoning { .. })) {
                    self.add(
                        out,
                        Item::Reasoning {
                            id: new_id("rs"),
                            text: String::new(),
                        },
                    );
                }
                let (id, index) = self.current();
                self.put(
                    out,
                    "response.reasoning_summary_text.delta",
                    json!({"item_id": id, "output_index": index, "summary_index": 0, "delta": text}),
                );
                if let Some(Item::Reasoning { text: all, .. }) = self.items.last_mut() {
                    all.push_str(&text);
                }
            }
            AnswerEvent::Text { choice: 0, text } => self.message_delta(out, false, text),
            AnswerEvent::Refusal { choice: 0, text } => self.message_delta(out, true, text),
            AnswerEvent::ToolCall {
                choice: 0,
                index,
                id,
                name,
                arguments,
            } => {
                let continues = matches!(self.open_item(), Some(Item::Call { index: i, call_id, .. })
                    if *i == index && id.as_ref().is_none_or(|id| id == call_id));
                if !continues {
                    self.add(
                        out,
                        Item::Call {
                            id: new_id("fc"),
                            call_id: id.unwrap_or_else(|| new_id("call")),
                            name: name.unwrap_or_default(),
                            arguments: String::new(),
                            index,
                        },
                    );
                }
                if !arguments.is_empty() {
                    let (item_id, output_index) = self.current();
                    self.put(
                        out,
                        "response.function_call_arguments.delta",
                        json!({"item_id": item_id, "output_index": output_index, "delta": arguments}),
                    );
                    if let Some(Item::Call { arguments: all, .. }) = self.items.last_mut() {
                        all.push_str(&arguments);
                    }
                }
            }
            AnswerEvent::Finish { choice: 0, reason } => self.finish = Some(reason),
            AnswerEvent::Usage { usage, .. } => self.usage = Some(usage),
            _ => {} // another choice
        }
    }

    fn message_delta(&mut self, out: &mut BytesMut, refusal: bool, delta: String) {
        let same =
            matches!(self.open_item(), Some(Item::Message { refusal: r, .. }) if *r == refusal);
        if !same {
            self.add(
                out,
                Item::Message {
                    id: new_id("msg"),
                    text: String::new(),
                    refusal,
                },
            );
            let (item_id, output_index) = self.current();
            self.put(
                out,
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": output_index, "content_index": 0,
                       "part": Item::part(refusal, "")}),
            );
        }
        let (item_id, output_index) = self.current();
        let (kind, extra) = if refusal {
            ("response.refusal.delta", json!({}))
        } else {
            ("response.output_text.delta", json!({"logprobs": []}))
        };
        let mut data = json!({"item_id": item_id, "output_index": output_index,
                              "content_index": 0, "delta": delta});
        merge(&mut data, extra);
        self.put(out, kind, data);
        if let Some(Item::Message { text, .. }) = self.items.last_mut() {
            text.push_str(&delta);
        }
    }

    fn open_item(&self) -> Option<&Item> {
        self.items.last().filter(|_| self.open)
    }

    /// The open item's id and output index.
    fn current(&self) -> (String, usize) {
        let id = self
            .items
            .last()
            .map(|i| i.id().to_owned())
            .unwrap_or_default();
        (id, self.items.len().saturating_sub(1))
    }

    /// Close the open item and announce `item`.
    fn add(&mut self, out: &mut BytesMut, item: Item) {
        self.close(out);
        let announced = item.json("in_progress");
        self.items.push(item);
        self.open = true;
        let index = self.items.len() - 1;
        self.put(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": announced}),
        );
        if let Some(Item::Reasoning { id, .. }) = self.items.last() {
            let id = id.clone();
            self.put(
                out,
                "response.reasoning_summary_part.added",
                json!({"item_id": id, "output_index": index, "summary_index": 0,
                       "part": {"type": "summary_text", "text": ""}}),
            );
        }
    }

    /// The open item's closing events.
    fn close(&mut self, out: &mut BytesMut) {
        if !std::mem::take(&mut self.open) {
            return;
        }
        let Some(item) = self.items.last().cloned() else {
            return;
        };
        let output_index = self.items.len() - 1;
        let item_id = item.id().to_owned();
        let at = json!({"item_id": item_id, "output_index": output_index});
        match &item {
            Item::Reasoning { text, .. } => {
                let part = json!({"type": "summary_text", "text": text});
                self.put(
                    out,
                    "response.reasoning_summary_text.done",
                    with(&at, json!({"summary_index": 0, "text": text})),
                );
                self.put(
                    out,
                    "response.reasoning_summary_part.done",
                    with(&at, json!({"summary_index": 0, "part": part})),
                );
            }
            Item::Message { text, refusal, .. } => {
                let (kind, field) = if *refusal {
                    ("response.refusal.done", "refusal")
                } else {
                    ("response.output_text.done", "text")
                };
                self.put(
                    out,
                    kind,
                    with(
                        &at,
                        json!({"content_index": 0, field: text, "logprobs": []}),
                    ),
                );
                self.put(
                    out,
                    "response.content_part.done",
                    with(
                        &at,
                        json!({"content_index": 0, "part": Item::part(*refusal, text)}),
                    ),
                );
            }
            Item::Call { arguments, .. } => self.put(
                out,
                "response.function_call_arguments.done",
                with(&at, json!({"arguments": arguments})),
            ),
        }
        self.put(
            out,
            "response.output_item.done",
            json!({"output_index": output_index,
                   "item": item.json(item_status(true, self.finish.as_deref(), true))}),
        );
    }

    /// One event: `event: <type>` and its data, with `type` and `sequence_number`.
    fn put(&mut self, out: &mut BytesMut, kind: &str, mut data: Value) {
        merge(
            &mut data,
            json!({"type": kind, "sequence_number": self.seq}),
        );
        self.seq += 1;
        out.put_slice(b"event: ");
        out.put_slice(kind.as_bytes());
        out.put_slice(b"\ndata: ");
        out.put_slice(&serde_json::to_vec(&data).unwrap_or_default());
        out.put_slice(b"\n\n");
    }
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

fn with(base: &Value, more: Value) -> Value {
    let mut v = base.clone();
    merge(&mut v, more);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::responses::request::ResponsesRequest;

    fn events(bytes: &[u8]) -> Vec<(String, Value)> {
        String::from_utf8_lossy(bytes)
            .split("\n\n")
            .filter(|e| e.starts_with("event: "))
            .map(|e| {
                let (head, data) = e.split_once("\ndata: ").unwrap();
                let data: Value = serde_json::from_str(data).unwrap();
                let name = head.trim_start_matches("event: ").to_owned();
                assert_eq!(data["type"], name.as_str());
                (name, data)
            })
            .collect()
    }

    fn chunk(json: &str) -> StreamItem {
        StreamItem::Chunk(Bytes::from(json.to_owned()))
    }

    #[test]
    fn text_then_a_call_then_completed() {
        let req: ResponsesRequest =
            serde_json::from_value(json!({"model": "asked", "input": "x"})).unwrap();
        let mut w = EventWriter::new(Echo::of(&req, "resp_1".into(), 7, true));
        let mut all = Vec::new();
        for item in [
            chunk(r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#),
            chunk(r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":" you"}}]}"#),
            chunk(
                r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","function":{"name":"f","arguments":"{\"a\""}}]}}]}"#,
            ),
            chunk(
                r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}"#,
            ),
            chunk(
                r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            ),
            chunk(
                r#"{"id":"c","model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9}}"#,
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
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let seqs: Vec<u64> = ev
            .iter()
            .map(|(_, d)| d["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (0..15).collect::<Vec<_>>());
        assert_eq!(ev[6].1["text"], "Hi you");
        assert_eq!(ev[12].1["arguments"], "{\"a\":1}");
        let r = &ev[14].1["response"];
        assert_eq!(r["status"], "completed");
        assert_eq!(r["model"], "m");
        assert_eq!(r["output"][0]["content"][0]["text"], "Hi you");
        assert_eq!(r["output"][1]["call_id"], "call_1");
        assert_eq!(r["usage"]["total_tokens"], 9);
        let (stored, items) = w.take_finished().expect("finished");
        assert_eq!((&stored, items.len()), (r, 2));
        assert!(w.take_finished().is_none());
    }
}
