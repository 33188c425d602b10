//! Answers as typed events, for the server to frame in the client's API dialect.
//!
//! A started stream yields [`StreamItem`]s: the routing explanation, the answer's chunks, its
//! end, or the error it ends with ([`AnswerError`], typed: a status and a class, not an
//! envelope). No wire framing happens in core: the server writes OpenAI's SSE, Anthropic's
//! event sequence, or any other dialect from these.
//!
//! A chunk travels as the OpenAI chunk object the provider produced (every provider speaks
//! OpenAI's shapes to the gateway), so that an OpenAI client gets every field the upstream
//! sent, unknown ones included. [`events_of`] reads a chunk as typed [`AnswerEvent`]s (start,
//! text, reasoning, tool-call deltas, finish, usage) and [`completion_of`] a whole answer as
//! [`Completion`]: the one place a chunk or an answer is interpreted, for every other dialect.

mod read;

pub use read::{completion_of, events_of, ChunkEvents, Completion, CompletionChoice};

use crate::error::Error;
use bytes::Bytes;
use llmrr_types::openai::Usage;
use std::time::Duration;

/// One item of a started stream.
#[derive(Debug, Clone)]
pub enum StreamItem {
    /// The routing explanation (JSON), before the first chunk, when the request asked for it.
    Explain(Bytes),
    /// One chunk of the answer: the JSON text of an OpenAI `chat.completion.chunk` (or
    /// `text_completion`) object. The chunk that carries usage also carries
    /// `"llmrr": {"cost_usd": …}`.
    Chunk(Bytes),
    /// The answer is complete.
    Done,
    /// The stream failed after it had started: it ends here.
    Error(AnswerError),
}

/// An error as every dialect needs it: the HTTP status, the error's class (OpenAI's `type`:
/// `invalid_request_error`, `rate_limit_error`…), its message, and the details OpenAI's
/// envelope carries.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerError {
    pub status: u16,
    pub kind: String,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<String>,
    pub retry_after: Option<Duration>,
}

impl From<&Error> for AnswerError {
    fn from(e: &Error) -> Self {
        let body = e.to_body().error;
        AnswerError {
            status: e.status_code(),
            kind: body.kind,
            message: body.message,
            param: body.param,
            code: body.code,
            retry_after: e.retry_after(),
        }
    }
}

impl AnswerError {
    /// OpenAI's envelope, `{"error": {"message", "type", "param", "code"}}`.
    pub fn openai_body(&self) -> llmrr_types::openai::ErrorBody {
        llmrr_types::openai::ErrorBody {
            error: llmrr_types::openai::ErrorDetail {
                message: self.message.clone(),
                kind: self.kind.clone(),
                param: self.param.clone(),
                code: self.code.clone(),
            },
        }
    }
}

/// What a chunk says, typed. Indexes are the choice's (`choice`) and, for tool calls, the
/// call's position in the answer (`index`), as OpenAI numbers them.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerEvent {
    /// A piece of the answer's text.
    Text { choice: u32, text: String },
    /// A piece of the model's reasoning (extended thinking).
    Reasoning { choice: u32, text: String },
    /// The signature of the reasoning so far (Anthropic's thinking), which a later turn must
    /// send back with it.
    ReasoningSignature { choice: u32, signature: String },
    /// Reasoning the provider keeps encrypted (Anthropic's `redacted_thinking`).
    RedactedReasoning { choice: u32, data: String },
    /// A piece of the model's refusal.
    Refusal { choice: u32, text: String },
    /// A piece of a tool call: its first piece carries the id and the function's name; the
    /// arguments (JSON text) come in pieces.
    ToolCall {
        choice: u32,
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    /// The choice is complete, for OpenAI's reason (`stop`, `length`, `tool_calls`,
    /// `content_filter`).
    Finish { choice: u32, reason: String },
    /// The whole answer's token counts (and its cost, where the gateway knows it).
    Usage {
        usage: Usage,
        cost_usd: Option<String>,
    },
}
