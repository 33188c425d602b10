//! CORS for browser clients, off by default: `[server.cors] allowed_origins` lists the
//! origins (or `*`) whose pages may call the API. Preflights are answered before
//! authentication (browsers send them without the key); the actual requests still need one.
//! No credentials mode: keys travel in headers, never cookies.

use axum::http::{header, HeaderName, HeaderValue, Method};
use llmrr_core::config::ServerConfig;
use std::time::Duration;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

/// Response headers a browser client may read.
const EXPOSED: &[&str] = &[
    "x-request-id",
    "x-llmrr-request-id",
    "x-llmrr-model",
    "x-llmrr-provider",
    "x-llmrr-route",
    "x-llmrr-attempts",
    "x-llmrr-cost-usd",
    "x-llmrr-overhead-ms",
    "x-llmrr-upstream-request-id",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

pub fn layer(server: &ServerConfig) -> Option<CorsLayer> {
    if server.cors_origins.is_empty() {
        return None;
    }
    let origins = if server.cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            server
                .cors_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            // SDKs send headers of their own (x-stainless-*, anthropic-version…).
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(
                EXPOSED
                    .iter()
                    .map(|h| HeaderName::from_static(h))
                    .chain([header::RETRY_AFTER])
                    .collect::<Vec<_>>(),
            )
            .max_age(Duration::from_secs(server.cors_max_age_secs)),
    )
}

/// Whether a browser `Origin` is listed by name in the CORS setting — for the keyless guard,
/// which `*` never opens: without a key, "every site" would mean any page the operator visits
/// could spend their upstream credit.
pub fn lists(server: &ServerConfig, origin: &str) -> bool {
    server
        .cors_origins
        .iter()
        .any(|o| o != "*" && o.eq_ignore_ascii_case(origin))
}
