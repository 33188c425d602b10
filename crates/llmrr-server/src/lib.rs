//! The `llmrr` HTTP server as a library: OpenAI-compatible routes, Anthropic's Messages API,
//! the admin API, health and
//! metrics, over the core [`llmrr_core::Gateway`]. The server is a function of a bound
//! listener, the app state and a shutdown signal ([`serve`]); binaries and tests start it the
//! same way.
//!
//! Layout:
//! - [`app`]: the router and THE middleware stack, written down once, in order
//! - `serve`: the accept loop (connection cap, header timeout, bounded shutdown)
//! - `auth`: request id + API key -> `RequestContext` (the one middleware)
//! - `error`: the one mapping of errors to HTTP responses (status, Retry-After, OpenAI's
//!   envelope)
//! - [`dialect`]: each API's framing of answers, streams and errors (OpenAI, Anthropic)
//! - `cors`: CORS for browser clients (`[server.cors]`, off by default)
//! - `local_guard`: without a master key, refuse what a browser could send cross-site
//! - `extract`: the JSON body extractor (413, malformed JSON with its position, bad fields
//!   with their path)
//! - `routes`: one file per endpoint family
//! - [`metrics`]: the process-wide Prometheus recorder
//! - [`telemetry`]: the log (text or JSON, access lines) and OTLP traces
//! - `ui`: the dashboard at `/ui` (embedded page, sign-in sessions, its API)

pub mod app;
mod auth;
mod cache;
mod cors;
pub mod dialect;
mod error;
mod extract;
mod limits;
mod local_guard;
pub mod metrics;
mod routes;
mod serve;
mod state;
pub mod telemetry;
mod ui;

pub use app::router;
pub use serve::serve;
pub use state::{start_gateway, AppState};
