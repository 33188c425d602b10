//! Metric names (documented in docs/METRICS.md) and the handles the request path records
//! into. Handles for each configured model are registered once at start, so the hot path does
//! no label hashing; error counters, rarer, are looked up when they happen.

use metrics::{counter, describe_counter, describe_histogram, histogram, Counter, Histogram, Unit};

pub const REQUESTS: &str = "llmrr_requests_total";
pub const ERRORS: &str = "llmrr_errors_total";
pub const REQUEST_DURATION: &str = "llmrr_request_duration_seconds";
pub const GATEWAY_OVERHEAD: &str = "llmrr_gateway_overhead_seconds";
pub const UPSTREAM_DURATION: &str = "llmrr_upstream_duration_seconds";
pub const TIME_TO_FIRST_TOKEN: &str = "llmrr_time_to_first_token_seconds";
pub const INPUT_TOKENS: &str = "llmrr_input_tokens_total";
pub const OUTPUT_TOKENS: &str = "llmrr_output_tokens_total";
pub const CLIENT_DISCONNECTS: &str = "llmrr_client_disconnects_total";
pub const LOG_ROWS_WRITTEN: &str = "llmrr_request_log_rows_written_total";
pub const LOG_WRITE_ERRORS: &str = "llmrr_request_log_write_errors_total";
pub const LOG_ROWS_DROPPED: &str = "llmrr_request_log_rows_dropped_total";

/// Register help texts; call once after the recorder is installed.
pub fn describe() {
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
    describe_counter!(LOG_ROWS_WRITTEN, "Request log rows written to the store");
    describe_counter!(
        LOG_WRITE_ERRORS,
        "Request log batches that failed after retries"
    );
    describe_counter!(
        LOG_ROWS_DROPPED,
        "Request log rows dropped because the store stayed unreachable"
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

/// Count a failed call; `model` is `None` when no model was resolved.
pub fn failure(e: Endpoint, model: Option<(&str, &'static str)>, status: u16, error: &'static str) {
    let (m, p) = model.unwrap_or(("", ""));
    counter!(REQUESTS, "endpoint" => e.as_str(), "model" => m.to_owned(), "provider" => p, "status" => status.to_string())
        .increment(1);
    counter!(ERRORS, "endpoint" => e.as_str(), "model" => m.to_owned(), "provider" => p, "error_type" => error)
        .increment(1);
}
