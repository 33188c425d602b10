//! A whole answer as a Messages response: reasoning as a `thinking` block, then the text, then
//! each tool call as a `tool_use` block; OpenAI's finish reason as Anthropic's stop reason;
//! the usage with prompt-cache reads and writes apart from the other input tokens.

use llmrr_core::answer::Completion;
use llmrr_types::anthropic as a;
use llmrr_types::openai::Usage;
use serde_json::Value;

/// Anthropic's stop reason for OpenAI's finish reason.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic's usage for OpenAI's: `input_tokens` excludes prompt-cache reads and writes.
pub fn usage(u: &Usage) -> a::Usage {
    let read = u.cached_tokens();
    let written = u.cache_creation_input_tokens;
    a::Usage {
        input_tokens: u.prompt_tokens.saturating_sub(read + written),
        output_tokens: u.completion_tokens,
        cache_creation_input_tokens: Some(written),
        cache_read_input_tokens: Some(read),
        cache_creation: (u.cache_creation_1h_input_tokens > 0).then_some(a::CacheCreation {
            ephemeral_5m_input_tokens: written - u.cache_creation_1h_input_tokens.min(written),
            ephemeral_1h_input_tokens: u.cache_creation_1h_input_tokens,
        }),
    }
}

/// An Anthropic message id for the answer's id (a fresh one when it has none).
pub fn message_id(id: &str) -> String {
    if id.is_empty() {
        format!("msg_{}", uuid::Uuid::now_v7().simple())
    } else if id.starts_with("msg_") {
        id.to_owned()
    } else {
        format!("msg_{}", id.strip_prefix("chatcmpl-").unwrap_or(id))
    }
}

/// A tool call's arguments as the `input` object (arguments that are not JSON are kept as
/// the text they are).
pub fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Default::default());
    }
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned()))
}

/// Anthropic's thinking blocks as the provider gave them (with their signatures).
fn thinking_blocks(blocks: &[Value]) -> Vec<a::ContentBlock> {
    blocks
        .iter()
        .filter_map(|b| {
            let text = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_owned);
            match b.get("type").and_then(Value::as_str)? {
                "thinking" => Some(a::ContentBlock::Thinking {
                    thinking: text("thinking").unwrap_or_default(),
                    signature: Some(text("signature").unwrap_or_default()),
                }),
                "redacted_thinking" => Some(a::ContentBlock::RedactedThinking {
                    data: text("data")?,
                }),
                _ => None,
            }
        })
        .collect()
}

pub fn to_message(c: Completion) -> a::MessagesResponse {
    let choice = c.choices.into_iter().next().unwrap_or_default();
    let mut content = thinking_blocks(&choice.thinking_blocks);
    if content.is_empty() {
        if let Some(thinking) = choice.reasoning {
            content.push(a::ContentBlock::Thinking {
                thinking,
                signature: Some(String::new()),
            });
        }
    }
    if let Some(text) = choice.text.filter(|t| !t.is_empty()) {
        content.push(a::ContentBlock::Text { text });
    }
    let refused = choice.refusal.is_some();
    if let Some(text) = choice.refusal {
        content.push(a::ContentBlock::Text { text });
    }
    for call in choice.tool_calls {
        content.push(a::ContentBlock::ToolUse {
            id: call.id,
            name: call.function.name,
            input: tool_input(&call.function.arguments),
        });
    }
    a::MessagesResponse {
        id: message_id(&c.id),
        kind: "message".into(),
        role: a::Role::Assistant,
        content,
        model: c.model,
        stop_reason: Some(
            if refused {
                "refusal"
            } else {
                stop_reason(choice.finish_reason.as_deref())
            }
            .into(),
        ),
        stop_sequence: None,
        usage: usage(&c.usage.unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmrr_core::answer::completion_of;

    #[test]
    fn an_answer_with_a_tool_call_reads_as_a_message() {
        let c = completion_of(
            br#"{"id":"chatcmpl-9","object":"chat.completion","created":1,"model":"gpt",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Looking.",
            "tool_calls":[{"id":"call_1","type":"function","function":{"name":"f",
            "arguments":"{\"x\":1}"}}]},"finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":10,"completion_tokens":4,"total_tokens":14,
            "prompt_tokens_details":{"cached_tokens":6}}}"#,
        )
        .unwrap();
        let m = serde_json::to_value(to_message(c)).unwrap();
        assert_eq!(m["id"], "msg_9");
        assert_eq!(m["type"], "message");
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(
            m["content"][0],
            serde_json::json!({"type": "text", "text": "Looking."})
        );
        assert_eq!(m["content"][1]["input"], serde_json::json!({"x": 1}));
        assert_eq!(m["usage"]["input_tokens"], 4);
        assert_eq!(m["usage"]["cache_read_input_tokens"], 6);
        assert_eq!(m["usage"]["output_tokens"], 4);
    }
}
