//! Providers: how a model is reached. A small trait, one file per kind. Every provider speaks
//! OpenAI's shapes to the gateway: wire formats of other APIs are converted at this boundary.
//!
//! - `openai_compat`: OpenAI and every OpenAI-compatible server; bodies pass through as sent
//! - `anthropic`: the Messages API, translated both ways (request, response, stream events)
//! - `sse`: a server-sent-events parser that survives chunks split anywhere
//! - [`call_scope`]: our request id out, the upstream's request id and rate-limit headers back
//! - `http`: the pooled HTTP clients and the mapping of upstream failures to [`Error`]

mod anthropic;
pub mod call_scope;
pub mod json_grammar;

/// The parameter of a chat request no Anthropic model can honour (for routing).
pub use anthropic::refusal as anthropic_refusal;

/// Chat fields beyond OpenAI's typed ones that the local engine reads (llama.cpp sampling);
/// `logprobs`/`top_logprobs` are read to be refused when asked for.
pub const LOCAL_CHAT_FIELDS: &[&str] = &[
    "top_k",
    "min_p",
    "repetition_penalty",
    "ignore_eos",
    "logprobs",
    "top_logprobs",
];

/// OpenAI fields that only concern OpenAI's platform (storage, billing tier, cache routing,
/// abuse tracking): they change no answer, and providers that have no use for them ignore them.
pub const PLATFORM_FIELDS: &[&str] = &[
    "store",
    "service_tier",
    "metadata",
    "prompt_cache_key",
    "safety_identifier",
];

/// The functions a local model's tool grammar is built from for this request: `None` when
/// tools are not in play (none offered, or `tool_choice: "none"`); a named choice is that
/// function alone. The engine plans by the same rules (`llmrr-engine`'s `chat::tools::plan`,
/// which also refuses a named choice that is not among the tools, or two tools of one name),
/// and routing asks [`local_tools_compile`] so that it does not send a local model a request it
/// would refuse (the grammar's size is checked on a root a little shorter than the engine's).
pub fn local_tool_functions(
    req: &ChatCompletionRequest,
) -> Option<Vec<&llmrr_types::openai::FunctionDefinition>> {
    use llmrr_types::openai::{ToolChoice, ToolChoiceMode};
    let tools = req.tools.as_deref().filter(|t| !t.is_empty())?;
    match &req.tool_choice {
        Some(ToolChoice::Mode(ToolChoiceMode::None)) => None,
        Some(ToolChoice::Named(n)) => Some(
            tools
                .iter()
                .filter(|t| t.function.name == n.function.name)
                .map(|t| &t.function)
                .collect(),
        ),
        _ => Some(tools.iter().map(|t| &t.function).collect()),
    }
}

/// Whether the tools in play compile to one grammar (a function without `parameters` takes
/// an empty object).
pub fn local_tools_compile(functions: &[&llmrr_types::openai::FunctionDefinition]) -> bool {
    let empty = serde_json::json!({"type": "object", "properties": {}});
    let schemas: Vec<&serde_json::Value> = functions
        .iter()
        .map(|f| f.parameters.as_ref().unwrap_or(&empty))
        .collect();
    json_grammar::grammar_of(&schemas, |tops| tops.join(" | ")).is_ok()
}

/// The first chat field the local engine would not read (refused rather than ignored).
pub fn local_unknown_field(req: &ChatCompletionRequest) -> Option<&str> {
    req.extra
        .keys()
        .map(String::as_str)
        .find(|k| !LOCAL_CHAT_FIELDS.contains(k) && !PLATFORM_FIELDS.contains(k))
}
mod http;
mod openai_compat;
mod responses_api;
pub mod sse;
mod translated;

use crate::config::{ModelSpec, ProviderKind};
use crate::error::{Error, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use llmrr_types::openai::{ChatCompletionRequest, CompletionRequest, EmbeddingRequest, Usage};
use std::sync::Arc;
use std::time::Duration;

pub use http::ClientPool;

/// A complete, non-streamed answer: OpenAI's JSON body and the usage read from it.
#[derive(Debug, Clone)]
pub struct Completed {
    pub body: Bytes,
    pub usage: Usage,
    /// Compute time the answer took, where the provider knows it (local models), for prices
    /// per compute-second.
    pub compute: Option<Duration>,
}

/// One event of a streamed answer.
#[derive(Debug, Clone)]
pub struct StreamChunk {
    /// The JSON text of one OpenAI chunk object (`chat.completion.chunk` or `text_completion`).
    pub data: Bytes,
    /// Usage, when the chunk carries it (the last one, usually).
    pub usage: Option<Usage>,
    /// A chunk with no choices: it only carries usage, and reaches the client only when the
    /// client asked for usage (`stream_options.include_usage`).
    pub usage_only: bool,
    /// Whether the chunk carries generated output (text, tool call, refusal) — the first such
    /// chunk marks the time to first token.
    pub has_output: bool,
    /// Compute time of the whole answer, on the chunk that carries usage (local models).
    pub compute: Option<Duration>,
}

/// The chunks of a streamed answer. It ends with `Ok` items only when the upstream finished
/// the stream properly; a cut or failed stream yields an `Err` as its last item.
pub type ChunkStream = BoxStream<'static, Result<StreamChunk>>;

#[async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    async fn chat(&self, req: &ChatCompletionRequest) -> Result<Completed>;

    /// Resolves once the upstream has accepted the request (status and headers read), so a
    /// failure before the first byte is an `Err` here, not in the stream.
    async fn chat_stream(&self, req: &ChatCompletionRequest) -> Result<ChunkStream>;

    async fn completion(&self, req: &CompletionRequest) -> Result<Completed>;

    async fn completion_stream(&self, req: &CompletionRequest) -> Result<ChunkStream>;

    async fn embeddings(&self, req: &EmbeddingRequest) -> Result<Completed>;

    /// A cheap request that shows whether the upstream is up (its model list).
    async fn probe(&self) -> Result<()>;

    /// The prompt's size in tokens as the upstream counts it, where it can (`None`: it has no
    /// way to count; the gateway estimates).
    async fn count_tokens(&self, _req: &ChatCompletionRequest) -> Result<Option<u64>> {
        Ok(None)
    }

    /// What the provider knows about the model's own state, for `/admin/models` (a local
    /// model: loaded or not, memory, load time…).
    fn status(&self) -> Option<serde_json::Value> {
        None
    }

    /// What the model can do where the provider knows better than the config's defaults (a
    /// local model's chat template decides tool calling); `None`: as configured.
    fn capabilities(&self) -> Option<crate::config::Capabilities> {
        None
    }

    /// A local model: stay loaded for `keep` once idle (`None`: as configured; zero: unload
    /// once idle), and load now when `load`. `false`: the model has no such lifecycle (a
    /// remote model).
    async fn keep_alive(&self, _keep: Option<Duration>, _load: bool) -> Result<bool> {
        Ok(false)
    }
}

/// Makes the providers of `provider = "local"` models: the in-process engine (the
/// `llmrr-engine` crate) implements it, so that core does not depend on llama.cpp.
pub trait LocalBackend: Send + Sync {
    fn provider(&self, spec: &ModelSpec) -> Result<Arc<dyn Provider>>;
}

/// Build the provider that serves `spec`, sharing HTTP clients through `pool`; local models
/// come from `local`.
pub fn build(
    spec: &ModelSpec,
    pool: &mut ClientPool,
    local: Option<&dyn LocalBackend>,
) -> Result<Arc<dyn Provider>> {
    if spec.provider == ProviderKind::Local {
        return match local {
            Some(backend) => backend.provider(spec),
            None => Err(Error::config(
                format!("models.{}", spec.name),
                "this build of llmrr has no local engine (built without the `local` feature)",
            )),
        };
    }
    let client = pool.client_for(spec)?;
    Ok(match spec.provider {
        ProviderKind::Anthropic => {
            Arc::new(anthropic::Anthropic::new(spec, client, pool.target(spec))?)
        }
        _ => Arc::new(openai_compat::OpenAiCompat::new(
            spec,
            client,
            pool.target(spec),
        )?),
    })
}

pub(crate) fn unsupported(spec_name: &str, provider: ProviderKind, what: &str) -> Error {
    Error::Unsupported {
        model: spec_name.to_owned(),
        provider: provider.as_str(),
        what: what.to_owned(),
    }
}
