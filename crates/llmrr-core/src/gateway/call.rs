//! A parsed request of any endpoint, owned by the task that serves it.

use super::*;

/// A parsed request of any endpoint, owned by the task that serves it.
pub(super) enum Call {
    Chat(Box<ChatCompletionRequest>),
    Completion(CompletionRequest),
    Embeddings(EmbeddingRequest),
}

impl Call {
    pub(super) fn endpoint(&self) -> Endpoint {
        match self {
            Call::Chat(_) => Endpoint::Chat,
            Call::Completion(_) => Endpoint::Completions,
            Call::Embeddings(_) => Endpoint::Embeddings,
        }
    }

    pub(super) fn model(&self) -> &str {
        match self {
            Call::Chat(r) => &r.model,
            Call::Completion(r) => &r.model,
            Call::Embeddings(r) => &r.model,
        }
    }

    pub(super) async fn complete(&self, p: &dyn Provider) -> Result<Completed> {
        match self {
            Call::Chat(r) => p.chat(r).await,
            Call::Completion(r) => p.completion(r).await,
            Call::Embeddings(r) => p.embeddings(r).await,
        }
    }

    pub(super) async fn open(&self, p: &dyn Provider) -> Result<ChunkStream> {
        match self {
            Call::Chat(r) => p.chat_stream(r).await,
            Call::Completion(r) => p.completion_stream(r).await,
            Call::Embeddings(_) => Err(Error::invalid(
                "embeddings cannot be streamed",
                Some("stream".into()),
            )),
        }
    }

    /// The request's own routing options (`"llmrr": {...}`).
    pub(super) fn llmrr(&self) -> Option<&serde_json::Value> {
        match self {
            Call::Chat(r) => r.llmrr.as_ref(),
            Call::Completion(r) => r.llmrr.as_ref(),
            Call::Embeddings(r) => r.llmrr.as_ref(),
        }
    }

    pub(super) fn include_usage(&self) -> bool {
        let opts = match self {
            Call::Chat(r) => r.stream_options.as_ref(),
            Call::Completion(r) => r.stream_options.as_ref(),
            Call::Embeddings(_) => None,
        };
        opts.and_then(|o| o.include_usage) == Some(true)
    }
}

/// A request that passed validation and has its plan.
pub(super) struct Prepared {
    pub(super) plan: Plan,
    pub(super) options: RequestOptions,
    pub(super) prompt_estimate: u64,
}
