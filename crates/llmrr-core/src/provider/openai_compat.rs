//! OpenAI and every OpenAI-compatible server (vLLM, llama-server, Ollama, Groq, OpenRouter…).
//! Request bodies are forwarded as the client sent them, with only the model name replaced;
//! response bodies are passed through byte for byte after their usage is read. A server that
//! speaks the Responses API too (`responses_api = true`) is sent a Responses client's own body
//! at its `/responses`, and the answer is read back as chat (`super::responses_api`).

use super::http::{sse_events, Target};
use super::responses_api;
use super::translated::translated;
use super::{ChunkStream, Completed, Provider, StreamChunk};
use crate::config::{ModelSpec, ProviderKind};
use crate::error::{Error, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use llmrr_types::openai::{
    ChatCompletionRequest, CompletionRequest, EmbeddingRequest, StreamOptions, Usage,
};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub struct OpenAiCompat {
    client: reqwest::Client,
    target: Target,
    upstream_model: String,
    headers: HeaderMap,
    chat_url: String,
    completions_url: String,
    embeddings_url: String,
    models_url: String,
    /// `/responses`, where the server speaks the Responses API.
    responses_url: Option<String>,
    /// Streams always ask the upstream for usage, so cost is exact; the usage chunk reaches
    /// the client only when it asked for it.
    usage_options: StreamOptions,
}

impl OpenAiCompat {
    pub fn new(spec: &ModelSpec, client: reqwest::Client, target: Target) -> Result<Self> {
        let mut headers = HeaderMap::new();
        let bad =
            |what: &str| Error::config(format!("models.{}", spec.name), format!("invalid {what}"));
        if let Some(key) = &spec.api_key {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                .map_err(|_| bad("api_key"))?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        if let Some(org) = &spec.organization {
            headers.insert(
                "openai-organization",
                HeaderValue::from_str(org).map_err(|_| bad("organization"))?,
            );
        }
        super::http::extra_headers(spec, &mut headers)?;
        Ok(OpenAiCompat {
            client,
            target,
            upstream_model: spec.upstream_model.clone(),
            headers,
            chat_url: format!("{}/chat/completions", spec.base_url),
            completions_url: format!("{}/completions", spec.base_url),
            embeddings_url: format!("{}/embeddings", spec.base_url),
            models_url: format!("{}/models", spec.base_url),
            responses_url: spec
                .responses_api
                .then(|| format!("{}/responses", spec.base_url)),
            usage_options: StreamOptions {
                include_usage: Some(true),
                extra: Default::default(),
            },
        })
    }

    fn post(&self, url: &str, body: &impl Serialize) -> Result<reqwest::RequestBuilder> {
        let json = serde_json::to_vec(body)
            .map_err(|e| Error::Internal(format!("cannot encode the request: {e}")))?;
        Ok(self
            .client
            .post(url)
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(self.target.timeout)
            .body(json))
    }

    /// Where to send the client's own Responses body, when it has one and the server speaks
    /// the Responses API.
    fn responses<'a>(&'a self, req: &'a ChatCompletionRequest) -> Option<(&'a str, &'a Value)> {
        Some((self.responses_url.as_deref()?, req.responses_body()?))
    }

    async fn complete(&self, req: reqwest::RequestBuilder) -> Result<Completed> {
        let resp = self.target.send(req).await?;
        let body = self.target.body(resp).await?;
        let probe: BodyProbe = serde_json::from_slice(&body).map_err(|e| {
            self.target
                .protocol(format!("the response is not JSON: {e}"))
        })?;
        Ok(Completed {
            compute: None,
            body,
            usage: probe.usage.unwrap_or_default(),
        })
    }

    async fn stream(&self, req: reqwest::RequestBuilder) -> Result<ChunkStream> {
        let resp = self.target.send(req).await?;
        let events = sse_events(self.target.clone(), resp);
        let target = self.target.clone();
        // State: the events, and whether the stream is over (after [DONE] or an error).
        Ok(futures_util::stream::unfold(
            (events, target, false),
            |(mut events, target, over)| async move {
                if over {
                    return None;
                }
                let item = match events.next().await {
                    None => Err(target.protocol("the stream ended before [DONE]")),
                    Some(Err(e)) => Err(e),
                    Some(Ok(ev)) if ev.data == "[DONE]" => return None,
                    Some(Ok(ev)) => chunk_from_event(&target, ev.data),
                };
                let over = item.is_err();
                Some((item, (events, target, over)))
            },
        )
        .boxed())
    }
}

fn chunk_from_event(target: &Target, data: String) -> Result<StreamChunk> {
    let probe: ChunkProbe = serde_json::from_str(&data)
        .map_err(|e| target.protocol(format!("a stream event is not a JSON chunk: {e}")))?;
    if let Some(err) = probe.error {
        // Some servers report a failure inside the stream after a 200.
        let body = serde_json::json!({ "error": err }).to_string();
        return Err(target.error_from_body(502, body.as_bytes(), None));
    }
    let has_output = probe.choices.iter().any(ChoiceProbe::has_output);
    Ok(StreamChunk {
        compute: None,
        usage_only: probe.choices.is_empty(),
        usage: probe.usage,
        has_output,
        data: Bytes::from(data),
    })
}

#[derive(Deserialize)]
struct BodyProbe {
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ChunkProbe {
    #[serde(default)]
    choices: Vec<ChoiceProbe>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChoiceProbe {
    #[serde(default)]
    delta: Option<DeltaProbe>,
    /// Legacy completions stream `text` instead of a delta.
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct DeltaProbe {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<IgnoredAny>,
    #[serde(default)]
    refusal: Option<String>,
}

impl ChoiceProbe {
    fn has_output(&self) -> bool {
        let delta = self.delta.as_ref().is_some_and(|d| {
            d.content.as_deref().is_some_and(|c| !c.is_empty())
                || d.tool_calls.is_some()
                || d.refusal.as_deref().is_some_and(|r| !r.is_empty())
        });
        delta || self.text.as_deref().is_some_and(|t| !t.is_empty())
    }
}

#[async_trait]
impl Provider for OpenAiCompat {
    fn kind(&self) -> ProviderKind {
        ProviderKind::OpenAi
    }

    async fn chat(&self, req: &ChatCompletionRequest) -> Result<Completed> {
        if let Some((url, native)) = self.responses(req) {
            let body = responses_api::body(native, &self.upstream_model, false);
            let resp = self.target.send(self.post(url, &body)?).await?;
            let body = self.target.body(resp).await?;
            let answer = serde_json::from_slice(&body).map_err(|e| {
                self.target
                    .protocol(format!("not a Responses response: {e}"))
            })?;
            let completion = responses_api::to_completion(&self.target, answer)?;
            return Ok(Completed {
                compute: None,
                usage: completion.usage.unwrap_or_default(),
                body: Bytes::from(
                    serde_json::to_vec(&completion)
                        .map_err(|e| Error::Internal(format!("cannot encode the answer: {e}")))?,
                ),
            });
        }
        let body = req.outbound(&self.upstream_model, None);
        self.complete(self.post(&self.chat_url, &body)?).await
    }

    async fn chat_stream(&self, req: &ChatCompletionRequest) -> Result<ChunkStream> {
        if let Some((url, native)) = self.responses(req) {
            let body = responses_api::body(native, &self.upstream_model, true);
            let resp = self.target.send(self.post(url, &body)?).await?;
            let events = sse_events(self.target.clone(), resp);
            let tr = responses_api::Translator::default();
            return Ok(translated(
                self.target.clone(),
                events,
                tr,
                "response.completed or response.incomplete",
            ));
        }
        let options = merged_options(&self.usage_options, req.stream_options.as_ref());
        let body = req.outbound(&self.upstream_model, Some(&options));
        self.stream(self.post(&self.chat_url, &body)?).await
    }

    async fn completion(&self, req: &CompletionRequest) -> Result<Completed> {
        let body = req.outbound(&self.upstream_model, None);
        self.complete(self.post(&self.completions_url, &body)?)
            .await
    }

    async fn completion_stream(&self, req: &CompletionRequest) -> Result<ChunkStream> {
        let options = merged_options(&self.usage_options, req.stream_options.as_ref());
        let body = req.outbound(&self.upstream_model, Some(&options));
        self.stream(self.post(&self.completions_url, &body)?).await
    }

    async fn embeddings(&self, req: &EmbeddingRequest) -> Result<Completed> {
        let body = req.outbound(&self.upstream_model);
        self.complete(self.post(&self.embeddings_url, &body)?).await
    }

    async fn probe(&self) -> Result<()> {
        self.target
            .get_ok(&self.client, &self.models_url, &self.headers)
            .await
    }
}

/// The client's stream options with `include_usage` forced on.
fn merged_options(forced: &StreamOptions, client: Option<&StreamOptions>) -> StreamOptions {
    match client {
        None => forced.clone(),
        Some(c) => StreamOptions {
            include_usage: Some(true),
            extra: c.extra.clone(),
        },
    }
}
