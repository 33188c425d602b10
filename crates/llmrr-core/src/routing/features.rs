//! What a request needs from a model, read once per request.

use llmrr_types::openai::{ChatCompletionRequest, ContentPart, MessageContent, ResponseFormat};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    pub tools: bool,
    pub vision: bool,
    pub json: bool,
    /// Estimated from the text (4 characters a token, plus a few per message).
    pub prompt_tokens: u64,
    /// The client's cap, if it gave one.
    pub max_output_tokens: Option<u64>,
    pub stream: bool,
    /// Parameters that some provider kinds cannot honour.
    pub needs: Needs,
}

/// Request parameters that not every provider kind can honour (see
/// [`crate::config::ProviderKind::cannot_serve`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub json_schema: bool,
    /// The schema compiles to a local model's grammar (`provider::json_grammar`).
    pub json_schema_local: bool,
    pub logprobs: bool,
    pub several_choices: bool,
    /// What no Anthropic model can honour in this request (see `anthropic::refusal`).
    pub anthropic_refusal: Option<&'static str>,
    /// A field the local engine does not read.
    pub unknown_for_local: bool,
    /// Tools in play for a local model (offered, and `tool_choice` is not `none`)…
    pub local_tools: bool,
    /// …and their parameters do not compile to a grammar (a local model refuses them).
    pub tools_not_local: bool,
}

impl Features {
    /// `local`: whether any local model could serve it; without one, the grammars local models
    /// would need are not compiled.
    pub fn of_chat(req: &ChatCompletionRequest, local: bool) -> Self {
        let mut chars = 0usize;
        let mut vision = false;
        for m in &req.messages {
            match &m.content {
                Some(MessageContent::Text(t)) => chars += t.len(),
                Some(MessageContent::Parts(parts)) => {
                    for p in parts {
                        match p {
                            ContentPart::Text { text } => chars += text.len(),
                            ContentPart::ImageUrl { .. } => vision = true,
                            _ => {}
                        }
                    }
                }
                None => {}
            }
            for call in m.tool_calls.iter().flatten() {
                chars += call.function.arguments.len() + call.function.name.len();
            }
        }
        let tool_chars: usize = req
            .tools
            .iter()
            .flatten()
            .map(|t| {
                t.function.name.len()
                    + t.function
                        .parameters
                        .as_ref()
                        .map_or(0, |p| p.to_string().len())
            })
            .sum();
        let local_tools = crate::provider::local_tool_functions(req);
        let local_tools_compile = |f: &[&llmrr_types::openai::FunctionDefinition]| {
            !local || crate::provider::local_tools_compile(f)
        };
        Features {
            tools: req.tools.as_ref().is_some_and(|t| !t.is_empty()),
            vision,
            json: matches!(
                req.response_format,
                Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
            ),
            prompt_tokens: ((chars + tool_chars) as u64).div_ceil(4)
                + 4 * req.messages.len() as u64,
            max_output_tokens: req.max_output_tokens().map(u64::from),
            stream: req.is_stream(),
            needs: Needs {
                json_schema: matches!(req.response_format, Some(ResponseFormat::JsonSchema { .. })),
                json_schema_local: match &req.response_format {
                    Some(ResponseFormat::JsonSchema { json_schema }) => {
                        json_schema.get("schema").is_some_and(|s| {
                            local && crate::provider::json_grammar::grammar(s).is_ok()
                        })
                    }
                    _ => false,
                },
                logprobs: req
                    .extra
                    .get("logprobs")
                    .is_some_and(|v| !v.is_null() && *v != serde_json::Value::Bool(false)),
                several_choices: req.n.is_some_and(|n| n > 1),
                anthropic_refusal: crate::provider::anthropic_refusal(req),
                unknown_for_local: crate::provider::local_unknown_field(req).is_some(),
                local_tools: local_tools.is_some(),
                tools_not_local: local_tools
                    .as_deref()
                    .is_some_and(|f| !local_tools_compile(f)),
            },
        }
    }
}
