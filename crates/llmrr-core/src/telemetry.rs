//! Metric names (documented in docs/METRICS.md) and the handles the request path records
//! into. Handles for each configured model are registered once at start, so the hot path does
//! no label hashing; error counters, rarer, are looked up when they happen.

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Histogram, Unit,
};

pub const REQUESTS: &str = "llmrr_requests_total";
pub const ERRORS: &str = "llmrr_errors_total";
pub const ATTEMPT_ERRORS: &str = "llmrr_attempt_errors_total";
pub const REQUEST_DURATION: &str = "llmrr_request_duration_seconds";
pub const GATEWAY_OVERHEAD: &str = "llmrr_gateway_overhead_seconds";
pub const UPSTREAM_DURATION: &str = "llmrr_upstream_duration_seconds";
pub const TIME_TO_FIRST_TOKEN: &str = "llmrr_time_to_first_token_seconds";
pub const INPUT_TOKENS: &str = "llmrr_input_tokens_total";
pub const OUTPUT_TOKENS: &str = "llmrr_output_tokens_total";
pub const CLIENT_DISCONNECTS: &str = "llmrr_client_disconnects_total";
pub const RETRIES: &str = "llmrr_retries_total";
pub const FALLBACKS: &str = "llmrr_fallbacks_total";
pub const BREAKER_STATE: &str = "llmrr_breaker_state";
pub const MODEL_IN_FLIGHT: &str = "llmrr_model_in_flight";
pub const MODEL_LATENCY_EWMA: &str = "llmrr_model_latency_ewma_seconds";
pub const MODEL_TTFT_EWMA: &str = "llmrr_model_ttft_ewma_seconds";
pub const MODEL_ERROR_RATE: &str = "llmrr_model_error_rate";
pub const MODEL_TOKENS_PER_SECOND: &str = "llmrr_model_output_tokens_per_second";
pub const COST_NANO_USD: &str = "llmrr_cost_nano_usd_total";
pub const UNPRICED_REQUESTS: &str = "llmrr_unpriced_requests_total";
pub const ESTIMATED_USAGE: &str = "llmrr_estimated_usage_requests_total";
pub const BUDGET_REFUSALS: &str = "llmrr_budget_refusals_total";
pub const BUDGET_ALERTS: &str = "llmrr_budget_alerts_total";
pub const LEDGER_WRITE_FAILURES: &str = "llmrr_ledger_write_failures_total";
pub const SHARED_STATE_DEGRADED: &str = "llmrr_shared_state_degraded";
pub const LOG_ROWS_WRITTEN: &str = "llmrr_request_log_rows_written_total";
pub const LOG_WRITE_ERRORS: &str = "llmrr_request_log_write_errors_total";
pub const LOG_ROWS_DROPPED: &str = "llmrr_request_log_rows_dropped_total";
pub const AUTH_STORE_ERRORS: &str = "llmrr_auth_store_errors_total";
pub const RATE_LIMITED: &str = "llmrr_rate_limited_total";
pub const UPSTREAM_LIMIT_SKIPS: &str = "llmrr_upstream_limit_skips_total";
pub const LIMITS_OUTAGES: &str = "llmrr_limits_shared_errors_total";
pub const LIMITS_DEGRADED: &str = "llmrr_limits_degraded";
pub const QUEUE_DEPTH: &str = "llmrr_queue_depth";
pub const QUEUE_WAIT: &str = "llmrr_queue_wait_seconds";
pub const QUEUE_SHED: &str = "llmrr_queue_shed_total";
pub const SHED: &str = "llmrr_shed_total";
pub const GUARDRAIL_HITS: &str = "llmrr_guardrail_denials_total";
pub const CACHE_HITS: &str = "llmrr_cache_hits_total";
pub const CACHE_MISSES: &str = "llmrr_cache_misses_total";
pub const CACHE_BYPASSES: &str = "llmrr_cache_bypasses_total";
pub const CACHE_FILLS: &str = "llmrr_cache_fills_total";
pub const CACHE_EVICTIONS: &str = "llmrr_cache_evictions_total";
pub const CACHE_ERRORS: &str = "llmrr_cache_tier_errors_total";
pub const CACHE_BYTES: &str = "llmrr_cache_bytes";
pub const CACHE_ENTRIES: &str = "llmrr_cache_entries";
pub const CACHE_SAVED_NANO_USD: &str = "llmrr_cache_saved_nano_usd_total";
pub const CACHE_COALESCED: &str = "llmrr_cache_coalesced_total";

/// Register help texts; call once after the recorder is installed.
pub fn describe() {
    describe_counter!(
        CACHE_HITS,
        "Requests answered from the response cache, by tier"
    );
    describe_counter!(
        CACHE_MISSES,
        "Cacheable requests the cache could not answer"
    );
    describe_counter!(CACHE_BYPASSES, "Requests that skipped the cache, by reason");
    describe_counter!(CACHE_FILLS, "Entries written to a cache tier, by tier");
    describe_counter!(
        CACHE_EVICTIONS,
        "Entries a cache tier dropped for room or age, by tier"
    );
    describe_counter!(
        CACHE_ERRORS,
        "Cache tier operations that failed and were skipped, by tier"
    );
    describe_gauge!(
        CACHE_BYTES,
        Unit::Bytes,
        "Bytes held by a cache tier, by tier"
    );
    describe_gauge!(CACHE_ENTRIES, "Entries held by a cache tier, by tier");
    describe_counter!(
        CACHE_SAVED_NANO_USD,
        "What cache hits would have cost upstream, in nano-USD"
    );
    describe_counter!(
        CACHE_COALESCED,
        "Requests that waited for an identical request's call instead of making their own"
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused by a rate limit, quota or concurrency limit"
    );
    describe_counter!(
        UPSTREAM_LIMIT_SKIPS,
        "Attempts skipped because the model was at its configured rpm/tpm, by model"
    );
    describe_counter!(
        LIMITS_OUTAGES,
        "Rate-limit operations that found Redis down (the outage policy applied)"
    );
    describe_gauge!(
        LIMITS_DEGRADED,
        "1 while limits are enforced per replica because Redis is down"
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Requests waiting for a slot of a model, by model and priority class"
    );
    describe_histogram!(
        QUEUE_WAIT,
        Unit::Seconds,
        "Time a request waited for a model slot, by model and class"
    );
    describe_counter!(
        QUEUE_SHED,
        "Requests refused by a model's admission queue, by model, class and reason"
    );
    describe_counter!(
        SHED,
        "Requests shed by the global cap on requests or bytes in flight, by reason"
    );
    describe_counter!(
        GUARDRAIL_HITS,
        "Requests refused or answers withheld by a guardrail deny rule"
    );
    describe_counter!(
        REQUESTS,
        "Model calls answered, by endpoint, model, provider and status"
    );
    describe_counter!(
        ERRORS,
        "Failed model calls, by endpoint, model, provider and error type"
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Total time of a model call, as the client sees it"
    );
    describe_histogram!(
        GATEWAY_OVERHEAD,
        Unit::Seconds,
        "Time spent in llmrr itself: total minus upstream"
    );
    describe_histogram!(
        UPSTREAM_DURATION,
        Unit::Seconds,
        "Time the upstream took (to the full answer, or to the end of a stream)"
    );
    describe_histogram!(
        TIME_TO_FIRST_TOKEN,
        Unit::Seconds,
        "Time from request to the first generated token of a stream"
    );
    describe_counter!(INPUT_TOKENS, "Prompt tokens, by model and provider");
    describe_counter!(OUTPUT_TOKENS, "Completion tokens, by model and provider");
    describe_counter!(
        CLIENT_DISCONNECTS,
        "Streams whose client hung up before the end"
    );
    describe_counter!(RETRIES, "Retries of a failed attempt on the same model");
    describe_counter!(
        FALLBACKS,
        "Moves to the next model of a plan after a failure, by the model that failed"
    );
    describe_gauge!(
        BREAKER_STATE,
        "Circuit breaker per model: 0 closed, 1 half-open, 2 open"
    );
    describe_gauge!(MODEL_IN_FLIGHT, "Calls in flight per model");
    describe_gauge!(
        MODEL_LATENCY_EWMA,
        Unit::Seconds,
        "Live latency per model (time-decayed EWMA)"
    );
    describe_gauge!(
        MODEL_TTFT_EWMA,
        Unit::Seconds,
        "Live time to first token per model (EWMA)"
    );
    describe_gauge!(
        MODEL_ERROR_RATE,
        "Failed share of a model's calls over the stats window"
    );
    describe_gauge!(
        MODEL_TOKENS_PER_SECOND,
        "Live output speed per model (EWMA)"
    );
    describe_counter!(
        AUTH_STORE_ERRORS,
        "Key lookups the store failed (served from the stale cache when the key was known)"
    );
    describe_counter!(LOG_ROWS_WRITTEN, "Request log rows written to the store");
    describe_counter!(
        LOG_WRITE_ERRORS,
        "Request log writes that failed (each is retried with backoff)"
    );
    describe_counter!(
        LOG_ROWS_DROPPED,
        "Request log rows not written, by reason: queue_full (the request path never waits), store_unavailable (kept rows past the bound while the store was down), refused_by_store (a value the database refuses), shutdown, writer_stopped"
    );
    describe_counter!(
        COST_NANO_USD,
        "Cost of priced requests in nano-USD (1e-9 USD), by model and provider"
    );
    describe_counter!(
        UNPRICED_REQUESTS,
        "Requests to models without a price (their cost is unknown), by model and provider"
    );
    describe_counter!(
        ESTIMATED_USAGE,
        "Requests priced from counted tokens (no usage from the upstream), by model and provider"
    );
    describe_counter!(
        BUDGET_REFUSALS,
        "Requests that did not fit a hard budget, by the budget's action (reject, downgrade)"
    );
    describe_counter!(
        BUDGET_ALERTS,
        "Budget alerts fired, by period and threshold percent"
    );
    describe_counter!(
        LEDGER_WRITE_FAILURES,
        "Spend ledger rows that could not be written after retries"
    );
    describe_gauge!(
        SHARED_STATE_DEGRADED,
        "1 while the shared state (Redis) is down and budgets are enforced per replica"
    );
}

/// The endpoints that call models, as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }

    const ALL: [Endpoint; 3] = [Endpoint::Chat, Endpoint::Completions, Endpoint::Embeddings];
}

/// Pre-registered handles of one model.
pub struct ModelMetrics {
    /// Successful calls, one per endpoint (indexed like `Endpoint::ALL`).
    ok: [Counter; 3],
    duration: [Histogram; 3],
    overhead: [Histogram; 3],
    pub upstream: Histogram,
    pub ttft: Histogram,
    pub input_tokens: Counter,
    pub output_tokens: Counter,
    model: String,
    provider: &'static str,
}

impl ModelMetrics {
    pub fn new(model: &str, provider: &'static str) -> Self {
        let labels = |e: Endpoint| {
            [
                ("endpoint", e.as_str().to_owned()),
                ("model", model.to_owned()),
                ("provider", provider.to_owned()),
            ]
        };
        let by_endpoint = |f: &dyn Fn(Endpoint) -> Counter| Endpoint::ALL.map(f);
        let ok = by_endpoint(&|e| {
            let mut l = labels(e).to_vec();
            l.push(("status", "200".to_owned()));
            counter!(REQUESTS, &l)
        });
        let duration = Endpoint::ALL.map(|e| histogram!(REQUEST_DURATION, &labels(e)));
        let overhead = Endpoint::ALL.map(|e| histogram!(GATEWAY_OVERHEAD, &labels(e)));
        let mp = [
            ("model", model.to_owned()),
            ("provider", provider.to_owned()),
        ];
        ModelMetrics {
            ok,
            duration,
            overhead,
            upstream: histogram!(UPSTREAM_DURATION, &mp),
            ttft: histogram!(TIME_TO_FIRST_TOKEN, &mp),
            input_tokens: counter!(INPUT_TOKENS, &mp),
            output_tokens: counter!(OUTPUT_TOKENS, &mp),
            model: model.to_owned(),
            provider,
        }
    }

    fn index(e: Endpoint) -> usize {
        e as usize
    }

    pub fn success(&self, e: Endpoint, total: f64, overhead: f64) {
        let i = Self::index(e);
        self.ok[i].increment(1);
        self.duration[i].record(total);
        self.overhead[i].record(overhead);
    }

    pub fn failure(&self, e: Endpoint, status: u16, error: &'static str, total: f64) {
        let i = Self::index(e);
        self.duration[i].record(total);
        failure(e, Some((&self.model, self.provider)), status, error);
    }
}

/// Count a failed attempt on one model (a request may make several).
pub fn attempt_failed(model: &str, provider: &'static str, error: &'static str) {
    counter!(ATTEMPT_ERRORS, "model" => model.to_owned(), "provider" => provider, "error_type" => error)
        .increment(1);
}

/// Count a failed request, once; `model` is `None` when no model was resolved.
pub fn failure(e: Endpoint, model: Option<(&str, &'static str)>, status: u16, error: &'static str) {
    let (m, p) = model.unwrap_or(("", ""));
    counter!(REQUESTS, "endpoint" => e.as_str(), "model" => m.to_owned(), "provider" => p, "status" => status.to_string())
        .increment(1);
    counter!(ERRORS, "endpoint" => e.as_str(), "model" => m.to_owned(), "provider" => p, "error_type" => error)
        .increment(1);
}

/// Export every model's live stats and breaker state as gauges (called before `/metrics`
/// renders, so the numbers are current without work on the request path).
pub fn export_live_stats(models: &crate::models::ModelRegistry) {
    for e in models.all() {
        let m = e.spec.name.to_string();
        let s = e.stats.snapshot();
        gauge!(MODEL_IN_FLIGHT, "model" => m.clone()).set(f64::from(s.in_flight));
        gauge!(MODEL_ERROR_RATE, "model" => m.clone()).set(s.error_rate);
        gauge!(BREAKER_STATE, "model" => m.clone()).set(e.breaker.state().gauge());
        if let Some(l) = s.latency_ms {
            gauge!(MODEL_LATENCY_EWMA, "model" => m.clone()).set(l / 1000.0);
        }
        if let Some(t) = s.ttft_ms {
            gauge!(MODEL_TTFT_EWMA, "model" => m.clone()).set(t / 1000.0);
        }
        if let Some(tps) = s.output_tokens_per_sec {
            gauge!(MODEL_TOKENS_PER_SECOND, "model" => m).set(tps);
        }
    }
}
