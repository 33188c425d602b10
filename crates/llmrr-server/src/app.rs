//! The router and the middleware stack, in the order a request meets it:
//!
//! 0. the accept loop (`serve`): connection cap, header-read timeout, client address.
//! 1. `cors` (only with `server.cors.allowed_origins`): answers preflights without a key and
//!    adds the CORS headers for allowed origins.
//! 2. `limits::shed` (model calls, `/v1/…`): the global cap on requests and request bytes in
//!    flight; past it, 503 with Retry-After before the body is read.
//! 3. `DefaultBodyLimit` — bodies over `server.max_body_bytes` are refused with 413 (by the
//!    JSON extractor, in OpenAI's error format, which also times the body's arrival out).
//! 4. `auth::authenticate` — assigns the request id (`x-llmrr-request-id` on every
//!    response); without a master key, refuses what a browser could send cross-site (a
//!    foreign `Host` or `Origin`, a body that is not JSON); checks the API key (except on
//!    `auth::PUBLIC_PATHS`, and `/metrics` when `server.metrics_public`), slowing down a client
//!    address that fails too often; and puts the `RequestContext` (id, key, start time) in
//!    the request's extensions.
//! 5. the handler: parse + validate, then `Gateway`.
//!
//! Public routes (no key): `GET /health/live`, `GET /health/ready`, and the dashboard's page,
//! assets and sign-in (`/ui`). Everything else needs a key when a master key is configured;
//! the admin API needs the master key or an admin key, `/metrics` the master key; the
//! dashboard's API (`/ui/api`, the admin API again) a session cookie instead of a key.

use crate::routes;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health/live", get(routes::health::live))
        .route("/health/ready", get(routes::health::ready))
        .route("/v1/chat/completions", post(routes::chat::chat))
        .route("/v1/messages", post(routes::messages::messages))
        .route(
            "/v1/messages/count_tokens",
            post(routes::messages::count_tokens),
        )
        .route("/v1/responses", post(routes::responses::create))
        .route(
            "/v1/responses/{id}",
            get(routes::responses::get).delete(routes::responses::delete),
        )
        .route(
            "/v1/responses/{id}/input_items",
            get(routes::responses::input_items),
        )
        .route("/v1/completions", post(routes::completions::completions))
        .route("/v1/embeddings", post(routes::embeddings::embeddings))
        .route("/v1/models", get(routes::models::list))
        .route("/v1/models/{*id}", get(routes::models::get))
        .route("/v1/route", post(routes::route::route))
        .route("/v1/feedback", post(routes::feedback::feedback))
        .route("/api/chat", post(routes::ollama::chat))
        .route("/api/generate", post(routes::ollama::generate))
        .route("/api/embed", post(routes::ollama::embed))
        .route("/api/embeddings", post(routes::ollama::embeddings_legacy))
        .route("/api/tags", get(routes::ollama::tags))
        .route("/api/show", post(routes::ollama::show))
        .route("/api/ps", get(routes::ollama::ps))
        .route("/api/pull", post(routes::ollama::pull))
        .route("/api/version", get(routes::ollama::version))
        .route("/metrics", get(routes::health::metrics))
        .nest("/admin", admin_routes())
        .merge(crate::ui::routes())
        .nest("/ui/api", crate::ui::api_routes(admin_routes()))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ))
        .layer(DefaultBodyLimit::max(state.server.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::limits::shed,
        ))
        .layer(tower::util::option_layer(crate::cors::layer(&state.server)))
        .with_state(state)
}

/// The admin API, served at `/admin` (a Bearer key) and, for the dashboard, at `/ui/api`
/// (a session cookie and its CSRF token).
fn admin_routes() -> Router<AppState> {
    Router::new()
        .route("/models", get(routes::admin::models))
        .route(
            "/rollouts",
            post(routes::admin::start_rollout).get(routes::admin::list_rollouts),
        )
        .route("/rollouts/{route}", delete(routes::admin::abort_rollout))
        .route(
            "/keys",
            post(routes::admin::create_key).get(routes::admin::list_keys),
        )
        .route(
            "/keys/{id}",
            delete(routes::admin::revoke_key).patch(routes::admin::update_key),
        )
        .route("/keys/{id}/rotate", post(routes::admin::rotate_key))
        .route("/limits", get(routes::limits::list))
        .route(
            "/limits/{scope}",
            put(routes::limits::set).delete(routes::limits::remove),
        )
        .route("/queues", get(routes::limits::queues))
        .route(
            "/cache",
            get(routes::cache::stats).delete(routes::cache::purge),
        )
        .route("/cache/warm", post(routes::cache::warm))
        .route(
            "/budgets",
            post(routes::money::set_budget).get(routes::money::list_budgets),
        )
        .route("/budgets/{id}", delete(routes::money::remove_budget))
        .route(
            "/teams",
            post(routes::money::set_team).get(routes::money::list_teams),
        )
        .route("/teams/{id}", delete(routes::money::remove_team))
        .route(
            "/users",
            post(routes::money::set_user).get(routes::money::list_users),
        )
        .route("/users/{id}", delete(routes::money::remove_user))
        .route("/spend", get(routes::money::spend))
        .route("/spend/forecast", get(routes::money::forecast))
        .route(
            "/spend/recommendations",
            get(routes::money::recommendations),
        )
        .route("/prices", get(routes::money::prices))
        .route("/models/{action}", post(routes::admin::model_lifecycle))
        .route("/requests", get(routes::requests::list))
        .route("/overview", get(routes::requests::overview))
}
