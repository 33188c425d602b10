//! THE request pipeline. Every model call — from the HTTP server or the CLI — goes through
//! [`Gateway`]:
//!
//! 1. validate the request values (`validate`)
//! 2. resolve the model name to a configured model the caller's key may use
//! 3. call the provider — inside a tracked task, so that what follows runs even when the
//!    client hangs up, and shutdown waits for it
//! 4. finish: usage -> cost -> request-log row, metrics
//!
//! Streams take the same path: the provider's chunks are pumped by the tracked task into a
//! bounded channel the server reads; a failure before the first chunk is an `Err` like any
//! other, a failure after it ends the stream with an error event (never a clean end), and a
//! client that leaves cancels the upstream call at once and is logged as status 499.

use crate::auth::{Authenticator, KeyContext};
use crate::config::{Config, ModelSpec};
use crate::cost::cost_of;
use crate::error::{Error, Result};
use crate::provider::{self, ChunkStream, ClientPool, Completed, Provider};
use crate::request_log::RequestLog;
use crate::store::{LogRow, Store};
use crate::telemetry::{self, Endpoint, ModelMetrics};
use crate::validate;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use llmrr_types::openai::{
    ChatCompletionRequest, CompletionRequest, EmbeddingRequest, Model, ModelList, Usage,
};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

/// HTTP status logged when the client hung up before the answer was complete (nginx's).
pub const CLIENT_CLOSED: u16 = 499;
/// Stream frames buffered between the upstream and a slow client.
const STREAM_BUFFER: usize = 64;

/// A configured model and how to reach it.
pub struct ModelEntry {
    pub spec: ModelSpec,
    provider: Arc<dyn Provider>,
    metrics: ModelMetrics,
}

/// One call's identity: who asked, and when.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub id: String,
    pub key: Arc<KeyContext>,
    pub started: Instant,
}

impl RequestContext {
    pub fn new(key: Arc<KeyContext>) -> Self {
        RequestContext {
            id: format!("req_{}", uuid::Uuid::now_v7().simple()),
            key,
            started: Instant::now(),
        }
    }
}

/// A complete answer.
#[derive(Debug)]
pub struct Answer {
    /// OpenAI's JSON body.
    pub body: Bytes,
    pub model: Arc<str>,
    pub provider: &'static str,
    pub usage: Usage,
    pub cost: Decimal,
    /// Time spent in llmrr itself (total minus upstream).
    pub overhead: Duration,
}

/// A stream that has started: the upstream accepted the request.
#[derive(Debug)]
pub struct StreamAnswer {
    pub model: Arc<str>,
    pub provider: &'static str,
    /// SSE frames (`data: …\n\n`), ending with `data: [DONE]` or an error event.
    pub frames: mpsc::Receiver<Bytes>,
    pub overhead: Duration,
}

struct Inner {
    models: HashMap<Arc<str>, Arc<ModelEntry>>,
    /// In config order, for listing.
    ordered: Vec<Arc<ModelEntry>>,
    log: RequestLog,
    auth: Authenticator,
    store: Store,
    tracker: TaskTracker,
    started_unix: i64,
}

/// A cloneable handle: the state is shared behind an `Arc`, read-only after start.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

/// What `finish` records about one call.
struct Finish<'a> {
    ctx: &'a RequestContext,
    endpoint: Endpoint,
    requested: &'a str,
    entry: Option<&'a ModelEntry>,
    stream: bool,
    result: std::result::Result<(), (u16, &'static str)>,
    usage: Usage,
    usage_estimated: bool,
    ttft: Option<Duration>,
    upstream: Option<Duration>,
}

impl Gateway {
    /// Connect the store, start the request-log writer and build every provider.
    pub async fn start(config: &Config) -> Result<Gateway> {
        let store = Store::connect(config.store.url.expose()).await?;
        Self::with_store(config, store)
    }

    pub fn with_store(config: &Config, store: Store) -> Result<Gateway> {
        let mut pool = ClientPool::new();
        let mut models = HashMap::new();
        let mut ordered = Vec::new();
        for spec in &config.models {
            let entry = Arc::new(ModelEntry {
                provider: provider::build(spec, &mut pool)?,
                metrics: ModelMetrics::new(&spec.name, spec.provider.as_str()),
                spec: spec.clone(),
            });
            models.insert(spec.name.clone(), entry.clone());
            ordered.push(entry);
        }
        Ok(Gateway {
            inner: Arc::new(Inner {
                models,
                ordered,
                log: RequestLog::start(store.clone(), &config.store),
                auth: Authenticator::new(config.server.master_key.clone(), store.clone()),
                store,
                tracker: TaskTracker::new(),
                started_unix: time::OffsetDateTime::now_utc().unix_timestamp(),
            }),
        })
    }

    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Wait for every call in flight to finish (at most `grace`), then write the request log.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.tracker.close();
        if tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.inner.tracker.len(),
                "shutdown grace ran out"
            );
        }
        self.inner.log.flush().await;
    }

    /// Make every request-log row of finished calls durable.
    pub async fn flush_log(&self) {
        self.inner.log.flush().await;
    }

    pub fn list_models(&self, key: &KeyContext) -> ModelList {
        ModelList {
            object: "list".into(),
            data: self
                .inner
                .ordered
                .iter()
                .filter(|e| key.may_use(&e.spec.name))
                .map(|e| self.model_object(e))
                .collect(),
        }
    }

    pub fn get_model(&self, key: &KeyContext, id: &str) -> Result<Model> {
        let entry = self.resolve(key, id)?;
        Ok(self.model_object(&entry))
    }

    fn model_object(&self, e: &ModelEntry) -> Model {
        Model {
            id: e.spec.name.to_string(),
            object: "model".into(),
            created: self.inner.started_unix,
            owned_by: e.spec.owned_by.clone(),
        }
    }

    fn resolve(&self, key: &KeyContext, name: &str) -> Result<Arc<ModelEntry>> {
        let entry = self
            .inner
            .models
            .get(name)
            .ok_or_else(|| Error::ModelNotFound {
                model: name.to_owned(),
            })?;
        if !key.may_use(name) {
            return Err(Error::ModelNotAllowed {
                model: name.to_owned(),
            });
        }
        Ok(entry.clone())
    }

    pub async fn chat(&self, ctx: RequestContext, req: ChatCompletionRequest) -> Result<Answer> {
        let entry = self
            .admit(
                &ctx,
                Endpoint::Chat,
                &req.model,
                false,
                validate::chat(&req),
            )
            .await?;
        let this = self.clone();
        self.tracked(async move {
            let provider = entry.provider.clone();
            let call = provider.chat(&req);
            this.complete(ctx, Endpoint::Chat, &req.model, entry, call)
                .await
        })
        .await
    }

    pub async fn completion(&self, ctx: RequestContext, req: CompletionRequest) -> Result<Answer> {
        let entry = self
            .admit(
                &ctx,
                Endpoint::Completions,
                &req.model,
                false,
                validate::completion(&req),
            )
            .await?;
        let this = self.clone();
        self.tracked(async move {
            let provider = entry.provider.clone();
            let call = provider.completion(&req);
            this.complete(ctx, Endpoint::Completions, &req.model, entry, call)
                .await
        })
        .await
    }

    pub async fn embeddings(&self, ctx: RequestContext, req: EmbeddingRequest) -> Result<Answer> {
        let entry = self
            .admit(
                &ctx,
                Endpoint::Embeddings,
                &req.model,
                false,
                validate::embeddings(&req),
            )
            .await?;
        let this = self.clone();
        self.tracked(async move {
            let provider = entry.provider.clone();
            let call = provider.embeddings(&req);
            this.complete(ctx, Endpoint::Embeddings, &req.model, entry, call)
                .await
        })
        .await
    }

    pub async fn chat_stream(
        &self,
        ctx: RequestContext,
        req: ChatCompletionRequest,
    ) -> Result<StreamAnswer> {
        let entry = self
            .admit(&ctx, Endpoint::Chat, &req.model, true, validate::chat(&req))
            .await?;
        let include_usage = req.stream_options.as_ref().and_then(|o| o.include_usage) == Some(true);
        let prompt_estimate = validate::estimate_prompt_tokens(&req);
        let provider = entry.provider.clone();
        self.stream(
            ctx,
            Endpoint::Chat,
            req.model.clone(),
            entry,
            include_usage,
            prompt_estimate,
            async move { provider.chat_stream(&req).await },
        )
        .await
    }

    pub async fn completion_stream(
        &self,
        ctx: RequestContext,
        req: CompletionRequest,
    ) -> Result<StreamAnswer> {
        let entry = self
            .admit(
                &ctx,
                Endpoint::Completions,
                &req.model,
                true,
                validate::completion(&req),
            )
            .await?;
        let include_usage = req.stream_options.as_ref().and_then(|o| o.include_usage) == Some(true);
        let provider = entry.provider.clone();
        self.stream(
            ctx,
            Endpoint::Completions,
            req.model.clone(),
            entry,
            include_usage,
            0,
            async move { provider.completion_stream(&req).await },
        )
        .await
    }

    /// Steps 1-2: validation and model resolution. A failure is logged and counted here.
    async fn admit(
        &self,
        ctx: &RequestContext,
        endpoint: Endpoint,
        requested: &str,
        stream: bool,
        valid: Result<()>,
    ) -> Result<Arc<ModelEntry>> {
        let resolved = valid.and_then(|()| self.resolve(&ctx.key, requested));
        if let Err(e) = &resolved {
            self.finish(Finish {
                ctx,
                endpoint,
                requested,
                entry: None,
                stream,
                result: Err((e.status_code(), e.label())),
                usage: Usage::default(),
                usage_estimated: false,
                ttft: None,
                upstream: None,
            })
            .await;
        }
        resolved
    }

    /// Run `work` as a tracked task and wait for it: if the caller is dropped (the client
    /// hung up), the task still runs to its end and records what happened.
    async fn tracked<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.inner
            .tracker
            .spawn(work)
            .await
            .map_err(|e| Error::Internal(format!("a request task failed: {e}")))?
    }

    /// Steps 3-4 of a non-streamed call.
    async fn complete(
        &self,
        ctx: RequestContext,
        endpoint: Endpoint,
        requested: &str,
        entry: Arc<ModelEntry>,
        call: impl Future<Output = Result<Completed>>,
    ) -> Result<Answer> {
        let upstream_started = Instant::now();
        let result = call.await;
        let upstream = upstream_started.elapsed();
        let (usage, outcome) = match &result {
            Ok(c) => (c.usage, Ok(())),
            Err(e) => (Usage::default(), Err((e.status_code(), e.label()))),
        };
        let cost = self
            .finish(Finish {
                ctx: &ctx,
                endpoint,
                requested,
                entry: Some(&entry),
                stream: false,
                result: outcome,
                usage,
                usage_estimated: false,
                ttft: None,
                upstream: Some(upstream),
            })
            .await;
        let completed = result?;
        Ok(Answer {
            body: completed.body,
            model: entry.spec.name.clone(),
            provider: entry.spec.provider.as_str(),
            usage,
            cost,
            overhead: ctx.started.elapsed().saturating_sub(upstream),
        })
    }

    /// Steps 3-4 of a streamed call: start the upstream stream in a tracked task, answer as
    /// soon as it has started (or failed), then keep pumping it to the client.
    #[expect(
        clippy::too_many_arguments,
        reason = "one private call site per endpoint"
    )]
    async fn stream(
        &self,
        ctx: RequestContext,
        endpoint: Endpoint,
        requested: String,
        entry: Arc<ModelEntry>,
        include_usage: bool,
        prompt_estimate: u64,
        open: impl Future<Output = Result<ChunkStream>> + Send + 'static,
    ) -> Result<StreamAnswer> {
        let (ready_tx, ready_rx) = oneshot::channel::<Result<Duration>>();
        let (frames_tx, frames_rx) = mpsc::channel(STREAM_BUFFER);
        let this = self.clone();
        let task_entry = entry.clone();
        self.inner.tracker.spawn(async move {
            let entry = task_entry;
            let upstream_started = Instant::now();
            let chunks = match open.await {
                Ok(chunks) => chunks,
                Err(e) => {
                    this.finish(Finish {
                        ctx: &ctx,
                        endpoint,
                        requested: &requested,
                        entry: Some(&entry),
                        stream: true,
                        result: Err((e.status_code(), e.label())),
                        usage: Usage::default(),
                        usage_estimated: false,
                        ttft: None,
                        upstream: Some(upstream_started.elapsed()),
                    })
                    .await;
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let overhead = ctx
                .started
                .elapsed()
                .saturating_sub(upstream_started.elapsed());
            let _ = ready_tx.send(Ok(overhead));
            let pumped = pump(chunks, &frames_tx, include_usage, &ctx).await;
            let (usage, usage_estimated) = match pumped.usage {
                Some(u) => (u, false),
                None => (
                    Usage {
                        prompt_tokens: prompt_estimate,
                        completion_tokens: pumped.output_chunks,
                        total_tokens: prompt_estimate + pumped.output_chunks,
                        prompt_tokens_details: None,
                    },
                    true,
                ),
            };
            if pumped.result.is_err_and(|(s, _)| s == CLIENT_CLOSED) {
                metrics::counter!(telemetry::CLIENT_DISCONNECTS).increment(1);
            }
            this.finish(Finish {
                ctx: &ctx,
                endpoint,
                requested: &requested,
                entry: Some(&entry),
                stream: true,
                result: pumped.result,
                usage,
                usage_estimated,
                ttft: pumped.ttft,
                upstream: Some(upstream_started.elapsed()),
            })
            .await;
        });
        match ready_rx.await {
            Ok(Ok(overhead)) => Ok(StreamAnswer {
                model: entry.spec.name.clone(),
                provider: entry.spec.provider.as_str(),
                frames: frames_rx,
                overhead,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Internal(
                "the stream task ended before starting".into(),
            )),
        }
    }

    /// Step 4: cost, metrics, request-log row. Returns the cost.
    async fn finish(&self, f: Finish<'_>) -> Decimal {
        let total = f.ctx.started.elapsed();
        let cost = f
            .entry
            .map(|e| cost_of(&e.spec.pricing, &f.usage))
            .unwrap_or(Decimal::ZERO);
        let (status, error) = match f.result {
            Ok(()) => (200, None),
            Err((status, label)) => (status, Some(label)),
        };
        match (f.entry, error) {
            (Some(e), None) => {
                let overhead = total.saturating_sub(f.upstream.unwrap_or_default());
                e.metrics
                    .success(f.endpoint, total.as_secs_f64(), overhead.as_secs_f64());
            }
            (Some(e), Some(label)) => {
                e.metrics
                    .failure(f.endpoint, status, label, total.as_secs_f64())
            }
            (None, Some(label)) => telemetry::failure(f.endpoint, None, status, label),
            (None, None) => {}
        }
        if let Some(e) = f.entry {
            if let Some(u) = f.upstream {
                e.metrics.upstream.record(u.as_secs_f64());
            }
            if let Some(t) = f.ttft {
                e.metrics.ttft.record(t.as_secs_f64());
            }
            e.metrics.input_tokens.increment(f.usage.prompt_tokens);
            e.metrics.output_tokens.increment(f.usage.completion_tokens);
        }
        let micros = |d: Duration| d.as_micros().min(i64::MAX as u128) as i64;
        let key = &f.ctx.key;
        self.inner
            .log
            .append(LogRow {
                id: f.ctx.id.clone(),
                created_at_ms: crate::store::now_ms(),
                endpoint: f.endpoint.as_str().to_owned(),
                key_id: key.key_id.clone(),
                user_id: key.user.clone(),
                team_id: key.team.clone(),
                requested_model: f.requested.to_owned(),
                model: f.entry.map(|e| e.spec.name.to_string()),
                provider: f.entry.map(|e| e.spec.provider.as_str().to_owned()),
                stream: f.stream,
                status: i64::from(status),
                error_type: error.map(str::to_owned),
                prompt_tokens: f.usage.prompt_tokens as i64,
                completion_tokens: f.usage.completion_tokens as i64,
                usage_estimated: f.usage_estimated,
                latency_us: micros(total),
                ttft_us: f.ttft.map(micros),
                upstream_us: f.upstream.map(micros),
                cost_usd: cost.normalize().to_string(),
            })
            .await;
        cost
    }
}

struct Pumped {
    usage: Option<Usage>,
    ttft: Option<Duration>,
    output_chunks: u64,
    result: std::result::Result<(), (u16, &'static str)>,
}

/// Forward chunks as SSE frames until the upstream ends, fails, or the client leaves.
async fn pump(
    mut chunks: ChunkStream,
    frames: &mpsc::Sender<Bytes>,
    include_usage: bool,
    ctx: &RequestContext,
) -> Pumped {
    let mut out = Pumped {
        usage: None,
        ttft: None,
        output_chunks: 0,
        result: Ok(()),
    };
    let client_gone = Err((CLIENT_CLOSED, "client_disconnected"));
    loop {
        let next = tokio::select! {
            next = chunks.next() => next,
            // The client left while the upstream was quiet: stop now, not at the next chunk.
            () = frames.closed() => {
                out.result = client_gone;
                return out;
            }
        };
        let frame = match next {
            None => {
                if frames
                    .send(Bytes::from_static(b"data: [DONE]\n\n"))
                    .await
                    .is_err()
                {
                    out.result = client_gone;
                }
                return out;
            }
            Some(Err(e)) => {
                tracing::warn!(request_id = %ctx.id, error = %e, "upstream stream failed");
                out.result = Err((e.status_code(), e.label()));
                let body = serde_json::to_vec(&e.to_body()).unwrap_or_default();
                if frames.send(sse_frame(&body)).await.is_err() {
                    out.result = client_gone;
                }
                return out;
            }
            Some(Ok(chunk)) => {
                if chunk.usage.is_some() {
                    out.usage = chunk.usage;
                }
                if chunk.has_output {
                    out.output_chunks += 1;
                    if out.ttft.is_none() {
                        out.ttft = Some(ctx.started.elapsed());
                    }
                }
                if chunk.usage_only && !include_usage {
                    continue;
                }
                sse_frame(&chunk.data)
            }
        };
        if frames.send(frame).await.is_err() {
            out.result = client_gone;
            return out;
        }
    }
}

fn sse_frame(data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(data.len() + 8);
    b.put_slice(b"data: ");
    b.put_slice(data);
    b.put_slice(b"\n\n");
    b.freeze()
}
