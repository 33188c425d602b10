//! What happened, from the request log (the master key or an admin key):
//! `GET /admin/requests` — the newest requests, filtered, each with its routing explanation;
//! `GET /admin/overview` — the traffic of a recent window (requests/s, error rate, latency
//! and TTFT percentiles) and spend today and this month with the month's forecast.

use super::admin::require_admin;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use llmrr_core::money::budget::Scope;
use llmrr_core::store::RequestFilter;
use llmrr_core::{Error, RequestContext};
use serde_json::json;
use std::collections::HashMap;

/// The query's parameters; an empty value (an empty filter field) is no filter.
fn query(raw: Option<String>) -> HashMap<String, String> {
    let mut q = super::query_pairs(raw);
    q.retain(|_, v| !v.is_empty());
    q
}

const FILTERS: &[&str] = &[
    "model",
    "key",
    "user",
    "team",
    "route",
    "status",
    "before",
    "before_id",
    "limit",
];

/// `GET /admin/requests?model=&key=&user=&team=&route=&status=ok|error&before=MS&before_id=ID&limit=N`:
/// newest first (`limit` 1-500, default 50). The next page: `before` and `before_id`, the
/// `created_at_ms` and `id` of the page's last row (rows of the same millisecond are told
/// apart by their id).
pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &ctx)?;
    let q = query(raw);
    if let Some(unknown) = q.keys().find(|k| !FILTERS.contains(&k.as_str())) {
        return Err(ApiError(Error::invalid(
            format!("`{unknown}` is not a filter: {}", FILTERS.join(", ")),
            Some(unknown.clone()),
        )));
    }
    let ok = match q.get("status").map(String::as_str) {
        None => None,
        Some("ok") => Some(true),
        Some("error") => Some(false),
        Some(other) => {
            return Err(ApiError(Error::invalid(
                format!("`{other}` is not a status filter: ok or error"),
                Some("status".into()),
            )))
        }
    };
    if q.contains_key("before_id") && !q.contains_key("before") {
        return Err(ApiError(Error::invalid(
            "`before_id` pages with `before`: give both (the last row's created_at_ms and id)",
            Some("before_id".into()),
        )));
    }
    let filter = RequestFilter {
        model: q.get("model").cloned(),
        key_id: q.get("key").cloned(),
        user_id: q.get("user").cloned(),
        team_id: q.get("team").cloned(),
        route: q.get("route").cloned(),
        ok,
        before: q
            .contains_key("before")
            .then(|| super::query_number(&q, "before", 0..=i64::MAX, 0))
            .transpose()?
            .map(|ms| (ms, q.get("before_id").cloned())),
        limit: super::query_number(&q, "limit", 1..=500, 50)?,
    };
    let mut rows = state.gateway.store().find_requests(&filter).await?;
    for r in &mut rows {
        // What the difficulty scorer read of a prompt stays in the store (`router train`).
        r.prompt = None;
    }
    Ok(Json(json!({"object": "list", "data": rows})))
}

/// `GET /admin/overview?window=SECS` (60-86400, default 300).
pub async fn overview(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &ctx)?;
    let q = query(raw);
    let window = super::query_number(&q, "window", 60..=86_400, 300)?;
    let g = &state.gateway;
    // The log's rows carry the wall clock.
    let now = llmrr_core::store::now_ms();
    let traffic = g.store().traffic_summary(now, window).await?;
    let spend = g.money().outlook(&Scope::Global).await?;
    Ok(Json(json!({"traffic": traffic, "spend": spend})))
}
