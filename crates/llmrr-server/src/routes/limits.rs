//! The admin API of limits: rules per scope (`/admin/limits`), and the admission queues and
//! the global cap as they are now (`/admin/queues`).

use super::admin::{may_govern_scope, require_admin};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use llmrr_core::limits::LimitSet;
use llmrr_core::{Error, RequestContext};
use serde_json::json;

pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &ctx)?;
    let rules = state.gateway.limits().list().await?;
    let data: Vec<_> = rules
        .into_iter()
        .map(|(scope, limits, source)| json!({"scope": scope, "limits": limits, "source": source}))
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `PUT /admin/limits/{scope}` with the limits as the body; every replica applies it within
/// a second.
pub async fn set(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(scope): Path<String>,
    JsonBody(limits): JsonBody<LimitSet>,
) -> Result<impl IntoResponse, ApiError> {
    may_govern_scope(&state, &ctx, &scope).await?;
    state.gateway.limits().set(&scope, &limits).await?;
    Ok(Json(json!({"scope": scope, "limits": limits})))
}

pub async fn remove(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(scope): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    may_govern_scope(&state, &ctx, &scope).await?;
    if state.gateway.limits().remove(&scope).await? {
        Ok(Json(json!({"scope": scope, "removed": true})))
    } else {
        Err(ApiError(Error::NotFound(format!(
            "no stored limit rule for `{scope}`"
        ))))
    }
}

pub async fn queues(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &ctx)?;
    let limits = state.gateway.limits();
    Ok(Json(json!({
        "global": limits.in_flight().snapshot(),
        "models": limits.queues(),
    })))
}
