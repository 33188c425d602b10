//! THE request pipeline. Every model call — from the HTTP server or the CLI — goes through
//! [`Gateway`]:
//!
//! 1. validate the request values (`validate`) and the `llmrr` options; input guardrails
//! 2. plan: the [`Router`] turns the name (a model or a route) into ranked attempts; then
//!    admission: rate limits, quotas and concurrency ([`Limits::admit`]), and budgets
//!    ([`Money::admit`])
//! 3. execute, inside a tracked task (what follows runs even when the client hangs up, and
//!    shutdown waits for it): call each attempt in turn with timeouts; retry retryable
//!    failures with backoff; skip rate-limited models (Retry-After, or at their configured
//!    rpm/tpm); wait in a model's admission queue when it has a concurrency cap; send context-length
//!    failures to a larger window and content-policy refusals to the content fallback;
//!    feed the live stats, the breaker and the rollout
//! 4. finish: output guardrails; usage -> cost -> request-log row, metrics; settle limits
//!
//! Streams take the same path: an attempt has succeeded once its first token arrived (the
//! chunks before it are held back), so a failure before the client saw a byte falls back
//! transparently; after that, the stream ends with an error event (never a clean end), and a
//! client that leaves cancels the upstream call at once and is logged as status 499.
//!
//! Layout: this file has the public API and steps 1-2; `attempt` step 3 (the attempt loop),
//! `stream` the streamed variant and the pump, `outlet` where the pump sends the client's
//! items, `finish` step 4, `call` the request of any endpoint; `cache` the response cache's
//! part in steps 2-4, `warm` the replays of `cache warm`.

mod attempt;
mod cache;
mod call;
mod cascade;
mod feedback;
mod finish;
mod outlet;
mod stream;
mod warm;

pub use warm::{WarmItem, WarmOptions, WarmOutcome, WarmReport, MAX_WARM_REQUESTS};

use attempt::*;
use cache::{Begin, Source};
use call::*;
use finish::*;

use crate::answer::{AnswerError, StreamItem};
use crate::auth::{Authenticator, KeyContext, KeyRules};
use crate::config::Config;
use crate::error::{AttemptFailure, Error, Result};
use crate::guardrails::Guardrails;
use crate::limits::{Limits, Priority, RateHeaders, Ticket};
use crate::models::{Flight, ModelEntry, ModelRegistry};
use crate::money::admit::Need;
use crate::money::cost::cost_of;
use crate::money::{Money, Reservation};
use crate::provider::call_scope::{self, UpstreamMeta};
use crate::provider::{ChunkStream, Completed, LocalBackend, Provider, StreamChunk};
use crate::request_log::RequestLog;
use crate::routing::breaker::Admission;
use crate::routing::classify::{classify, FailureClass};
use crate::routing::features::Features;
use crate::routing::options::RequestOptions;
use crate::routing::rollout::RolloutBook;
use crate::routing::stats::Sample;
use crate::routing::{retry, Decision, Plan, PlanRequest, Router};
use crate::spans;
use crate::store::{LogRow, Store};
use crate::telemetry::{self, Endpoint};
use crate::validate;
use bytes::Bytes;
use futures_util::StreamExt;
use llmrr_types::openai::{
    ChatCompletionRequest, CompletionRequest, EmbeddingRequest, Model, ModelList, Usage,
};
use rust_decimal::Decimal;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
/// HTTP status logged when the client hung up before the answer was complete (nginx's).
pub const CLIENT_CLOSED: u16 = 499;
/// Stream frames buffered between the upstream and a slow client.
const STREAM_BUFFER: usize = 64;
fn shutting_down() -> Error {
    Error::Unavailable {
        message: "the server is shutting down; try again".into(),
        retry_after: Some(Duration::from_secs(1)),
    }
}

/// `x-llmrr-route` of an answer from a route: the decision, and the models skipped without a
/// call on the way (at their configured limits, queues too long, breakers open).
fn route_header(plan: &Plan, entry: &ModelEntry, attempts: &Attempts) -> Option<String> {
    plan.route.as_ref()?;
    let header = plan.decision.header(&entry.spec.name);
    if attempts.skipped.is_empty() {
        return Some(header);
    }
    let skipped: String = format!("; skipped: {}", attempts.skipped.join(", "))
        .chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control())
        .take(400)
        .collect();
    Some(header + &skipped)
}

/// A call begins: the gateway takes the request (its access line comes with its log row) and
/// opens its span, which the call runs in.
fn begin(ctx: &mut RequestContext, call: &Call, stream: bool) -> tracing::Span {
    ctx.taken.store(true, std::sync::atomic::Ordering::Relaxed);
    ctx.span = spans::call(&ctx.id, call.endpoint(), call.model(), stream);
    ctx.span.clone()
}

/// The request log's last flush at shutdown gets at least this long.
const MIN_LOG_FLUSH: Duration = Duration::from_secs(1);
/// How often each replica applies the cache purges made by others.
const PURGE_POLL: Duration = Duration::from_secs(1);
/// How often each replica reads the rollouts others changed.
const ROLLOUT_POLL: Duration = Duration::from_secs(1);
/// How long a model that answered 429 without Retry-After is skipped.
const DEFAULT_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(1);

/// One call's identity: who asked, and when; what it asked of admission; and the rate-limit
/// state for its answer's `x-ratelimit-*` headers (set by admission, read by the server).
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub id: String,
    pub key: Arc<KeyContext>,
    pub started: Instant,
    /// `x-llmrr-priority` (capped by what the key may ask).
    pub priority: Option<Priority>,
    /// `x-llmrr-deadline-ms`: the request must start before this (else the request's total
    /// timeout).
    pub deadline: Option<Instant>,
    pub rate: Arc<OnceLock<RateHeaders>>,
    /// What the request asks of the response cache.
    pub cache: crate::cache::CacheDirectives,
    /// The API the client spoke, where it is not the call's own (`messages`, `responses`):
    /// the request log and the ledger name it as the endpoint.
    pub api: Option<&'static str>,
    /// The client's own `x-request-id`, kept in the access line and the trace.
    pub client_request_id: Option<String>,
    /// The call's trace span (`llmrr.call`), set by the gateway when the call starts.
    pub span: tracing::Span,
    /// Set when the gateway takes the request: its access line comes with its log row, when
    /// the call ends (the server writes one for every other request).
    pub taken: Arc<std::sync::atomic::AtomicBool>,
    /// A sub-call of a request (a cascade's escalated step, the semantic cache's embedding):
    /// its row goes to the request log only, not onto the request's span or access line.
    pub sub_call: bool,
}

impl RequestContext {
    pub fn new(key: Arc<KeyContext>) -> Self {
        RequestContext {
            id: format!("req_{}", uuid::Uuid::now_v7().simple()),
            key,
            started: Instant::now(),
            priority: None,
            deadline: None,
            rate: Arc::default(),
            cache: Default::default(),
            api: None,
            client_request_id: None,
            span: tracing::Span::none(),
            taken: Arc::default(),
            sub_call: false,
        }
    }

    /// The endpoint the log and the ledger name for a call of `endpoint`.
    pub(crate) fn endpoint_label(&self, endpoint: Endpoint) -> String {
        self.api.unwrap_or(endpoint.as_str()).to_owned()
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
    /// False: the model has no price, `cost` is 0 because it is unknown.
    pub priced: bool,
    /// Time spent in llmrr itself (total minus upstream).
    pub overhead: Duration,
    pub route: Option<String>,
    pub attempts: u32,
    /// The answering upstream's request id and rate-limit headers.
    pub upstream: UpstreamMeta,
    /// What the response cache did (`None`: off for this model or route).
    pub cache: Option<crate::cache::CacheStatus>,
}

/// A stream that has started: its first chunk has arrived.
#[derive(Debug)]
pub struct StreamAnswer {
    pub model: Arc<str>,
    pub provider: &'static str,
    /// The answer's items, ending with [`StreamItem::Done`] or [`StreamItem::Error`]; the
    /// server frames them in the client's dialect.
    pub frames: mpsc::Receiver<StreamItem>,
    pub overhead: Duration,
    pub route: Option<String>,
    pub attempts: u32,
    /// The answering upstream's request id and rate-limit headers.
    pub upstream: UpstreamMeta,
    /// What the response cache did (`None`: off for this model or route).
    pub cache: Option<crate::cache::CacheStatus>,
}

struct Inner {
    models: ModelRegistry,
    router: Router,
    log: RequestLog,
    auth: Authenticator,
    store: Store,
    money: Money,
    limits: Limits,
    /// The response cache, when any route or model caches.
    cache: Option<crate::cache::ResponseCache>,
    tracker: TaskTracker,
    /// Cancelled when shutdown's grace is nearly over: calls still waiting for an upstream
    /// answer 503, open streams end with an error event; their rows are still written.
    stopping: CancellationToken,
    /// One feedback flush of the request log at a time (each waits for the one before), so
    /// that feedback naming unknown requests cannot crowd the log's queue.
    feedback_flush: tokio::sync::Mutex<()>,
    /// `server.max_messages`: list items (messages, inputs, prompts) per request.
    max_items: usize,
    started_unix: i64,
    /// `[telemetry] access_log`: one `llmrr::access` line per request.
    access_log: bool,
    /// Breaker cooldowns shared with the other replicas (with Redis).
    breakers: Option<crate::routing::breaker_sync::BreakerSync>,
}

/// A cloneable handle: the state is shared behind an `Arc`.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl Gateway {
    /// Connect the store, start the request-log writer, build every provider, load rollouts.
    pub async fn start(config: &Config) -> Result<Gateway> {
        Self::start_with(config, None).await
    }

    /// As [`Gateway::start`], with the engine that serves `provider = "local"` models.
    pub async fn start_with(
        config: &Config,
        local: Option<Arc<dyn LocalBackend>>,
    ) -> Result<Gateway> {
        let store = Store::connect(config.store.url.expose()).await?;
        Self::with_store(config, store, local).await
    }

    pub async fn with_store(
        config: &Config,
        store: Store,
        local: Option<Arc<dyn LocalBackend>>,
    ) -> Result<Gateway> {
        let rollouts = RolloutBook::load(store.clone()).await?;
        let shared = match &config.shared.redis_url {
            Some(url) => Some(
                crate::shared::SharedState::redis(url.expose(), &config.shared.key_prefix).await?,
            ),
            None => None,
        };
        let money = match &shared {
            Some(s) => Money::with_shared(config, store.clone(), s.clone()).await?,
            None => Money::start(config, store.clone()).await?,
        };
        let cache = cache::start_cache(config, shared.as_ref()).await?;
        let breakers = shared
            .as_ref()
            .and_then(crate::routing::breaker_sync::BreakerSync::new);
        if let Some(c) = &cache {
            c.watch_purges(store.clone(), PURGE_POLL);
        }
        let limits = Limits::start(
            config,
            store.clone(),
            shared.map(|s| s.scoped("limits")),
            money.clone(),
        )
        .await?;
        let models = ModelRegistry::build(config, local.as_deref())?;
        for m in models.all() {
            if !m.spec.pricing.is_priced() {
                tracing::warn!(model = %m.spec.name, upstream = %m.spec.upstream_model,
                    "model has no price (not configured, not in the catalog): its requests are \
                     logged as unpriced; set input_cost_per_mtok and output_cost_per_mtok");
            }
        }
        let router = Router::new(&config.routes, config.routing.clone(), rollouts, &models);
        let gateway = Gateway {
            inner: Arc::new(Inner {
                models,
                router,
                log: RequestLog::start(store.clone(), &config.store),
                auth: Authenticator::new(
                    config.server.master_key.clone(),
                    store.clone(),
                    KeyRules::from_config(config),
                    config.server.key_cache,
                ),
                store,
                money,
                limits,
                cache,
                tracker: TaskTracker::new(),
                stopping: CancellationToken::new(),
                feedback_flush: tokio::sync::Mutex::new(()),
                max_items: config.server.max_messages,
                started_unix: time::OffsetDateTime::now_utc().unix_timestamp(),
                access_log: config.telemetry.access_log,
                breakers,
            }),
        };
        gateway.watch_rollouts();
        gateway.watch_breakers();
        if let Some(every) = config.routing.health_probe_interval {
            crate::health::spawn_probes(&gateway.inner.models, every);
        }
        Ok(gateway)
    }

    /// Read the rollouts other replicas start, abort or roll back, about once a second, for
    /// as long as the gateway lives.
    fn watch_rollouts(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut warned: Option<Instant> = None;
            loop {
                tokio::time::sleep(ROLLOUT_POLL).await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if inner.tracker.is_closed() {
                    return;
                }
                if let Err(e) = inner.router.rollouts.refresh().await {
                    if warned.is_none_or(|w| w.elapsed() >= Duration::from_secs(60)) {
                        warned = Some(Instant::now());
                        tracing::warn!(error = %e,
                            "rollouts: the changes of other replicas cannot be read");
                    }
                }
            }
        });
    }

    /// With Redis: open here, about twice a second, the breakers other replicas opened.
    fn watch_breakers(&self) {
        let Some(sync) = self.inner.breakers.clone() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut warned: Option<Instant> = None;
            loop {
                tokio::time::sleep(crate::routing::breaker_sync::BREAKER_POLL).await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if inner.tracker.is_closed() {
                    return;
                }
                if let Err(e) = sync.refresh(&inner.models).await {
                    if warned.is_none_or(|w| w.elapsed() >= Duration::from_secs(60)) {
                        warned = Some(Instant::now());
                        tracing::warn!(error = %e,
                            "breakers: the other replicas' open breakers cannot be read");
                    }
                }
            }
        });
    }

    /// Whether requests get access lines (`[telemetry] access_log`).
    pub fn access_log(&self) -> bool {
        self.inner.access_log
    }

    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn money(&self) -> &Money {
        &self.inner.money
    }

    /// Create a key (and its limit rule, applied here at once).
    pub async fn create_key(&self, new: crate::auth::NewKey) -> Result<crate::auth::CreatedKey> {
        let with_limits = new.limits.is_some();
        let created = self.inner.auth.create_key(new).await?;
        if with_limits {
            self.inner.limits.reload_now().await?;
        }
        Ok(created)
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The response cache, when any route or model caches.
    pub fn cache(&self) -> Option<&crate::cache::ResponseCache> {
        self.inner.cache.as_ref()
    }

    pub fn models(&self) -> &ModelRegistry {
        &self.inner.models
    }

    pub fn router(&self) -> &Router {
        &self.inner.router
    }

    /// Wait for every call in flight to finish, then write the queued ledger rows (cache hits')
    /// and the request log, together: all of it within `grace` (the rows get at least
    /// `MIN_LOG_FLUSH`), never longer (a store that hangs cannot hold the process).
    pub async fn shutdown(&self, grace: Duration) {
        let until = Instant::now() + grace;
        self.inner.tracker.close();
        if tokio::time::timeout_at(until, self.inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.inner.tracker.len(),
                "shutdown grace ran out"
            );
        }
        // The ledger and the log get at least a moment even when the calls used the whole
        // grace; they are written at the same time.
        let left = until
            .saturating_duration_since(Instant::now())
            .max(MIN_LOG_FLUSH);
        let (ledger, log) = tokio::join!(
            tokio::time::timeout(left, self.inner.money.flush_ledger()),
            self.inner.log.close(left)
        );
        if ledger.is_err() {
            tracing::error!("shutdown: the ledger could not be written in time");
        }
        match log {
            Some(0) => {}
            Some(dropped) => {
                tracing::error!(dropped, "shutdown: request log rows could not be written");
            }
            None => tracing::error!("shutdown: the request log could not be written in time"),
        }
    }

    /// End what is still in flight: calls waiting for an upstream answer 503, open streams
    /// end with an error event. Shutdown does this when its grace is nearly over.
    pub fn stop_in_flight(&self) {
        self.inner.stopping.cancel();
    }

    /// Make every request-log row of finished calls, and every ledger row queued so far (cache
    /// hits'; other calls' rows are committed by their own tasks), durable or failed for now,
    /// waiting at most 30 s.
    pub async fn flush_log(&self) {
        let limit = Duration::from_secs(30);
        let _ = tokio::join!(
            tokio::time::timeout(limit, self.inner.money.flush_ledger()),
            self.inner.log.flush(limit)
        );
    }

    /// The request-log writer's health (readiness reports a failing writer).
    pub fn log_health(&self) -> &crate::request_log::WriterHealth {
        self.inner.log.health()
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
                .filter(|r| self.inner.router.may_use_route(key, r))
                .map(|r| self.model_object(r, "llmrr-route")),
        );
        ModelList {
            object: "list".into(),
            data,
        }
    }

    pub fn get_model(&self, key: &KeyContext, id: &str) -> Result<Model> {
        if self.inner.router.route(id).is_some() {
            if !self.inner.router.may_use_route(key, id) {
                return Err(Error::ModelNotAllowed {
                    model: id.to_owned(),
                });
            }
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
        self.validate_chat(req)?;
        let (plan, _) = self.plan(
            key,
            req,
            Features::of_chat(req, self.inner.models.has_local()),
            true,
        )?;
        Ok(plan.decision)
    }

    /// The prompt's size in tokens, for a request the key may make (Anthropic's
    /// `count_tokens`): counted by the upstream of the model the plan would call first where
    /// it can (`true`), else as admission and budgets estimate it (`false`, also when the
    /// upstream's count fails).
    pub async fn count_tokens(
        &self,
        key: &KeyContext,
        req: &ChatCompletionRequest,
    ) -> Result<(u64, bool)> {
        let decision = self.route(key, req)?;
        if let Some(entry) = self.inner.models.get(&decision.model) {
            match entry.provider.count_tokens(req).await {
                Ok(Some(n)) => return Ok((n, true)),
                Ok(None) => {}
                Err(e) => tracing::warn!(model = %decision.model, error = %e,
                    "the upstream's token count failed; estimating"),
            }
        }
        Ok((
            Features::of_chat(req, self.inner.models.has_local()).prompt_tokens,
            false,
        ))
    }

    /// Read the `llmrr` options and plan the request (the full explanation for a `dry_run`,
    /// a decision only, or when the options ask for it).
    fn plan(
        &self,
        key: &KeyContext,
        call: impl Plannable,
        features: Features,
        dry_run: bool,
    ) -> Result<(Plan, RequestOptions)> {
        let options = RequestOptions::parse(call.llmrr())?;
        let plan = self.inner.router.plan(
            &self.inner.models,
            PlanRequest {
                name: call.model(),
                key,
                features,
                options: &options,
                explain: dry_run || options.explain,
                prompt: call.chat(),
                dry_run,
            },
        )?;
        Ok((plan, options))
    }

    fn validate_chat(&self, req: &ChatCompletionRequest) -> Result<()> {
        validate::at_most("messages", req.messages.len(), self.inner.max_items)?;
        validate::chat(req)
    }

    fn validate_completion(&self, req: &CompletionRequest) -> Result<()> {
        validate::at_most("prompt", validate::items(&req.prompt), self.inner.max_items)?;
        validate::completion(req)
    }

    pub async fn chat(&self, ctx: RequestContext, req: ChatCompletionRequest) -> Result<Answer> {
        let features = Features::of_chat(&req, self.inner.models.has_local());
        let valid = self.validate_chat(&req);
        self.run(ctx, Call::Chat(Box::new(req)), valid, features)
            .await
    }

    pub async fn completion(&self, ctx: RequestContext, req: CompletionRequest) -> Result<Answer> {
        let valid = self.validate_completion(&req);
        let features = Features {
            max_output_tokens: req.max_tokens.map(u64::from),
            ..Default::default()
        };
        self.run(ctx, Call::Completion(req), valid, features).await
    }

    pub async fn embeddings(&self, ctx: RequestContext, req: EmbeddingRequest) -> Result<Answer> {
        let valid = validate::at_most("input", validate::items(&req.input), self.inner.max_items)
            .and_then(|()| validate::embeddings(&req));
        self.run(ctx, Call::Embeddings(req), valid, Features::default())
            .await
    }

    pub async fn chat_stream(
        &self,
        ctx: RequestContext,
        req: ChatCompletionRequest,
    ) -> Result<StreamAnswer> {
        let features = Features::of_chat(&req, self.inner.models.has_local());
        let valid = self.validate_chat(&req);
        self.run_stream(ctx, Call::Chat(Box::new(req)), valid, features)
            .await
    }

    pub async fn completion_stream(
        &self,
        ctx: RequestContext,
        req: CompletionRequest,
    ) -> Result<StreamAnswer> {
        let valid = self.validate_completion(&req);
        let features = Features {
            stream: true,
            max_output_tokens: req.max_tokens.map(u64::from),
            ..Default::default()
        };
        self.run_stream(ctx, Call::Completion(req), valid, features)
            .await
    }

    /// Steps 1-2: validation, input guardrails, options, the plan, the cache, limits and the
    /// budget reservation. A failure is logged and counted here.
    async fn prepare(
        &self,
        ctx: &RequestContext,
        call: &mut Call,
        valid: Result<()>,
        features: Features,
    ) -> Result<Begin> {
        let prepared = self.admit(ctx, call, valid, features).await;
        if let Err(e) = &prepared {
            Box::pin(self.finish(Finish::new(ctx, call, features.stream).failed(None, e))).await;
        }
        prepared
    }

    /// Input guardrails, the plan, the cache (a hit or an identical call in flight answers
    /// here), then admission: limits (rates, quotas, concurrency), then budgets. A budget's
    /// refusal gives the limits back.
    async fn admit(
        &self,
        ctx: &RequestContext,
        call: &mut Call,
        valid: Result<()>,
        features: Features,
    ) -> Result<Begin> {
        valid?;
        let mut features = features;
        let guardrails = self.guardrails_of(call.model());
        if let Some(g) = &guardrails {
            call.guard_input(g)?;
            // Masking may have dropped the client's own Anthropic body: what Anthropic models
            // cannot take is judged on the translation again.
            if let Call::Chat(r) = call {
                features.needs.anthropic_refusal = crate::provider::anthropic_refusal(r);
            }
        }
        let (mut plan, options) = {
            let span = spans::step("llmrr.plan");
            let _in = span.enter();
            let planned = self.plan(&ctx.key, &*call, features, false);
            if let Ok((plan, _)) = &planned {
                spans::decided(&span, &plan.decision);
            }
            planned?
        };
        let cached = self
            .cache_admit(ctx, call, features.stream)
            .instrument(spans::step("llmrr.cache"))
            .await;
        let (mut fill, cache_status) = match cached {
            Ok(go) => go,
            Err(answered) => return Ok(answered),
        };
        let tokens = features.prompt_tokens + features.max_output_tokens.unwrap_or(0);
        let ticket = self
            .inner
            .limits
            .admit(
                &ctx.key,
                &ctx.id,
                call.model(),
                tokens,
                ctx.priority,
                &ctx.rate,
            )
            .instrument(spans::step("llmrr.limits"))
            .await?;
        let admitted = if self.inner.money.has_budgets() {
            let need = call.money_need();
            self.inner
                .money
                .admit(&ctx.id, &ctx.key, &mut plan, need)
                .instrument(spans::step("llmrr.budget"))
                .await
        } else {
            Ok(Default::default())
        };
        let admitted = match admitted {
            Ok(a) => a,
            Err(e) => {
                if let Some(undo) = ticket.cancel() {
                    undo.await;
                }
                return Err(e);
            }
        };
        if let Some(cap) = admitted.cap_max_tokens {
            if call.cap_output(cap) {
                // The budget changed the request: its answer is not the one the key names.
                fill = None;
            }
        }
        let deadline = ctx
            .deadline
            .unwrap_or(ctx.started + self.inner.router.config.retry.max_total);
        Ok(Begin::Call(Box::new(Prepared {
            admission: Admitted {
                key: ctx.key.clone(),
                class: ticket.class,
                deadline,
                tokens,
                latency_limit: options.max_latency,
            },
            plan,
            options,
            prompt_estimate: features.prompt_tokens,
            reservation: admitted.reservation,
            ticket,
            guardrails,
            fill,
            cache_status,
        })))
    }

    async fn run(
        &self,
        mut ctx: RequestContext,
        call: Call,
        valid: Result<()>,
        features: Features,
    ) -> Result<Answer> {
        let span = begin(&mut ctx, &call, false);
        self.run_call(ctx, call, valid, features)
            .instrument(span)
            .await
    }

    async fn run_call(
        &self,
        ctx: RequestContext,
        mut call: Call,
        valid: Result<()>,
        features: Features,
    ) -> Result<Answer> {
        let prepared = match self.prepare(&ctx, &mut call, valid, features).await? {
            Begin::Call(p) => *p,
            Begin::Hit(found) => return self.answer_from_cache(&ctx, &call, found).await,
            Begin::Follow(_) => {
                return Err(Error::Internal("a stream follower for an answer".into()))
            }
        };
        let this = self.clone();
        // Dropped with this future (the client hung up): the upstream call is cancelled at
        // once, and the call is logged as 499.
        let hung_up = CancellationToken::new();
        let guard = hung_up.clone().drop_guard();
        let id = ctx.id.clone();
        let answer = self
            .tracked(call_scope::scope(id, async move {
                // Boxed: the call's future is large, and a cache hit never needs it (the
                // request's future stays small, and cheap to move).
                Box::pin(this.execute(ctx, call, prepared, hung_up)).await
            }))
            .await;
        guard.disarm();
        answer
    }

    /// The guardrails of requests naming `name`: its route's, else its model's.
    fn guardrails_of(&self, name: &str) -> Option<Arc<Guardrails>> {
        match self.inner.router.route(name) {
            Some(route) => route.guardrails.clone(),
            None => self
                .inner
                .models
                .get(name)
                .and_then(|m| m.spec.guardrails.clone()),
        }
    }

    /// A request's log row: onto its trace span and its access line, then into the request
    /// log. Rows of the request's own sub-calls (a cascade's escalated steps, the semantic
    /// cache's embedding: ids `<id>.N`, `<id>_embed`) only go to the log.
    fn log_row(&self, ctx: &RequestContext, row: LogRow) {
        let row = row.sanitized();
        if ctx.sub_call {
            self.inner.log.append(row);
            return;
        }
        crate::spans::answered(&ctx.span, &row);
        if self.inner.access_log {
            let trace = crate::spans::trace_id(&ctx.span);
            let client_id = ctx.client_request_id.as_deref();
            crate::request_log::access::line(&row, client_id, trace.as_deref());
        }
        self.inner.log.append(row);
    }

    /// Settle a limits ticket with the tokens used, off the answer's path.
    fn settle_ticket(&self, ticket: Ticket, used: u64) {
        if let Some(work) = ticket.settle(used) {
            self.inner.tracker.spawn(work);
        }
    }

    /// Give a ticket back whole (the call was not made), off the answer's path.
    fn cancel_ticket(&self, ticket: Ticket) {
        if let Some(work) = ticket.cancel() {
            self.inner.tracker.spawn(work);
        }
    }

    /// Run the plan's attempts until one succeeds, the client hangs up (`hung_up`) or the
    /// server stops.
    async fn attempt_until(
        &self,
        call: &Call,
        plan: &mut Plan,
        admission: &Admitted,
        stream: bool,
        hung_up: impl Future<Output = ()>,
    ) -> std::result::Result<Success, Failed> {
        let cut = |error| {
            Err(Failed {
                error,
                last_entry: None,
                upstream: Duration::ZERO,
            })
        };
        tokio::select! {
            attempted = self.attempt_plan(call, plan, admission, stream) => attempted,
            () = hung_up => cut(Error::ClientClosed),
            () = self.inner.stopping.cancelled() => cut(shutting_down()),
        }
    }

    /// Run `work` as a tracked task and wait for it: if the caller is dropped (the client
    /// hung up), the task still runs to its end and records what happened.
    async fn tracked<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.inner
            .tracker
            .spawn(work.in_current_span())
            .await
            .map_err(|e| Error::Internal(format!("a request task failed: {e}")))?
    }

    /// Steps 3-4 of a non-streamed call.
    async fn execute(
        &self,
        ctx: RequestContext,
        call: Call,
        prepared: Prepared,
        hung_up: CancellationToken,
    ) -> Result<Answer> {
        let Prepared {
            mut plan,
            options,
            reservation,
            admission,
            ticket,
            guardrails,
            fill,
            cache_status,
            ..
        } = prepared;
        let mut finish = Finish::new(&ctx, &call, false);
        finish.reservation = reservation;
        finish.tickets.push(ticket);
        finish.plan_from(&plan);
        finish.cache_from(cache_status.as_ref());
        // A cascade's answers that failed its checks, and the check of the one kept.
        let mut held: Vec<cascade::Rejected> = Vec::new();
        let mut kept: Option<String> = None;
        let success = {
            // A call others wait for goes on while they do, even if this client leaves.
            let hung_up = cache::everyone_gone(fill.as_ref(), hung_up.cancelled());
            let mut hung_up = std::pin::pin!(hung_up);
            loop {
                let attempted = self
                    .attempt_until(&call, &mut plan, &admission, false, hung_up.as_mut())
                    .await;
                match attempted {
                    Ok(s) => match self.cascade_check(&call, &plan, s) {
                        Ok(accepted) => break accepted,
                        Err(rejected) => held.push(*rejected),
                    },
                    Err(Failed {
                        error,
                        last_entry,
                        upstream,
                    }) => {
                        let client_left = matches!(error, Error::ClientClosed);
                        let last = if client_left { None } else { held.pop() };
                        if let Some(last) = last {
                            // Every later model failed: the best answer the cascade got.
                            let check = last.check().to_owned();
                            let (success, note) = last.into_answer(&error, upstream);
                            plan.decision.reason = note;
                            kept = Some(check);
                            break success;
                        }
                        if last_entry.is_none() && held.is_empty() && !client_left {
                            // No model was called (every one skipped, shed or refused):
                            // nothing of the request's limits is used.
                            for ticket in finish.tickets.drain(..) {
                                self.cancel_ticket(ticket);
                            }
                        }
                        // Steps already paid for are costed and logged all the same.
                        let mut upstream = Duration::ZERO;
                        self.cascade_steps(
                            &ctx,
                            &call,
                            &mut plan,
                            held,
                            &mut finish,
                            &mut upstream,
                        )
                        .await;
                        self.finish(finish.failed(last_entry.as_deref(), &error))
                            .await;
                        return Err(error);
                    }
                }
            }
        };
        let Success {
            entry,
            probe,
            started,
            flight,
            outcome,
            mut attempts,
            grant,
            span,
        } = success;
        drop(flight);
        finish.tickets.push(grant);
        let Outcome::Completed(completed) = outcome else {
            return Err(Error::Internal(
                "a stream where an answer was expected".into(),
            ));
        };
        let took = started.elapsed();
        attempts.upstream += took;
        spans::usage(&span, &completed.usage);
        drop(span);
        let sample = Sample {
            success: true,
            latency: Some(took),
            ttft: None,
            output_tokens: completed.usage.completion_tokens,
        };
        self.observe(&plan, &entry, probe, sample, None);
        let reason = kept.is_some().then(|| plan.decision.reason.clone());
        self.cascade_steps(
            &ctx,
            &call,
            &mut plan,
            held,
            &mut finish,
            &mut attempts.upstream,
        )
        .await;
        if let Some(reason) = reason {
            plan.decision.reason = reason;
        }
        let kept_answer = kept.is_some();
        Self::cascade_answered(&mut plan, &entry, &completed, kept);
        finish.entry = Some(&entry);
        finish.usage = completed.usage;
        finish.compute = completed.compute;
        finish.upstream = Some(attempts.upstream);
        let priced = entry.spec.pricing.is_priced();
        let guarded = match &guardrails {
            Some(g) => crate::guardrails::redact_answer(g, completed.body),
            None => Ok(completed.body),
        };
        let body = match guarded {
            Ok(body) => body,
            Err(e) => {
                finish.result = Err((e.status_code(), e.label()));
                self.finish(finish).await;
                return Err(e);
            }
        };
        let cost = self.finish(finish).await;
        // An answer kept although it failed the cascade's checks goes to the identical requests
        // waiting for it, but is not stored: the next one runs the cascade again.
        let fill = if kept_answer {
            fill.map(cache::Fill::not_stored)
        } else {
            fill
        };
        if let Some(fill) = fill {
            let meta = cache::meta_of_answer(&ctx, &call, &entry, completed.usage, cost);
            self.fill_cache(fill, meta, crate::cache::Body::Json(body.clone()));
        }
        let body = if options.explain {
            with_explanation(body, &plan.decision)
        } else {
            body
        };
        Ok(Answer {
            body,
            model: entry.spec.name.clone(),
            provider: entry.spec.provider.as_str(),
            usage: completed.usage,
            cost,
            priced,
            overhead: ctx.started.elapsed().saturating_sub(attempts.upstream),
            route: route_header(&plan, &entry, &attempts),
            attempts: attempts.count(),
            upstream: call_scope::upstream(),
            cache: cache_status,
        })
    }
}
