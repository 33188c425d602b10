//! The response object and its output items, as a whole answer and a finished stream both
//! build them: `reasoning` (its text as a summary), `message` (one `output_text` or `refusal`
//! part) and `function_call` items; the status (`incomplete` when the answer was cut by
//! `max_output_tokens` or a content filter); the usage; and the request's parameters echoed.

use super::request::ResponsesRequest;
use llmrr_types::openai::{self as o, Usage};
use serde_json::{json, Value};

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// One output item.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Reasoning {
        id: String,
        text: String,
    },
    Message {
        id: String,
        text: String,
        /// The part is a refusal, not `output_text`.
        refusal: bool,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        /// The call's index in the chat answer.
        index: u32,
    },
}

impl Item {
    pub fn id(&self) -> &str {
        match self {
            Item::Reasoning { id, .. } | Item::Message { id, .. } | Item::Call { id, .. } => id,
        }
    }

    /// The message part (`output_text` or `refusal`) holding `text`.
    pub fn part(refusal: bool, text: &str) -> Value {
        if refusal {
            json!({"type": "refusal", "refusal": text})
        } else {
            json!({"type": "output_text", "text": text, "annotations": []})
        }
    }

    /// The item as JSON: whole, with its `status` (`completed`, or `incomplete` when the
    /// answer was cut), or as it is announced (`in_progress`), before its content.
    pub fn json(&self, status: &str) -> Value {
        let done = status != "in_progress";
        match self {
            Item::Reasoning { id, text } => {
                let summary = if done {
                    json!([{"type": "summary_text", "text": text}])
                } else {
                    json!([])
                };
                json!({"type": "reasoning", "id": id, "summary": summary})
            }
            Item::Message { id, text, refusal } => {
                let content = if done {
                    json!([Item::part(*refusal, text)])
                } else {
                    json!([])
                };
                json!({"type": "message", "id": id, "status": status, "role": "assistant",
                       "content": content})
            }
            Item::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            } => json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
                        "arguments": if done { arguments.as_str() } else { "" },
                        "status": status}),
        }
    }
}

/// The answer as the assistant turn of the conversation (what `previous_response_id` continues).
pub fn assistant_message(items: &[Item]) -> o::ChatMessage {
    let mut text = String::new();
    let mut calls = Vec::new();
    for item in items {
        match item {
            Item::Message { text: t, .. } => text.push_str(t),
            Item::Call {
                call_id,
                name,
                arguments,
                ..
            } => calls.push(o::ToolCall {
                id: call_id.clone(),
                kind: o::ToolKind::Function,
                function: o::FunctionCall {
                    name: name.clone(),
                    arguments: arguments.clone(),
                },
            }),
            Item::Reasoning { .. } => {}
        }
    }
    o::ChatMessage {
        content: (!text.is_empty() || calls.is_empty()).then_some(o::MessageContent::Text(text)),
        tool_calls: (!calls.is_empty()).then_some(calls),
        ..o::ChatMessage::new(o::Role::Assistant, "")
    }
}

/// What a response says about the request that made it.
#[derive(Debug, Clone)]
pub struct Echo {
    pub id: String,
    pub created_at: i64,
    /// The requested model, until the answer names the one that answered.
    pub model: String,
    fields: Value,
}

impl Echo {
    /// `stored`: the response is kept (`store` asked, and the gateway keeps responses).
    pub fn of(req: &ResponsesRequest, id: String, created_at: i64, stored: bool) -> Echo {
        let fields = json!({
            "instructions": req.instructions,
            "max_output_tokens": req.max_output_tokens,
            "metadata": req.metadata.clone().unwrap_or_else(|| json!({})),
            "parallel_tool_calls": req.parallel_tool_calls.unwrap_or(true),
            "previous_response_id": req.previous_response_id,
            "reasoning": req.reasoning.clone().unwrap_or_else(|| json!({"effort": null, "summary": null})),
            "store": stored,
            "temperature": req.temperature,
            "top_p": req.top_p,
            "tool_choice": req.tool_choice.clone().unwrap_or_else(|| json!("auto")),
            "tools": req.tools,
            "text": req.text.clone().unwrap_or_else(|| json!({"format": {"type": "text"}})),
            "user": req.user,
        });
        Echo {
            id,
            created_at,
            model: req.model.clone(),
            fields,
        }
    }

    /// The response object. `finished`: the answer is complete (`finish` is OpenAI's finish
    /// reason of its one choice); else it is in progress.
    pub fn response(
        &self,
        items: &[Item],
        finished: bool,
        finish: Option<&str>,
        usage: Option<&Usage>,
    ) -> Value {
        let incomplete = incomplete_reason(finish);
        let status = match (finished, incomplete) {
            (false, _) => "in_progress",
            (true, Some(_)) => "incomplete",
            (true, None) => "completed",
        };
        let mut r = json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": null,
            "incomplete_details": incomplete.filter(|_| finished).map(|reason| json!({"reason": reason})),
            "model": self.model,
            "output": items
                .iter()
                .enumerate()
                .map(|(n, i)| i.json(item_status(finished, finish, n + 1 == items.len())))
                .collect::<Vec<_>>(),
            "usage": usage.map(usage_json),
        });
        if let (Value::Object(map), Value::Object(fields)) = (&mut r, &self.fields) {
            map.extend(fields.clone());
        }
        r
    }
}

/// Why an answer that ended with OpenAI's finish reason `finish` is incomplete, if it is.
fn incomplete_reason(finish: Option<&str>) -> Option<&'static str> {
    match finish {
        Some("length") => Some("max_output_tokens"),
        Some("content_filter") => Some("content_filter"),
        _ => None,
    }
}

/// An output item's status: the last item of a cut answer is `incomplete`.
pub fn item_status(finished: bool, finish: Option<&str>, last: bool) -> &'static str {
    match (finished, last && incomplete_reason(finish).is_some()) {
        (false, _) => "in_progress",
        (true, true) => "incomplete",
        (true, false) => "completed",
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens()},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens()},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

/// The output items of a whole answer's first choice.
pub fn items_of(c: &llmrr_core::answer::CompletionChoice) -> Vec<Item> {
    let mut items = Vec::new();
    if let Some(text) = &c.reasoning {
        items.push(Item::Reasoning {
            id: new_id("rs"),
            text: text.clone(),
        });
    }
    if let Some(text) = c.text.as_ref().filter(|t| !t.is_empty()) {
        items.push(Item::Message {
            id: new_id("msg"),
            text: text.clone(),
            refusal: false,
        });
    }
    if let Some(text) = &c.refusal {
        items.push(Item::Message {
            id: new_id("msg"),
            text: text.clone(),
            refusal: true,
        });
    }
    for (i, call) in c.tool_calls.iter().enumerate() {
        items.push(Item::Call {
            id: new_id("fc"),
            // An upstream that gave no id: the output the client sends back needs one.
            call_id: if call.id.is_empty() {
                new_id("call")
            } else {
                call.id.clone()
            },
            name: call.function.name.clone(),
            arguments: call.function.arguments.clone(),
            index: i as u32,
        });
    }
    items
}
