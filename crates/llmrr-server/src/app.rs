//! The router and the middleware stack, in the order a request meets it:
//!
//! 1. `DefaultBodyLimit` — bodies over `server.max_body_bytes` are refused with 413 (by the
//!    JSON extractor, in OpenAI's error format).
//! 2. `auth::authenticate` — assigns the request id (`x-llmrr-request-id` on every
//!    response), checks the API key (except on `auth::PUBLIC_PATHS`), and puts the
//!    `RequestContext` (id, key, start time) in the request's extensions.
//! 3. the handler: parse + validate, then `Gateway`.
//!
//! Public routes (no key): `GET /health/live`, `GET /health/ready`. Everything else needs a
//! key when a master key is configured; the admin API needs the master key itself.

use crate::routes;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::serve::ListenerExt;
use axum::Router;
use std::future::Future;
use tokio::net::TcpListener;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health/live", get(routes::health::live))
        .route("/health/ready", get(routes::health::ready))
        .route("/v1/chat/completions", post(routes::chat::chat))
        .route("/v1/completions", post(routes::completions::completions))
        .route("/v1/embeddings", post(routes::embeddings::embeddings))
        .route("/v1/models", get(routes::models::list))
        .route("/v1/models/{*id}", get(routes::models::get))
        .route("/v1/route", post(routes::route::route))
        .route("/metrics", get(routes::health::metrics))
        .route("/admin/models", get(routes::admin::models))
        .route(
            "/admin/rollouts",
            post(routes::admin::start_rollout).get(routes::admin::list_rollouts),
        )
        .route(
            "/admin/rollouts/{route}",
            delete(routes::admin::abort_rollout),
        )
        .route(
            "/admin/keys",
            post(routes::admin::create_key).get(routes::admin::list_keys),
        )
        .route("/admin/keys/{id}", delete(routes::admin::revoke_key))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ))
        .layer(DefaultBodyLimit::max(state.server.max_body_bytes))
        .with_state(state)
}

/// Serve until `shutdown` resolves; then let calls in flight finish (within the configured
/// grace) and write the request log.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    // Answers are small writes; do not let Nagle's algorithm hold them back.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    state.gateway.shutdown(state.server.shutdown_grace).await;
    Ok(())
}
