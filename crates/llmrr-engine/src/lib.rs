//! `llmrr-engine`: local GGUF models served from inside `llmrr` through llama.cpp
//! (`llama-cpp-2`), behind the same [`llmrr_core::provider::Provider`] trait as remote models.
//!
//! Layout, in the order a request meets it:
//! - [`provider`]: OpenAI requests in, OpenAI bodies and stream chunks out
//! - `request`: prompt (chat template or raw), sampling settings, stop strings, limits
//! - [`lifecycle`]: [`Engine`], which loads models on first use, unloads idle ones, and keeps
//!   the loaded ones within a memory budget
//! - `worker`: one thread per loaded model running the continuous-batching loop
//!   (`embed` for models loaded with pooling)
//! - `sampling`, `text`: the sampler chain; UTF-8 assembly and stop strings
//! - [`baseline`]: llama.cpp measured bare (llama-bench's method), for `llmrr bench local`
//! - [`gguf`]: read, write and synthesize GGUF files (no llama.cpp needed)
//! - [`metrics`]: metric names; [`error`]: the one error enum

mod backend;
pub mod baseline;
mod chat;
mod embed;
pub mod error;
pub mod gguf;
pub mod lifecycle;
pub mod metrics;
mod prompt_cache;
pub mod provider;
mod request;
mod sampling;
mod text;
mod worker;

pub use error::{Error, Result};
pub use lifecycle::{Engine, ModelStatus};
pub use provider::EngineBackend;
