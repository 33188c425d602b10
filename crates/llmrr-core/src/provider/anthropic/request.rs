//! OpenAI chat request -> Anthropic Messages request.
//!
//! System and developer messages become the top-level `system`; tool results become
//! `tool_result` blocks in a user turn; assistant tool calls become `tool_use` blocks;
//! consecutive turns of one role are merged (Anthropic wants alternating roles).

use llmrr_types::anthropic as a;
use llmrr_types::openai as o;
use serde_json::Value;

#[derive(Debug)]
pub enum TranslateError {
    Unsupported(String),
    Invalid { message: String, param: String },
}

type Result<T> = std::result::Result<T, TranslateError>;

pub fn translate(
    req: &o::ChatCompletionRequest,
    model: &str,
    default_max_tokens: u32,
    stream: bool,
) -> Result<a::MessagesRequest> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(TranslateError::Unsupported("n > 1".into()));
    }
    if let Some(o::ResponseFormat::JsonObject | o::ResponseFormat::JsonSchema { .. }) =
        &req.response_format
    {
        return Err(TranslateError::Unsupported(
            "response_format json_object / json_schema".into(),
        ));
    }
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
    let tools = req
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
    let tool_choice = req.tool_choice.as_ref().map(|c| match c {
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
    Ok(a::MessagesRequest {
        model: model.to_owned(),
        messages,
        max_tokens: req.max_output_tokens().unwrap_or(default_max_tokens),
        system: (!system.is_empty()).then_some(system),
        stop_sequences: req.stop_sequences(),
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: None,
        stream: stream.then_some(true),
        tools,
        tool_choice,
        metadata: req.user.clone().map(|user_id| a::Metadata { user_id }),
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
        let t = translate(&r, "claude-x", 4096, true).expect("translates");
        let j = serde_json::to_value(&t).expect("json");
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
            translate(&r, "m", 1234, false).expect("ok").max_tokens,
            1234
        );
        let r = req(
            serde_json::json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert!(matches!(
            translate(&r, "m", 1, false),
            Err(TranslateError::Unsupported(_))
        ));
        let r = req(
            serde_json::json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]}),
        );
        match translate(&r, "m", 1, false) {
            Err(TranslateError::Invalid { param, .. }) => {
                assert_eq!(param, "messages[0].tool_calls[0].function.arguments")
            }
            other => panic!("{other:?}"),
        }
    }
}
