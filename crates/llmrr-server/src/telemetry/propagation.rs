//! The server's span of one HTTP request, continuing the trace a client's `traceparent`
//! started (W3C Trace Context, through the globally installed propagator: none when traces
//! are off).

use axum::http::{HeaderMap, Method};
use opentelemetry::propagation::Extractor;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Headers<'a>(&'a HeaderMap);

/// The longest `tracestate` continued (the W3C limit is 32 entries; longer ones are dropped
/// rather than carried to every upstream).
const MAX_TRACESTATE: usize = 512;
/// The longest user agent kept on a span.
const MAX_USER_AGENT: usize = 256;

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let v = self.0.get(key).and_then(|v| v.to_str().ok())?;
        (key != "tracestate" || v.len() <= MAX_TRACESTATE).then_some(v)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span of a request to `route` (the matched path); a child of the client's trace when
/// it sent one.
pub fn request_span(method: &Method, route: &str, headers: &HeaderMap) -> Span {
    let span = tracing::info_span!(target: llmrr_core::spans::TARGET, "llmrr.http",
        otel.name = Empty,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method.as_str(),
        http.route = route,
        http.response.status_code = Empty,
        llmrr.request_id = Empty,
        client.request_id = Empty,
        user_agent.original = headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.get(..MAX_USER_AGENT).unwrap_or(ua)),
    );
    if span.is_disabled() {
        return span;
    }
    span.record("otel.name", format!("{method} {route}"));
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    // A malformed or absent traceparent leaves an empty context: a new trace starts.
    let _ = span.set_parent(parent);
    span
}
