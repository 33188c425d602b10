//! Chats with tools on local models: the model's own Jinja chat template renders the tools,
//! earlier tool calls and tool results ([`template`]); the template tells which syntax the
//! model writes calls in and a grammar keeps them valid ([`tools`]); the answer is split into
//! content and OpenAI `tool_calls` as it streams ([`parse`]).

pub(crate) mod parse;
pub(crate) mod template;
pub(crate) mod tools;

use llmrr_types::openai::{ChatMessage, MessageContent, Role, Tool};
use serde_json::{json, Map, Value};
use template::JinjaTemplate;
use tools::ToolSyntax;

/// The tool syntax of a template that can render tools: detected from its text, then checked
/// by rendering a chat with a probe tool, whose name must show in the prompt.
pub(crate) fn tool_support(source: &str, template: &JinjaTemplate) -> Option<ToolSyntax> {
    let syntax = ToolSyntax::detect(source)?;
    let probe: Tool = serde_json::from_value(json!({"type": "function", "function": {
        "name": "llmrr_probe_tool", "description": "probe",
        "parameters": {"type": "object", "properties": {}}}}))
    .ok()?;
    let chat = [json!({"role": "user", "content": "hi"})];
    let prompt = template.render(&chat, Some(&[probe])).ok()?;
    prompt.contains("llmrr_probe_tool").then_some(syntax)
}

/// [`tool_support`] for a template's text alone (before the model is loaded: the routing
/// capability). `None` where the template does not compile here.
pub(crate) fn supports_tools(source: &str) -> bool {
    JinjaTemplate::new(source, "", "")
        .ok()
        .and_then(|t| tool_support(source, &t))
        .is_some()
}

/// The template to render chats with tools: the GGUF's `tokenizer.chat_template.tool_use`
/// where it has one (Hermes 2 Pro, Command R), else its chat template.
pub(crate) const TOOL_TEMPLATE_KEY: &str = "tokenizer.chat_template.tool_use";

/// The messages as Hugging Face templates expect them: `content` a string, `developer` as
/// `system`, tool calls' `arguments` as objects, and tool results named after their call.
/// Mistral's templates take only 9-character alphanumeric call ids: others are mapped to one
/// (the same for a call and its result).
pub(crate) fn messages(msgs: &[ChatMessage], syntax: Option<ToolSyntax>) -> Vec<Value> {
    let mut call_names: std::collections::HashMap<&str, &str> = Default::default();
    let id = |id: &str| match syntax {
        Some(ToolSyntax::Mistral) => mistral_id(id),
        _ => id.to_owned(),
    };
    msgs.iter()
        .map(|m| {
            let mut o = Map::new();
            let role = match m.role {
                Role::Developer => "system",
                r => r.as_str(),
            };
            o.insert("role".into(), role.into());
            let content = match &m.content {
                None => String::new(),
                Some(MessageContent::Text(t)) => t.clone(),
                Some(c) => c.joined_text(),
            };
            o.insert("content".into(), content.into());
            if let Some(calls) = m.tool_calls.as_ref().filter(|c| !c.is_empty()) {
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|c| {
                        call_names.insert(&c.id, &c.function.name);
                        let args = serde_json::from_str::<Value>(&c.function.arguments)
                            .unwrap_or_else(|_| Value::String(c.function.arguments.clone()));
                        json!({"id": id(&c.id), "type": "function",
                               "function": {"name": c.function.name, "arguments": args}})
                    })
                    .collect();
                o.insert("tool_calls".into(), calls.into());
            }
            if let Some(call_id) = &m.tool_call_id {
                o.insert("tool_call_id".into(), id(call_id).into());
                if let Some(name) = m
                    .name
                    .as_deref()
                    .or(call_names.get(call_id.as_str()).copied())
                {
                    o.insert("name".into(), name.into());
                }
            } else if let Some(name) = &m.name {
                o.insert("name".into(), name.as_str().into());
            }
            Value::Object(o)
        })
        .collect()
}

/// `id` as Mistral's templates require it: itself if it is 9 letters and digits, else 9 drawn
/// from its hash (FNV-1a: the same id always maps to the same one).
fn mistral_id(id: &str) -> String {
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return id.to_owned();
    }
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..9)
        .map(|_| {
            let c = ALNUM[(h % ALNUM.len() as u64) as usize] as char;
            h /= ALNUM.len() as u64;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::CHATML;

    #[test]
    fn a_tool_round_trip_renders_through_the_models_template() {
        let t = JinjaTemplate::new(CHATML, "", "<|endoftext|>").expect("compiles");
        assert_eq!(tool_support(CHATML, &t), Some(ToolSyntax::Hermes));
        let plain = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";
        let p = JinjaTemplate::new(plain, "", "").expect("compiles");
        assert_eq!(tool_support(plain, &p), None, "tools are not rendered");

        let msgs: Vec<ChatMessage> = serde_json::from_value(json!([
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        ]))
        .expect("messages");
        let values = messages(&msgs, Some(ToolSyntax::Hermes));
        let mistral = messages(&msgs, Some(ToolSyntax::Mistral));
        let mapped = mistral[2]["tool_calls"][0]["id"].as_str().expect("id");
        assert!(
            mapped.len() == 9 && mapped.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{mapped}"
        );
        assert_eq!(
            mistral[3]["tool_call_id"], mapped,
            "the result keeps its call's id"
        );
        assert_eq!(values[0]["role"], "system");
        assert_eq!(
            values[2]["tool_calls"][0]["function"]["arguments"],
            json!({"city": "Oslo"})
        );
        assert_eq!(values[3]["name"], "get_weather", "named after its call");
        let tool: Tool = serde_json::from_value(
            json!({"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}),
        )
        .expect("tool");
        let out = t.render(&values, Some(&[tool])).expect("renders");
        let want = "<|im_start|>system\nBe brief.\n\n# Tools\n\nFunctions you can call, one JSON signature per line:\n<tools>\n\
            {\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"properties\": {\"city\": {\"type\": \"string\"}}, \"type\": \"object\"}}}\n\
            </tools>\n\nTo call one, answer with its name and arguments as JSON in tags:\n<tool_call>\n{\"name\": \"<name>\", \"arguments\": {<arguments>}}\n</tool_call><|im_end|>\n\
            <|im_start|>user\nWeather in Oslo?<|im_end|>\n\
            <|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call><|im_end|>\n\
            <|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n\
            <|im_start|>assistant\n";
        assert_eq!(out, want);
    }
}
