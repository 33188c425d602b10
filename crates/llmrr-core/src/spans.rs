//! The request path's trace spans, named and attributed after OpenTelemetry's GenAI semantic
//! conventions, and the W3C trace context sent to upstreams.
//!
//! One call of the gateway is a `llmrr.call` span (`{operation} {requested model}`: the model
//! that answered, usage, cost, the cache, the status), with a child span per step: `llmrr.plan`
//! (the chosen model and why), `llmrr.cache`, `llmrr.limits`, `llmrr.budget`, `llmrr.queue`
//! (a model's admission queue), one client span per attempt (`{operation} {upstream model}`,
//! `gen_ai.*` attributes, `error.type` when it failed) and `llmrr.finish`. The server opens
//! the HTTP span above them and continues a client's `traceparent`.
//!
//! Every span has the target [`TARGET`]: the text log leaves them out (formatting a span per
//! request step costs more than the step), the OpenTelemetry layer keeps them. Without that
//! layer (no `[telemetry] otlp_endpoint`) they are disabled where they are made: their fields
//! are never evaluated, and recording into them does nothing.

use crate::config::{ModelSpec, ProviderKind};
use crate::store::LogRow;
use crate::telemetry::Endpoint;
use llmrr_types::openai::Usage;
use opentelemetry::propagation::Injector;
use opentelemetry::trace::TraceContextExt;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of every span of the request path.
pub const TARGET: &str = "llmrr::span";

/// `gen_ai.operation.name` of an endpoint.
pub fn operation(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Chat => "chat",
        Endpoint::Completions => "text_completion",
        Endpoint::Embeddings => "embeddings",
    }
}

/// `gen_ai.provider.name` of a kind of upstream (an OpenAI-compatible server speaks
/// OpenAI's API; a local model is llama.cpp in this process).
pub fn provider_name(kind: &str) -> &'static str {
    match kind {
        "anthropic" => "anthropic",
        "local" => "llama.cpp",
        _ => "openai",
    }
}

// Numbers are recorded as i64: the OpenTelemetry layer writes a u64 as text.

/// Give a span its display name (`otel.name`) when it is recorded at all.
fn named(span: Span, name: impl FnOnce() -> String) -> Span {
    if !span.is_disabled() {
        span.record("otel.name", name());
    }
    span
}

/// The span of one call of the gateway.
pub fn call(request_id: &str, endpoint: Endpoint, requested: &str, stream: bool) -> Span {
    let op = operation(endpoint);
    let span = tracing::info_span!(target: TARGET, "llmrr.call",
        otel.name = Empty,
        otel.status_code = Empty,
        gen_ai.operation.name = op,
        gen_ai.request.model = requested,
        gen_ai.response.model = Empty,
        gen_ai.provider.name = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        llmrr.request_id = request_id,
        llmrr.stream = stream,
        llmrr.cost_usd = Empty,
        llmrr.unpriced = Empty,
        llmrr.cache = Empty,
        llmrr.status = Empty,
        llmrr.key_id = Empty,
        llmrr.team_id = Empty,
        llmrr.user_id = Empty,
        error.type = Empty,
    );
    named(span, || format!("{op} {requested}"))
}

/// What a request asked of the model's sampling, for an attempt's span.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sampling {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
}

/// The client span of one attempt on one model; `sampling` is read only when the span is
/// recorded.
pub fn attempt(
    spec: &ModelSpec,
    endpoint: Endpoint,
    number: u32,
    sampling: impl FnOnce() -> Sampling,
) -> Span {
    let op = operation(endpoint);
    let span = tracing::info_span!(target: TARGET, "llmrr.attempt",
        otel.name = Empty,
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.operation.name = op,
        gen_ai.provider.name = provider_name(spec.provider.as_str()),
        gen_ai.request.model = spec.upstream_model.as_str(),
        gen_ai.request.temperature = Empty,
        gen_ai.request.top_p = Empty,
        gen_ai.request.max_tokens = Empty,
        gen_ai.response.model = spec.upstream_model.as_str(),
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        server.address = Empty,
        server.port = Empty,
        llmrr.model = &*spec.name,
        llmrr.attempt = i64::from(number),
        error.type = Empty,
    );
    if span.is_disabled() {
        return span;
    }
    let asked = sampling();
    span.record("gen_ai.request.temperature", asked.temperature);
    span.record("gen_ai.request.top_p", asked.top_p);
    span.record("gen_ai.request.max_tokens", asked.max_tokens.map(i64::from));
    if spec.provider != ProviderKind::Local {
        if let Ok(url) = reqwest::Url::parse(&spec.base_url) {
            span.record("server.address", url.host_str());
            span.record("server.port", url.port_or_known_default().map(i64::from));
        }
    }
    named(span, || format!("{op} {}", spec.upstream_model))
}

/// A step of a call (`llmrr.plan`, `llmrr.cache`, `llmrr.limits`, `llmrr.budget`,
/// `llmrr.queue`, `llmrr.finish`); the plan's says what it chose and why.
pub fn step(name: &'static str) -> Span {
    // The name is not static metadata here, so it is the span's display name.
    tracing::info_span!(target: TARGET, "llmrr.step",
        otel.name = name,
        llmrr.model = Empty,
        llmrr.route = Empty,
        llmrr.strategy = Empty,
        llmrr.reason = Empty,
    )
}

/// What the plan chose, onto its span.
pub fn decided(span: &Span, decision: &crate::routing::Decision) {
    span.record("llmrr.model", decision.model.as_str());
    span.record("llmrr.route", decision.route.as_deref());
    span.record("llmrr.strategy", decision.strategy);
    span.record("llmrr.reason", decision.reason.as_str());
}

/// An attempt's or a call's failure.
pub fn failed(span: &Span, label: &str) {
    span.record("error.type", label);
    span.record("otel.status_code", "ERROR");
}

/// The tokens an answer used.
pub fn usage(span: &Span, usage: &Usage) {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    span.record("gen_ai.usage.input_tokens", count(usage.prompt_tokens));
    span.record("gen_ai.usage.output_tokens", count(usage.completion_tokens));
}

/// What the call's request-log row says, onto its span.
pub fn answered(span: &Span, row: &LogRow) {
    if span.is_disabled() {
        return;
    }
    if let Some(model) = &row.model {
        span.record("gen_ai.response.model", model.as_str());
    }
    if let Some(provider) = &row.provider {
        span.record("gen_ai.provider.name", provider_name(provider));
    }
    span.record("gen_ai.usage.input_tokens", row.prompt_tokens);
    span.record("gen_ai.usage.output_tokens", row.completion_tokens);
    if let Ok(cost) = row.cost_usd.parse::<f64>() {
        span.record("llmrr.cost_usd", cost);
    }
    span.record("llmrr.unpriced", row.unpriced);
    span.record("llmrr.cache", row.cache.as_deref());
    span.record("llmrr.status", row.status);
    span.record("llmrr.key_id", row.key_id.as_deref());
    span.record("llmrr.team_id", row.team_id.as_deref());
    span.record("llmrr.user_id", row.user_id.as_deref());
    if let Some(error) = &row.error_type {
        span.record("error.type", error.as_str());
        if row.status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// The trace a span is part of (hex), when traces are on.
pub fn trace_id(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Headers carrying the current span's trace context (`traceparent`, `tracestate`) to an
/// upstream, when traces are on.
pub fn propagate(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let span = Span::current();
    if span.is_disabled() {
        return req;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return req;
    }
    let mut fields = Fields(Vec::new());
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut fields));
    fields.0.into_iter().fold(req, |r, (k, v)| r.header(k, v))
}

struct Fields(Vec<(String, String)>);

impl Injector for Fields {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}
