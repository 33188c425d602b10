//! A Responses request as the gateway's chat request.
//!
//! `instructions` become the system message (of this request only: a previous response's
//! instructions are not carried, as OpenAI's API says); `input` (a string, or items: messages
//! with text and image parts, `function_call`, `function_call_output`; `reasoning` items are
//! skipped) follows the conversation of `previous_response_id`. Function tools, `tool_choice`,
//! `text.format` (json_object, json_schema), `max_output_tokens`, `temperature`, `top_p`,
//! `parallel_tool_calls`, `user` and `reasoning.effort` carry over; built-in tools
//! (web_search, file_search…) and what needs OpenAI's own storage (file ids, item references,
//! `background`) are refused with a 400 naming the parameter.

use llmrr_core::Error;
use llmrr_types::openai as o;
use serde::Deserialize;
use serde_json::{Map, Value};

/// `POST /v1/responses`. Parameters llmrr does not read are refused, except those that only
/// concern OpenAI's platform ([`IGNORED`]).
#[derive(Debug, Clone, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    #[serde(default)]
    pub input: Value,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default, deserialize_with = "or_default")]
    pub tools: Vec<Value>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub text: Option<Value>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub reasoning: Option<Value>,
    /// llmrr's own per-request options (as in a chat request).
    #[serde(default)]
    pub llmrr: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Fields that only concern OpenAI's platform (or say what llmrr does anyway).
const IGNORED: &[&str] = &[
    "include",
    "truncation",
    "service_tier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "stream_options",
    // Bounds built-in tool calls, which llmrr never makes.
    "max_tool_calls",
];

/// `null`, or the field's default: asks nothing (pydantic-based clients send every field).
fn asks(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false)) && v.as_f64() != Some(0.0)
}

/// A field's value, or its default when it is missing or `null`.
fn or_default<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn invalid(message: impl Into<String>, param: impl Into<String>) -> Error {
    Error::invalid(message, Some(param.into()))
}

/// The translated request, and its own turn of the conversation (the new input, without the
/// instructions), to be stored with its answer.
pub struct Translated {
    pub chat: o::ChatCompletionRequest,
    pub turn: Vec<o::ChatMessage>,
}

pub fn to_chat(req: &ResponsesRequest, history: Vec<o::ChatMessage>) -> Result<Translated, Error> {
    if let Some((k, _)) = req
        .extra
        .iter()
        .find(|(k, v)| !IGNORED.contains(&k.as_str()) && asks(v))
    {
        return Err(invalid(
            format!("parameter `{k}` is not supported by llmrr"),
            k.as_str(),
        ));
    }
    let mut turn = Vec::new();
    input_messages(&req.input, &mut turn)?;
    if turn.is_empty() && history.is_empty() {
        return Err(invalid("`input` is empty: send a string or items", "input"));
    }
    let mut messages = Vec::with_capacity(history.len() + turn.len() + 1);
    if let Some(text) = req.instructions.as_ref().filter(|t| !t.is_empty()) {
        messages.push(o::ChatMessage::new(o::Role::System, text.clone()));
    }
    messages.extend(history);
    messages.extend(turn.iter().cloned());
    let mut extra = Map::new();
    if let Some(effort) = req.reasoning.as_ref().and_then(|r| r.get("effort")) {
        if !effort.is_null() {
            extra.insert("reasoning_effort".into(), effort.clone());
        }
    }
    let stream = req.stream.unwrap_or(false);
    let chat = o::ChatCompletionRequest {
        model: req.model.clone(),
        messages,
        stream: Some(stream),
        stream_options: crate::dialect::with_usage(stream),
        temperature: req.temperature,
        top_p: req.top_p,
        max_completion_tokens: req.max_output_tokens,
        user: req.user.clone(),
        // Chat refuses tool settings without tools; the Responses API takes them.
        tools: match req.tools.is_empty() {
            true => None,
            false => Some(tools(&req.tools)?),
        },
        tool_choice: match req.tools.is_empty() {
            true => None,
            false => req.tool_choice.as_ref().map(tool_choice).transpose()?,
        },
        parallel_tool_calls: req.parallel_tool_calls.filter(|_| !req.tools.is_empty()),
        response_format: req.text.as_ref().map(format).transpose()?.flatten(),
        llmrr: req.llmrr.clone(),
        extra,
        ..Default::default()
    };
    Ok(Translated { chat, turn })
}

/// The client's own body `req` was read from, for a model that speaks the Responses API (sent
/// as written, so that nothing the chat translation cannot say is lost: `reasoning.summary`,
/// `text.verbosity`, `include`, `truncation`, function tools' `strict` default…), but for:
/// - the conversation of `previous_response_id` (an id of llmrr's, which the upstream could
///   not look up), which goes before its `input` as items;
/// - the ids of input items and earlier `reasoning` items: every output item a client can send
///   back is llmrr's (its ids mean nothing upstream, which keeps nothing: `store: false`), and
///   llmrr's reasoning items are summaries, not the upstream's encrypted reasoning — skipped
///   as the translation skips them;
/// - llmrr's own options, and fields llmrr does not know that ask nothing (`null`, `false`,
///   `0`), which an upstream might refuse.
pub fn native_body(mut body: Value, history: &[o::ChatMessage], req: &ResponsesRequest) -> Value {
    let Value::Object(map) = &mut body else {
        return body;
    };
    map.remove("previous_response_id");
    map.remove("llmrr");
    for k in req.extra.keys().filter(|k| !IGNORED.contains(&k.as_str())) {
        map.remove(k);
    }
    let unnamed = |mut item: Value| {
        if let Value::Object(fields) = &mut item {
            fields.remove("id");
        }
        item
    };
    let earlier = super::input_items::items("", history)
        .into_iter()
        .map(|item| match unnamed(item) {
            // The status of an output: not input.
            Value::Object(mut fields) => {
                fields.remove("status");
                Value::Object(fields)
            }
            other => other,
        });
    let input = match map.remove("input") {
        Some(Value::Array(items)) => Some(
            items
                .into_iter()
                .filter(|i| i.get("type").and_then(Value::as_str) != Some("reasoning"))
                .map(unnamed)
                .collect(),
        ),
        Some(Value::String(text)) if !history.is_empty() => {
            Some(vec![serde_json::json!({"role": "user", "content": text})])
        }
        Some(other) => {
            map.insert("input".into(), other);
            None
        }
        None => Some(Vec::new()),
    };
    if let Some(input) = input {
        let items: Vec<Value> = earlier.chain(input).collect();
        if !items.is_empty() {
            map.insert("input".into(), Value::Array(items));
        }
    }
    body
}

fn tools(tools: &[Value]) -> Result<Vec<o::Tool>, Error> {
    tools
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let kind = t.get("type").and_then(Value::as_str).unwrap_or("");
            if kind != "function" {
                return Err(invalid(
                    format!(
                        "built-in tool `{kind}` is not supported by llmrr: only function tools \
                         are (define the tool as a function and run it yourself)"
                    ),
                    format!("tools[{i}].type"),
                ));
            }
            let name = t.get("name").and_then(Value::as_str).ok_or_else(|| {
                invalid("a function tool needs a `name`", format!("tools[{i}].name"))
            })?;
            Ok(o::Tool {
                kind: o::ToolKind::Function,
                function: o::FunctionDefinition {
                    name: name.to_owned(),
                    description: t
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    parameters: t.get("parameters").filter(|p| !p.is_null()).cloned(),
                    strict: t.get("strict").and_then(Value::as_bool),
                },
            })
        })
        .collect()
}

fn tool_choice(c: &Value) -> Result<o::ToolChoice, Error> {
    let bad = || invalid(format!("unsupported `tool_choice` {c}"), "tool_choice");
    match c {
        Value::String(mode) => Ok(o::ToolChoice::Mode(match mode.as_str() {
            "auto" => o::ToolChoiceMode::Auto,
            "none" => o::ToolChoiceMode::None,
            "required" => o::ToolChoiceMode::Required,
            _ => return Err(bad()),
        })),
        Value::Object(m) if m.get("type").and_then(Value::as_str) == Some("function") => {
            let name = m.get("name").and_then(Value::as_str).ok_or_else(bad)?;
            Ok(o::ToolChoice::Named(o::NamedToolChoice {
                kind: o::ToolKind::Function,
                function: o::FunctionName {
                    name: name.to_owned(),
                },
            }))
        }
        _ => Err(bad()),
    }
}

/// `text.format` as `response_format` (`None`: plain text).
fn format(text: &Value) -> Result<Option<o::ResponseFormat>, Error> {
    let Some(f) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(o::ResponseFormat::JsonObject)),
        Some("json_schema") => {
            let mut schema = Map::new();
            for k in ["name", "schema", "strict", "description"] {
                if let Some(v) = f.get(k) {
                    schema.insert(k.into(), v.clone());
                }
            }
            Ok(Some(o::ResponseFormat::JsonSchema {
                json_schema: Value::Object(schema),
            }))
        }
        _ => Err(invalid(
            "`text.format.type` must be text, json_object or json_schema",
            "text.format.type",
        )),
    }
}

/// `input` as chat messages, appended to `out`.
fn input_messages(input: &Value, out: &mut Vec<o::ChatMessage>) -> Result<(), Error> {
    let items = match input {
        Value::Null => return Ok(()),
        Value::String(text) => {
            out.push(o::ChatMessage::new(o::Role::User, text.clone()));
            return Ok(());
        }
        Value::Array(items) => items,
        _ => {
            return Err(invalid(
                "`input` must be a string or an array of items",
                "input",
            ))
        }
    };
    for (i, item) in items.iter().enumerate() {
        let at = |field: &str| format!("input[{i}]{field}");
        let kind = match item.get("type").and_then(Value::as_str) {
            Some(k) => k,
            None if item.get("role").is_some() => "message",
            None => return Err(invalid("an input item needs a `type`", at(".type"))),
        };
        match kind {
            "message" => out.push(message(item, &at)?),
            "function_call" => {
                let call = o::ToolCall {
                    id: text_field(item, "call_id", &at)?,
                    kind: o::ToolKind::Function,
                    function: o::FunctionCall {
                        name: text_field(item, "name", &at)?,
                        arguments: text_field(item, "arguments", &at)?,
                    },
                };
                // Calls of one turn go in one assistant message, with its text.
                match out.last_mut() {
                    Some(last) if last.role == o::Role::Assistant => {
                        last.tool_calls.get_or_insert_with(Vec::new).push(call)
                    }
                    _ => out.push(o::ChatMessage {
                        content: None,
                        tool_calls: Some(vec![call]),
                        ..o::ChatMessage::new(o::Role::Assistant, "")
                    }),
                }
            }
            "function_call_output" => {
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => parts_text(parts)
                        .ok_or_else(|| invalid("an output holds text only", at(".output")))?,
                    _ => return Err(invalid("`output` must be text", at(".output"))),
                };
                out.push(o::ChatMessage {
                    tool_call_id: Some(text_field(item, "call_id", &at)?),
                    ..o::ChatMessage::new(o::Role::Tool, output)
                });
            }
            // Earlier reasoning is not sent again.
            "reasoning" => {}
            other => {
                return Err(invalid(
                    format!("input items of type `{other}` are not supported by llmrr"),
                    at(".type"),
                ))
            }
        }
    }
    Ok(())
}

fn text_field(item: &Value, name: &str, at: &dyn Fn(&str) -> String) -> Result<String, Error> {
    item.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| invalid(format!("`{name}` must be text"), at(&format!(".{name}"))))
}

/// The text of output parts (`output_text`, `input_text`, `text`), `None` if one is not text.
fn parts_text(parts: &[Value]) -> Option<String> {
    parts
        .iter()
        .map(|p| match p.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") => p.get("text").and_then(Value::as_str),
            Some("refusal") => p.get("refusal").and_then(Value::as_str),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .map(|t| t.join(""))
}

fn message(item: &Value, at: &dyn Fn(&str) -> String) -> Result<o::ChatMessage, Error> {
    let role = match item.get("role").and_then(Value::as_str) {
        Some("user") => o::Role::User,
        Some("assistant") => o::Role::Assistant,
        Some("system") => o::Role::System,
        Some("developer") => o::Role::Developer,
        _ => {
            return Err(invalid(
                "`role` must be user, assistant, system or developer",
                at(".role"),
            ))
        }
    };
    let content = match item.get("content") {
        Some(Value::String(s)) => o::MessageContent::Text(s.clone()),
        Some(Value::Array(parts)) if role == o::Role::User => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                let place = at(&format!(".content[{j}]"));
                out.push(match p.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text" | "text") => o::ContentPart::Text {
                        text: p
                            .get("text")
                            .and_then(Value::as_str)
                            .ok_or_else(|| invalid("`text` must be text", place.clone()))?
                            .to_owned(),
                    },
                    Some("input_image") => o::ContentPart::ImageUrl {
                        image_url: o::ImageUrl {
                            url: p
                                .get("image_url")
                                .and_then(Value::as_str)
                                .ok_or_else(|| {
                                    invalid(
                                        "an image needs an `image_url` (URL or data URL); file \
                                         ids are not supported by llmrr",
                                        place.clone(),
                                    )
                                })?
                                .to_owned(),
                            detail: p.get("detail").and_then(Value::as_str).map(str::to_owned),
                        },
                    },
                    _ => {
                        return Err(invalid(
                            "content parts may be input_text or input_image",
                            place,
                        ))
                    }
                });
            }
            o::MessageContent::Parts(out)
        }
        Some(Value::Array(parts)) => o::MessageContent::Text(
            parts_text(parts)
                .ok_or_else(|| invalid("this message may hold text only", at(".content")))?,
        ),
        _ => {
            return Err(invalid(
                "`content` must be a string or parts",
                at(".content"),
            ))
        }
    };
    Ok(o::ChatMessage {
        content: Some(content),
        ..o::ChatMessage::new(role, "")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(body: Value) -> ResponsesRequest {
        serde_json::from_value(body).expect("parses")
    }

    #[test]
    fn items_tools_and_format_translate() {
        let r = req(json!({
            "model": "m", "instructions": "Be brief.", "max_output_tokens": 50,
            "reasoning": {"effort": "low"}, "include": [], "store": false,
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": true}},
            "input": [
                {"role": "user", "content": "weather?"},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{\"a\":1}"},
                {"type": "function_call_output", "call_id": "c1", "output": "18C"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "and?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AA"}]}
            ]
        }));
        let t = to_chat(&r, vec![o::ChatMessage::new(o::Role::User, "earlier")]).unwrap();
        let roles: Vec<_> = t.chat.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                o::Role::System,
                o::Role::User,
                o::Role::User,
                o::Role::Assistant,
                o::Role::Tool,
                o::Role::User
            ]
        );
        assert_eq!(t.chat.messages[3].tool_calls.as_ref().unwrap().len(), 2);
        assert_eq!(t.chat.messages[4].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(
            t.turn.len(),
            4,
            "the turn: the new input, without the instructions"
        );
        assert_eq!(t.chat.max_completion_tokens, Some(50));
        assert_eq!(t.chat.extra["reasoning_effort"], "low");
        assert!(matches!(
            t.chat.response_format,
            Some(o::ResponseFormat::JsonSchema { .. })
        ));
        assert!(matches!(t.chat.tool_choice, Some(o::ToolChoice::Named(_))));
    }

    #[test]
    fn the_native_body_carries_the_stored_conversation_before_its_input() {
        let mut answer = o::ChatMessage::new(o::Role::Assistant, "");
        answer.content = None;
        answer.tool_calls = Some(vec![o::ToolCall {
            id: "c1".into(),
            kind: o::ToolKind::Function,
            function: o::FunctionCall {
                name: "f".into(),
                arguments: "{}".into(),
            },
        }]);
        let history = vec![o::ChatMessage::new(o::Role::User, "weather?"), answer];
        let client = json!({"model": "m", "previous_response_id": "resp_1", "llmrr": {"explain": true},
            "input": [
                {"type": "reasoning", "id": "rs_llmrr", "summary": [{"type": "summary_text", "text": "hm"}]},
                {"type": "function_call_output", "id": "fco_1", "call_id": "c1", "output": "18C"}],
            "reasoning": {"summary": "auto"}, "include": [], "background": false, "top_logprobs": 0});
        let sent = native_body(client.clone(), &history, &req(client));
        assert_eq!(
            sent,
            json!({"model": "m", "reasoning": {"summary": "auto"}, "include": [], "input": [
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "18C"}]})
        );
        // Without a conversation, a string input stays a string.
        let client = json!({"model": "m", "input": "hi"});
        let sent = native_body(client.clone(), &[], &req(client));
        assert_eq!(sent, json!({"model": "m", "input": "hi"}));
    }

    #[test]
    fn what_llmrr_cannot_do_is_named() {
        let param = |body: Value| match to_chat(&req(body), Vec::new()) {
            Err(Error::InvalidRequest { param, .. }) => param.unwrap_or_default(),
            other => panic!("{:?}", other.map(|t| t.chat)),
        };
        assert_eq!(
            param(json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]})),
            "tools[0].type"
        );
        assert_eq!(
            param(json!({"model": "m", "input": "x", "background": true})),
            "background"
        );
        assert_eq!(
            param(json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]})),
            "input[0].type"
        );
        assert_eq!(param(json!({"model": "m"})), "input");
        // What asks nothing passes: nulls, false, zero, and tool settings without tools.
        let t = to_chat(
            &req(
                json!({"model": "m", "input": "x", "tools": null, "background": false,
                "top_logprobs": 0, "user": null, "parallel_tool_calls": false,
                "tool_choice": "auto"}),
            ),
            Vec::new(),
        )
        .unwrap();
        assert_eq!(
            (t.chat.parallel_tool_calls, t.chat.tool_choice.is_none()),
            (None, true)
        );
        assert_eq!(
            param(json!({"model": "m", "input": "x", "top_logprobs": 3})),
            "top_logprobs"
        );
    }
}
