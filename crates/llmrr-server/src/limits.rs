//! The HTTP side of limits: `x-ratelimit-*` headers on every answer of a limited request,
//! the admission headers clients send, and the global cap on work in flight — checked before
//! the body is read, so that a flood is refused in microseconds while the requests already
//! admitted keep their latency.

use crate::dialect::Dialect;
use crate::state::AppState;
use axum::body::Body;
use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Frame, SizeHint};
use llmrr_core::limits::{InFlightGuard, RateHeaders};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

pub const PRIORITY: &str = "x-llmrr-priority";
pub const DEADLINE: &str = "x-llmrr-deadline-ms";

/// A duration as OpenAI writes its resets: `1s`, `6m0s`, `1h2m3s`, `20ms`, `1.5s`.
pub fn reset_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    let (h, rest) = ((secs / 3600.0).floor() as u64, secs % 3600.0);
    let (m, s) = ((rest / 60.0).floor() as u64, rest % 60.0);
    let s = if (s - s.round()).abs() < 0.001 {
        format!("{}s", s.round() as u64)
    } else {
        format!("{:.3}s", s).replace(".000s", "s")
    };
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

/// Our `x-ratelimit-*` (they replace an upstream's: these are the limits the client is under).
pub fn rate_headers(h: &mut HeaderMap, r: &RateHeaders) {
    for (kind, gauge) in [("requests", r.requests), ("tokens", r.tokens)] {
        let Some(g) = gauge else { continue };
        let values = [
            ("limit", g.limit.to_string()),
            ("remaining", g.remaining.to_string()),
            ("reset", reset_text(g.reset)),
        ];
        for (what, v) in values {
            if let (Ok(name), Ok(v)) = (
                header::HeaderName::from_bytes(format!("x-ratelimit-{what}-{kind}").as_bytes()),
                HeaderValue::from_str(&v),
            ) {
                h.insert(name, v);
            }
        }
    }
}

/// Paths the global cap covers: model calls. Health, metrics and the admin API stay
/// reachable under any load.
fn capped(path: &str) -> bool {
    path.starts_with("/v1/")
        || matches!(
            path,
            "/api/chat" | "/api/generate" | "/api/embed" | "/api/embeddings"
        )
}

/// The global cap on requests and request bytes in flight: past it, 503 with Retry-After at
/// once. The admitted request holds its share until its response body has been sent.
pub async fn shed(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !capped(req.uri().path()) {
        return next.run(req).await;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A body of unknown length may grow to the body limit; a GET has none.
    let bytes = if matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) {
        0
    } else {
        declared
            .unwrap_or(state.server.max_body_bytes as u64)
            .min(state.server.max_body_bytes as u64)
    };
    let Some(guard) = state.gateway.limits().in_flight().try_enter(bytes) else {
        let mut resp = Dialect::of_path(req.uri().path()).error(llmrr_core::Error::Overloaded {
            message: "the gateway is at its cap of requests in flight; try again shortly".into(),
            status: 503,
            code: "overloaded",
            retry_after: Some(Duration::from_secs(1)),
        });
        // Shed before authentication, which gives ids: this answer gets its own.
        let id = llmrr_core::RequestContext::new(Default::default()).id;
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(crate::auth::REQUEST_ID, v);
        }
        if state.gateway.access_log() {
            llmrr_core::request_log::access::without_call(
                &id,
                None,
                req.method().as_str(),
                req.uri().path(),
                503,
                None,
                0.0,
            );
        }
        return resp;
    };
    let resp = next.run(req).await;
    let (parts, body) = resp.into_parts();
    // The share is given back when the body has been sent (or dropped).
    Response::from_parts(
        parts,
        Body::new(Held {
            body,
            _guard: guard,
        }),
    )
}

/// A response body that holds its request's share of the global cap.
struct Held {
    body: Body,
    _guard: InFlightGuard,
}

impl HttpBody for Held {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_read_like_openai() {
        assert_eq!(reset_text(Duration::from_millis(20)), "20ms");
        assert_eq!(reset_text(Duration::from_secs(1)), "1s");
        assert_eq!(reset_text(Duration::from_millis(1500)), "1.500s");
        assert_eq!(reset_text(Duration::from_secs(360)), "6m0s");
        assert_eq!(reset_text(Duration::from_secs(3723)), "1h2m3s");
    }
}
