//! Anthropic Messages response -> OpenAI chat completion.

use llmrr_types::anthropic as a;
use llmrr_types::openai as o;

/// `json_tool`: the request's `response_format` was answered through the forced tool, whose
/// input becomes the message content.
pub fn to_chat_completion(msg: a::MessagesResponse, json_tool: bool) -> o::ChatCompletion {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    let mut thinking_blocks = Vec::new();
    for block in msg.content {
        match block {
            a::ContentBlock::Text { text: t } => text.push_str(&t),
            a::ContentBlock::Thinking {
                thinking,
                signature,
            } => {
                thinking_blocks.push(serde_json::json!({"type": "thinking",
                    "thinking": thinking, "signature": signature.unwrap_or_default()}));
                reasoning.push_str(&thinking);
            }
            a::ContentBlock::RedactedThinking { data } => {
                thinking_blocks.push(serde_json::json!({"type": "redacted_thinking", "data": data}))
            }
            a::ContentBlock::ToolUse { name, input, .. }
                if json_tool && name == super::request::JSON_TOOL =>
            {
                text = input.to_string();
            }
            a::ContentBlock::ToolUse { id, name, input } => tool_calls.push(o::ToolCall {
                id,
                kind: o::ToolKind::Function,
                function: o::FunctionCall {
                    name,
                    arguments: input.to_string(),
                },
            }),
            _ => {}
        }
    }
    let finish_reason = msg
        .stop_reason
        .as_deref()
        .map(|r| super::finish_reason(r, json_tool))
        .map(str::to_owned);
    o::ChatCompletion {
        id: msg.id,
        object: "chat.completion".into(),
        created: now_unix(),
        model: msg.model,
        choices: vec![o::Choice {
            index: 0,
            message: o::ResponseMessage {
                role: o::Role::Assistant,
                content: (!text.is_empty() || tool_calls.is_empty()).then_some(text),
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                refusal: None,
                reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
                thinking_blocks: (!thinking_blocks.is_empty()).then_some(thinking_blocks),
            },
            finish_reason,
            logprobs: None,
        }],
        usage: Some(super::usage(&msg.usage)),
        system_fingerprint: None,
    }
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_tools_usage_and_stop_reason() {
        let msg: a::MessagesResponse = serde_json::from_value(serde_json::json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 4}
        }))
        .expect("valid");
        let c = to_chat_completion(msg, false);
        let choice = &c.choices[0];
        assert_eq!(choice.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(choice.message.content.as_deref(), Some("Let me check."));
        let call = &choice.message.tool_calls.as_ref().expect("tool calls")[0];
        assert_eq!(call.id, "toolu_1");
        assert_eq!(call.function.arguments, r#"{"city":"Paris"}"#);
        let u = c.usage.expect("usage");
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (14, 5, 19)
        );
        assert_eq!(u.prompt_tokens_details.map(|d| d.cached_tokens), Some(4));
    }
}
