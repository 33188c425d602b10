//! Wire types of the APIs `llmrr` speaks, and nothing else: serde structs for OpenAI's chat
//! completions, legacy completions, embeddings, models and error body (`openai`), and for
//! Anthropic's Messages API (`anthropic`). No I/O, no async, no validation beyond what the
//! shapes themselves enforce: the gateway validates values and translates between formats.
//!
//! Layout:
//! - `openai::chat`: chat completion request, response, and streaming chunk
//! - `openai::content`: message content (a string or an array of typed parts)
//! - `openai::misc`: legacy completions, embeddings, models list, the error envelope
//! - `anthropic`: Messages API request, response and streaming events

pub mod anthropic;
pub mod openai;
