//! The `llmrr` domain, without an HTTP server: configuration, providers, the gateway pipeline
//! that every request goes through, the store (request log, API keys), auth and metrics.
//!
//! Layout, in the order a request meets it:
//! - [`config`]: raw TOML -> validated [`config::Config`]
//! - [`auth`]: API keys (master and virtual) -> [`auth::KeyContext`]
//! - [`answer`]: answers as typed events (stream items, chunk events, errors) that the
//!   server frames per API dialect
//! - [`gateway`]: THE request pipeline: validate, plan, execute the plan (timeouts, retries,
//!   fallbacks), finish (usage -> cost -> request log, metrics) even when the client has gone
//! - [`routing`]: routes and strategies, live stats, circuit breakers, retries, rollouts
//! - [`models`]: the configured models and what is kept per model
//! - [`validate`]: request values the wire types cannot check
//! - [`provider`]: how a model is reached (OpenAI-compatible, Anthropic)
//! - [`limits`]: rate limits, quotas, concurrency, admission queues, the global cap
//! - [`guardrails`]: deny / redact rules on input and output
//! - [`cache`]: the response cache (memory, disk, shared tiers; coalescing)
//! - [`money`]: prices, exact cost, the spend ledger, budgets, alerts, spend analytics
//! - [`shared`]: state several replicas share (in-process or Redis)
//! - [`request_log`]: the batched, off-path writer of the append-only request log, and the
//!   access line logged per request
//! - [`store`]: SQLite / Postgres: migrations, request-log rows, keys
//! - [`telemetry`]: metric names and recording
//! - [`spans`]: the trace spans of the request path (GenAI conventions) and the trace
//!   context sent upstream
//! - [`error`]: the one error enum, with its HTTP status, type, code and label

pub mod answer;
pub mod auth;
pub mod cache;
pub mod config;
pub mod error;
pub mod gateway;
pub mod guardrails;
mod health;
pub mod limits;
pub mod models;
pub mod money;
pub mod provider;
pub mod request_log;
pub mod routing;
pub mod secret;
pub mod shared;
pub mod spans;
pub mod store;
pub mod telemetry;
pub mod validate;

pub use error::{Error, Result};
pub use gateway::{Answer, Gateway, RequestContext, StreamAnswer};
pub use secret::Secret;
