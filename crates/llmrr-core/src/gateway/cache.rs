//! Step 2's cache: after the plan (the caller may use the name), before limits and budgets
//! (a hit uses neither): answer from the cache, wait for an identical call in flight, or make
//! the call and keep its answer. Hits are logged at $0 with what they saved.

use super::*;
use crate::cache::{
    key_of, CacheDirectives, CacheKey, CacheStatus, Chunk, End, Entry, Follower, Join, KeyScope,
    Lead, Meta, Next, Normalize, ResponseCache, Tier,
};
use crate::config::cache::{CacheMode, CacheRule, NamespaceScope};
use crate::money::cost::picos;
use crate::store::LedgerRow;
use llmrr_types::openai::NativeBody;

/// An embedding for the semantic tier waits at most this long (then: an exact miss).
const EMBED_TIMEOUT: Duration = Duration::from_secs(5);
/// A leader whose followers were let down this many times goes on without coalescing.
const COALESCE_ROUNDS: usize = 2;

/// A cacheable request that makes its own call: where its answer goes.
pub(super) struct Fill {
    key: CacheKey,
    namespace: String,
    ttl: Duration,
    /// Keep the answer (not `no-store`).
    store: bool,
    /// Publishes the answer to identical requests waiting for it.
    pub(super) lead: Option<Lead>,
    /// The semantic tier's view of the prompt, indexed once the answer is kept.
    semantic: Option<Probe>,
    /// The request as `cache warm` would replay it, kept with the answer.
    replay: Option<Replay>,
}

impl Fill {
    /// Publish the answer to the identical requests waiting for it, but do not keep it.
    pub(super) fn not_stored(mut self) -> Fill {
        self.store = false;
        self
    }
}

/// What `cache warm` needs to ask a request again.
struct Replay {
    endpoint: &'static str,
    key_id: Option<String>,
    stream: bool,
    /// The request's JSON as keyed (its routing options under `llmrr_routing`), and the
    /// model or route it named.
    body: serde_json::Value,
    directives: ReplayDirectives,
}

/// The directives that shape a request's entry, kept with it for `cache warm`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct ReplayDirectives {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) ttl_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) namespace: Option<String>,
}

/// The last user turn as the semantic tier sees it.
struct Probe {
    context: CacheKey,
    vector: Vec<f32>,
    prompt: String,
}

/// An answer found in the cache (or by an identical call in flight).
pub(super) struct Found {
    pub(super) key: CacheKey,
    pub(super) entry: Arc<Entry>,
    pub(super) tier: Tier,
    /// Found by meaning: the prompt it matched, and how closely.
    pub(super) semantic: Option<crate::cache::semantic::Match>,
}

impl Found {
    fn status(&self) -> CacheStatus {
        match &self.semantic {
            Some(m) => CacheStatus::semantic_hit(self.tier, &self.entry, m.similarity),
            None => CacheStatus::hit(self.tier, &self.entry),
        }
        .keyed(self.key)
    }

    /// What `explain` shows of a semantic hit.
    fn explanation(&self) -> Option<serde_json::Value> {
        let m = self.semantic.as_ref()?;
        Some(serde_json::json!({
            "cache": {"status": "semantic-hit", "similarity": m.similarity,
                      "matched_prompt": m.prompt}
        }))
    }
}

impl Fill {
    /// Keep the answer only if `keep` (the followers still get it).
    pub(super) fn keep_only_if(&mut self, keep: bool) {
        self.store &= keep;
    }
}

/// What admission decided about the cache.
pub(super) enum Begin {
    /// Make the call (with the cache's part, if any, and what to report).
    Call(Box<Prepared>),
    /// Answered from the cache or by an identical call (`Tier::Coalesced`).
    Hit(Found),
    /// A stream that follows an identical streamed call.
    Follow(Follower),
}

enum Step {
    Off,
    Bypass,
    Hit(Found),
    Follow(Follower),
    Miss(Box<Fill>, &'static str),
}

impl Gateway {
    /// The cache rule of requests naming `name` (its route's, else its model's), when on.
    pub(super) fn cache_rule(&self, name: &str) -> Option<&CacheRule> {
        let rule = match self.inner.router.route(name) {
            Some(route) => &route.cache,
            None => &self.inner.models.get(name)?.spec.cache,
        };
        (rule.mode != CacheMode::Off).then_some(rule)
    }

    /// Look the request up; on a miss lead (or join) its flight. A follower whose leader
    /// failed before any output tries again: once more coalesced, then on its own.
    pub(super) async fn cache_admit(
        &self,
        ctx: &RequestContext,
        call: &Call,
        stream: bool,
    ) -> std::result::Result<(Option<Fill>, Option<CacheStatus>), Begin> {
        for round in 0..=COALESCE_ROUNDS {
            // The semantic step (an embedding: a priced call under `<id>_embed`) runs in the
            // first round only; a retry after a failed leader is looked up exactly.
            let step = self
                .cache_step(ctx, call, stream, round < COALESCE_ROUNDS, round == 0)
                .await;
            match step {
                Step::Off => return Ok((None, None)),
                Step::Bypass => return Ok((None, Some(CacheStatus::plain("bypass")))),
                Step::Miss(fill, status) => {
                    let status = CacheStatus::plain(status).keyed(fill.key);
                    return Ok((Some(*fill), Some(status)));
                }
                Step::Hit(found) => return Err(Begin::Hit(found)),
                Step::Follow(mut f) if stream => {
                    let waiting = HungUp::arm(self, ctx, call, stream);
                    let opened = f.opened().await;
                    waiting.disarm();
                    if opened {
                        return Err(Begin::Follow(f));
                    }
                }
                Step::Follow(f) => {
                    let key = f.key();
                    let waiting = HungUp::arm(self, ctx, call, stream);
                    let answer = f.answer().await;
                    waiting.disarm();
                    if let Some(e) = answer {
                        if let Some(c) = &self.inner.cache {
                            c.counted_hit(Tier::Coalesced, &e);
                        }
                        return Err(Begin::Hit(Found {
                            key,
                            entry: e,
                            tier: Tier::Coalesced,
                            semantic: None,
                        }));
                    }
                }
            }
        }
        Ok((None, Some(CacheStatus::plain("miss"))))
    }

    async fn cache_step(
        &self,
        ctx: &RequestContext,
        call: &Call,
        stream: bool,
        coalesce: bool,
        semantic: bool,
    ) -> Step {
        let Some(cache) = &self.inner.cache else {
            return Step::Off;
        };
        let Some(rule) = self.cache_rule(call.model()) else {
            return Step::Off;
        };
        let d: &CacheDirectives = &ctx.cache;
        let bypass = |reason| {
            cache.counted_bypass(reason);
            Step::Bypass
        };
        if rule.only_deterministic && !call.is_deterministic() {
            return bypass("not_deterministic");
        }
        if d.no_read && d.no_store {
            return bypass("no_cache_no_store");
        }
        let Some(body) = call.cache_body() else {
            return bypass("not_cacheable");
        };
        let namespace = namespace_of(rule, &ctx.key, d.namespace.as_deref());
        let scope = KeyScope {
            endpoint: call.endpoint().as_str(),
            name: call.model(),
            namespace: &namespace,
            stream,
            normalize: Normalize {
                whitespace: rule.normalize_whitespace,
                case: rule.normalize_case,
            },
        };
        let key = key_of(&scope, &body);
        if !d.no_read {
            if let Some((entry, tier)) = cache.lookup(&key, &namespace, call.model()).await {
                if entry.is_stream() == stream {
                    return Step::Hit(Found {
                        key,
                        entry,
                        tier,
                        semantic: None,
                    });
                }
            }
        }
        let mut probe = match rule.mode {
            CacheMode::Semantic if semantic => {
                Box::pin(self.semantic_probe(ctx, cache, rule, call, &scope, &body)).await
            }
            _ => None,
        };
        if let (Some(p), false) = (&probe, d.no_read) {
            let threshold = rule.similarity as f32;
            if let Some(m) = cache.semantic_search(&namespace, &p.context, &p.vector, threshold) {
                if let Some((entry, tier)) = cache.lookup(&m.key, &namespace, call.model()).await {
                    if entry.is_stream() == stream {
                        return Step::Hit(Found {
                            key: m.key,
                            entry,
                            tier,
                            semantic: Some(m),
                        });
                    }
                }
            }
        }
        // A warm replay is not a client's request: it does not count for warming again.
        let replay =
            (!d.no_store && !d.warming && !cache.config().warm_retention.is_zero()).then(|| {
                Replay {
                    endpoint: call.endpoint().as_str(),
                    key_id: ctx.key.key_id.clone(),
                    stream,
                    body: {
                        let mut body = body;
                        if let Some(map) = body.as_object_mut() {
                            map.insert("model".into(), call.model().into());
                        }
                        body
                    },
                    directives: ReplayDirectives {
                        ttl_secs: d.ttl.map(|t| t.as_secs_f64()),
                        namespace: d.namespace.clone(),
                    },
                }
            });
        let fill = |lead| Fill {
            key,
            namespace: namespace.clone(),
            ttl: d.ttl.unwrap_or(rule.ttl),
            store: !d.no_store,
            lead,
            semantic: probe.take(),
            replay,
        };
        if d.no_read {
            cache.counted_bypass(if d.warming { "warm" } else { "no_cache" });
            let status = if d.warming { "warm" } else { "bypass" };
            return Step::Miss(Box::new(fill(None)), status);
        }
        if d.no_store || !coalesce {
            cache.counted_miss();
            return Step::Miss(Box::new(fill(None)), "miss");
        }
        match cache.join(key) {
            Join::Lead(lead) => {
                cache.counted_miss();
                Step::Miss(Box::new(fill(Some(lead))), "miss")
            }
            Join::Follow(f) => Step::Follow(f),
        }
    }

    /// Keep a finished answer (when the policy admits it) and hand it to the followers.
    pub(super) fn fill_cache(&self, fill: Fill, meta: Meta, body: crate::cache::Body) {
        let Some(cache) = &self.inner.cache else {
            return;
        };
        let now = cache.now_ms();
        let ttl = cache.ttl(fill.ttl, meta.cost_pusd as f64 / 1e12);
        let entry = Arc::new(Entry {
            meta: Meta {
                created_ms: now,
                expires_ms: now + ttl.as_millis().min(i64::MAX as u128 / 2) as i64,
                namespace: fill.namespace,
                ..meta
            },
            body,
        });
        if fill.store && cache.admits(&entry) {
            self.inner
                .tracker
                .spawn(cache.store(fill.key, entry.clone()));
            if let Some(replay) = fill.replay {
                self.remember_for_warming(cache, fill.key, replay, &entry.meta);
            }
            if let Some(p) = fill.semantic {
                let item = crate::cache::semantic::Item {
                    key: fill.key,
                    context: p.context,
                    prompt: p.prompt,
                    vector: p.vector,
                    expires_ms: entry.meta.expires_ms,
                };
                self.inner
                    .tracker
                    .spawn(cache.semantic_add(item, &entry.meta));
            }
        }
        if let Some(lead) = fill.lead {
            lead.done(entry);
        }
    }

    /// Keep the request of an answer just cached, for `cache warm` (off the answer's path; a
    /// failure only costs the warming of this request). Now and then, forget the requests
    /// older than the retention.
    fn remember_for_warming(&self, cache: &ResponseCache, key: CacheKey, r: Replay, meta: &Meta) {
        let store = self.inner.store.clone();
        let retention = cache.config().warm_retention;
        let max_bytes = cache.config().max_entry_bytes;
        let (cost_pusd, priced) = (meta.cost_pusd, meta.priced);
        // About one write in 256 also prunes (the key's first byte is uniform).
        let prune = key.as_bytes()[0] == 0;
        // Off the answer's path: the body is serialized in the task.
        self.inner.tracker.spawn(async move {
            let Ok(body) = serde_json::to_string(&r.body) else {
                return;
            };
            // A request larger than an entry may be (images, long files) is not kept.
            if body.len() as u64 > max_bytes {
                return;
            }
            let row = crate::store::CacheRequest {
                cache_key: key.hex(),
                endpoint: r.endpoint.to_owned(),
                stream: r.stream,
                key_id: r.key_id,
                body,
                directives: serde_json::to_string(&r.directives).unwrap_or_else(|_| "{}".into()),
                cost_pusd,
                priced,
            };
            if let Err(e) = store.remember_cache_request(&row).await {
                tracing::warn!(error = %e, "cache: the request could not be kept for warming");
            }
            if prune {
                let before = warm_horizon_ms(retention);
                if let Err(e) = store.forget_cache_requests_before(before).await {
                    tracing::warn!(error = %e, "cache: old warming requests not pruned");
                }
            }
        });
    }

    /// A cached or coalesced answer to a non-streamed request.
    pub(super) async fn answer_from_cache(
        &self,
        ctx: &RequestContext,
        call: &Call,
        found: Found,
    ) -> Result<Answer> {
        let entry = &found.entry;
        let crate::cache::Body::Json(body) = &entry.body else {
            return Err(Error::Internal("a cached stream for an answer".into()));
        };
        let status = found.status();
        self.finish_hit(ctx, call, entry, false, Ok(()), &status);
        let explain = RequestOptions::parse(call.llmrr()).is_ok_and(|o| o.explain);
        let body = match found.explanation().filter(|_| explain) {
            Some(ext) => with_extension(body.clone(), ext),
            None => body.clone(),
        };
        Ok(Answer {
            body,
            model: entry.meta.model.as_str().into(),
            provider: provider_name(&entry.meta.provider),
            usage: entry.meta.usage,
            cost: Decimal::ZERO,
            priced: true,
            overhead: ctx.started.elapsed(),
            route: None,
            attempts: 0,
            upstream: UpstreamMeta::default(),
            cache: Some(status),
        })
    }

    /// A cached stream replayed, or a stream following an identical call.
    pub(super) fn stream_from_cache(
        &self,
        ctx: RequestContext,
        call: Call,
        source: Source,
    ) -> StreamAnswer {
        let (frames_tx, frames_rx) = mpsc::channel(STREAM_BUFFER);
        let (model, provider, status) = match &source {
            Source::Entry(found) => (
                found.entry.meta.model.clone(),
                found.entry.meta.provider.clone(),
                found.status(),
            ),
            Source::Flight(f, meta) => (
                meta.0.clone(),
                meta.1.clone(),
                CacheStatus {
                    status: "hit",
                    tier: Some(Tier::Coalesced),
                    saved_usd: None,
                    similarity: None,
                    key: Some(f.key()),
                },
            ),
        };
        // The request log reads its status and key.
        let logged = status.clone();
        let answer = StreamAnswer {
            model: model.as_str().into(),
            provider: provider_name(&provider),
            frames: frames_rx,
            overhead: ctx.started.elapsed(),
            route: None,
            attempts: 0,
            upstream: UpstreamMeta::default(),
            cache: Some(status),
        };
        let this = self.clone();
        let followed = matches!(source, Source::Flight(..));
        let explain = RequestOptions::parse(call.llmrr()).is_ok_and(|o| o.explain);
        if let Source::Entry(found) = &source {
            if let Some(ext) = found.explanation().filter(|_| explain) {
                let ext = serde_json::to_vec(&ext).unwrap_or_default();
                let _ = frames_tx.try_send(StreamItem::Explain(ext.into()));
            }
        }
        let span = ctx.span.clone();
        self.inner.tracker.spawn(
            async move {
                let include_usage = call.include_usage();
                let (result, entry) = match source {
                    Source::Entry(found) => {
                        let e = found.entry;
                        let sent = replay(&frames_tx, chunks_of(&e), include_usage, &e).await;
                        (sent, Some(e))
                    }
                    Source::Flight(f, _) => follow(&frames_tx, f, include_usage).await,
                };
                if let (Some(e), Some(cache), true) = (&entry, &this.inner.cache, followed) {
                    cache.counted_hit(Tier::Coalesced, e);
                }
                match entry {
                    Some(e) => this.finish_hit(&ctx, &call, &e, true, result, &logged),
                    None => {
                        let mut f = Finish::new(&ctx, &call, true);
                        f.result = result;
                        this.finish(f).await;
                    }
                }
            }
            .instrument(span),
        );
        answer
    }

    /// The request-log row of an answer that made no call, and its ledger row: $0, flagged
    /// as a hit, with what it saved (never against a budget).
    fn finish_hit(
        &self,
        ctx: &RequestContext,
        call: &Call,
        entry: &Entry,
        stream: bool,
        result: std::result::Result<(), (u16, &'static str)>,
        how: &CacheStatus,
    ) {
        let failed = result.is_err();
        self.log_row(
            ctx,
            cache_log_row(ctx, call, stream, result, Some(entry), how),
        );
        if failed {
            return;
        }
        let key = &ctx.key;
        let usage = &entry.meta.usage;
        let row = LedgerRow {
            id: ctx.id.clone(),
            created_at_ms: self.inner.money.now().as_millisecond()
                - ctx.started.elapsed().as_millis() as i64,
            endpoint: ctx.endpoint_label(call.endpoint()),
            key_id: key.key_id.clone(),
            user_id: key.user.clone(),
            team_id: key.team.clone(),
            model: entry.meta.model.clone(),
            provider: entry.meta.provider.clone(),
            route: self
                .inner
                .router
                .route(call.model())
                .map(|_| call.model().to_owned()),
            category: call.category().map(str::to_owned),
            prompt_hash: call.prompt_hash(),
            prompt_tokens: usage.prompt_tokens as i64,
            cached_tokens: usage.cached_tokens() as i64,
            cache_write_tokens: 0,
            completion_tokens: usage.completion_tokens as i64,
            reasoning_tokens: usage.reasoning_tokens() as i64,
            cost_pusd: 0,
            price_version: "cache".into(),
            estimated: false,
            unpriced: !entry.meta.priced,
            cache_hit: true,
            saved_pusd: entry.meta.cost_pusd,
            baseline_max_pusd: None,
            baseline_remote_pusd: None,
            quality: self
                .inner
                .models
                .get(&entry.meta.model)
                .map_or(0.0, |m| m.spec.quality),
            local: entry.meta.provider == "local",
        };
        // A hit settles nothing: its row is queued, not waited for (no task of its own), and
        // shutdown and `flush_log` flush the queue.
        if let Some(row) = self.inner.money.queue_row(row) {
            let money = self.inner.money.clone();
            self.inner.tracker.spawn(async move {
                money.record(Some(row), None, &[]).await;
            });
        }
    }
}

impl Gateway {
    /// Embed the request's last user turn and key everything else; `None` when the request
    /// has no such turn or the embedding model fails (then only the exact tiers apply).
    async fn semantic_probe(
        &self,
        ctx: &RequestContext,
        cache: &ResponseCache,
        rule: &CacheRule,
        call: &Call,
        scope: &KeyScope<'_>,
        body: &serde_json::Value,
    ) -> Option<Probe> {
        let model = rule.embedding_model.as_deref()?;
        let text = call.last_user_text()?;
        let mut rest = body.clone();
        // The client's own body holds the turn's text too: the translation stands for it here
        // (a semantic match is approximate by design).
        if let Some(map) = rest.as_object_mut() {
            map.remove(NATIVE_KEY);
            map.remove(RESPONSES_KEY);
        }
        match call {
            Call::Chat(_) => {
                let messages = rest.get_mut("messages")?.as_array_mut()?;
                let last = messages.iter_mut().rev().find(|m| m["role"] == "user")?;
                // Only a turn of text: an image or a file is not in the embedding.
                if !last["content"].is_string() {
                    return None;
                }
                last["content"] = serde_json::Value::String(String::new());
            }
            Call::Completion(_) if rest["prompt"].is_string() => {
                rest["prompt"] = serde_json::Value::String(String::new())
            }
            Call::Completion(_) | Call::Embeddings(_) => return None,
        }
        // Vectors of two embedding models are never compared.
        rest["llmrr_embedding_model"] = serde_json::Value::String(model.to_owned());
        let context = key_of(scope, &rest);
        match self.embed(ctx, model, &text).await {
            Ok(vector) => Some(Probe {
                context,
                vector,
                prompt: text
                    .chars()
                    .take(crate::cache::semantic::PROMPT_CHARS)
                    .collect(),
            }),
            Err(e) => {
                cache.semantic_failed(&e);
                None
            }
        }
    }

    /// The embedding of `text` by the configured model `model`. The call is the request's own
    /// spend: it is logged and priced as a call of its own (request id `<id>_embed`), to the
    /// key that made the request.
    async fn embed(&self, ctx: &RequestContext, model: &str, text: &str) -> Result<Vec<f32>> {
        let entry = self
            .inner
            .models
            .get(model)
            .ok_or_else(|| Error::ModelNotFound {
                model: model.to_owned(),
            })?;
        let req = llmrr_types::openai::EmbeddingRequest {
            model: model.to_owned(),
            input: serde_json::Value::String(text.to_owned()),
            user: None,
            llmrr: None,
            extra: Default::default(),
        };
        let limit = entry.spec.timeout.min(EMBED_TIMEOUT);
        let started = Instant::now();
        let done = tokio::time::timeout(limit, entry.provider.embeddings(&req))
            .await
            .map_err(|_| Error::UpstreamTimeout {
                model: model.to_owned(),
                provider: entry.spec.provider.as_str(),
                after: limit,
            })
            .and_then(|r| r);
        // Its row's latency is the embedding call's own, not the request's so far.
        let sub = RequestContext {
            id: format!("{}_embed", ctx.id),
            started,
            api: None,
            sub_call: true,
            ..ctx.clone()
        };
        let call = Call::Embeddings(req);
        let mut f = Finish::new(&sub, &call, false);
        f.upstream = Some(started.elapsed());
        let done = match done {
            Ok(done) => {
                f.entry = Some(entry);
                f.usage = done.usage;
                f.compute = done.compute;
                self.finish(f).await;
                done
            }
            Err(e) => {
                self.finish(f.failed(Some(entry), &e)).await;
                return Err(e);
            }
        };
        let answer: serde_json::Value = serde_json::from_slice(&done.body)
            .map_err(|e| Error::Internal(format!("embeddings answer: {e}")))?;
        let vector: Vec<f32> = answer["data"][0]["embedding"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|x| x.as_f64())
                    .map(|x| x as f32)
                    .collect()
            })
            .unwrap_or_default();
        if vector.is_empty() {
            return Err(Error::Internal(
                "the embeddings answer has no vector".into(),
            ));
        }
        Ok(vector)
    }

    /// The model and provider a follower reports before the leader's answer is known: the
    /// name asked for, and its provider when it names a model.
    pub(super) fn model_of_flight(&self, call: &Call) -> (String, String) {
        let provider = self
            .inner
            .models
            .get(call.model())
            .map_or("cache", |m| m.spec.provider.as_str());
        (call.model().to_owned(), provider.to_owned())
    }
}

/// Logs the row of a request whose client hung up while it waited for an identical call
/// (the wait runs in the client's own future: nothing else would).
struct HungUp<'a> {
    gateway: &'a Gateway,
    ctx: &'a RequestContext,
    call: &'a Call,
    stream: bool,
    armed: bool,
}

impl<'a> HungUp<'a> {
    fn arm(gateway: &'a Gateway, ctx: &'a RequestContext, call: &'a Call, stream: bool) -> Self {
        HungUp {
            gateway,
            ctx,
            call,
            stream,
            armed: true,
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for HungUp<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let gone = Err((CLIENT_CLOSED, "client_disconnected"));
        let how = CacheStatus::plain("hit");
        let row = cache_log_row(self.ctx, self.call, self.stream, gone, None, &how);
        self.gateway.log_row(self.ctx, row);
    }
}

/// The request-log row of a request that made no call of its own: $0, the tokens of the
/// answer it was served (`entry`), if any.
fn cache_log_row(
    ctx: &RequestContext,
    call: &Call,
    stream: bool,
    result: std::result::Result<(), (u16, &'static str)>,
    entry: Option<&Entry>,
    how: &CacheStatus,
) -> LogRow {
    let key = &ctx.key;
    let (status, error) = match result {
        Ok(()) => (200, None),
        Err((s, label)) => (s, Some(label)),
    };
    let usage = entry.map(|e| e.meta.usage).unwrap_or_default();
    LogRow {
        id: ctx.id.clone(),
        created_at_ms: crate::store::now_ms(),
        endpoint: ctx.endpoint_label(call.endpoint()),
        key_id: key.key_id.clone(),
        user_id: key.user.clone(),
        team_id: key.team.clone(),
        requested_model: call.model().to_owned(),
        model: entry.map(|e| e.meta.model.clone()),
        provider: entry.map(|e| e.meta.provider.clone()),
        stream,
        status: i64::from(status),
        error_type: error.map(str::to_owned),
        prompt_tokens: usage.prompt_tokens as i64,
        completion_tokens: usage.completion_tokens as i64,
        usage_estimated: false,
        latency_us: ctx.started.elapsed().as_micros().min(i64::MAX as u128) as i64,
        ttft_us: None,
        upstream_us: None,
        cost_usd: "0".into(),
        unpriced: false,
        cache: Some(how.status.into()),
        cache_key: how.key.map(|k| k.hex()),
        difficulty: None,
        category: None,
        prompt: None,
        route: None,
        reason: None,
    }
}

/// Where a streamed answer without a call of its own comes from.
pub(super) enum Source {
    Entry(Found),
    /// An identical call in flight, and its model and provider (when known).
    Flight(Follower, (String, String)),
}

/// Whose answers a request may read: the rule's scope, then the request's own partition.
pub(super) fn namespace_of(rule: &CacheRule, key: &KeyContext, asked: Option<&str>) -> String {
    // Ids are escaped so that `/` only ever separates the partition: a team named `a/x` is
    // `team:a%2Fx`, never team `a`'s partition `x`.
    let esc = |s: &str| s.replace('%', "%25").replace('/', "%2F");
    let id = esc(key.key_id.as_deref().unwrap_or("master"));
    let base = match rule.namespace {
        NamespaceScope::Global => "global".to_owned(),
        NamespaceScope::Key => format!("key:{id}"),
        NamespaceScope::Team => match &key.team {
            Some(team) => format!("team:{}", esc(team)),
            None => format!("key:{id}"),
        },
    };
    match asked {
        Some(sub) => format!("{base}/{sub}"),
        None => base,
    }
}

/// `body` (a JSON answer) with `"llmrr": ext` added.
pub(super) fn with_extension(body: Bytes, ext: serde_json::Value) -> Bytes {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.insert("llmrr".into(), ext);
            serde_json::to_vec(&map).map(Bytes::from).unwrap_or(body)
        }
        _ => body,
    }
}

/// Providers as the answers name them (a cached entry keeps the name as text).
fn provider_name(p: &str) -> &'static str {
    match p {
        "openai" => "openai",
        "anthropic" => "anthropic",
        "local" => "local",
        _ => "cache",
    }
}

fn chunks_of(e: &Entry) -> &[Chunk] {
    match &e.body {
        crate::cache::Body::Stream(c) => c,
        crate::cache::Body::Json(_) => &[],
    }
}

/// A chunk as sent to a client that made no call: the usage chunk says it cost nothing.
fn item_of(chunk: &Chunk, saved: Option<&Entry>) -> StreamItem {
    if !chunk.usage_only && !has_usage(&chunk.data) {
        return StreamItem::Chunk(chunk.data.clone());
    }
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(&chunk.data) else {
        return StreamItem::Chunk(chunk.data.clone());
    };
    let mut ext = serde_json::json!({ "cost_usd": "0", "cache": "hit" });
    if let Some(e) = saved.filter(|e| e.meta.priced) {
        let usd = Decimal::from_i128_with_scale(i128::from(e.meta.cost_pusd), 12).normalize();
        ext["saved_usd"] = usd.to_string().into();
    }
    map.insert("llmrr".into(), ext);
    match serde_json::to_vec(&map) {
        Ok(data) => StreamItem::Chunk(data.into()),
        Err(_) => StreamItem::Chunk(chunk.data.clone()),
    }
}

/// Cheap test for a `"usage":{` object in a chunk (a chunk with usage carries it at the top).
fn has_usage(data: &[u8]) -> bool {
    data.windows(9).any(|w| w == b"\"usage\":{")
}

/// Send a cached stream's chunks, then its end.
async fn replay(
    frames: &mpsc::Sender<StreamItem>,
    chunks: &[Chunk],
    include_usage: bool,
    entry: &Entry,
) -> std::result::Result<(), (u16, &'static str)> {
    let gone = Err((CLIENT_CLOSED, "client_disconnected"));
    for c in chunks.iter().filter(|c| include_usage || !c.usage_only) {
        if frames.send(item_of(c, Some(entry))).await.is_err() {
            return gone;
        }
    }
    if frames.send(StreamItem::Done).await.is_err() {
        return gone;
    }
    Ok(())
}

/// Send a flight's chunks as they come, then its end.
async fn follow(
    frames: &mpsc::Sender<StreamItem>,
    mut f: Follower,
    include_usage: bool,
) -> (
    std::result::Result<(), (u16, &'static str)>,
    Option<Arc<Entry>>,
) {
    let gone = Err((CLIENT_CLOSED, "client_disconnected"));
    let mut seen = 0;
    loop {
        let next = tokio::select! {
            next = f.next(seen) => next,
            () = frames.closed() => return (gone, None),
        };
        match next {
            Next::Chunks(chunks) => {
                seen += chunks.len();
                for c in chunks.iter().filter(|c| include_usage || !c.usage_only) {
                    if frames.send(item_of(c, None)).await.is_err() {
                        return (gone, None);
                    }
                }
            }
            Next::End(End::Done(entry)) => {
                if frames.send(StreamItem::Done).await.is_err() {
                    return (gone, Some(entry));
                }
                return (Ok(()), Some(entry));
            }
            Next::End(End::Failed(event)) => {
                let e = Error::Unavailable {
                    message: "the upstream call this request was waiting on failed".into(),
                    retry_after: None,
                };
                let error = event.unwrap_or_else(|| AnswerError::from(&e));
                let _ = frames.send(StreamItem::Error(error)).await;
                return (Err((e.status_code(), e.label())), None);
            }
        }
    }
}

impl Call {
    /// Whether the request asks for a repeatable answer: temperature 0, or a seed
    /// (embeddings always are).
    pub(super) fn is_deterministic(&self) -> bool {
        let zero = |t: Option<f64>| t == Some(0.0);
        match self {
            Call::Chat(r) => zero(r.temperature) || r.seed.is_some(),
            Call::Completion(r) => {
                zero(
                    r.extra
                        .get("temperature")
                        .and_then(serde_json::Value::as_f64),
                ) || r.extra.get("seed").is_some_and(|s| !s.is_null())
            }
            Call::Embeddings(_) => true,
        }
    }

    /// The request as the key sees it (its JSON, as forwarded upstream, with the client's own
    /// Anthropic body under [`NATIVE_KEY`] or Responses body under [`RESPONSES_KEY`] when it
    /// has one).
    /// The request's routing options (`llmrr`, but `explain`) are part of it: they choose
    /// which model of a route answers.
    pub(super) fn cache_body(&self) -> Option<serde_json::Value> {
        let mut body = match self {
            Call::Chat(r) => serde_json::to_value(&**r).ok()?,
            Call::Completion(r) => serde_json::to_value(r).ok()?,
            Call::Embeddings(r) => serde_json::to_value(r).ok()?,
        };
        // What a model that speaks the client's API is sent instead of the translation shapes
        // the answer too (the key reads it as it reads the top level).
        if let (Call::Chat(r), Some(map)) = (self, body.as_object_mut()) {
            match &r.native {
                Some(NativeBody::Anthropic(native)) => {
                    map.insert(NATIVE_KEY.into(), (**native).clone());
                }
                Some(NativeBody::Responses(native)) => {
                    map.insert(RESPONSES_KEY.into(), (**native).clone());
                }
                None => {}
            }
        }
        if let (Some(serde_json::Value::Object(options)), Some(map)) =
            (self.llmrr(), body.as_object_mut())
        {
            let mut options = options.clone();
            options.remove("explain");
            if !options.is_empty() {
                map.insert("llmrr_routing".into(), options.into());
            }
        }
        Some(body)
    }
}

/// Where a kept chat body holds the client's own Anthropic body (see `cache_body`).
pub(super) const NATIVE_KEY: &str = crate::cache::key::NATIVE_BODIES[0];

/// Where a kept chat body holds the client's own Responses body (see `cache_body`).
pub(super) const RESPONSES_KEY: &str = crate::cache::key::NATIVE_BODIES[1];

/// Requests last kept before this (unix ms) are past `retention`.
pub(super) fn warm_horizon_ms(retention: Duration) -> i64 {
    let back = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    crate::store::now_ms().saturating_sub(back)
}

/// Resolves once the client is gone (`client_gone`) and, for a call others wait for, every
/// one of them too.
pub(super) async fn everyone_gone(fill: Option<&Fill>, client_gone: impl Future<Output = ()>) {
    let followers_gone = fill.and_then(|f| f.lead.as_ref()).map(Lead::all_gone);
    client_gone.await;
    if let Some(gone) = followers_gone {
        gone.await;
    }
}

/// The header of an entry made from a call's answer.
pub(super) fn meta_of_answer(
    ctx: &RequestContext,
    call: &Call,
    entry: &ModelEntry,
    usage: Usage,
    cost: Decimal,
) -> Meta {
    Meta {
        model: entry.spec.name.to_string(),
        provider: entry.spec.provider.as_str().to_owned(),
        usage,
        cost_pusd: picos(cost),
        priced: entry.spec.pricing.is_priced(),
        created_ms: 0,
        expires_ms: 0,
        namespace: String::new(),
        name: call.model().to_owned(),
        key_id: ctx.key.key_id.clone(),
    }
}

/// The cache handle, when any route or model caches.
pub(super) async fn start_cache(
    config: &Config,
    shared: Option<&crate::shared::SharedState>,
) -> Result<Option<ResponseCache>> {
    // Every route and model carries its rule (`[cache]`'s default included).
    let rules = || {
        config
            .routes
            .iter()
            .map(|r| &r.cache)
            .chain(config.models.iter().map(|m| &m.cache))
    };
    if rules().all(|r| r.mode == CacheMode::Off) {
        return Ok(None);
    }
    let semantic = rules().any(|r| r.mode == CacheMode::Semantic);
    let scope = shared.map(|s| s.scoped("cache"));
    Ok(Some(
        ResponseCache::start(&config.cache, scope.as_ref(), semantic).await?,
    ))
}
