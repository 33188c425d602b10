//! Checks of request values that the wire types alone cannot express. Each error names the
//! offending parameter by its path, as OpenAI does (`messages[2].tool_call_id`).

use crate::error::{Error, Result};
use llmrr_types::openai::{
    ChatCompletionRequest, CompletionRequest, EmbeddingRequest, Role, ToolChoice,
};
use serde_json::Value;

fn bad(param: impl Into<String>, message: impl Into<String>) -> Error {
    Error::invalid(message, Some(param.into()))
}

fn range(param: &str, v: Option<f64>, lo: f64, hi: f64) -> Result<()> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) || x.is_nan() => Err(bad(
            param,
            format!("`{param}` must be between {lo} and {hi}, got {x}"),
        )),
        _ => Ok(()),
    }
}

/// Longest model name accepted (bytes): every configured name is far shorter, and the name is
/// echoed in errors and stored in the request log.
pub const MAX_MODEL_NAME_BYTES: usize = 256;

fn model(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(bad("model", "`model` must name a model"));
    }
    if name.len() > MAX_MODEL_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(bad(
            "model",
            format!(
                "`model` must be a model name: at most {MAX_MODEL_NAME_BYTES} bytes, without \
                 control characters"
            ),
        ));
    }
    Ok(())
}

/// Items of a list parameter (`messages`, `input`, `prompt`) one request may carry.
pub fn at_most(param: &str, count: usize, max: usize) -> Result<()> {
    if count > max {
        return Err(bad(
            param,
            format!(
                "`{param}` has {count} items; at most {max} are accepted (server.max_messages)"
            ),
        ));
    }
    Ok(())
}

/// How many items a JSON list parameter holds: a string, or one list of token ids, counts as
/// one.
pub fn items(v: &Value) -> usize {
    match v.as_array() {
        Some(list) if list.first().is_some_and(Value::is_number) => 1,
        Some(list) => list.len(),
        None => 1,
    }
}

pub fn chat(req: &ChatCompletionRequest) -> Result<()> {
    model(&req.model)?;
    if req.messages.is_empty() {
        return Err(bad(
            "messages",
            "`messages` must contain at least one message",
        ));
    }
    for (i, m) in req.messages.iter().enumerate() {
        let at = |field: &str| format!("messages[{i}].{field}");
        match m.role {
            Role::Tool => {
                if m.tool_call_id.as_deref().is_none_or(str::is_empty) {
                    return Err(bad(
                        at("tool_call_id"),
                        "a `tool` message needs the `tool_call_id` it answers",
                    ));
                }
                if m.content.is_none() {
                    return Err(bad(at("content"), "a `tool` message needs `content`"));
                }
            }
            Role::Assistant => {
                if m.content.is_none() && m.tool_calls.as_ref().is_none_or(Vec::is_empty) {
                    return Err(bad(
                        at("content"),
                        "an `assistant` message needs `content` or `tool_calls`",
                    ));
                }
            }
            Role::System | Role::Developer | Role::User | Role::Function => {
                if m.content.is_none() {
                    return Err(bad(
                        at("content"),
                        format!("a `{}` message needs `content`", m.role.as_str()),
                    ));
                }
            }
        }
    }
    range("temperature", req.temperature, 0.0, 2.0)?;
    range("top_p", req.top_p, 0.0, 1.0)?;
    range("presence_penalty", req.presence_penalty, -2.0, 2.0)?;
    range("frequency_penalty", req.frequency_penalty, -2.0, 2.0)?;
    if let Some(n) = req.n {
        if !(1..=128).contains(&n) {
            return Err(bad("n", format!("`n` must be between 1 and 128, got {n}")));
        }
    }
    for (param, v) in [
        ("max_tokens", req.max_tokens),
        ("max_completion_tokens", req.max_completion_tokens),
    ] {
        if v == Some(0) {
            return Err(bad(param, format!("`{param}` must be at least 1")));
        }
    }
    for (token, bias) in req.logit_bias.iter().flatten() {
        if token.parse::<u64>().is_err() {
            return Err(bad(
                "logit_bias",
                format!("`logit_bias` keys are token ids, got `{token}`"),
            ));
        }
        range("logit_bias", Some(*bias), -100.0, 100.0)?;
    }
    if req.stream_options.is_some() && !req.is_stream() {
        return Err(bad(
            "stream_options",
            "`stream_options` is only allowed when `stream` is true",
        ));
    }
    let tools = req.tools.as_deref().unwrap_or_default();
    for (i, t) in tools.iter().enumerate() {
        let name = &t.function.name;
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            return Err(bad(
                format!("tools[{i}].function.name"),
                format!("tool names are 1-64 letters, digits, `_` or `-`; got `{name}`"),
            ));
        }
        if let Some(p) = &t.function.parameters {
            if !p.is_object() {
                return Err(bad(
                    format!("tools[{i}].function.parameters"),
                    "must be a JSON Schema object",
                ));
            }
        }
    }
    if let Some(ToolChoice::Named(n)) = &req.tool_choice {
        if !tools.iter().any(|t| t.function.name == n.function.name) {
            return Err(bad(
                "tool_choice",
                format!(
                    "`tool_choice` names `{}`, which is not in `tools`",
                    n.function.name
                ),
            ));
        }
    }
    Ok(())
}

pub fn completion(req: &CompletionRequest) -> Result<()> {
    model(&req.model)?;
    match &req.prompt {
        Value::String(_) => {}
        Value::Array(items) if !items.is_empty() => {}
        _ => {
            return Err(bad(
                "prompt",
                "`prompt` must be a string, an array of strings or of token ids",
            ))
        }
    }
    if req.max_tokens == Some(0) {
        return Err(bad("max_tokens", "`max_tokens` must be at least 1"));
    }
    if req.stream_options.is_some() && !req.is_stream() {
        return Err(bad(
            "stream_options",
            "`stream_options` is only allowed when `stream` is true",
        ));
    }
    Ok(())
}

pub fn embeddings(req: &EmbeddingRequest) -> Result<()> {
    model(&req.model)?;
    let ok = match &req.input {
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    };
    if !ok {
        return Err(bad("input", "`input` must be a non-empty string or array"));
    }
    Ok(())
}

/// A rough prompt size in tokens (4 characters a token), for when the upstream never said.
pub fn estimate_prompt_tokens(req: &ChatCompletionRequest) -> u64 {
    let chars: usize = req
        .messages
        .iter()
        .filter_map(|m| m.content.as_ref())
        .map(|c| c.joined_text().len())
        .sum();
    (chars as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: Value) -> Option<String> {
        let req: ChatCompletionRequest = serde_json::from_value(json).expect("shape");
        match chat(&req) {
            Ok(()) => None,
            Err(Error::InvalidRequest { param, .. }) => param,
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_the_bad_parameter() {
        let user = serde_json::json!([{"role": "user", "content": "hi"}]);
        assert_eq!(
            check(serde_json::json!({"model": "m", "messages": user})),
            None
        );
        let cases = [
            (serde_json::json!({"model": "", "messages": user}), "model"),
            (
                serde_json::json!({"model": "m", "messages": []}),
                "messages",
            ),
            (
                serde_json::json!({"model": "m", "messages": user, "temperature": 3}),
                "temperature",
            ),
            (
                serde_json::json!({"model": "m", "messages": user, "top_p": -0.1}),
                "top_p",
            ),
            (
                serde_json::json!({"model": "m", "messages": user, "n": 0}),
                "n",
            ),
            (
                serde_json::json!({"model": "m", "messages": user, "max_tokens": 0}),
                "max_tokens",
            ),
            (
                serde_json::json!({"model": "m", "messages": user, "logit_bias": {"50256": 101}}),
                "logit_bias",
            ),
            (
                serde_json::json!({"model": "m", "messages": user, "stream_options": {"include_usage": true}}),
                "stream_options",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].tool_call_id",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user"}]}),
                "messages[0].content",
            ),
            (
                serde_json::json!({"model": "m", "messages": user, "tools": [{"type": "function", "function": {"name": "bad name"}}]}),
                "tools[0].function.name",
            ),
            (
                serde_json::json!({"model": "m", "messages": user, "tool_choice": {"type": "function", "function": {"name": "f"}}}),
                "tool_choice",
            ),
        ];
        for (json, want) in cases {
            assert_eq!(check(json.clone()).as_deref(), Some(want), "{json}");
        }
    }
}
