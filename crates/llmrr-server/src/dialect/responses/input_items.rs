//! `GET /v1/responses/{id}/input_items`: a stored response's input, as Responses items (the
//! turn's messages as the gateway keeps them, read back: messages with `input_text` /
//! `input_image` / `output_text` parts, `function_call` and `function_call_output` items).

use llmrr_types::openai as o;
use serde_json::{json, Value};

/// The items of a turn's input (`turn` without the answer the gateway appended). Ids are
/// derived from the response's and the item's place, so they are the same on every read.
pub fn items(response_id: &str, input: &[o::ChatMessage]) -> Vec<Value> {
    let suffix = response_id.strip_prefix("resp_").unwrap_or(response_id);
    let mut out = Vec::new();
    for (i, m) in input.iter().enumerate() {
        let id = |kind: &str, j: usize| format!("{kind}_{suffix}_{i}_{j}");
        match m.role {
            o::Role::Tool => out.push(json!({
                "type": "function_call_output",
                "id": id("fco", 0),
                "call_id": m.tool_call_id.clone().unwrap_or_default(),
                "output": text_of(m.content.as_ref()),
                "status": "completed",
            })),
            o::Role::Assistant => {
                let text = text_of(m.content.as_ref());
                if !text.is_empty() {
                    out.push(json!({
                        "type": "message", "id": id("msg", 0), "role": "assistant",
                        "status": "completed",
                        "content": [{"type": "output_text", "text": text, "annotations": []}],
                    }));
                }
                for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                    out.push(json!({
                        "type": "function_call", "id": id("fc", j), "call_id": call.id,
                        "name": call.function.name, "arguments": call.function.arguments,
                        "status": "completed",
                    }));
                }
            }
            role => out.push(json!({
                "type": "message", "id": id("msg", 0), "role": role.as_str(),
                "status": "completed",
                "content": parts(m.content.as_ref()),
            })),
        }
    }
    out
}

fn text_of(content: Option<&o::MessageContent>) -> String {
    match content {
        Some(o::MessageContent::Text(t)) => t.clone(),
        Some(o::MessageContent::Parts(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                o::ContentPart::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(""),
        None => String::new(),
    }
}

fn parts(content: Option<&o::MessageContent>) -> Value {
    match content {
        None => json!([]),
        Some(o::MessageContent::Text(t)) => json!([{"type": "input_text", "text": t}]),
        Some(o::MessageContent::Parts(parts)) => Value::Array(
            parts
                .iter()
                .map(|p| match p {
                    o::ContentPart::Text { text } => json!({"type": "input_text", "text": text}),
                    o::ContentPart::ImageUrl { image_url } => json!({
                        "type": "input_image",
                        "image_url": image_url.url,
                        "detail": image_url.detail.clone().unwrap_or_else(|| "auto".into()),
                    }),
                    other => serde_json::to_value(other).unwrap_or(Value::Null),
                })
                .collect(),
        ),
    }
}
