//! Handlers, one file per endpoint family, and the two response shapes of a model call.

pub mod admin;
pub mod cache;
pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod feedback;
pub mod health;
pub mod limits;
pub mod messages;
pub mod models;
pub mod money;
pub mod ollama;
pub mod requests;
pub mod responses;
pub mod route;

use crate::dialect::Dialect;
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use llmrr_core::answer::StreamItem;
use llmrr_core::provider::call_scope::UpstreamMeta;
use llmrr_core::{Answer, Error, StreamAnswer};
use std::time::Duration;

/// A request's query string as name → value (the last of a repeated name wins).
pub(crate) fn query_pairs(raw: Option<String>) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// Query parameter `name` as a whole number within `range`, or `default` when absent.
pub(crate) fn query_number(
    q: &std::collections::HashMap<String, String>,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
) -> Result<i64, Error> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                Error::invalid(
                    format!(
                        "`{name}` must be a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ),
                    Some(name.into()),
                )
            }),
    }
}

pub async fn not_found(uri: Uri) -> Response {
    Dialect::of_path(uri.path()).error(Error::NotFound("no such route".into()))
}

pub async fn method_not_allowed(uri: Uri) -> Response {
    let e = Error::invalid("this method is not allowed on this route", None);
    let mut r = Dialect::of_path(uri.path()).error(e);
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

fn model_headers(
    r: &mut Response,
    model: &str,
    provider: &'static str,
    overhead: Duration,
    route: Option<&str>,
    attempts: u32,
    upstream: &UpstreamMeta,
) {
    let h = r.headers_mut();
    // The upstream's own request id (also as `x-request-id`, which SDKs read, unless the
    // client sent one: the auth middleware continues the client's) and its rate limits.
    if let Some(v) = upstream
        .request_id
        .as_deref()
        .and_then(|id| HeaderValue::from_str(id).ok())
    {
        h.insert("x-llmrr-upstream-request-id", v.clone());
        h.insert("x-request-id", v);
    }
    for (name, value) in &upstream.rate_limits {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            h.insert(n, v);
        }
    }
    if let Some(v) = route.and_then(|r| HeaderValue::from_str(r).ok()) {
        h.insert("x-llmrr-route", v);
    }
    if attempts > 1 {
        h.insert("x-llmrr-attempts", HeaderValue::from(attempts));
    }
    if let Ok(v) = HeaderValue::from_str(model) {
        h.insert("x-llmrr-model", v);
    }
    h.insert("x-llmrr-provider", HeaderValue::from_static(provider));
    let ms = format!("{:.3}", overhead.as_secs_f64() * 1000.0);
    if let Ok(v) = HeaderValue::from_str(&ms) {
        h.insert("x-llmrr-overhead-ms", v);
    }
}

/// A complete answer: the body as the provider produced it.
pub fn json_answer(a: Answer) -> Response {
    let mut r = Response::new(Body::from(a.body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if !a.priced {
        // Unknown, not zero: no cost header, and a flag that says why.
        r.headers_mut()
            .insert("x-llmrr-cost-unpriced", HeaderValue::from_static("true"));
    } else if let Ok(v) = HeaderValue::from_str(&a.cost.normalize().to_string()) {
        r.headers_mut().insert("x-llmrr-cost-usd", v);
    }
    model_headers(
        &mut r,
        &a.model,
        a.provider,
        a.overhead,
        a.route.as_deref(),
        a.attempts,
        &a.upstream,
    );
    if let Some(c) = &a.cache {
        crate::cache::status_headers(r.headers_mut(), c);
    }
    r
}

/// A started stream, in OpenAI's SSE framing.
pub fn sse_answer(a: StreamAnswer) -> Response {
    sse_answer_with(a, crate::dialect::openai::frame)
}

/// A started stream: its items as the gateway pumps them, each written by `frame` in the
/// client's dialect.
pub fn sse_answer_with(
    a: StreamAnswer,
    frame: impl FnMut(StreamItem) -> Bytes + Send + 'static,
) -> Response {
    sse_stream_answer(a, |rx| {
        futures_util::stream::unfold((rx, frame), |(mut rx, mut frame)| async move {
            let item = rx.recv().await?;
            Some((frame(item), (rx, frame)))
        })
    })
}

/// A started stream whose body `body` makes from the gateway's items (a dialect that must do
/// async work between them).
pub fn sse_stream_answer<S>(
    a: StreamAnswer,
    body: impl FnOnce(tokio::sync::mpsc::Receiver<StreamItem>) -> S,
) -> Response
where
    S: futures_util::Stream<Item = Bytes> + Send + 'static,
{
    stream_answer(a, "text/event-stream", body)
}

/// A started stream as NDJSON (Ollama's streams): each item written by `frame` as lines.
pub fn ndjson_answer(
    a: StreamAnswer,
    frame: impl FnMut(StreamItem) -> Bytes + Send + 'static,
) -> Response {
    stream_answer(a, "application/x-ndjson", |rx| {
        futures_util::stream::unfold((rx, frame), |(mut rx, mut frame)| async move {
            let item = rx.recv().await?;
            Some((frame(item), (rx, frame)))
        })
    })
}

fn stream_answer<S>(
    a: StreamAnswer,
    content_type: &'static str,
    body: impl FnOnce(tokio::sync::mpsc::Receiver<StreamItem>) -> S,
) -> Response
where
    S: futures_util::Stream<Item = Bytes> + Send + 'static,
{
    use futures_util::StreamExt;
    let StreamAnswer {
        frames,
        model,
        provider,
        overhead,
        route,
        attempts,
        upstream,
        cache,
    } = a;
    let frames = body(frames).map(Ok::<_, std::convert::Infallible>);
    let mut r = Response::new(Body::from_stream(frames));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell reverse proxies (nginx) not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    model_headers(
        &mut r,
        &model,
        provider,
        overhead,
        route.as_deref(),
        attempts,
        &upstream,
    );
    if let Some(c) = &cache {
        crate::cache::status_headers(r.headers_mut(), c);
    }
    r
}
