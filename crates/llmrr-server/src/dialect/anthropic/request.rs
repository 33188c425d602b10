//! A Messages request as the gateway's chat request.
//!
//! `system` becomes a system message; a user turn's `tool_result` blocks become tool messages
//! (before the rest of the turn, as OpenAI orders them); `tool_use` blocks become the
//! assistant's tool calls; images become image parts (base64 as a data URL); a plain-text
//! document becomes text. Tools, `tool_choice` (`any` is `required`,
//! `disable_parallel_tool_use` is `parallel_tool_calls: false`), `stop_sequences`,
//! `metadata.user_id` (`user`), `top_k` and `thinking` (read by Anthropic models; other
//! models get them as extra fields, as an OpenAI client's unknown fields are) carry over.
//! Thinking blocks of earlier turns are not translated (their signatures only mean something
//! to Anthropic); an Anthropic model gets the client's own body instead, with them and every
//! other field (`cache_control`…). What cannot be said in a chat request at all is refused
//! with a 400 naming the block.

use llmrr_core::Error;
use llmrr_types::anthropic as a;
use llmrr_types::openai as o;
use serde_json::Value;

fn invalid(message: impl Into<String>, param: String) -> Error {
    Error::invalid(message, Some(param))
}

/// The chat request that asks the same as `req`, carrying `native` (the client's own body)
/// for Anthropic models. A stream always asks for usage: the answer's `message_delta`
/// carries it.
pub fn to_chat(
    req: a::MessagesRequest,
    native: Option<Value>,
) -> Result<o::ChatCompletionRequest, Error> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = req.system.filter(|s| !s.is_empty()) {
        let text = system
            .into_iter()
            .map(|b| b.text)
            .collect::<Vec<_>>()
            .join("\n\n");
        messages.push(o::ChatMessage::new(o::Role::System, text));
    }
    for (i, m) in req.messages.into_iter().enumerate() {
        match m.role {
            a::Role::User => user_turn(i, m.content, &mut messages)?,
            a::Role::Assistant => messages.push(assistant_turn(i, m.content)?),
        }
    }
    let mut extra = serde_json::Map::new();
    if let Some(k) = req.top_k {
        extra.insert("top_k".into(), k.into());
    }
    if let Some(t) = req.thinking.filter(|t| t.kind == "enabled") {
        extra.insert(
            "thinking".into(),
            serde_json::to_value(t).unwrap_or_default(),
        );
    }
    let stream = req.stream.unwrap_or(false);
    let (tool_choice, parallel) = match req.tool_choice {
        None => (None, None),
        Some(c) => tool_choice(c),
    };
    Ok(o::ChatCompletionRequest {
        model: req.model,
        messages,
        stream: Some(stream),
        stream_options: crate::dialect::with_usage(stream),
        temperature: req.temperature,
        top_p: req.top_p,
        max_completion_tokens: Some(req.max_tokens),
        stop: (!req.stop_sequences.is_empty())
            .then_some(o::StopSequences::Many(req.stop_sequences)),
        user: req.metadata.and_then(|m| m.user_id),
        tools: (!req.tools.is_empty()).then(|| req.tools.into_iter().map(tool).collect()),
        tool_choice,
        parallel_tool_calls: parallel,
        llmrr: req.llmrr,
        extra,
        native: native.map(|b| o::NativeBody::Anthropic(std::sync::Arc::new(b))),
        ..Default::default()
    })
}

/// The request whose prompt `count_tokens` counts (its body has no `max_tokens`).
pub fn token_count_request(body: &Value) -> Result<a::MessagesRequest, Error> {
    let mut body = body.clone();
    if let Value::Object(map) = &mut body {
        map.entry("max_tokens").or_insert(1.into());
    }
    crate::extract::from_value(&body)
}

fn tool(t: a::ToolDefinition) -> o::Tool {
    o::Tool {
        kind: o::ToolKind::Function,
        function: o::FunctionDefinition {
            name: t.name,
            description: t.description,
            parameters: Some(t.input_schema),
            strict: None,
        },
    }
}

fn tool_choice(c: a::ToolChoice) -> (Option<o::ToolChoice>, Option<bool>) {
    let parallel = |d: Option<bool>| d.filter(|d| *d).map(|_| false);
    match c {
        a::ToolChoice::None => (Some(o::ToolChoice::Mode(o::ToolChoiceMode::None)), None),
        a::ToolChoice::Auto {
            disable_parallel_tool_use: d,
        } => (
            Some(o::ToolChoice::Mode(o::ToolChoiceMode::Auto)),
            parallel(d),
        ),
        a::ToolChoice::Any {
            disable_parallel_tool_use: d,
        } => (
            Some(o::ToolChoice::Mode(o::ToolChoiceMode::Required)),
            parallel(d),
        ),
        a::ToolChoice::Tool {
            name,
            disable_parallel_tool_use: d,
        } => (
            Some(o::ToolChoice::Named(o::NamedToolChoice {
                kind: o::ToolKind::Function,
                function: o::FunctionName { name },
            })),
            parallel(d),
        ),
    }
}

/// A user turn: its tool results as tool messages, then the rest as one user message.
fn user_turn(
    i: usize,
    blocks: Vec<a::ContentBlock>,
    out: &mut Vec<o::ChatMessage>,
) -> Result<(), Error> {
    let mut parts = Vec::new();
    for (j, b) in blocks.into_iter().enumerate() {
        let at = || format!("messages[{i}].content[{j}]");
        match b {
            a::ContentBlock::Text { text } => parts.push(o::ContentPart::Text { text }),
            a::ContentBlock::Image { source } => parts.push(o::ContentPart::ImageUrl {
                image_url: o::ImageUrl {
                    url: match source {
                        a::ImageSource::Base64 { media_type, data } => {
                            format!("data:{media_type};base64,{data}")
                        }
                        a::ImageSource::Url { url } => url,
                    },
                    detail: None,
                },
            }),
            a::ContentBlock::Document { source } => parts.push(o::ContentPart::Text {
                text: document_text(&source).ok_or_else(|| {
                    invalid(
                        "only plain-text documents (source type `text`) can be sent through \
                         llmrr's Messages API for now; send PDFs as text or images",
                        at(),
                    )
                })?,
            }),
            a::ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let mut text = tool_result_text(&content).ok_or_else(|| {
                    invalid(
                        "a tool_result can hold text only when it is sent through llmrr (no \
                         images)",
                        at(),
                    )
                })?;
                if is_error == Some(true) && !text.starts_with("Error") {
                    text = format!("Error: {text}");
                }
                out.push(o::ChatMessage {
                    tool_call_id: Some(tool_use_id),
                    ..o::ChatMessage::new(o::Role::Tool, text)
                });
            }
            a::ContentBlock::ToolUse { .. } => {
                return Err(invalid(
                    "a tool_use block belongs in an assistant turn",
                    at(),
                ))
            }
            // Earlier reasoning: not sent (see the module's note).
            a::ContentBlock::Thinking { .. } | a::ContentBlock::RedactedThinking { .. } => {}
        }
    }
    if !parts.is_empty() {
        let content = match parts.as_slice() {
            [o::ContentPart::Text { text }] => o::MessageContent::Text(text.clone()),
            _ => o::MessageContent::Parts(parts),
        };
        out.push(o::ChatMessage {
            content: Some(content),
            ..o::ChatMessage::new(o::Role::User, "")
        });
    }
    Ok(())
}

fn assistant_turn(i: usize, blocks: Vec<a::ContentBlock>) -> Result<o::ChatMessage, Error> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.into_iter().enumerate() {
        match b {
            a::ContentBlock::Text { text: t } => text.push_str(&t),
            a::ContentBlock::ToolUse { id, name, input } => calls.push(o::ToolCall {
                id,
                kind: o::ToolKind::Function,
                function: o::FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            a::ContentBlock::Thinking { .. } | a::ContentBlock::RedactedThinking { .. } => {}
            _ => {
                return Err(invalid(
                    "an assistant turn holds text, tool_use and thinking blocks only",
                    format!("messages[{i}].content[{j}]"),
                ))
            }
        }
    }
    Ok(o::ChatMessage {
        content: (!text.is_empty() || calls.is_empty()).then_some(o::MessageContent::Text(text)),
        tool_calls: (!calls.is_empty()).then_some(calls),
        ..o::ChatMessage::new(o::Role::Assistant, "")
    })
}

/// A tool result's text (its blocks must all be text).
fn tool_result_text(content: &[a::ContentBlock]) -> Option<String> {
    content
        .iter()
        .map(|b| match b {
            a::ContentBlock::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .map(|t| t.join("\n"))
}

/// A document's text, when its source is plain text.
fn document_text(source: &Value) -> Option<String> {
    (source.get("type")?.as_str()? == "text")
        .then(|| source.get("data")?.as_str().map(str::to_owned))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(body: Value) -> o::ChatCompletionRequest {
        to_chat(serde_json::from_value(body).expect("parses"), None).expect("translates")
    }

    #[test]
    fn a_tool_round_trip_reads_as_openai_messages() {
        let req = chat(json!({
            "model": "m", "max_tokens": 100, "system": "Be brief.",
            "stop_sequences": ["END"], "top_k": 5, "metadata": {"user_id": "u1"},
            "tools": [{"name": "get_weather", "description": "Weather",
                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "s"},
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {"type": "text", "text": "Thanks"}]}
            ]
        }));
        let roles: Vec<_> = req.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                o::Role::System,
                o::Role::User,
                o::Role::Assistant,
                o::Role::Tool,
                o::Role::User
            ]
        );
        let call = &req.messages[2].tool_calls.as_ref().unwrap()[0];
        assert_eq!(
            (call.id.as_str(), call.function.arguments.as_str()),
            ("toolu_1", r#"{"city":"Paris"}"#)
        );
        assert_eq!(req.messages[3].tool_call_id.as_deref(), Some("toolu_1"));
        assert_eq!(req.max_output_tokens(), Some(100));
        assert_eq!(req.user.as_deref(), Some("u1"));
        assert_eq!(req.extra["top_k"], 5);
        assert_eq!(req.parallel_tool_calls, Some(false));
        assert!(matches!(
            req.tool_choice,
            Some(o::ToolChoice::Mode(o::ToolChoiceMode::Required))
        ));
        assert_eq!(req.stop_sequences(), ["END"]);
        assert!(!req.is_stream());
    }

    #[test]
    fn streams_ask_for_usage_and_bad_blocks_are_named() {
        let req = chat(json!({"model": "m", "max_tokens": 5, "stream": true,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}));
        assert!(req.is_stream());
        assert_eq!(req.stream_options.unwrap().include_usage, Some(true));
        let bad: a::MessagesRequest = serde_json::from_value(json!({"model": "m", "max_tokens": 5,
            "messages": [{"role": "user", "content": [{"type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": "AA"}}]}]}))
        .unwrap();
        match to_chat(bad, None) {
            Err(Error::InvalidRequest { param, .. }) => {
                assert_eq!(param.as_deref(), Some("messages[0].content[0]"))
            }
            other => panic!("{other:?}"),
        }
    }
}
