//! Anthropic's Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`) over the
//! gateway: an Anthropic client reaches every configured model — OpenAI-compatible,
//! Anthropic, local — with routing, fallbacks, limits, budgets, the cache and the request log
//! exactly as a chat completion does.
//!
//! - `request`: a Messages request -> the gateway's chat request (system, content blocks,
//!   tool use and results, tools, tool_choice, sampling, stop sequences, thinking, metadata)
//! - `response`: a whole answer -> a Messages response
//! - `stream`: stream items -> Anthropic's event sequence (message_start, content blocks with
//!   text, thinking and input_json deltas, message_delta with usage and stop_reason,
//!   message_stop, ping, error)
//! - `error`: Anthropic's error envelope and error types

mod error;
mod request;
mod response;
mod stream;

pub use error::{envelope, AnthropicError};
pub use request::{to_chat, token_count_request};
pub use response::to_message;
pub use stream::EventWriter;
