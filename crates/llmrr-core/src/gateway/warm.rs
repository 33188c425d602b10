//! `cache warm`: ask again, at low priority, the cacheable requests asked most often in a
//! window (counted in the request log), whose answers the cache no longer holds, until a cost
//! cap. Each replay is a real request of the key that made it — its limits, budgets, request
//! log and ledger apply — with `Cache-Control: no-cache`, logged with cache status `warm` and
//! not counted as asked.

use super::cache::ReplayDirectives;
use super::*;
use crate::cache::{CacheDirectives, CacheKey};
use crate::store::WarmCandidate;
use llmrr_types::openai::NativeBody;
use serde::{Deserialize, Serialize};

/// The most requests one warm run considers.
pub const MAX_WARM_REQUESTS: usize = 10_000;

/// What to warm (`POST /admin/cache/warm`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmOptions {
    /// The most frequent requests considered (default 100).
    #[serde(default = "default_top")]
    pub top: usize,
    /// Spend at most this much on replays (USD, a string or a number; required).
    pub max_cost_usd: serde_json::Value,
    /// Count how often each was asked over this many hours back (default 24).
    #[serde(default = "default_since_hours")]
    pub since_hours: f64,
    /// Only say what would be replayed, and its estimated cost.
    #[serde(default)]
    pub dry_run: bool,
}

fn default_top() -> usize {
    100
}

fn default_since_hours() -> f64 {
    24.0
}

/// What a warm run did.
#[derive(Debug, Default, Serialize)]
pub struct WarmReport {
    pub considered: usize,
    /// Replayed and answered (or, in a dry run, would be).
    pub warmed: usize,
    pub already_cached: usize,
    /// Left out: its last cost would take the run over `max_cost_usd`.
    pub over_cost_cap: usize,
    /// Left out: its model has no price, so its cost cannot be capped.
    pub unpriced: usize,
    /// Left out: the key that made it is revoked, expired or deleted.
    pub key_gone: usize,
    /// Left out: the cache is off for its model or route now.
    pub not_cacheable: usize,
    /// Replayed, but keyed differently now (the key's team, the rule's namespace or
    /// normalization changed): its kept request is forgotten.
    pub key_changed: usize,
    pub failed: usize,
    /// What the replays cost (a streamed replay, and one that failed, count at their last
    /// known cost: a failure may still have been charged).
    pub spent_usd: Decimal,
    /// What the replays were expected to cost, from their last answers.
    pub estimated_usd: Decimal,
    pub dry_run: bool,
    pub requests: Vec<WarmItem>,
}

/// What became of one request considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmOutcome {
    Warmed,
    /// A dry run would have replayed it.
    WouldWarm,
    AlreadyCached,
    OverCostCap,
    Unpriced,
    /// The key that asked it is revoked or gone.
    KeyGone,
    NotCacheable,
    /// Replayed, its answer landed under another key (forgotten).
    KeyChanged,
    Failed,
}

/// One request considered.
#[derive(Debug, Serialize)]
pub struct WarmItem {
    pub cache_key: String,
    pub endpoint: String,
    pub model: String,
    pub stream: bool,
    /// Times asked in the window.
    pub asked: i64,
    pub outcome: WarmOutcome,
    pub estimated_usd: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Gateway {
    /// Replay the most frequent cacheable requests that are no longer cached, within
    /// `options.max_cost_usd`, one at a time at low priority.
    pub async fn warm_cache(&self, options: &WarmOptions) -> Result<WarmReport> {
        let Some(cache) = self.inner.cache.clone() else {
            return Err(Error::invalid(
                "the response cache is off: no route or model caches",
                None,
            ));
        };
        let cap = crate::money::budget::usd_amount(&options.max_cost_usd, "max_cost_usd")?;
        let window = Duration::try_from_secs_f64(options.since_hours * 3600.0)
            .ok()
            .filter(|w| !w.is_zero())
            .ok_or_else(|| {
                Error::invalid(
                    "since_hours must be a number > 0",
                    Some("since_hours".into()),
                )
            })?;
        // Requests kept longer than the retention are forgotten first (all of them when it
        // is zero: warming is off).
        let retention = cache.config().warm_retention;
        let store = &self.inner.store;
        store
            .forget_cache_requests_before(super::cache::warm_horizon_ms(retention))
            .await?;
        if retention.is_zero() {
            return Err(Error::invalid(
                "cache warming is off: [cache] warm_retention_days = 0 keeps no request",
                None,
            ));
        }
        let top = options.top.clamp(1, MAX_WARM_REQUESTS) as i64;
        let since_ms = super::cache::warm_horizon_ms(window);
        let candidates = self.inner.store.warm_candidates(since_ms, top).await?;
        let mut report = WarmReport {
            dry_run: options.dry_run,
            ..Default::default()
        };
        for c in candidates {
            let item = self.warm_one(&cache, cap, &mut report, c).await;
            let count = match item.outcome {
                WarmOutcome::Warmed | WarmOutcome::WouldWarm => &mut report.warmed,
                WarmOutcome::AlreadyCached => &mut report.already_cached,
                WarmOutcome::OverCostCap => &mut report.over_cost_cap,
                WarmOutcome::Unpriced => &mut report.unpriced,
                WarmOutcome::KeyGone => &mut report.key_gone,
                WarmOutcome::NotCacheable => &mut report.not_cacheable,
                WarmOutcome::KeyChanged => &mut report.key_changed,
                WarmOutcome::Failed => &mut report.failed,
            };
            *count += 1;
            report.considered += 1;
            report.requests.push(item);
        }
        Ok(report)
    }

    async fn warm_one(
        &self,
        cache: &crate::cache::ResponseCache,
        cap: Decimal,
        report: &mut WarmReport,
        c: WarmCandidate,
    ) -> WarmItem {
        let r = c.request;
        let estimate = Decimal::from_i128_with_scale(i128::from(r.cost_pusd), 12).normalize();
        let mut body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
        let model = body["model"].as_str().unwrap_or_default().to_owned();
        let mut item = WarmItem {
            cache_key: r.cache_key.chars().take(16).collect(),
            endpoint: r.endpoint.clone(),
            model: model.clone(),
            stream: r.stream,
            asked: c.asked,
            outcome: WarmOutcome::Failed,
            estimated_usd: estimate,
            error: None,
        };
        let directives: ReplayDirectives = serde_json::from_str(&r.directives).unwrap_or_default();
        let (Some(key), Some(rule)) = (CacheKey::from_hex(&r.cache_key), self.cache_rule(&model))
        else {
            item.outcome = WarmOutcome::NotCacheable;
            return item;
        };
        let who = match self.inner.auth.context_of(r.key_id.as_deref()).await {
            Ok(Some(who)) => who,
            Ok(None) => {
                item.outcome = WarmOutcome::KeyGone;
                return item;
            }
            Err(e) => {
                item.error = Some(e.to_string());
                return item;
            }
        };
        let namespace = super::cache::namespace_of(rule, &who, directives.namespace.as_deref());
        if cache.holds(&key, &namespace, &model).await {
            item.outcome = WarmOutcome::AlreadyCached;
            return item;
        }
        if !r.priced {
            item.outcome = WarmOutcome::Unpriced;
            return item;
        }
        let committed = if report.dry_run {
            report.estimated_usd
        } else {
            report.spent_usd
        };
        if committed + estimate > cap {
            item.outcome = WarmOutcome::OverCostCap;
            return item;
        }
        report.estimated_usd += estimate;
        if report.dry_run {
            item.outcome = WarmOutcome::WouldWarm;
            return item;
        }
        if let Some(map) = body.as_object_mut() {
            if let Some(routing) = map.remove("llmrr_routing") {
                map.insert("llmrr".into(), routing);
            }
        }
        let mut ctx = RequestContext::new(who);
        ctx.priority = Some(Priority::Low);
        ctx.cache = CacheDirectives {
            no_read: true,
            no_store: false,
            ttl: directives
                .ttl_secs
                .and_then(|s| Duration::try_from_secs_f64(s).ok()),
            namespace: directives.namespace,
            warming: true,
        };
        match self.replay(ctx, &r.endpoint, r.stream, body).await {
            Ok((cost, keyed)) => {
                report.spent_usd += cost.unwrap_or(estimate);
                item.outcome = if keyed == Some(key) {
                    WarmOutcome::Warmed
                } else {
                    // Asked again it lands elsewhere (or nowhere): replaying it once more
                    // would buy the same answer again.
                    if let Err(e) = self.inner.store.forget_cache_request(&r.cache_key).await {
                        tracing::warn!(error = %e, "cache warm: a stale request not forgotten");
                    }
                    WarmOutcome::KeyChanged
                };
            }
            Err(e) => {
                report.spent_usd += estimate;
                item.error = Some(e.to_string());
            }
        }
        item
    }

    /// Ask `body` again on `endpoint`: its cost when known (a stream's is not reported here),
    /// and the key the cache gave it.
    async fn replay(
        &self,
        ctx: RequestContext,
        endpoint: &str,
        stream: bool,
        body: serde_json::Value,
    ) -> Result<(Option<Decimal>, Option<CacheKey>)> {
        let bad = |e: serde_json::Error| Error::Internal(format!("the kept request: {e}"));
        let answered = |a: Answer| (Some(a.cost), a.cache.and_then(|c| c.key));
        // A chat body with the client's own Anthropic or Responses body: sent again as it was.
        let chat = |mut body: serde_json::Value| {
            let mut take = |key: &str| body.as_object_mut().and_then(|m| m.remove(key));
            let native = match (
                take(super::cache::NATIVE_KEY),
                take(super::cache::RESPONSES_KEY),
            ) {
                (Some(b), _) => Some(NativeBody::Anthropic(Arc::new(b))),
                (None, Some(b)) => Some(NativeBody::Responses(Arc::new(b))),
                (None, None) => None,
            };
            let mut req: ChatCompletionRequest = serde_json::from_value(body).map_err(bad)?;
            req.native = native;
            Ok::<_, Error>(req)
        };
        let opened = match (endpoint, stream) {
            ("chat", false) => {
                return Ok(answered(self.chat(ctx, chat(body)?).await?));
            }
            ("completions", false) => {
                let req = serde_json::from_value(body).map_err(bad)?;
                return Ok(answered(self.completion(ctx, req).await?));
            }
            ("embeddings", false) => {
                let req = serde_json::from_value(body).map_err(bad)?;
                return Ok(answered(self.embeddings(ctx, req).await?));
            }
            ("chat", true) => self.chat_stream(ctx, chat(body)?).await?,
            ("completions", true) => {
                self.completion_stream(ctx, serde_json::from_value(body).map_err(bad)?)
                    .await?
            }
            (other, _) => return Err(Error::Internal(format!("no endpoint `{other}` to warm"))),
        };
        // Read to its end: the pump keeps the answer once it is complete.
        let keyed = opened.cache.as_ref().and_then(|c| c.key);
        let mut frames = opened.frames;
        let mut failed = None;
        while let Some(item) = frames.recv().await {
            if let StreamItem::Error(e) = item {
                failed = Some(e);
            }
        }
        match failed {
            Some(e) => Err(Error::Internal(format!(
                "the stream ended with an error ({}: {})",
                e.kind, e.message
            ))),
            None => Ok((None, keyed)),
        }
    }
}
