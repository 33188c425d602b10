//! Step 4: usage -> cost -> request-log row, metrics; then (off the answer's path, tracked)
//! the ledger row and the budget settlement.

use super::*;
use crate::money::budget::nanos_up;
use crate::money::cost::picos;
use crate::money::Spent;
use crate::store::LedgerRow;

/// The log's `error_type` of a cascade step whose answer was not accepted.
pub(super) const ESCALATED: &str = "cascade_escalated";

/// What `finish` records about one request.
pub(super) struct Finish<'a> {
    pub(super) ctx: &'a RequestContext,
    pub(super) endpoint: Endpoint,
    pub(super) requested: &'a str,
    pub(super) entry: Option<&'a ModelEntry>,
    pub(super) stream: bool,
    pub(super) result: std::result::Result<(), (u16, &'static str)>,
    pub(super) usage: Usage,
    pub(super) usage_estimated: bool,
    /// Compute time, where the provider reports it (priced per compute-second).
    pub(super) compute: Option<Duration>,
    pub(super) ttft: Option<Duration>,
    pub(super) upstream: Option<Duration>,
    /// The budget reservation, settled (or released) once the ledger row is written.
    pub(super) reservation: Option<Reservation>,
    /// The route the request named, if it named one.
    pub(super) route: Option<Arc<str>>,
    pub(super) call: &'a Call,
    /// Rate limits, quotas and concurrency taken: settled to the tokens used.
    pub(super) tickets: Vec<Ticket>,
    /// What the response cache did (`miss`, `bypass`), when it is on for the request.
    pub(super) cache: Option<&'static str>,
    /// The request's cache key, when the cache keyed it.
    pub(super) cache_key: Option<crate::cache::CacheKey>,
    /// The prompt's difficulty, when the router scored it.
    pub(super) complexity: Option<crate::routing::Complexity>,
    /// What the log keeps of the prompt (routes with `log_prompts = true`).
    pub(super) logged_prompt: Option<String>,
    /// Why the router chose the model: `strategy: reason`.
    pub(super) reason: Option<String>,
    /// A cascade step whose answer failed the route's checks: logged as `cascade_escalated`.
    pub(super) escalated: bool,
    /// What the cascade's escalated steps spent, per model: settled on the reservation with
    /// this request's own spend (their ledger rows are their own).
    pub(super) earlier: Vec<(String, Spent)>,
}

impl<'a> Finish<'a> {
    /// Nothing known yet: no model, no usage, success until said otherwise.
    pub(super) fn new(ctx: &'a RequestContext, call: &'a Call, stream: bool) -> Self {
        Finish {
            ctx,
            endpoint: call.endpoint(),
            requested: call.model(),
            entry: None,
            stream,
            result: Ok(()),
            usage: Usage::default(),
            usage_estimated: false,
            compute: None,
            ttft: None,
            upstream: None,
            reservation: None,
            route: None,
            call,
            tickets: Vec::new(),
            cache: None,
            cache_key: None,
            complexity: None,
            logged_prompt: None,
            reason: None,
            escalated: false,
            earlier: Vec::new(),
        }
    }

    /// What the plan says of the request: its route, the prompt's difficulty, the prompt.
    pub(super) fn plan_from(&mut self, plan: &Plan) {
        self.route = plan.route.clone();
        self.complexity = plan.decision.complexity;
        self.logged_prompt = plan.logged_prompt.clone();
        let d = &plan.decision;
        self.reason = Some(format!("{}: {}", d.strategy, d.reason));
    }

    /// What the cache did for the request, as its log row says it.
    pub(super) fn cache_from(&mut self, status: Option<&crate::cache::CacheStatus>) {
        self.cache = status.map(|c| c.status);
        self.cache_key = status
            .and_then(|c| c.key)
            .filter(|_| !self.ctx.cache.warming);
    }

    pub(super) fn failed(mut self, entry: Option<&'a ModelEntry>, e: &Error) -> Self {
        self.entry = entry;
        self.result = Err((e.status_code(), e.label()));
        self
    }
}

impl Gateway {
    /// Step 4: cost, metrics, request-log row. Returns the cost.
    pub(super) async fn finish(&self, mut f: Finish<'_>) -> Decimal {
        let total = f.ctx.started.elapsed();
        let _in = spans::step("llmrr.finish").entered();
        let priced = f.entry.is_none_or(|e| e.spec.pricing.is_priced());
        let cost = f
            .entry
            .map(|e| cost_of(&e.spec.pricing, &f.usage, f.compute))
            .unwrap_or(Decimal::ZERO);
        let earlier_tokens: u64 = f.earlier.iter().map(|(_, s)| s.tokens as u64).sum();
        self.spend(&mut f, cost);
        let used = f.usage.prompt_tokens + f.usage.completion_tokens;
        for (i, ticket) in f.tickets.drain(..).enumerate() {
            // The request's own ticket (the first) also counts a cascade's earlier steps; a
            // model's grant only its own call.
            let tokens = if i == 0 { used + earlier_tokens } else { used };
            self.settle_ticket(ticket, tokens);
        }
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
            let labels = [
                ("model", e.spec.name.to_string()),
                ("provider", e.spec.provider.as_str().to_owned()),
            ];
            if !priced {
                metrics::counter!(telemetry::UNPRICED_REQUESTS, &labels).increment(1);
            } else if let Some(usd) = rust_decimal::prelude::ToPrimitive::to_f64(&cost) {
                metrics::counter!(telemetry::COST_NANO_USD, &labels)
                    .increment((usd * 1e9).round() as u64);
            }
            if f.usage_estimated {
                metrics::counter!(telemetry::ESTIMATED_USAGE, &labels).increment(1);
            }
        }
        let micros = |d: Duration| d.as_micros().min(i64::MAX as u128) as i64;
        let key = &f.ctx.key;
        self.log_row(
            f.ctx,
            LogRow {
                id: f.ctx.id.clone(),
                created_at_ms: crate::store::now_ms(),
                endpoint: f.ctx.endpoint_label(f.endpoint),
                key_id: key.key_id.clone(),
                user_id: key.user.clone(),
                team_id: key.team.clone(),
                requested_model: f.requested.to_owned(),
                model: f.entry.map(|e| e.spec.name.to_string()),
                provider: f.entry.map(|e| e.spec.provider.as_str().to_owned()),
                stream: f.stream,
                status: i64::from(status),
                error_type: error
                    .or(f.escalated.then_some(ESCALATED))
                    .map(str::to_owned),
                prompt_tokens: f.usage.prompt_tokens as i64,
                completion_tokens: f.usage.completion_tokens as i64,
                usage_estimated: f.usage_estimated,
                latency_us: micros(total),
                ttft_us: f.ttft.map(micros),
                upstream_us: f.upstream.map(micros),
                cost_usd: cost.normalize().to_string(),
                unpriced: !priced,
                cache: f.cache.map(str::to_owned),
                cache_key: f.cache_key.map(|k| k.hex()),
                difficulty: f
                    .complexity
                    .map(|c| (f64::from(c.score) * 10_000.0).round() as i64),
                category: f.complexity.map(|c| c.category.to_owned()),
                prompt: f.logged_prompt.take(),
                route: f.route.as_deref().map(str::to_owned),
                reason: f.reason.take(),
            },
        );
        cost
    }

    /// The ledger row of a request that used a model, and the settlement of its
    /// reservation: written by a tracked task (shutdown waits for it), off the answer's path.
    fn spend(&self, f: &mut Finish<'_>, cost: Decimal) {
        let reservation = f.reservation.take();
        let used = f.usage.prompt_tokens + f.usage.completion_tokens;
        let row = f.entry.filter(|_| used > 0 || !cost.is_zero()).map(|e| {
            let pricing = &e.spec.pricing;
            let at = |other: &ModelEntry| picos(cost_of(&other.spec.pricing, &f.usage, f.compute));
            let route_models = f
                .route
                .as_deref()
                .and_then(|r| self.inner.router.route_models(r));
            let local = e.spec.provider == crate::config::ProviderKind::Local;
            // A cascade's escalated step is part of its request's cost, not a routing choice
            // of its own: a baseline of 0, so savings count the request's baseline once and
            // every step's cost.
            let (baseline_max, baseline_remote) = if f.escalated {
                (Some(0), local.then_some(0))
            } else {
                let remote = route_models.filter(|_| local).and_then(|m| {
                    m.iter()
                        .filter(|o| o.spec.provider != crate::config::ProviderKind::Local)
                        .map(|o| at(o))
                        .min()
                });
                (
                    route_models.and_then(|m| m.iter().map(|o| at(o)).max()),
                    remote,
                )
            };
            let key = &f.ctx.key;
            LedgerRow {
                id: f.ctx.id.clone(),
                // The request's start by the money clock: the period its reservation was in.
                created_at_ms: self.inner.money.now().as_millisecond()
                    - f.ctx.started.elapsed().as_millis() as i64,
                endpoint: f.ctx.endpoint_label(f.endpoint),
                key_id: key.key_id.clone(),
                user_id: key.user.clone(),
                team_id: key.team.clone(),
                model: e.spec.name.to_string(),
                provider: e.spec.provider.as_str().to_owned(),
                route: f.route.as_deref().map(str::to_owned),
                category: f.call.category().map(str::to_owned),
                // A warm replay is not a user asking again (the repeated-prompt advice
                // must not count it).
                prompt_hash: f.call.prompt_hash().filter(|_| !f.ctx.cache.warming),
                prompt_tokens: f.usage.prompt_tokens as i64,
                cached_tokens: f.usage.cached_tokens() as i64,
                cache_write_tokens: f.usage.cache_creation_input_tokens as i64,
                completion_tokens: f.usage.completion_tokens as i64,
                reasoning_tokens: f.usage.reasoning_tokens() as i64,
                cost_pusd: picos(cost),
                price_version: pricing.version.clone(),
                estimated: f.usage_estimated,
                unpriced: !pricing.is_priced(),
                cache_hit: false,
                saved_pusd: 0,
                baseline_max_pusd: baseline_max,
                baseline_remote_pusd: baseline_remote,
                quality: e.spec.quality,
                local,
            }
        });
        if row.is_none() && reservation.is_none() {
            return;
        }
        let money = self.inner.money.clone();
        let mut spent: Vec<(Option<String>, Spent)> = std::mem::take(&mut f.earlier)
            .into_iter()
            .map(|(model, s)| (Some(model), s))
            .collect();
        spent.push((
            f.entry.map(|e| e.spec.name.to_string()),
            Spent {
                nanos: nanos_up(cost),
                tokens: used.min(i64::MAX as u64) as i64,
            },
        ));
        self.inner.tracker.spawn(async move {
            money.record(row, reservation, &spent).await;
        });
    }
}

/// The decision added to a JSON answer as `"llmrr": {...}` (only when asked: it costs a
/// parse and a re-encode).
pub(super) fn with_explanation(body: Bytes, decision: &Decision) -> Bytes {
    super::cache::with_extension(body, serde_json::json!({ "route": decision }))
}
