//! OpenAI requests -> engine jobs: the prompt (chat template or raw), sampling settings, stop
//! strings and limits, with a clear 400 for what a local model cannot do.

use crate::chat::tools::{self, ToolPlan, ToolSyntax};
use crate::error::{Error, Result};
use crate::sampling::{Grammar, Knobs, SamplingParams};
use crate::worker::LoadedModel;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use llmrr_types::openai::{
    ChatCompletionRequest, CompletionRequest, ContentPart, MessageContent, ResponseFormat,
    StopSequences, ToolChoice, ToolChoiceMode,
};
use serde_json::{Map, Value};

/// What the worker needs to run one generation.
pub(crate) struct Generation {
    pub prompt: Vec<LlamaToken>,
    pub params: SamplingParams,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    /// Tools offered: the answer is split into content and calls of these functions.
    pub tools: Option<ToolCalls>,
}

/// How to read tool calls out of an answer.
#[derive(Debug, Clone)]
pub(crate) struct ToolCalls {
    pub syntax: ToolSyntax,
    pub names: Vec<String>,
}

fn unsupported(model: &str, what: &str) -> Error {
    Error::Unsupported {
        model: model.to_owned(),
        what: format!("does not support {what} (a local model)"),
    }
}

fn stops(stop: Option<&StopSequences>) -> Vec<String> {
    match stop {
        None => Vec::new(),
        Some(StopSequences::One(s)) => vec![s.clone()],
        Some(StopSequences::Many(v)) => v.clone(),
    }
}

fn stops_from_extra(extra: &Map<String, Value>) -> Result<Vec<String>> {
    match extra.get("stop") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value::<StopSequences>(v.clone())
            .map(|s| stops(Some(&s)))
            .map_err(|_| {
                Error::InvalidRequest("`stop` must be a string or an array of strings".into())
            }),
    }
}

fn check_n(model: &str, n: Option<u64>) -> Result<()> {
    match n {
        None | Some(1) => Ok(()),
        Some(_) => Err(unsupported(model, "`n` > 1")),
    }
}

/// Token ids given by the client, each checked against the vocabulary.
fn token_ids(model: &LlamaModel, items: &[Value], field: &str) -> Result<Vec<LlamaToken>> {
    let n_vocab = model.n_vocab() as u64;
    items
        .iter()
        .map(|v| match v.as_u64() {
            Some(t) if t < n_vocab => Ok(LlamaToken(t as i32)),
            _ => Err(Error::InvalidRequest(format!(
                "`{field}` token {v} is not a token id of this model (0..{n_vocab})"
            ))),
        })
        .collect()
}

/// Tokenizes `text` and checks that it fits one sequence's context.
pub(crate) fn tokenize(
    name: &str,
    model: &LlamaModel,
    text: &str,
    context_size: u32,
) -> Result<Vec<LlamaToken>> {
    let tokens = model.vocab().tokenize(text.as_bytes(), true, true);
    check_prompt(name, tokens, context_size)
}

fn check_prompt(name: &str, tokens: Vec<LlamaToken>, context_size: u32) -> Result<Vec<LlamaToken>> {
    if tokens.is_empty() {
        return Err(Error::InvalidRequest("the prompt is empty".into()));
    }
    // At least one token must be left to generate.
    if tokens.len() >= context_size as usize {
        return Err(Error::ContextLength {
            model: name.to_owned(),
            prompt: tokens.len(),
            limit: context_size,
        });
    }
    Ok(tokens)
}

pub(crate) fn chat(
    name: &str,
    loaded: &LoadedModel,
    req: &ChatCompletionRequest,
    context_size: u32,
) -> Result<Generation> {
    let model = &*loaded.model;
    check_n(name, req.n.map(u64::from))?;
    // Refused rather than answered with `null`: a client that asks for them needs them.
    for key in ["logprobs", "top_logprobs"] {
        if req
            .extra
            .get(key)
            .is_some_and(|v| !v.is_null() && *v != Value::Bool(false))
        {
            return Err(unsupported(name, &format!("`{key}`")));
        }
    }
    if let Some(field) = llmrr_core::provider::local_unknown_field(req) {
        return Err(unsupported(name, &format!("`{field}`")));
    }
    let mut grammar = match &req.response_format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(Grammar::Json),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            let schema = json_schema.get("schema").ok_or_else(|| {
                unsupported(
                    name,
                    "a `response_format` json_schema without `json_schema.schema` (the schema goes there)",
                )
            })?;
            let g = llmrr_core::provider::json_grammar::grammar(schema).map_err(|why| {
                unsupported(name, &format!("this `response_format` json_schema ({why})"))
            })?;
            Some(Grammar::Schema(g))
        }
    };
    for m in &req.messages {
        if let Some(MessageContent::Parts(parts)) = &m.content {
            if parts.iter().any(|p| !matches!(p, ContentPart::Text { .. })) {
                return Err(unsupported(name, "images, audio or files in messages"));
            }
        }
    }
    let offered = req.tools.as_deref().filter(|t| !t.is_empty());
    if offered.is_none()
        && matches!(
            req.tool_choice,
            Some(ToolChoice::Named(_) | ToolChoice::Mode(ToolChoiceMode::Required))
        )
    {
        return Err(Error::InvalidRequest(
            "`tool_choice` asks for a tool call, but there are no `tools`".into(),
        ));
    }
    let choice_none = matches!(
        req.tool_choice,
        Some(ToolChoice::Mode(ToolChoiceMode::None))
    );
    let has_calls = req
        .messages
        .iter()
        .any(|m| m.tool_calls.as_ref().is_some_and(|c| !c.is_empty()));
    let mut tool_calls = None;
    let prompt = if (offered.is_some() && !choice_none) || has_calls {
        // The model's own Jinja template renders tools, calls and results.
        let (Some(syntax), Some(jinja)) = (loaded.tool_syntax, loaded.jinja.as_ref()) else {
            return Err(unsupported(
                name,
                "tool calling (its chat template renders no tools in a call syntax llmrr \
                 reads: Hermes/Qwen, Llama 3 or Mistral)",
            ));
        };
        let plan = match offered {
            Some(t) => tools::plan(syntax, t, req.tool_choice.as_ref(), req.parallel_tool_calls)
                .map_err(|e| match e {
                    tools::PlanError::Invalid(why) => Error::InvalidRequest(why),
                    tools::PlanError::Unsupported(why) => unsupported(name, &why),
                })?,
            None => ToolPlan::Off,
        };
        let shown = match (&plan, offered) {
            (ToolPlan::On(g), Some(t)) => {
                if grammar.is_some() {
                    return Err(unsupported(name, "`response_format` together with `tools`"));
                }
                grammar = Some(Grammar::Tools(g.clone()));
                tool_calls = Some(ToolCalls {
                    syntax,
                    names: t.iter().map(|t| t.function.name.clone()).collect(),
                });
                Some(t)
            }
            _ => None,
        };
        jinja
            .render(&crate::chat::messages(&req.messages, Some(syntax)), shown)
            .map_err(|e| Error::InvalidRequest(format!("the chat template failed: {e}")))?
    } else {
        llama_template(name, loaded, req)?
    };
    let mut params = SamplingParams::from_request(
        Knobs {
            temperature: req.temperature,
            top_p: req.top_p,
            seed: req.seed,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            logit_bias: req.logit_bias.as_ref(),
            extra: &req.extra,
        },
        model.n_vocab(),
    )?;
    params.grammar = grammar;
    Ok(Generation {
        prompt: tokenize(name, model, &prompt, context_size)?,
        params,
        max_tokens: req.max_completion_tokens.or(req.max_tokens),
        stop: stops(req.stop.as_ref()),
        tools: tool_calls,
    })
}

/// A plain chat's prompt through llama.cpp's built-in template formats.
fn llama_template(name: &str, loaded: &LoadedModel, req: &ChatCompletionRequest) -> Result<String> {
    let template = loaded
        .chat_template
        .as_ref()
        .ok_or_else(|| Error::NoChatTemplate(name.to_owned()))?;
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let text = match &m.content {
            None => String::new(),
            Some(MessageContent::Text(t)) => t.clone(),
            Some(c) => c.joined_text(),
        };
        let role = match m.role.as_str() {
            "developer" => "system",
            r => r,
        };
        messages.push(LlamaChatMessage::new(role.to_owned(), text).map_err(|_| {
            Error::InvalidRequest(format!("messages[{i}] contains a NUL character"))
        })?);
    }
    loaded
        .model
        .apply_chat_template(template, &messages, true)
        .map_err(|e| Error::InvalidRequest(format!("the chat template failed: {e}")))
}

/// `/v1/completions`: a raw prompt (a string, one string in an array, or token ids).
pub(crate) fn completion(
    name: &str,
    model: &LlamaModel,
    req: &CompletionRequest,
    context_size: u32,
) -> Result<Generation> {
    let x = &req.extra;
    check_n(name, x.get("n").and_then(Value::as_u64))?;
    for key in ["echo", "logprobs", "suffix"] {
        if x.get(key)
            .is_some_and(|v| !v.is_null() && *v != Value::Bool(false))
        {
            return Err(unsupported(name, &format!("`{key}`")));
        }
    }
    if x.get("best_of")
        .and_then(Value::as_u64)
        .is_some_and(|b| b > 1)
    {
        return Err(unsupported(name, "`best_of` > 1"));
    }
    let prompt = match &req.prompt {
        Value::String(s) => tokenize(name, model, s, context_size)?,
        Value::Array(items) if items.len() == 1 && items[0].is_string() => tokenize(
            name,
            model,
            items[0].as_str().unwrap_or_default(),
            context_size,
        )?,
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_u64) => {
            check_prompt(name, token_ids(model, items, "prompt")?, context_size)?
        }
        Value::Array(_) => return Err(unsupported(name, "several prompts in one request")),
        _ => {
            return Err(Error::InvalidRequest(
                "`prompt` must be a string or an array of token ids".into(),
            ))
        }
    };
    let params = SamplingParams::from_request(
        Knobs {
            temperature: None,
            top_p: None,
            seed: None,
            presence_penalty: None,
            frequency_penalty: None,
            logit_bias: None,
            extra: x,
        },
        model.n_vocab(),
    )?;
    Ok(Generation {
        prompt,
        params,
        max_tokens: req.max_tokens,
        stop: stops_from_extra(x)?,
        tools: None,
    })
}

/// `/v1/embeddings` inputs: a string, strings, token ids, or lists of token ids.
pub(crate) fn embedding_inputs(
    name: &str,
    model: &LlamaModel,
    input: &Value,
    context_size: u32,
) -> Result<Vec<Vec<LlamaToken>>> {
    let one = |v: &Value| -> Result<Vec<LlamaToken>> {
        let tokens = match v {
            Value::String(s) => model.vocab().tokenize(s.as_bytes(), true, true),
            Value::Array(items) => token_ids(model, items, "input")?,
            _ => {
                return Err(Error::InvalidRequest(
                    "`input` must be a string, strings, or arrays of token ids".into(),
                ))
            }
        };
        if tokens.is_empty() {
            return Err(Error::InvalidRequest("an `input` is empty".into()));
        }
        if tokens.len() > context_size as usize {
            return Err(Error::ContextLength {
                model: name.to_owned(),
                prompt: tokens.len(),
                limit: context_size,
            });
        }
        Ok(tokens)
    };
    match input {
        Value::Array(items) if items.iter().all(Value::is_u64) && !items.is_empty() => {
            Ok(vec![one(input)?])
        }
        Value::Array(items) if !items.is_empty() => items.iter().map(one).collect(),
        Value::String(_) => Ok(vec![one(input)?]),
        _ => Err(Error::InvalidRequest(
            "`input` must be a string, strings, or arrays of token ids".into(),
        )),
    }
}
