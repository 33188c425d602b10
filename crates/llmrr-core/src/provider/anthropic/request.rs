//! OpenAI chat request -> Anthropic Messages request.
//!
//! System and developer messages become the top-level `system` (a conversation of system
//! messages only sends them as the user turn Anthropic requires); tool results become
//! `tool_result` blocks in a user turn; assistant tool calls become `tool_use` blocks;
//! consecutive turns of one role are merged (Anthropic wants alternating roles).
//!
//! Every parameter is translated or refused, never dropped: `response_format` becomes a
//! forced tool whose input schema is the requested schema (the answer's tool input is
//! returned as the message content, see [`JSON_TOOL`]); `reasoning_effort` becomes extended
//! thinking with a budget; `top_k` passes through; `temperature` must be within Anthropic's
//! 0–1. OpenAI parameters with no Anthropic equivalent that change the answer (`seed`,
//! penalties, `logit_bias`, `logprobs`, `n` > 1, unknown fields) are refused; fields that
//! only matter to OpenAI's platform ([`IGNORED`]) are not sent.

use llmrr_types::anthropic as a;
use llmrr_types::openai as o;
use serde_json::Value;

#[derive(Debug)]
pub enum TranslateError {
    Unsupported(String),
    Invalid { message: String, param: String },
}

type Result<T> = std::result::Result<T, TranslateError>;

/// The name of the tool that carries a `response_format` answer: forced, so the answer is its
/// input, which the response translators return as the message content.
pub const JSON_TOOL: &str = "json_answer";

/// OpenAI-platform fields: they do not change an answer, and are not sent.
pub const IGNORED: &[&str] = crate::provider::PLATFORM_FIELDS;

/// Anthropic's smallest thinking budget.
const MIN_THINKING_BUDGET: u32 = 1024;

/// Extended-thinking budgets for OpenAI's `reasoning_effort`.
fn thinking_budget(effort: &str) -> Option<u32> {
    match effort {
        "minimal" | "low" => Some(1024),
        "medium" => Some(4096),
        "high" => Some(16384),
        _ => None,
    }
}

/// A translated request, and whether its answer comes back in [`JSON_TOOL`].
pub struct Translated {
    pub body: a::MessagesRequest,
    pub json_tool: bool,
}

fn unsupported(what: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported(what.into())
}

fn invalid(message: impl Into<String>, param: &str) -> TranslateError {
    TranslateError::Invalid {
        message: message.into(),
        param: param.into(),
    }
}

/// Refuse what Anthropic cannot do; read what it can from the extra fields.
struct Extras {
    top_k: Option<u32>,
    thinking: Option<u32>,
    /// The thinking budget is within the client's `max_tokens` (Anthropic's own `thinking`),
    /// not on top of it (`reasoning_effort`).
    thinking_within_max: bool,
}

/// Extra fields Anthropic models take (translated) besides [`IGNORED`]; `thinking` is
/// Anthropic's own (from a Messages API client), taken as it is.
const TRANSLATED: &[&str] = &["top_k", "reasoning_effort", "thinking"];

/// Anthropic's own `thinking` asks for it (`{"type": "enabled", …}`); any other type (`disabled`)
/// is no thinking.
fn thinking_enabled(req: &o::ChatCompletionRequest) -> bool {
    req.extra
        .get("thinking")
        .is_some_and(|t| t.get("type").and_then(Value::as_str) == Some("enabled"))
}

fn asks(value: &Value) -> bool {
    !value.is_null() && *value != Value::Bool(false)
}

/// The first extra field Anthropic models have no use for.
fn unknown_field(req: &o::ChatCompletionRequest) -> Option<&str> {
    req.extra.keys().map(String::as_str).find(|k| {
        !IGNORED.contains(k)
            && !TRANSLATED.contains(k)
            && !matches!(*k, "logprobs" | "top_logprobs")
    })
}

/// The parameter of `req` that no Anthropic model can honour, if any: routing skips Anthropic
/// models for it (no attempt wasted), and [`translate`] refuses it with a precise message.
pub fn refusal(req: &o::ChatCompletionRequest) -> Option<&'static str> {
    if req.anthropic_body().is_some() {
        // The client's own Messages body is sent: Anthropic itself judges it, but for what
        // no Anthropic model takes.
        return req
            .temperature
            .is_some_and(|t| !(0.0..=1.0).contains(&t))
            .then_some("temperature");
    }
    if req.n.is_some_and(|n| n > 1) {
        return Some("n");
    }
    if req.seed.is_some() {
        return Some("seed");
    }
    if req.presence_penalty.is_some_and(|p| p != 0.0)
        || req.frequency_penalty.is_some_and(|p| p != 0.0)
    {
        return Some("frequency_penalty");
    }
    if req.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
        return Some("logit_bias");
    }
    if req.temperature.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
        return Some("temperature");
    }
    if ["logprobs", "top_logprobs"]
        .iter()
        .any(|k| req.extra.get(*k).is_some_and(asks))
    {
        return Some("logprobs");
    }
    if unknown_field(req).is_some() {
        return Some("an unknown field");
    }
    if req.extra.contains_key("reasoning_effort") || thinking_enabled(req) {
        let forced_choice = matches!(
            req.tool_choice,
            Some(o::ToolChoice::Mode(o::ToolChoiceMode::Required) | o::ToolChoice::Named(_))
        );
        let forced_format = matches!(
            req.response_format,
            Some(o::ResponseFormat::JsonObject | o::ResponseFormat::JsonSchema { .. })
        );
        let tool_history = req
            .messages
            .iter()
            .any(|m| m.tool_calls.as_ref().is_some_and(|c| !c.is_empty()));
        let sampling = req.temperature.is_some_and(|t| t != 1.0) || req.extra.contains_key("top_k");
        if forced_choice || forced_format || tool_history || sampling {
            return Some(if thinking_enabled(req) {
                "thinking"
            } else {
                "reasoning_effort"
            });
        }
    }
    None
}

fn extras(req: &o::ChatCompletionRequest) -> Result<Extras> {
    if let Some(param) = refusal(req) {
        return Err(match param {
            "temperature" => invalid(
                format!(
                    "`temperature` {} is outside Anthropic's range 0..1",
                    req.temperature.unwrap_or_default()
                ),
                "temperature",
            ),
            "an unknown field" => unsupported(format!("`{}`", unknown_field(req).unwrap_or("?"))),
            "reasoning_effort" => invalid(
                "extended thinking (from `reasoning_effort`) works on Anthropic models only \
                 without a forced tool choice or `response_format`, without tool calls in the \
                 conversation (thinking signatures are not carried between turns), with no \
                 `temperature` other than 1 and no `top_k`",
                "reasoning_effort",
            ),
            "thinking" => invalid(
                "extended thinking through llmrr works without a forced tool choice, without \
                 tool calls in the conversation (thinking signatures are not carried between \
                 turns yet), with no `temperature` other than 1 and no `top_k`",
                "thinking",
            ),
            other => unsupported(format!("`{other}`")),
        });
    }
    let mut out = Extras {
        top_k: None,
        thinking: None,
        thinking_within_max: false,
    };
    if let Some(value) = req.extra.get("top_k") {
        out.top_k = Some(
            value
                .as_u64()
                .and_then(|k| u32::try_from(k).ok())
                .ok_or_else(|| invalid("`top_k` must be a positive integer", "top_k"))?,
        );
    }
    if let Some(value) = req.extra.get("thinking").filter(|_| thinking_enabled(req)) {
        let budget = value
            .get("budget_tokens")
            .and_then(Value::as_u64)
            .and_then(|b| u32::try_from(b).ok())
            .filter(|b| *b >= MIN_THINKING_BUDGET)
            .ok_or_else(|| {
                invalid(
                    format!("`thinking.budget_tokens` must be at least {MIN_THINKING_BUDGET}"),
                    "thinking",
                )
            })?;
        out.thinking = Some(budget);
        out.thinking_within_max = true;
    }
    if let Some(value) = req.extra.get("reasoning_effort") {
        let effort = value.as_str().unwrap_or_default();
        out.thinking = Some(thinking_budget(effort).ok_or_else(|| {
            invalid(
                format!("`reasoning_effort` {value} is not minimal, low, medium or high"),
                "reasoning_effort",
            )
        })?);
    }
    Ok(out)
}

/// `response_format` as a forced tool: its schema is the tool's input schema.
fn json_tool(req: &o::ChatCompletionRequest) -> Result<Option<a::ToolDefinition>> {
    let (description, schema) = match &req.response_format {
        None | Some(o::ResponseFormat::Text) => return Ok(None),
        Some(o::ResponseFormat::JsonObject) => (
            "Answer with a JSON object.".to_owned(),
            serde_json::json!({"type": "object"}),
        ),
        Some(o::ResponseFormat::JsonSchema { json_schema }) => {
            let schema = json_schema
                .get("schema")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"type": "object"}));
            let description = json_schema
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("Answer with JSON that matches this schema.")
                .to_owned();
            (description, schema)
        }
    };
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(unsupported(
            "`response_format` together with `tools` (the format is answered through a tool)",
        ));
    }
    Ok(Some(a::ToolDefinition {
        name: JSON_TOOL.into(),
        description: Some(description),
        input_schema: schema,
    }))
}

/// The client's own Messages body for `model`: as sent, but for the model, the stream flag,
/// llmrr's own options and a `max_tokens` over the model's configured limit (`model_max`).
pub fn native(body: &Value, model: &str, stream: bool, model_max: Option<u32>) -> Value {
    let mut body = body.clone();
    if let Value::Object(map) = &mut body {
        // The model's configured output limit holds here too (a thinking budget that no
        // longer fits shrinks, as in the translation).
        if let Some(limit) = model_max {
            let asked = map.get("max_tokens").and_then(Value::as_u64);
            if asked.is_some_and(|m| m > u64::from(limit)) {
                map.insert("max_tokens".into(), limit.into());
                if let Some(Value::Object(t)) = map.get_mut("thinking") {
                    let budget = t.get("budget_tokens").and_then(Value::as_u64);
                    if budget.is_some_and(|b| b >= u64::from(limit)) {
                        t.insert("budget_tokens".into(), (limit / 2).into());
                    }
                }
            }
        }
        map.insert("model".into(), model.into());
        map.remove("llmrr");
        if stream {
            map.insert("stream".into(), true.into());
        } else {
            map.remove("stream");
        }
    }
    body
}

/// `default_max_tokens`: when the client gives none; `model_max`: the model's configured
/// output limit, which thinking plus the answer must fit.
pub fn translate(
    req: &o::ChatCompletionRequest,
    model: &str,
    default_max_tokens: u32,
    model_max: Option<u32>,
    stream: bool,
) -> Result<Translated> {
    let extras = extras(req)?;
    let forced = json_tool(req)?;
    let mut system: Vec<a::TextBlock> = Vec::new();
    let mut messages: Vec<a::Message> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, blocks) = match m.role {
            o::Role::System | o::Role::Developer => {
                if let Some(c) = &m.content {
                    system.push(a::TextBlock::new(c.joined_text()));
                }
                continue;
            }
            o::Role::User => (a::Role::User, user_blocks(i, m.content.as_ref())?),
            o::Role::Assistant => (a::Role::Assistant, assistant_blocks(i, m)?),
            o::Role::Tool => {
                let text = m
                    .content
                    .as_ref()
                    .map(|c| c.joined_text())
                    .unwrap_or_default();
                let block = a::ContentBlock::ToolResult {
                    tool_use_id: m.tool_call_id.clone().unwrap_or_default(),
                    content: vec![a::ContentBlock::Text { text }],
                    is_error: None,
                };
                (a::Role::User, vec![block])
            }
            o::Role::Function => {
                return Err(TranslateError::Unsupported(
                    "the deprecated `function` role (use tools)".into(),
                ))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => messages.push(a::Message {
                role,
                content: blocks,
            }),
        }
    }
    if messages.is_empty() {
        // A conversation of system messages only: Anthropic needs a user turn.
        if system.is_empty() {
            return Err(invalid("`messages` has no content to send", "messages"));
        }
        let text = system
            .drain(..)
            .map(|b| b.text)
            .collect::<Vec<_>>()
            .join("\n\n");
        messages.push(a::Message {
            role: a::Role::User,
            content: vec![a::ContentBlock::Text { text }],
        });
    }
    let mut tools: Vec<a::ToolDefinition> = req
        .tools
        .iter()
        .flatten()
        .map(|t| a::ToolDefinition {
            name: t.function.name.clone(),
            description: t.function.description.clone(),
            input_schema: t
                .function
                .parameters
                .clone()
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
        })
        .collect();
    let disable_parallel = req.parallel_tool_calls.map(|p| !p).filter(|d| *d);
    let mut tool_choice = req.tool_choice.as_ref().map(|c| match c {
        o::ToolChoice::Mode(o::ToolChoiceMode::None) => a::ToolChoice::None,
        o::ToolChoice::Mode(o::ToolChoiceMode::Auto) => a::ToolChoice::Auto {
            disable_parallel_tool_use: disable_parallel,
        },
        o::ToolChoice::Mode(o::ToolChoiceMode::Required) => a::ToolChoice::Any {
            disable_parallel_tool_use: disable_parallel,
        },
        o::ToolChoice::Named(n) => a::ToolChoice::Tool {
            name: n.function.name.clone(),
            disable_parallel_tool_use: disable_parallel,
        },
    });
    let json_tool = forced.is_some();
    if let Some(tool) = forced {
        tools.push(tool);
        tool_choice = Some(a::ToolChoice::Tool {
            name: JSON_TOOL.into(),
            disable_parallel_tool_use: None,
        });
    }
    let mut max_tokens = req.max_output_tokens().unwrap_or(default_max_tokens);
    let mut thinking = None;
    if let Some(mut budget) = extras.thinking {
        // Anthropic counts thinking within max_tokens: the answer keeps what was asked for,
        // within the model's limit; a budget that does not fit shrinks (1024 at least).
        if !extras.thinking_within_max {
            max_tokens = max_tokens.saturating_add(budget);
        }
        if let Some(limit) = model_max {
            max_tokens = max_tokens.min(limit);
        }
        if budget >= max_tokens {
            budget = max_tokens / 2;
        }
        if budget < MIN_THINKING_BUDGET {
            return Err(invalid(
                format!(
                    "`max_tokens` {max_tokens} leaves no room for extended thinking (at least \
                     {MIN_THINKING_BUDGET} tokens) and an answer"
                ),
                "reasoning_effort",
            ));
        }
        thinking = Some(a::Thinking {
            kind: "enabled".into(),
            budget_tokens: Some(budget),
        });
    }
    Ok(Translated {
        body: a::MessagesRequest {
            model: model.to_owned(),
            messages,
            max_tokens,
            system: (!system.is_empty()).then_some(system),
            stop_sequences: req.stop_sequences(),
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: extras.top_k,
            stream: stream.then_some(true),
            tools,
            tool_choice,
            metadata: req.user.clone().map(|user_id| a::Metadata {
                user_id: Some(user_id),
            }),
            thinking,
            llmrr: None,
        },
        json_tool,
    })
}

fn user_blocks(i: usize, content: Option<&o::MessageContent>) -> Result<Vec<a::ContentBlock>> {
    let Some(content) = content else {
        return Ok(Vec::new());
    };
    let parts = match content {
        o::MessageContent::Text(text) => {
            return Ok(vec![a::ContentBlock::Text { text: text.clone() }])
        }
        o::MessageContent::Parts(parts) => parts,
    };
    parts
        .iter()
        .enumerate()
        .map(|(j, p)| match p {
            o::ContentPart::Text { text } | o::ContentPart::Refusal { refusal: text } => {
                Ok(a::ContentBlock::Text { text: text.clone() })
            }
            o::ContentPart::ImageUrl { image_url } => Ok(a::ContentBlock::Image {
                source: image_source(&image_url.url).ok_or_else(|| TranslateError::Invalid {
                    message: "an image must be an http(s) URL or a base64 data URL".into(),
                    param: format!("messages[{i}].content[{j}].image_url.url"),
                })?,
            }),
            o::ContentPart::InputAudio { .. } => {
                Err(TranslateError::Unsupported("audio input".into()))
            }
            o::ContentPart::File { .. } => Err(TranslateError::Unsupported("file parts".into())),
        })
        .collect()
}

/// `data:image/png;base64,AAAA` or `https://…`.
fn image_source(url: &str) -> Option<a::ImageSource> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',')?;
        let media_type = meta.strip_suffix(";base64")?;
        return Some(a::ImageSource::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        });
    }
    (url.starts_with("https://") || url.starts_with("http://")).then(|| a::ImageSource::Url {
        url: url.to_owned(),
    })
}

fn assistant_blocks(i: usize, m: &o::ChatMessage) -> Result<Vec<a::ContentBlock>> {
    let mut blocks = Vec::new();
    if let Some(c) = &m.content {
        let text = c.joined_text();
        if !text.is_empty() {
            blocks.push(a::ContentBlock::Text { text });
        }
    }
    for (j, call) in m.tool_calls.iter().flatten().enumerate() {
        let input: Value = if call.function.arguments.trim().is_empty() {
            serde_json::json!({})
        } else {
            serde_json::from_str(&call.function.arguments).map_err(|e| TranslateError::Invalid {
                message: format!("tool call arguments must be JSON: {e}"),
                param: format!("messages[{i}].tool_calls[{j}].function.arguments"),
            })?
        };
        blocks.push(a::ContentBlock::ToolUse {
            id: call.id.clone(),
            name: call.function.name.clone(),
            input,
        });
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> o::ChatCompletionRequest {
        serde_json::from_value(json).expect("valid request")
    }

    #[test]
    fn translates_system_roles_tools_and_results() {
        let r = req(serde_json::json!({
            "model": "claude",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "user", "content": "Thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "stop": "END",
            "max_tokens": 50,
            "user": "u-1"
        }));
        let t = translate(&r, "claude-x", 4096, None, true).expect("translates");
        assert!(!t.json_tool);
        let j = serde_json::to_value(&t.body).expect("json");
        assert_eq!(j["model"], "claude-x");
        assert_eq!(j["system"][0]["text"], "Be brief.");
        assert_eq!(j["max_tokens"], 50);
        assert_eq!(j["stream"], true);
        assert_eq!(j["stop_sequences"][0], "END");
        assert_eq!(j["metadata"]["user_id"], "u-1");
        assert_eq!(
            j["tool_choice"],
            serde_json::json!({"type": "any", "disable_parallel_tool_use": true})
        );
        assert_eq!(j["tools"][0]["input_schema"]["type"], "object");
        let msgs = j["messages"].as_array().expect("array");
        assert_eq!(
            msgs.len(),
            3,
            "tool result and the next user turn merge: {j}"
        );
        assert_eq!(msgs[0]["content"][1]["source"]["media_type"], "image/png");
        assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
        assert_eq!(msgs[1]["content"][0]["input"]["city"], "Paris");
        assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
        assert_eq!(msgs[2]["content"][0]["tool_use_id"], "call_1");
        assert_eq!(msgs[2]["content"][1]["text"], "Thanks");
    }

    #[test]
    fn defaults_max_tokens_and_rejects_what_it_cannot_translate() {
        let r =
            req(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(
            translate(&r, "m", 1234, None, false)
                .expect("ok")
                .body
                .max_tokens,
            1234
        );
        let r = req(
            serde_json::json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert!(matches!(
            translate(&r, "m", 1, None, false),
            Err(TranslateError::Unsupported(_))
        ));
        let r = req(
            serde_json::json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]}),
        );
        match translate(&r, "m", 1, None, false) {
            Err(TranslateError::Invalid { param, .. }) => {
                assert_eq!(param, "messages[0].tool_calls[0].function.arguments")
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("translated"),
        }
    }

    fn body(json: serde_json::Value) -> serde_json::Value {
        let t = translate(&req(json), "m", 100, None, false).expect("translates");
        serde_json::to_value(&t.body).expect("json")
    }

    fn refused(json: serde_json::Value) -> String {
        match translate(&req(json), "m", 100, None, false) {
            Err(TranslateError::Unsupported(what)) => what,
            Err(TranslateError::Invalid { param, .. }) => param,
            Ok(_) => panic!("translated"),
        }
    }

    #[test]
    fn issue16_every_parameter_is_translated_or_refused() {
        let hi = serde_json::json!([{"role": "user", "content": "hi"}]);
        // response_format: a forced tool whose input schema is the requested schema.
        let schema =
            serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}});
        let r = req(serde_json::json!({"model": "m", "messages": hi,
            "response_format": {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}}));
        let t = translate(&r, "m", 100, None, false).expect("translates");
        assert!(t.json_tool);
        let j = serde_json::to_value(&t.body).expect("json");
        assert_eq!(j["tools"][0]["name"], JSON_TOOL);
        assert_eq!(j["tools"][0]["input_schema"], schema);
        assert_eq!(
            j["tool_choice"],
            serde_json::json!({"type": "tool", "name": JSON_TOOL})
        );
        // reasoning_effort: thinking with a budget, on top of the answer's max_tokens.
        let j = body(
            serde_json::json!({"model": "m", "messages": hi, "max_tokens": 50,
            "reasoning_effort": "high"}),
        );
        assert_eq!(
            j["thinking"],
            serde_json::json!({"type": "enabled", "budget_tokens": 16384})
        );
        assert_eq!(j["max_tokens"], 50 + 16384);
        // top_k passes; platform-only fields are not sent; user -> metadata.user_id.
        let j = body(
            serde_json::json!({"model": "m", "messages": hi, "top_k": 5, "store": false,
            "user": "u-2"}),
        );
        assert_eq!(
            (j["top_k"].clone(), j["metadata"]["user_id"].clone()),
            (5.into(), "u-2".into())
        );
        assert!(j.get("store").is_none());
        // A system-only conversation still sends a user turn.
        let j = body(
            serde_json::json!({"model": "m", "messages": [{"role": "system", "content": "Say hi."}]}),
        );
        assert_eq!(j["messages"][0]["content"][0]["text"], "Say hi.");
        assert!(j.get("system").is_none());
        // Refused, never dropped.
        assert_eq!(
            refused(serde_json::json!({"model": "m", "messages": hi, "temperature": 1.5})),
            "temperature"
        );
        assert!(
            refused(serde_json::json!({"model": "m", "messages": hi, "seed": 7})).contains("seed")
        );
        assert!(refused(
            serde_json::json!({"model": "m", "messages": hi, "frequency_penalty": 0.5})
        )
        .contains("penalty"));
        assert!(
            refused(serde_json::json!({"model": "m", "messages": hi, "logit_bias": {"1": 2}}))
                .contains("logit_bias")
        );
        assert!(
            refused(serde_json::json!({"model": "m", "messages": hi, "logprobs": true}))
                .contains("logprobs")
        );
        assert!(
            refused(serde_json::json!({"model": "m", "messages": hi, "mystery": 1}))
                .contains("mystery")
        );
        assert_eq!(
            refused(
                serde_json::json!({"model": "m", "messages": hi, "reasoning_effort": "high", "temperature": 0.2})
            ),
            "reasoning_effort"
        );
    }
}
