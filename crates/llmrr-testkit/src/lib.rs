//! Test helpers (not published):
//! - [`mock`]: a mock LLM provider over real HTTP speaking OpenAI's and Anthropic's wire
//!   formats, with fault modes chosen by the model name (`mock-429`, `mock-cut`, …)
//! - [`gguf`]: synthetic GGUF models (random weights) for local-inference tests
//! - [`hub`]: a mock Hugging Face-compatible hub (Range requests, checksums, cut downloads)
//! - [`harness`]: starts the gateway on port 0 with a config, over SQLite or Postgres

#![expect(
    clippy::expect_used,
    reason = "test helpers: a broken test environment must fail the test at once, loudly"
)]

pub mod gguf;
pub mod harness;
pub mod hub;
pub mod mock;

pub use harness::{postgres_url, TestGateway};
pub use mock::{MockProvider, Recorded};
