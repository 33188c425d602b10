//! The engine's one error enum. Each variant maps to the status, type and code an OpenAI
//! client expects, and reaches the gateway as an upstream error of provider `local`, so that
//! routing treats a local failure like any other (503 falls back, 400 does not).

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the prompt has {prompt} tokens; `{model}` takes at most {limit} per sequence (prompt + output)")]
    ContextLength {
        model: String,
        prompt: usize,
        limit: u32,
    },
    #[error(
        "`{0}` has no chat template in its GGUF metadata; use /v1/completions with a raw prompt"
    )]
    NoChatTemplate(String),
    #[error("`{model}` {what}")]
    Unsupported { model: String, what: String },
    #[error("not enough memory to load `{model}`: it needs {need_mb} MiB, the budget is {budget_mb} MiB and {busy_mb} MiB are held by models that cannot be unloaded ({busy})")]
    NoMemory {
        model: String,
        need_mb: u64,
        budget_mb: u64,
        busy_mb: u64,
        busy: String,
    },
    #[error("`{model}` is busy: {queued} requests are already waiting")]
    Overloaded { model: String, queued: usize },
    #[error("could not load `{model}`: {message}")]
    Load { model: String, message: String },
    #[error("`{model}` failed while generating: {message}")]
    Inference { model: String, message: String },
    #[error("cannot read {path}: {message}")]
    File { path: String, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// HTTP status, OpenAI error type and code.
    pub fn wire(&self) -> (u16, &'static str, &'static str) {
        match self {
            Error::InvalidRequest(_) => (400, "invalid_request_error", "invalid_value"),
            Error::ContextLength { .. } => {
                (400, "invalid_request_error", "context_length_exceeded")
            }
            Error::NoChatTemplate(_) => (400, "invalid_request_error", "no_chat_template"),
            Error::Unsupported { .. } => (400, "invalid_request_error", "unsupported_parameter"),
            Error::NoMemory { .. } => (503, "server_error", "insufficient_memory"),
            Error::Overloaded { .. } => (503, "server_error", "overloaded"),
            Error::Load { .. } | Error::File { .. } => (500, "server_error", "model_load_failed"),
            Error::Inference { .. } => (500, "server_error", "inference_failed"),
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::NoMemory { .. } | Error::Overloaded { .. } => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// As the gateway's error: an upstream error of provider `local`.
    pub fn into_core(self, model: &str) -> llmrr_core::Error {
        let (status, kind, code) = self.wire();
        llmrr_core::Error::Upstream(Box::new(llmrr_core::error::UpstreamError {
            model: model.to_owned(),
            provider: "local",
            status,
            kind: kind.to_owned(),
            code: Some(code.to_owned()),
            param: None,
            retry_after: self.retry_after(),
            message: self.to_string(),
        }))
    }
}
