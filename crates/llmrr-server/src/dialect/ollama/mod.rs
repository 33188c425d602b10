//! Ollama's API, so that tools written for Ollama (Open WebUI, editor plugins, the `ollama`
//! client libraries) reach every model and route of llmrr: `request` translates its chat,
//! generate and embed requests to the gateway's OpenAI requests; `response` writes answers,
//! NDJSON stream lines, embeddings and errors in its shapes.

pub mod request;
pub mod response;

pub use response::OllamaError;
