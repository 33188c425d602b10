//! The one middleware: give the request its id and its trace span, authenticate its key, and
//! hand handlers a `RequestContext`. Every response carries `x-llmrr-request-id`, errors
//! included.

use crate::dialect::Dialect;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use llmrr_core::RequestContext;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tracing::Instrument;

pub const REQUEST_ID: &str = "x-llmrr-request-id";
/// The request id clients and SDKs send and read (OpenAI's SDKs expose it as `_request_id`).
const CLIENT_REQUEST_ID: &str = "x-request-id";

/// A client's `x-request-id`, when it is a sane id (1-128 visible ASCII characters).
fn client_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let v = headers.get(CLIENT_REQUEST_ID)?;
    let ok = !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(u8::is_ascii_graphic);
    ok.then(|| v.clone())
}

/// The routes that need no key. Everything else does.
pub const PUBLIC_PATHS: &[&str] = &["/health/live", "/health/ready"];

/// `Authorization: Bearer <key>` (OpenAI SDKs) or `x-api-key: <key>` (Anthropic SDKs).
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        return Some(
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .unwrap_or(v)
                .trim(),
        );
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn is_public(state: &AppState, path: &str) -> bool {
    PUBLIC_PATHS.contains(&path)
        || (path == "/metrics" && state.server.metrics_public)
        || crate::ui::is_public(path)
}

/// The request's context: its key, what it asks of admission (`x-llmrr-priority`,
/// `x-llmrr-deadline-ms`) and of the response cache.
fn context(
    key: std::sync::Arc<llmrr_core::auth::KeyContext>,
    started: tokio::time::Instant,
    headers: &HeaderMap,
) -> llmrr_core::Result<RequestContext> {
    let mut ctx = RequestContext::new(key);
    ctx.started = started;
    let text = |name: &str| {
        headers.get(name).map(|v| {
            v.to_str().map_err(|_| {
                llmrr_core::Error::invalid(format!("{name} is not text"), Some(name.to_owned()))
            })
        })
    };
    if let Some(v) = text(crate::limits::PRIORITY).transpose()? {
        ctx.priority = Some(llmrr_core::limits::Priority::parse(v)?);
    }
    if let Some(v) = text(crate::limits::DEADLINE).transpose()? {
        let ms: u64 = v.trim().parse().ok().filter(|ms| *ms > 0).ok_or_else(|| {
            llmrr_core::Error::invalid(
                format!(
                    "{} must be a positive number of milliseconds (got `{v}`)",
                    crate::limits::DEADLINE
                ),
                Some(crate::limits::DEADLINE.into()),
            )
        })?;
        ctx.deadline = Some(started + std::time::Duration::from_millis(ms.min(86_400_000)));
    }
    ctx.cache = crate::cache::directives(headers)?;
    Ok(ctx)
}

pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let client_id = client_request_id(req.headers());
    // Probes and scrapes are not traced.
    if PUBLIC_PATHS.contains(&path) || path == "/metrics" {
        return handle(state, req, next, client_id).await.0;
    }
    let started = std::time::Instant::now();
    let matched = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .cloned();
    let route = matched.as_ref().map_or("unmatched", |m| m.as_str());
    let method = req.method().clone();
    let span = crate::telemetry::request_span(&method, route, req.headers());
    let access_log = state.gateway.access_log();
    let (resp, key_id, taken) = handle(state, req, next, client_id.clone())
        .instrument(span.clone())
        .await;
    let status = resp.status();
    let id = resp.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok());
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    span.record("llmrr.request_id", id);
    // A request the gateway took gets its access line when its call ends; any other, here.
    if access_log && !taken.is_some_and(|t| t.load(Ordering::Relaxed)) {
        llmrr_core::request_log::access::without_call(
            id.unwrap_or("-"),
            client_id.as_ref().and_then(|c| c.to_str().ok()),
            method.as_str(),
            route,
            status.as_u16(),
            key_id.as_deref(),
            started.elapsed().as_secs_f64() * 1000.0,
        );
    }
    resp
}

/// Authenticate and run the request: its response, the key's id (when it has one), and the
/// flag the gateway sets when it takes the request (when it reached a handler).
async fn handle(
    state: AppState,
    mut req: Request,
    next: Next,
    client_id: Option<HeaderValue>,
) -> (Response, Option<String>, Option<Arc<AtomicBool>>) {
    let started = tokio::time::Instant::now();
    let auth = state.gateway.auth();
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(c) = client_id.as_ref().and_then(|c| c.to_str().ok()) {
        tracing::Span::current().record("client.request_id", c);
    }
    let key = if is_public(&state, req.uri().path()) {
        Ok(Default::default())
    } else if crate::ui::is_session_api(req.uri().path()) {
        crate::ui::session::authenticate(&state, &mut req)
            .instrument(llmrr_core::spans::step("llmrr.auth"))
            .await
    } else {
        let guarded = if auth.has_master_key() {
            Ok(())
        } else {
            let allowed = |origin: &str| crate::cors::lists(&state.server, origin);
            crate::local_guard::check(req.method(), req.uri(), req.headers(), allowed)
        };
        match guarded {
            Ok(()) => {
                auth.authenticate(presented_key(req.headers()), client)
                    .instrument(llmrr_core::spans::step("llmrr.auth"))
                    .await
            }
            Err(e) => Err(e),
        }
    };
    let mut key_id = None;
    let mut taken = None;
    let (id, mut resp) = match key.and_then(|key| context(key, started, req.headers())) {
        Ok(mut ctx) => {
            ctx.client_request_id = client_id
                .as_ref()
                .and_then(|c| c.to_str().ok())
                .map(str::to_owned);
            taken = Some(ctx.taken.clone());
            key_id.clone_from(&ctx.key.key_id);
            let id = ctx.id.clone();
            let rate = ctx.rate.clone();
            req.extensions_mut().insert(ctx);
            let mut resp = next.run(req).await;
            if let Some(h) = rate.get() {
                crate::limits::rate_headers(resp.headers_mut(), h);
            }
            (id, resp)
        }
        Err(e) => {
            let id = RequestContext::new(Default::default()).id;
            (id, Dialect::of_path(req.uri().path()).error(e))
        }
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        // `x-request-id`: the client's own, continued; else the upstream's (set by the
        // handler); else ours — never empty.
        match client_id {
            Some(c) => {
                resp.headers_mut().insert(CLIENT_REQUEST_ID, c);
            }
            None if !resp.headers().contains_key(CLIENT_REQUEST_ID) => {
                resp.headers_mut().insert(CLIENT_REQUEST_ID, v.clone());
            }
            None => {}
        }
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    (resp, key_id, taken)
}
