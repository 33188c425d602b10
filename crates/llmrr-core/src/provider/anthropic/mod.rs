//! Anthropic's Messages API behind OpenAI's shapes: requests are translated to Messages
//! (`request`), answers back to chat completions (`response`), and every stream event to
//! OpenAI chunks (`stream`).

mod request;
mod response;
mod stream;

pub use request::refusal;

use super::http::{sse_events, Target};
use super::{unsupported, ChunkStream, Completed, Provider};
use crate::config::{ModelSpec, ProviderKind};
use crate::error::{Error, Result};
use async_trait::async_trait;
use bytes::Bytes;
use llmrr_types::anthropic::MessagesResponse;
use llmrr_types::openai::{ChatCompletionRequest, CompletionRequest, EmbeddingRequest};
use reqwest::header::{HeaderMap, HeaderValue};

pub struct Anthropic {
    client: reqwest::Client,
    target: Target,
    upstream_model: String,
    default_max_tokens: u32,
    /// The model's configured output limit, if any.
    max_output_tokens: Option<u32>,
    headers: HeaderMap,
    messages_url: String,
    count_url: String,
    models_url: String,
}

impl Anthropic {
    pub fn new(spec: &ModelSpec, client: reqwest::Client, target: Target) -> Result<Self> {
        let bad =
            |what: &str| Error::config(format!("models.{}", spec.name), format!("invalid {what}"));
        let mut headers = HeaderMap::new();
        if let Some(key) = &spec.api_key {
            let mut v = HeaderValue::from_str(key.expose()).map_err(|_| bad("api_key"))?;
            v.set_sensitive(true);
            headers.insert("x-api-key", v);
        }
        headers.insert(
            "anthropic-version",
            HeaderValue::from_str(&spec.anthropic_version).map_err(|_| bad("anthropic_version"))?,
        );
        super::http::extra_headers(spec, &mut headers)?;
        Ok(Anthropic {
            client,
            target,
            upstream_model: spec.upstream_model.clone(),
            default_max_tokens: spec
                .max_output_tokens
                .unwrap_or(crate::config::ANTHROPIC_MAX_TOKENS),
            max_output_tokens: spec.max_output_tokens,
            headers,
            messages_url: format!("{}/messages", spec.base_url),
            count_url: format!("{}/messages/count_tokens", spec.base_url),
            models_url: format!("{}/models", spec.base_url),
        })
    }

    /// The request, and whether its answer comes back in the `response_format` tool.
    fn post(
        &self,
        req: &ChatCompletionRequest,
        stream: bool,
    ) -> Result<(reqwest::RequestBuilder, bool)> {
        // The client's own Messages body, when it came through the Messages API.
        if let Some(native) = req.anthropic_body() {
            let body =
                request::native(native, &self.upstream_model, stream, self.max_output_tokens);
            return Ok((self.builder(&body)?, false));
        }
        let translated = request::translate(
            req,
            &self.upstream_model,
            self.default_max_tokens,
            self.max_output_tokens,
            stream,
        )
        .map_err(|e| match e {
            request::TranslateError::Unsupported(what) => {
                unsupported(&self.target.model, ProviderKind::Anthropic, &what)
            }
            request::TranslateError::Invalid { message, param } => {
                Error::invalid(message, Some(param))
            }
        })?;
        Ok((self.builder(&translated.body)?, translated.json_tool))
    }

    fn builder(&self, body: &impl serde::Serialize) -> Result<reqwest::RequestBuilder> {
        let json = serde_json::to_vec(body)
            .map_err(|e| Error::Internal(format!("cannot encode the request: {e}")))?;
        Ok(self
            .client
            .post(&self.messages_url)
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(self.target.timeout)
            .body(json))
    }
}

#[async_trait]
impl Provider for Anthropic {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Anthropic
    }

    async fn chat(&self, req: &ChatCompletionRequest) -> Result<Completed> {
        let (post, json_tool) = self.post(req, false)?;
        let resp = self.target.send(post).await?;
        let body = self.target.body(resp).await?;
        let msg: MessagesResponse = serde_json::from_slice(&body).map_err(|e| {
            self.target
                .protocol(format!("not a Messages response: {e}"))
        })?;
        let completion = response::to_chat_completion(msg, json_tool);
        let usage = completion.usage.unwrap_or_default();
        let body = serde_json::to_vec(&completion)
            .map_err(|e| Error::Internal(format!("cannot encode the response: {e}")))?;
        Ok(Completed {
            compute: None,
            body: Bytes::from(body),
            usage,
        })
    }

    async fn chat_stream(&self, req: &ChatCompletionRequest) -> Result<ChunkStream> {
        let (post, json_tool) = self.post(req, true)?;
        let resp = self.target.send(post).await?;
        let events = sse_events(self.target.clone(), resp);
        Ok(stream::translate(self.target.clone(), events, json_tool))
    }

    async fn completion(&self, _req: &CompletionRequest) -> Result<Completed> {
        Err(unsupported(
            &self.target.model,
            ProviderKind::Anthropic,
            "legacy completions (use /v1/chat/completions)",
        ))
    }

    async fn completion_stream(&self, _req: &CompletionRequest) -> Result<ChunkStream> {
        Err(unsupported(
            &self.target.model,
            ProviderKind::Anthropic,
            "legacy completions (use /v1/chat/completions)",
        ))
    }

    async fn embeddings(&self, _req: &EmbeddingRequest) -> Result<Completed> {
        Err(unsupported(
            &self.target.model,
            ProviderKind::Anthropic,
            "embeddings",
        ))
    }

    async fn probe(&self) -> Result<()> {
        self.target
            .get_ok(&self.client, &self.models_url, &self.headers)
            .await
    }

    /// Anthropic's own count (`/messages/count_tokens`, free), of the client's own Messages
    /// body: the fields that endpoint takes.
    async fn count_tokens(&self, req: &ChatCompletionRequest) -> Result<Option<u64>> {
        let Some(native) = req.anthropic_body() else {
            return Ok(None);
        };
        let mut body = serde_json::Map::new();
        body.insert("model".into(), self.upstream_model.clone().into());
        for k in COUNTED_FIELDS {
            if let Some(v) = native.get(*k) {
                body.insert((*k).into(), v.clone());
            }
        }
        let post = self
            .client
            .post(&self.count_url)
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(self.target.timeout)
            .body(serde_json::Value::Object(body).to_string());
        let resp = self.target.send(post).await?;
        let answer: serde_json::Value = serde_json::from_slice(&self.target.body(resp).await?)
            .map_err(|e| self.target.protocol(format!("not a token count: {e}")))?;
        answer["input_tokens"]
            .as_u64()
            .map(Some)
            .ok_or_else(|| self.target.protocol("a token count without input_tokens"))
    }
}

/// What Anthropic's token count takes of a Messages body.
const COUNTED_FIELDS: &[&str] = &[
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "mcp_servers",
];

/// Anthropic's stop reasons as OpenAI finish reasons (`json_tool`: the only tool use is the
/// `response_format` answer, a plain stop for the client).
fn finish_reason(stop_reason: &str, json_tool: bool) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" if json_tool => "stop",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn
        _ => "stop",
    }
}

fn usage(u: &llmrr_types::anthropic::Usage) -> llmrr_types::openai::Usage {
    let cached = u.cache_read_input_tokens.unwrap_or(0);
    let written = u.cache_creation_input_tokens.unwrap_or(0);
    let prompt = u.input_tokens + cached + written;
    llmrr_types::openai::Usage {
        prompt_tokens: prompt,
        completion_tokens: u.output_tokens,
        total_tokens: prompt + u.output_tokens,
        prompt_tokens_details: (cached > 0).then_some(llmrr_types::openai::PromptTokensDetails {
            cached_tokens: cached,
        }),
        completion_tokens_details: None,
        cache_creation_input_tokens: written,
        cache_creation_1h_input_tokens: u
            .cache_creation
            .map_or(0, |c| c.ephemeral_1h_input_tokens.min(written)),
    }
}
