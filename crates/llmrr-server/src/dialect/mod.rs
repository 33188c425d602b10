//! API dialects: how the gateway's answers (typed stream items, whole answers, typed errors)
//! are written for each API a client may speak, one module per API.
//!
//! - [`openai`]: OpenAI's chat and legacy completions — SSE `data:` frames ending with
//!   `[DONE]`, the error envelope `{"error": {…}}`
//! - [`responses`]: OpenAI's Responses API — requests translated to the gateway's chat
//!   request, answers to response objects, streams to its semantic events (OpenAI's envelope)
//! - [`anthropic`]: Anthropic's Messages API — requests translated to the gateway's chat
//!   request, answers to Messages, streams to Anthropic's event sequence, its error envelope
//! - [`ollama`]: Ollama's API (`/api/…`) — chat, generate and embed requests translated,
//!   answers and NDJSON stream lines in Ollama's shapes, `{"error": "…"}`
//!
//! [`Dialect::of_path`] says which dialect a path speaks, so that failures before the
//! handler (auth, load shedding, a bad body) answer in the client's own envelope too.

pub mod anthropic;
pub mod ollama;
pub mod openai;
pub mod responses;

use axum::response::{IntoResponse, Response};
use bytes::{BufMut, BytesMut};
use llmrr_core::Error;
use llmrr_types::openai::StreamOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
    Ollama,
}

impl Dialect {
    pub fn of_path(path: &str) -> Dialect {
        if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Dialect::Anthropic
        } else if path.starts_with("/api/") {
            Dialect::Ollama
        } else {
            Dialect::OpenAi
        }
    }

    /// `e` as this dialect's error response.
    pub fn error(self, e: Error) -> Response {
        match self {
            Dialect::OpenAi => crate::error::ApiError(e).into_response(),
            Dialect::Anthropic => anthropic::AnthropicError(e).into_response(),
            Dialect::Ollama => ollama::OllamaError(e).into_response(),
        }
    }
}

/// The routing explanation as an SSE comment line (`: llmrr {…}`), which every SDK skips.
pub fn explain_comment(json: &[u8], out: &mut BytesMut) {
    out.put_slice(b": llmrr ");
    out.put_slice(json);
    out.put_slice(b"\n\n");
}

/// What a translated stream asks of the gateway: usage always (the dialects' last events
/// carry it).
pub fn with_usage(stream: bool) -> Option<StreamOptions> {
    stream.then(|| StreamOptions {
        include_usage: Some(true),
        extra: Default::default(),
    })
}
