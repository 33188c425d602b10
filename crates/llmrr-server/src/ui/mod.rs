//! The dashboard at `/ui`: one page and its script, style and icon, embedded in the binary
//! (plain HTML, CSS and JavaScript — no front-end toolchain, no request leaves llmrr), and the
//! sign-in that turns a key into a session.
//!
//! - `GET /ui/` the page, `GET /ui/assets/{file}` its assets: public, with a strict
//!   Content-Security-Policy (`'self'` only) and no framing.
//! - `POST /ui/login` `{"key"}` → an HttpOnly, SameSite=Strict session cookie (Secure behind
//!   TLS) and the session's CSRF token; `session` has the rest.
//! - `/ui/api/…`: the admin API again, authenticated by the session cookie (never a Bearer
//!   key) and, on writes, the `x-csrf-token` header; plus `GET /ui/api/session` and
//!   `POST /ui/api/logout`. The admin API at `/admin` stays Bearer-only.

mod assets;
pub mod session;

use crate::state::AppState;
use axum::routing::{get, post};
use axum::Router;

/// The public part: the page, its assets, the sign-in.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(assets::to_page))
        .route("/ui/", get(assets::page))
        .route("/ui/assets/{file}", get(assets::asset))
        .route("/ui/login", post(session::login))
}

/// The dashboard's API: the admin routes, and the session's own. Nothing it answers is kept
/// by a cache (the session's CSRF token, spend, keys).
pub fn api_routes(admin: Router<AppState>) -> Router<AppState> {
    admin
        .route("/session", get(session::whoami))
        .route("/logout", post(session::logout))
        .layer(axum::middleware::map_response(no_store))
}

async fn no_store(mut resp: axum::response::Response) -> axum::response::Response {
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// Paths any client may load without a key or session.
pub fn is_public(path: &str) -> bool {
    matches!(path, "/ui" | "/ui/" | "/ui/login") || path.starts_with("/ui/assets/")
}

/// Paths authenticated by the session cookie.
pub fn is_session_api(path: &str) -> bool {
    path.starts_with("/ui/api/")
}
