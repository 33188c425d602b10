//! THE request pipeline. Every model call — from the HTTP server or the CLI — goes through
//! [`Gateway`]:
//!
//! 1. validate the request values (`validate`) and the `llmrr` options
//! 2. plan: the [`Router`] turns the name (a model or a route) into ranked attempts
//! 3. execute, inside a tracked task (what follows runs even when the client hangs up, and
//!    shutdown waits for it): call each attempt in turn with timeouts; retry retryable
//!    failures with backoff; skip rate-limited models (Retry-After); send context-length
//!    failures to a larger window and content-policy refusals to the content fallback;
//!    feed the live stats, the breaker and the rollout
//! 4. finish: usage -> cost -> request-log row, metrics
//!
//! Streams take the same path: an attempt has succeeded once its first chunk arrived, so a
//! failure before the client saw a byte falls back transparently; after that, the stream ends
//! with an error event (never a clean end), and a client that leaves cancels the upstream call
//! at once and is logged as status 499.

use crate::auth::{Authenticator, KeyContext};
use crate::config::Config;
use crate::cost::cost_of;
use crate::error::{AttemptFailure, Error, Result};
use crate::models::{Flight, ModelEntry, ModelRegistry};
use crate::provider::{ChunkStream, Completed, Provider, StreamChunk};
use crate::request_log::RequestLog;
use crate::routing::breaker::Admission;
use crate::routing::classify::{classify, FailureClass};
use crate::routing::features::Features;
use crate::routing::options::RequestOptions;
use crate::routing::rollout::RolloutBook;
use crate::routing::stats::Sample;
use crate::routing::{retry, Decision, Plan, PlanRequest, Router};
use crate::store::{LogRow, Store};
use crate::telemetry::{self, Endpoint};
use crate::validate;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use llmrr_types::openai::{
    ChatCompletionRequest, CompletionRequest, EmbeddingRequest, Model, ModelList, Usage,
};
use rust_decimal::Decimal;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// HTTP status logged when the client hung up before the answer was complete (nginx's).
pub const CLIENT_CLOSED: u16 = 499;
/// Stream frames buffered between the upstream and a slow client.
const STREAM_BUFFER: usize = 64;
/// How long a model that answered 429 without Retry-After is skipped.
const DEFAULT_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(1);

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
    pub route: Option<String>,
    pub attempts: u32,
}

/// A stream that has started: its first chunk has arrived.
#[derive(Debug)]
pub struct StreamAnswer {
    pub model: Arc<str>,
    pub provider: &'static str,
    /// SSE frames (`data: …\n\n`), ending with `data: [DONE]` or an error event.
    pub frames: mpsc::Receiver<Bytes>,
    pub overhead: Duration,
    pub route: Option<String>,
    pub attempts: u32,
}

/// A parsed request of any endpoint, owned by the task that serves it.
enum Call {
    Chat(Box<ChatCompletionRequest>),
    Completion(CompletionRequest),
    Embeddings(EmbeddingRequest),
}

impl Call {
    fn endpoint(&self) -> Endpoint {
        match self {
            Call::Chat(_) => Endpoint::Chat,
            Call::Completion(_) => Endpoint::Completions,
            Call::Embeddings(_) => Endpoint::Embeddings,
        }
    }

    fn model(&self) -> &str {
        match self {
            Call::Chat(r) => &r.model,
            Call::Completion(r) => &r.model,
            Call::Embeddings(r) => &r.model,
        }
    }

    async fn complete(&self, p: &dyn Provider) -> Result<Completed> {
        match self {
            Call::Chat(r) => p.chat(r).await,
            Call::Completion(r) => p.completion(r).await,
            Call::Embeddings(r) => p.embeddings(r).await,
        }
    }

    async fn open(&self, p: &dyn Provider) -> Result<ChunkStream> {
        match self {
            Call::Chat(r) => p.chat_stream(r).await,
            Call::Completion(r) => p.completion_stream(r).await,
            Call::Embeddings(_) => Err(Error::invalid(
                "embeddings cannot be streamed",
                Some("stream".into()),
            )),
        }
    }

    fn include_usage(&self) -> bool {
        let opts = match self {
            Call::Chat(r) => r.stream_options.as_ref(),
            Call::Completion(r) => r.stream_options.as_ref(),
            Call::Embeddings(_) => None,
        };
        opts.and_then(|o| o.include_usage) == Some(true)
    }
}

/// A request that passed validation and has its plan.
struct Prepared {
    plan: Plan,
    options: RequestOptions,
    prompt_estimate: u64,
}

struct Inner {
    models: ModelRegistry,
    router: Router,
    log: RequestLog,
    auth: Authenticator,
    store: Store,
    tracker: TaskTracker,
    started_unix: i64,
}

/// A cloneable handle: the state is shared behind an `Arc`.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

/// What `finish` records about one request.
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

impl<'a> Finish<'a> {
    /// Nothing known yet: no model, no usage, success until said otherwise.
    fn new(ctx: &'a RequestContext, call: &'a Call, stream: bool) -> Self {
        Finish {
            ctx,
            endpoint: call.endpoint(),
            requested: call.model(),
            entry: None,
            stream,
            result: Ok(()),
            usage: Usage::default(),
            usage_estimated: false,
            ttft: None,
            upstream: None,
        }
    }

    fn failed(mut self, entry: Option<&'a ModelEntry>, e: &Error) -> Self {
        self.entry = entry;
        self.result = Err((e.status_code(), e.label()));
        self
    }
}

/// How the attempts of a plan went.
struct Attempts {
    failures: Vec<AttemptFailure>,
    last_error: Option<Error>,
    /// Distinct models that failed.
    failed_models: Vec<Arc<str>>,
    upstream: Duration,
    retry_after: Option<Duration>,
}

impl Attempts {
    fn new() -> Self {
        Attempts {
            failures: Vec::new(),
            last_error: None,
            failed_models: Vec::new(),
            upstream: Duration::ZERO,
            retry_after: None,
        }
    }

    fn count(&self) -> u32 {
        self.failures.len() as u32 + 1
    }

    fn fail(&mut self, entry: &ModelEntry, e: Error) {
        if !self.failed_models.contains(&entry.spec.name) {
            self.failed_models.push(entry.spec.name.clone());
        }
        self.failures.push(AttemptFailure {
            model: entry.spec.name.to_string(),
            status: e.status_code(),
            error: e.label(),
            message: e.to_string(),
        });
        if let Some(ra) = e.retry_after() {
            self.retry_after = Some(self.retry_after.map_or(ra, |r| r.min(ra)));
        }
        self.last_error = Some(e);
    }

    /// The error the client gets: the upstream's own when one model was tried, else the list.
    fn into_error(self, requested: &str) -> Error {
        match (self.failed_models.len(), self.last_error) {
            (1, Some(e)) => e,
            (0, _) => Error::NoCandidate {
                requested: requested.to_owned(),
                reasons: vec!["every candidate was skipped".into()],
                status: 503,
                retry_after: self.retry_after,
            },
            _ => Error::AllFailed {
                attempts: self.failures,
                retry_after: self.retry_after,
            },
        }
    }
}

/// What one attempt produced.
enum Outcome {
    Completed(Completed),
    /// A stream, and its chunks up to the first one with output (held back until then).
    Opened(ChunkStream, Vec<StreamChunk>),
}

/// The attempt that succeeded, and what came before it.
struct Success {
    entry: Arc<ModelEntry>,
    probe: bool,
    started: Instant,
    flight: Flight,
    outcome: Outcome,
    attempts: Attempts,
}

/// Every attempt failed.
struct Failed {
    error: Error,
    last_entry: Option<Arc<ModelEntry>>,
}

impl Gateway {
    /// Connect the store, start the request-log writer, build every provider, load rollouts.
    pub async fn start(config: &Config) -> Result<Gateway> {
        let store = Store::connect(config.store.url.expose()).await?;
        Self::with_store(config, store).await
    }

    pub async fn with_store(config: &Config, store: Store) -> Result<Gateway> {
        let rollouts = RolloutBook::load(store.clone()).await?;
        let models = ModelRegistry::build(config)?;
        let router = Router::new(&config.routes, config.routing.clone(), rollouts, &models);
        let gateway = Gateway {
            inner: Arc::new(Inner {
                models,
                router,
                log: RequestLog::start(store.clone(), &config.store),
                auth: Authenticator::new(config.server.master_key.clone(), store.clone()),
                store,
                tracker: TaskTracker::new(),
                started_unix: time::OffsetDateTime::now_utc().unix_timestamp(),
            }),
        };
        if let Some(every) = config.routing.health_probe_interval {
            crate::health::spawn_probes(&gateway.inner.models, every);
        }
        Ok(gateway)
    }

    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn models(&self) -> &ModelRegistry {
        &self.inner.models
    }

    pub fn router(&self) -> &Router {
        &self.inner.router
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

    /// Models and routes the key may name.
    pub fn list_models(&self, key: &KeyContext) -> ModelList {
        let mut data: Vec<Model> = self
            .inner
            .models
            .all()
            .iter()
            .filter(|e| key.may_use(&e.spec.name))
            .map(|e| self.model_object(&e.spec.name, &e.spec.owned_by))
            .collect();
        data.extend(
            self.inner
                .router
                .route_names()
                .iter()
                .map(|r| self.model_object(r, "llmrr-route")),
        );
        ModelList {
            object: "list".into(),
            data,
        }
    }

    pub fn get_model(&self, key: &KeyContext, id: &str) -> Result<Model> {
        if self.inner.router.route(id).is_some() {
            return Ok(self.model_object(id, "llmrr-route"));
        }
        let entry = self
            .inner
            .models
            .get(id)
            .ok_or_else(|| Error::ModelNotFound {
                model: id.to_owned(),
            })?;
        if !key.may_use(id) {
            return Err(Error::ModelNotAllowed {
                model: id.to_owned(),
            });
        }
        Ok(self.model_object(&entry.spec.name, &entry.spec.owned_by))
    }

    fn model_object(&self, id: &str, owned_by: &str) -> Model {
        Model {
            id: id.to_owned(),
            object: "model".into(),
            created: self.inner.started_unix,
            owned_by: owned_by.to_owned(),
        }
    }

    /// A routing decision without calling a model (`POST /v1/route`).
    pub fn route(&self, key: &KeyContext, req: &ChatCompletionRequest) -> Result<Decision> {
        validate::chat(req)?;
        let options = RequestOptions::parse(req.llmrr.as_ref())?;
        let plan = self.inner.router.plan(
            &self.inner.models,
            PlanRequest {
                name: &req.model,
                key,
                features: Features::of_chat(req),
                options: &options,
                explain: true,
            },
        )?;
        Ok(plan.decision)
    }

    pub async fn chat(&self, ctx: RequestContext, req: ChatCompletionRequest) -> Result<Answer> {
        let features = Features::of_chat(&req);
        let valid = validate::chat(&req);
        let options = req.llmrr.clone();
        self.run(ctx, Call::Chat(Box::new(req)), valid, features, options)
            .await
    }

    pub async fn completion(&self, ctx: RequestContext, req: CompletionRequest) -> Result<Answer> {
        let valid = validate::completion(&req);
        let features = Features {
            max_output_tokens: req.max_tokens.map(u64::from),
            ..Default::default()
        };
        let options = req.llmrr.clone();
        self.run(ctx, Call::Completion(req), valid, features, options)
            .await
    }

    pub async fn embeddings(&self, ctx: RequestContext, req: EmbeddingRequest) -> Result<Answer> {
        let valid = validate::embeddings(&req);
        let options = req.llmrr.clone();
        self.run(
            ctx,
            Call::Embeddings(req),
            valid,
            Features::default(),
            options,
        )
        .await
    }

    pub async fn chat_stream(
        &self,
        ctx: RequestContext,
        req: ChatCompletionRequest,
    ) -> Result<StreamAnswer> {
        let features = Features::of_chat(&req);
        let valid = validate::chat(&req);
        let options = req.llmrr.clone();
        self.run_stream(ctx, Call::Chat(Box::new(req)), valid, features, options)
            .await
    }

    pub async fn completion_stream(
        &self,
        ctx: RequestContext,
        req: CompletionRequest,
    ) -> Result<StreamAnswer> {
        let valid = validate::completion(&req);
        let features = Features {
            stream: true,
            max_output_tokens: req.max_tokens.map(u64::from),
            ..Default::default()
        };
        let options = req.llmrr.clone();
        self.run_stream(ctx, Call::Completion(req), valid, features, options)
            .await
    }

    /// Steps 1-2: validation, options and the plan. A failure is logged and counted here.
    async fn prepare(
        &self,
        ctx: &RequestContext,
        call: &Call,
        valid: Result<()>,
        features: Features,
        options: Option<serde_json::Value>,
    ) -> Result<Prepared> {
        let prepared = valid.and_then(|()| {
            let options = RequestOptions::parse(options.as_ref())?;
            let plan = self.inner.router.plan(
                &self.inner.models,
                PlanRequest {
                    name: call.model(),
                    key: &ctx.key,
                    features,
                    options: &options,
                    explain: options.explain,
                },
            )?;
            Ok(Prepared {
                plan,
                options,
                prompt_estimate: features.prompt_tokens,
            })
        });
        if let Err(e) = &prepared {
            self.finish(Finish::new(ctx, call, features.stream).failed(None, e))
                .await;
        }
        prepared
    }

    async fn run(
        &self,
        ctx: RequestContext,
        call: Call,
        valid: Result<()>,
        features: Features,
        options: Option<serde_json::Value>,
    ) -> Result<Answer> {
        let prepared = self.prepare(&ctx, &call, valid, features, options).await?;
        let this = self.clone();
        self.tracked(async move { this.execute(ctx, call, prepared).await })
            .await
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

    /// Feed one attempt's outcome to the stats, the breaker and the rollout.
    fn observe(
        &self,
        plan: &Plan,
        entry: &ModelEntry,
        probe: bool,
        sample: Sample,
        class: Option<FailureClass>,
    ) {
        entry.stats.record(sample);
        let counts = class.is_some_and(FailureClass::counts_for_health);
        entry.breaker.record(sample.success, counts, probe);
        if let Some(route) = &plan.route {
            if let Some(rolled_back) =
                self.inner
                    .router
                    .rollouts
                    .observe(route, &entry.spec.name, sample.success)
            {
                let this = self.clone();
                // Persist off the request path; the in-memory state has already changed.
                self.inner
                    .tracker
                    .spawn(async move { this.inner.router.rollouts.persist(&rolled_back).await });
            }
        }
    }

    /// One attempt on one model: a complete answer, or a stream and its first chunk.
    async fn try_once(
        &self,
        call: &Call,
        entry: &ModelEntry,
        stream: bool,
        deadline: Instant,
    ) -> Result<Outcome> {
        let timeout = |after: Duration| Error::UpstreamTimeout {
            model: entry.spec.name.to_string(),
            provider: entry.spec.provider.as_str(),
            after,
        };
        if !stream {
            let total = self.inner.router.config.retry.max_total;
            return tokio::time::timeout_at(deadline, call.complete(&*entry.provider))
                .await
                .unwrap_or_else(|_| Err(timeout(total)))
                .map(Outcome::Completed);
        }
        // A stream has started once its first token is here: the chunks before it are held
        // back, so until then failing over is invisible to the client.
        let ttft = entry.spec.ttft_timeout;
        let limit = ttft.map_or(deadline, |t| (Instant::now() + t).min(deadline));
        let open = async {
            let mut chunks = call.open(&*entry.provider).await?.fuse().boxed();
            let mut held = Vec::new();
            loop {
                match chunks.next().await {
                    Some(Ok(chunk)) => {
                        let output = chunk.has_output;
                        held.push(chunk);
                        if output {
                            break;
                        }
                    }
                    Some(Err(e)) => return Err(e),
                    // A complete stream without output (an empty answer) is still an answer.
                    None => break,
                }
            }
            Ok(Outcome::Opened(chunks, held))
        };
        tokio::time::timeout_at(limit, open)
            .await
            .unwrap_or_else(|_| {
                Err(timeout(
                    ttft.unwrap_or(self.inner.router.config.retry.max_total),
                ))
            })
    }

    /// Step 3: try the plan's models in order until one succeeds. Retryable failures are
    /// retried on the same model with backoff; a 429 skips the model until its Retry-After;
    /// a context-length failure skips to a model with a larger window; a content-policy
    /// refusal goes to the route's content fallback; anything else moves to the next model.
    async fn attempt_plan(
        &self,
        call: &Call,
        plan: &mut Plan,
        stream: bool,
    ) -> std::result::Result<Success, Failed> {
        let policy = self.inner.router.config.retry;
        let deadline = Instant::now() + policy.max_total;
        let mut queue: VecDeque<Arc<ModelEntry>> = std::mem::take(&mut plan.attempts).into();
        let mut attempts = Attempts::new();
        let mut min_window: Option<u32> = None;
        let mut last_entry: Option<Arc<ModelEntry>> = None;
        'models: while let Some(entry) = queue.pop_front() {
            if min_window.is_some_and(|w| entry.spec.context_window.is_none_or(|cw| cw <= w)) {
                continue;
            }
            let mut tries = 0u32;
            while Instant::now() < deadline {
                if let Some(left) = entry.rate_limited() {
                    attempts.retry_after = Some(attempts.retry_after.map_or(left, |r| r.min(left)));
                    continue 'models;
                }
                let probe = match entry.breaker.admit() {
                    Admission::Allowed { probe } => probe,
                    Admission::Refused { .. } => continue 'models,
                };
                tries += 1;
                last_entry = Some(entry.clone());
                let started = Instant::now();
                let flight = Flight::start(&entry);
                let e = match self.try_once(call, &entry, stream, deadline).await {
                    Ok(outcome) => {
                        return Ok(Success {
                            entry,
                            probe,
                            started,
                            flight,
                            outcome,
                            attempts,
                        })
                    }
                    Err(e) => e,
                };
                drop(flight);
                let took = started.elapsed();
                attempts.upstream += took;
                let class = classify(&e);
                self.observe(
                    plan,
                    &entry,
                    probe,
                    Sample {
                        success: false,
                        latency: Some(took),
                        ..Default::default()
                    },
                    Some(class),
                );
                telemetry::failure(
                    call.endpoint(),
                    Some((&entry.spec.name, entry.spec.provider.as_str())),
                    e.status_code(),
                    e.label(),
                );
                attempts.fail(&entry, e);
                match class {
                    FailureClass::Retryable if tries < policy.max_attempts => {
                        let delay = retry::backoff(&policy, tries - 1, &mut rand::thread_rng());
                        if Instant::now() + delay >= deadline {
                            continue 'models;
                        }
                        metrics::counter!(telemetry::RETRIES, "model" => entry.spec.name.to_string()).increment(1);
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    FailureClass::Retryable | FailureClass::Final => {}
                    FailureClass::RateLimited(after) => {
                        entry.rate_limit_for(after.unwrap_or(DEFAULT_RATE_LIMIT_PAUSE))
                    }
                    FailureClass::ContextLength => {
                        min_window = Some(
                            entry
                                .spec
                                .context_window
                                .unwrap_or(0)
                                .max(min_window.unwrap_or(0)),
                        );
                    }
                    FailureClass::ContentPolicy => {
                        queue.clear();
                        match plan.content_fallback.take() {
                            Some(fallback) if fallback.spec.name != entry.spec.name => {
                                queue.push_back(fallback)
                            }
                            _ => break 'models,
                        }
                    }
                }
                if !queue.is_empty() {
                    metrics::counter!(telemetry::FALLBACKS, "from" => entry.spec.name.to_string())
                        .increment(1);
                }
                continue 'models;
            }
            break;
        }
        Err(Failed {
            error: attempts.into_error(call.model()),
            last_entry,
        })
    }

    /// Steps 3-4 of a non-streamed call.
    async fn execute(&self, ctx: RequestContext, call: Call, prepared: Prepared) -> Result<Answer> {
        let Prepared {
            mut plan, options, ..
        } = prepared;
        let mut finish = Finish::new(&ctx, &call, false);
        let success = match self.attempt_plan(&call, &mut plan, false).await {
            Ok(s) => s,
            Err(Failed { error, last_entry }) => {
                self.finish(finish.failed(last_entry.as_deref(), &error))
                    .await;
                return Err(error);
            }
        };
        let Success {
            entry,
            probe,
            started,
            flight,
            outcome,
            mut attempts,
        } = success;
        drop(flight);
        let Outcome::Completed(completed) = outcome else {
            return Err(Error::Internal(
                "a stream where an answer was expected".into(),
            ));
        };
        let took = started.elapsed();
        attempts.upstream += took;
        let sample = Sample {
            success: true,
            latency: Some(took),
            ttft: None,
            output_tokens: completed.usage.completion_tokens,
        };
        self.observe(&plan, &entry, probe, sample, None);
        finish.entry = Some(&entry);
        finish.usage = completed.usage;
        finish.upstream = Some(attempts.upstream);
        let cost = self.finish(finish).await;
        let body = if options.explain {
            with_explanation(completed.body, &plan.decision)
        } else {
            completed.body
        };
        Ok(Answer {
            body,
            model: entry.spec.name.clone(),
            provider: entry.spec.provider.as_str(),
            usage: completed.usage,
            cost,
            overhead: ctx.started.elapsed().saturating_sub(attempts.upstream),
            route: plan.route.as_ref().map(|_| plan.decision.header()),
            attempts: attempts.count(),
        })
    }

    async fn run_stream(
        &self,
        ctx: RequestContext,
        call: Call,
        valid: Result<()>,
        features: Features,
        options: Option<serde_json::Value>,
    ) -> Result<StreamAnswer> {
        let prepared = self.prepare(&ctx, &call, valid, features, options).await?;
        let (ready_tx, ready_rx) = oneshot::channel::<Result<StreamAnswer>>();
        let this = self.clone();
        self.inner
            .tracker
            .spawn(async move { this.execute_stream(ctx, call, prepared, ready_tx).await });
        ready_rx
            .await
            .map_err(|_| Error::Internal("the stream task ended before starting".into()))?
    }

    /// Steps 3-4 of a streamed call: answer `ready` once a stream has started (or every
    /// attempt failed), then pump it to the client and finish.
    async fn execute_stream(
        &self,
        ctx: RequestContext,
        call: Call,
        prepared: Prepared,
        ready: oneshot::Sender<Result<StreamAnswer>>,
    ) {
        let Prepared {
            mut plan,
            options,
            prompt_estimate,
        } = prepared;
        let mut finish = Finish::new(&ctx, &call, true);
        let success = match self.attempt_plan(&call, &mut plan, true).await {
            Ok(s) => s,
            Err(Failed { error, last_entry }) => {
                self.finish(finish.failed(last_entry.as_deref(), &error))
                    .await;
                let _ = ready.send(Err(error));
                return;
            }
        };
        let Success {
            entry,
            probe,
            started,
            flight,
            outcome,
            attempts,
        } = success;
        let Outcome::Opened(chunks, held) = outcome else {
            let _ = ready.send(Err(Error::Internal(
                "an answer where a stream was expected".into(),
            )));
            return;
        };
        let (frames_tx, frames_rx) = mpsc::channel(STREAM_BUFFER);
        if options.explain {
            let json = serde_json::to_string(&plan.decision).unwrap_or_default();
            let _ = frames_tx.try_send(Bytes::from(format!(": llmrr {json}\n\n")));
        }
        let _ = ready.send(Ok(StreamAnswer {
            model: entry.spec.name.clone(),
            provider: entry.spec.provider.as_str(),
            frames: frames_rx,
            overhead: ctx
                .started
                .elapsed()
                .saturating_sub(attempts.upstream + started.elapsed()),
            route: plan.route.as_ref().map(|_| plan.decision.header()),
            attempts: attempts.count(),
        }));
        let pumped = pump(Pump {
            held: held.into(),
            chunks,
            frames: &frames_tx,
            include_usage: call.include_usage(),
            ctx: &ctx,
            idle: entry.spec.idle_timeout,
            entry: &entry,
        })
        .await;
        drop(flight);
        let took = started.elapsed();
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
        let upstream_failed = pumped.error_class.is_some();
        let ttft = pumped
            .first_output_at
            .map(|t| t.saturating_duration_since(started));
        let sample = Sample {
            success: !upstream_failed,
            latency: Some(took),
            ttft,
            output_tokens: usage.completion_tokens,
        };
        self.observe(&plan, &entry, probe, sample, pumped.error_class);
        finish.entry = Some(&entry);
        finish.result = pumped.result;
        finish.usage = usage;
        finish.usage_estimated = usage_estimated;
        finish.ttft = pumped.ttft;
        finish.upstream = Some(attempts.upstream + took);
        self.finish(finish).await;
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

/// The decision added to a JSON answer as `"llmrr": {...}` (only when asked: it costs a
/// parse and a re-encode).
fn with_explanation(body: Bytes, decision: &Decision) -> Bytes {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.insert("llmrr".into(), serde_json::json!({ "route": decision }));
            serde_json::to_vec(&map).map(Bytes::from).unwrap_or(body)
        }
        _ => body,
    }
}

struct Pump<'a> {
    /// Chunks already read, sent before the rest.
    held: VecDeque<StreamChunk>,
    chunks: ChunkStream,
    frames: &'a mpsc::Sender<Bytes>,
    include_usage: bool,
    ctx: &'a RequestContext,
    idle: Option<Duration>,
    entry: &'a ModelEntry,
}

struct Pumped {
    usage: Option<Usage>,
    ttft: Option<Duration>,
    output_chunks: u64,
    result: std::result::Result<(), (u16, &'static str)>,
    error_class: Option<FailureClass>,
    first_output_at: Option<Instant>,
}

/// Forward chunks as SSE frames until the upstream ends, fails, stalls past the idle
/// timeout, or the client leaves.
async fn pump(p: Pump<'_>) -> Pumped {
    let Pump {
        mut held,
        mut chunks,
        frames,
        include_usage,
        ctx,
        idle,
        entry,
    } = p;
    let mut out = Pumped {
        usage: None,
        ttft: None,
        output_chunks: 0,
        result: Ok(()),
        error_class: None,
        first_output_at: None,
    };
    let client_gone = Err((CLIENT_CLOSED, "client_disconnected"));
    loop {
        let next = match held.pop_front() {
            Some(chunk) => Some(Ok(chunk)),
            None => {
                let wait = async {
                    match idle {
                        Some(d) => {
                            tokio::time::timeout(d, chunks.next())
                                .await
                                .unwrap_or_else(|_| {
                                    Some(Err(Error::UpstreamTimeout {
                                        model: entry.spec.name.to_string(),
                                        provider: entry.spec.provider.as_str(),
                                        after: d,
                                    }))
                                })
                        }
                        None => chunks.next().await,
                    }
                };
                tokio::select! {
                    next = wait => next,
                    // The client left while the upstream was quiet: stop now.
                    () = frames.closed() => {
                        out.result = client_gone;
                        return out;
                    }
                }
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
                out.error_class = Some(classify(&e));
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
                        out.first_output_at = Some(Instant::now());
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
