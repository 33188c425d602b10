//! The admin API of the response cache: `GET /admin/cache` (entries, bytes, hits per tier,
//! savings), `DELETE /admin/cache?namespace=&route=&key=` (purge; all when none given) and
//! `POST /admin/cache/warm` (replay the most frequent requests no longer cached, within a
//! cost cap).

use super::admin::require_admin;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use llmrr_core::cache::Purge;
use llmrr_core::gateway::WarmOptions;
use llmrr_core::RequestContext;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;

pub async fn stats(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &ctx)?;
    let Some(cache) = state.gateway.cache() else {
        return Ok(Json(json!({"enabled": false})));
    };
    let (hits, saved) = state.gateway.store().cache_savings().await?;
    let saved = Decimal::from_i128_with_scale(i128::from(saved), 12).normalize();
    Ok(Json(json!({
        "enabled": true,
        "process": cache.stats().await,
        "ledger": {"hits": hits, "saved_usd": saved.to_string()},
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeQuery {
    namespace: Option<String>,
    route: Option<String>,
    key: Option<String>,
}

pub async fn purge(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<PurgeQuery>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &ctx)?;
    let Some(cache) = state.gateway.cache() else {
        return Ok(Json(json!({"enabled": false, "purged": {}})));
    };
    let purge = Purge {
        namespace: q.namespace,
        route: q.route,
        key_id: q.key,
    };
    let purged = cache.purge(state.gateway.store(), &purge).await?;
    Ok(Json(
        json!({"enabled": true, "purge": purge, "purged": purged}),
    ))
}

/// Replay the most frequent cacheable requests whose answers are no longer cached; answers
/// when the run is over, with what it did to each.
pub async fn warm(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(options): JsonBody<WarmOptions>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &ctx)?;
    Ok(Json(state.gateway.warm_cache(&options).await?))
}
