//! OpenAI's Responses API upstream (`provider = "openai"` with `responses_api`): a request
//! that came through llmrr's own Responses API is sent to the server's `/responses` as the
//! client wrote it ([`body`]); the answer, a response object or its stream of events, is read
//! back into a chat completion or chat chunks, as every provider answers the gateway.
//!
//! Output text, refusals, function calls and reasoning (summary or text) carry over;
//! built-in tool items (never asked for: llmrr refuses built-in tools) are skipped. An
//! `incomplete` response finishes with `length` (or `content_filter`), a `failed` one or an
//! `error` event is an upstream error with the upstream's code and message.

use super::http::Target;
use super::sse::SseEvent;
use super::translated::{chunk, encode, usage_chunk, Translate};
use super::StreamChunk;
use crate::error::{Error, Result};
use llmrr_types::openai as o;
use llmrr_types::openai::responses as r;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The client's Responses body for `model`: as written (the conversation of its
/// `previous_response_id`, which names llmrr's response, already in its `input`), with the
/// model and the stream flag set and `store: false` — llmrr keeps the conversation itself, so
/// the upstream keeps nothing.
pub fn body(native: &Value, model: &str, stream: bool) -> Value {
    let mut body = native.clone();
    if let Value::Object(map) = &mut body {
        map.insert("model".into(), model.into());
        map.insert("stream".into(), stream.into());
        map.insert("store".into(), false.into());
        if !stream {
            map.remove("stream_options");
        }
    }
    body
}

/// A non-streamed response as a chat completion (a `failed` one as its error).
pub fn to_completion(target: &Target, resp: r::ResponseObject) -> Result<o::ChatCompletion> {
    if resp.status.as_deref() == Some("failed") {
        return Err(failure(target, resp.error.as_ref()));
    }
    let mut text = String::new();
    let mut refusal: Option<String> = None;
    let mut reasoning: Vec<String> = Vec::new();
    let mut calls = Vec::new();
    for item in resp.output {
        match item {
            r::OutputItem::Message { content } => {
                for part in content {
                    match part {
                        r::OutputContent::OutputText { text: t } => text.push_str(&t),
                        r::OutputContent::Refusal { refusal: t } => {
                            refusal.get_or_insert_with(String::new).push_str(&t)
                        }
                        r::OutputContent::Other => {}
                    }
                }
            }
            r::OutputItem::FunctionCall {
                call_id,
                name,
                arguments,
            } => calls.push(o::ToolCall {
                id: call_id,
                kind: o::ToolKind::Function,
                function: o::FunctionCall { name, arguments },
            }),
            r::OutputItem::Reasoning { summary, content } => reasoning.extend(
                summary
                    .into_iter()
                    .chain(content.into_iter().flatten())
                    .map(|p| p.text)
                    .filter(|t| !t.is_empty()),
            ),
            r::OutputItem::Other => {}
        }
    }
    let finish = finish_reason(
        &resp.status,
        resp.incomplete_details.as_ref(),
        !calls.is_empty(),
    );
    let message = o::ResponseMessage {
        role: o::Role::Assistant,
        content: (!text.is_empty() || calls.is_empty()).then_some(text),
        tool_calls: (!calls.is_empty()).then_some(calls),
        refusal,
        reasoning_content: (!reasoning.is_empty()).then(|| reasoning.join("\n\n")),
        thinking_blocks: None,
    };
    Ok(o::ChatCompletion {
        id: resp.id,
        object: "chat.completion".into(),
        created: created(resp.created_at),
        model: resp.model,
        choices: vec![o::Choice {
            index: 0,
            message,
            finish_reason: Some(finish.into()),
            logprobs: None,
        }],
        usage: resp.usage.map(r::ResponsesUsage::to_chat),
        system_fingerprint: None,
    })
}

fn created(at: Option<f64>) -> i64 {
    at.map_or_else(|| crate::store::now_ms() / 1000, |t| t as i64)
}

/// Chat's finish reason for a response that ended with `status`.
fn finish_reason(
    status: &Option<String>,
    incomplete: Option<&r::IncompleteDetails>,
    calls: bool,
) -> &'static str {
    let reason = incomplete.and_then(|d| d.reason.as_deref());
    match status.as_deref() {
        Some("incomplete") if reason == Some("content_filter") => "content_filter",
        Some("incomplete") => "length",
        _ if calls => "tool_calls",
        _ => "stop",
    }
}

/// The upstream error a failed response or an `error` event says (`{"code", "message"}`),
/// with the status its code stands for.
fn failure(target: &Target, error: Option<&Value>) -> Error {
    let error = error
        .cloned()
        .unwrap_or_else(|| json!({"message": "the response failed"}));
    let code = error.get("code").and_then(Value::as_str).unwrap_or("");
    let status = match code {
        "rate_limit_exceeded" => 429,
        "server_error" | "internal_error" => 500,
        "server_is_overloaded" | "slow_down" => 503,
        // What the request holds (a prompt, an image), which no retry changes.
        c if c.starts_with("invalid")
            || c.starts_with("image_")
            || c.ends_with("_image_file")
            || c.ends_with("_image_media_type")
            || c == "failed_to_download_image"
            || c == "context_length_exceeded" =>
        {
            400
        }
        _ => 502,
    };
    let body = json!({ "error": error }).to_string();
    target.error_from_body(status, body.as_bytes(), None)
}

/// Responses stream events -> chat chunks.
#[derive(Default)]
pub struct Translator {
    id: String,
    model: String,
    created: i64,
    /// Output index of a function call -> its chat tool call index, and whether its
    /// arguments came as deltas.
    tool_index: HashMap<u32, (u32, bool)>,
    finished: bool,
}

impl Translator {
    fn delta(&self, delta: o::Delta, has_output: bool) -> Result<StreamChunk> {
        encode(
            &chunk(&self.id, self.created, &self.model, delta, None),
            has_output,
            None,
        )
    }

    fn opened(&mut self, resp: r::ResponseObject) -> Result<StreamChunk> {
        self.id = resp.id;
        self.model = resp.model;
        self.created = created(resp.created_at);
        let delta = o::Delta {
            role: Some(o::Role::Assistant),
            content: Some(String::new()),
            ..Default::default()
        };
        self.delta(delta, false)
    }

    /// The chat index of the function call at `output_index` (marked as having streamed
    /// arguments); an index no call was opened at is a broken stream.
    fn call_at(&mut self, target: &Target, output_index: u32) -> Result<u32> {
        match self.tool_index.get_mut(&output_index) {
            Some((index, streamed)) => {
                *streamed = true;
                Ok(*index)
            }
            None => Err(target.protocol(format!(
                "arguments for output {output_index}, where no function call was opened"
            ))),
        }
    }

    /// The finish chunk and the usage chunk of a response that ended.
    fn ended(&mut self, resp: r::ResponseObject) -> Result<Vec<StreamChunk>> {
        self.finished = true;
        let finish = finish_reason(
            &resp.status,
            resp.incomplete_details.as_ref(),
            !self.tool_index.is_empty(),
        );
        let last = chunk(
            &self.id,
            self.created,
            &self.model,
            o::Delta::default(),
            Some(finish.into()),
        );
        let usage = resp.usage.unwrap_or_default().to_chat();
        Ok(vec![
            encode(&last, false, None)?,
            usage_chunk(&self.id, self.created, &self.model, usage)?,
        ])
    }
}

impl Translate for Translator {
    fn finished(&self) -> bool {
        self.finished
    }

    fn on_event(&mut self, target: &Target, ev: SseEvent) -> Result<Vec<StreamChunk>> {
        let event: r::StreamEvent = serde_json::from_str(&ev.data).map_err(|e| {
            target.protocol(format!(
                "unknown stream event {:?}: {e}",
                ev.event.unwrap_or_default()
            ))
        })?;
        let text = |content: String| o::Delta {
            content: Some(content),
            ..Default::default()
        };
        let call = |index: u32, id: Option<String>, name: Option<String>, args: String| o::Delta {
            tool_calls: Some(vec![o::ToolCallDelta {
                index,
                kind: id.as_ref().map(|_| o::ToolKind::Function),
                id,
                function: Some(o::FunctionCallDelta {
                    name,
                    arguments: Some(args),
                }),
            }]),
            ..Default::default()
        };
        Ok(match event {
            r::StreamEvent::Created { response } => vec![self.opened(response)?],
            r::StreamEvent::OutputItemAdded {
                output_index,
                item:
                    r::OutputItem::FunctionCall {
                        call_id,
                        name,
                        arguments,
                    },
            } => {
                let index = self.tool_index.len() as u32;
                self.tool_index
                    .insert(output_index, (index, !arguments.is_empty()));
                vec![self.delta(call(index, Some(call_id), Some(name), arguments), true)?]
            }
            r::StreamEvent::OutputTextDelta { delta } if !delta.is_empty() => {
                vec![self.delta(text(delta), true)?]
            }
            r::StreamEvent::RefusalDelta { delta } if !delta.is_empty() => {
                let delta = o::Delta {
                    refusal: Some(delta),
                    ..Default::default()
                };
                vec![self.delta(delta, true)?]
            }
            r::StreamEvent::FunctionCallArgumentsDelta {
                output_index,
                delta,
            } if !delta.is_empty() => {
                let index = self.call_at(target, output_index)?;
                vec![self.delta(call(index, None, None, delta), true)?]
            }
            // A server that sends the arguments whole, at the end.
            r::StreamEvent::FunctionCallArgumentsDone {
                output_index,
                arguments,
            } if !arguments.is_empty() => {
                let streamed = self.tool_index.get(&output_index).is_some_and(|t| t.1);
                let index = self.call_at(target, output_index)?;
                match streamed {
                    true => Vec::new(),
                    false => vec![self.delta(call(index, None, None, arguments), true)?],
                }
            }
            // Summary parts after the first are new paragraphs (as a whole answer joins them).
            r::StreamEvent::ReasoningSummaryPartAdded { summary_index } if summary_index > 0 => {
                let delta = o::Delta {
                    reasoning_content: Some("\n\n".into()),
                    ..Default::default()
                };
                vec![self.delta(delta, true)?]
            }
            r::StreamEvent::ReasoningSummaryDelta { delta }
            | r::StreamEvent::ReasoningTextDelta { delta }
                if !delta.is_empty() =>
            {
                let delta = o::Delta {
                    reasoning_content: Some(delta),
                    ..Default::default()
                };
                vec![self.delta(delta, true)?]
            }
            r::StreamEvent::Completed { response } | r::StreamEvent::Incomplete { response } => {
                self.ended(response)?
            }
            r::StreamEvent::Failed { response } => {
                return Err(failure(target, response.error.as_ref()))
            }
            r::StreamEvent::Error {
                code,
                message,
                error,
            } => {
                let error = error.unwrap_or_else(|| json!({"code": code, "message": message}));
                return Err(failure(target, Some(&error)));
            }
            _ => Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_clients_with_model_stream_and_no_storage() {
        let native = json!({"model": "gpt", "input": "hi", "store": true,
            "reasoning": {"effort": "low", "summary": "auto"},
            "text": {"verbosity": "low"}, "stream_options": {"include_obfuscation": false}});
        let sent = body(&native, "up-model", false);
        assert_eq!(
            sent,
            json!({"model": "up-model", "input": "hi", "store": false, "stream": false,
                "reasoning": {"effort": "low", "summary": "auto"}, "text": {"verbosity": "low"}})
        );
        assert_eq!(
            body(&native, "m", true)["stream_options"],
            json!({"include_obfuscation": false})
        );
    }

    /// The chunks a sequence of events becomes (each event's `data`).
    fn translate(events: &[Value]) -> Result<Vec<Value>> {
        let target = Target {
            model: "r-model".into(),
            provider: crate::config::ProviderKind::OpenAi,
            timeout: std::time::Duration::from_secs(1),
            mask: Default::default(),
        };
        let mut tr = Translator::default();
        let mut out = Vec::new();
        for ev in events {
            let ev = SseEvent {
                event: ev["type"].as_str().map(str::to_owned),
                data: ev.to_string(),
            };
            for c in tr.on_event(&target, ev)? {
                out.push(serde_json::from_slice(&c.data).expect("a chunk"));
            }
        }
        Ok(out)
    }

    #[test]
    fn two_calls_whole_arguments_and_summary_paragraphs_stream_as_chat() {
        let call = |i: u32, id: &str, args: &str| {
            json!({"type": "response.output_item.added", "output_index": i, "item":
                {"type": "function_call", "call_id": id, "name": "f", "arguments": args}})
        };
        let chunks = translate(&[
            json!({"type": "response.created", "response": {"id": "resp_1", "model": "m"}}),
            json!({"type": "response.reasoning_summary_part.added", "summary_index": 0}),
            json!({"type": "response.reasoning_summary_text.delta", "delta": "a"}),
            json!({"type": "response.reasoning_summary_part.added", "summary_index": 1}),
            json!({"type": "response.reasoning_summary_text.delta", "delta": "b"}),
            call(1, "c1", ""),
            json!({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "{}"}),
            json!({"type": "response.function_call_arguments.done", "output_index": 1, "arguments": "{}"}),
            call(2, "c2", ""),
            // This server sends the arguments only whole.
            json!({"type": "response.function_call_arguments.done", "output_index": 2, "arguments": "{\"x\":1}"}),
            json!({"type": "response.completed", "response": {"status": "completed",
                "usage": {"input_tokens": 5, "output_tokens": 7}}}),
        ])
        .expect("translates");
        let delta = |i: usize| &chunks[i]["choices"][0]["delta"];
        let reasoning: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
            .collect();
        assert_eq!(reasoning, "a\n\nb");
        assert_eq!(delta(4)["tool_calls"][0]["id"], "c1");
        assert_eq!(delta(5)["tool_calls"][0]["function"]["arguments"], "{}");
        assert_eq!(delta(6)["tool_calls"][0]["index"], 1);
        assert_eq!(
            delta(7)["tool_calls"][0]["function"]["arguments"],
            "{\"x\":1}"
        );
        assert_eq!(chunks[8]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[9]["usage"]["completion_tokens"], 7);
        assert_eq!(chunks.len(), 10, "the first call's done adds nothing");
        // Arguments for an output no call was opened at: a broken stream.
        assert!(
            translate(&[json!({"type": "response.function_call_arguments.delta",
            "output_index": 3, "delta": "{"})])
            .is_err()
        );
        // An error event, flat or nested: the upstream's error.
        for ev in [
            json!({"type": "error", "code": "server_error", "message": "boom"}),
            json!({"type": "error", "error": {"code": "server_error", "message": "boom"}}),
        ] {
            let e = translate(&[ev]).expect_err("an error");
            assert!(e.to_string().contains("boom"), "{e}");
        }
    }

    #[test]
    fn finish_reasons() {
        let incomplete = |reason: &str| r::IncompleteDetails {
            reason: Some(reason.into()),
        };
        let s = |t: &str| Some(t.to_owned());
        assert_eq!(finish_reason(&s("completed"), None, false), "stop");
        assert_eq!(finish_reason(&s("completed"), None, true), "tool_calls");
        assert_eq!(
            finish_reason(
                &s("incomplete"),
                Some(&incomplete("max_output_tokens")),
                true
            ),
            "length"
        );
        assert_eq!(
            finish_reason(&s("incomplete"), Some(&incomplete("content_filter")), false),
            "content_filter"
        );
    }
}
