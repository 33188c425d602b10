//! The admin API (master key only): virtual keys.

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use llmrr_core::auth::NewKey;
use llmrr_core::{Error, RequestContext};
use serde_json::json;

fn require_master(state: &AppState, ctx: &RequestContext) -> Result<(), ApiError> {
    if ctx.key.is_master {
        return Ok(());
    }
    let message = if state.gateway.auth().has_master_key() {
        "the admin API needs the master key"
    } else {
        "the admin API is off: it needs a master key (set LLMRR_MASTER_KEY)"
    };
    Err(ApiError(Error::Forbidden {
        message: message.into(),
    }))
}

pub async fn create_key(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(new): JsonBody<NewKey>,
) -> Result<impl IntoResponse, ApiError> {
    require_master(&state, &ctx)?;
    let created = state.gateway.auth().create_key(new).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn list_keys(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Result<impl IntoResponse, ApiError> {
    require_master(&state, &ctx)?;
    let keys = state.gateway.auth().list_keys().await?;
    Ok(Json(json!({"object": "list", "data": keys})))
}

pub async fn revoke_key(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    require_master(&state, &ctx)?;
    if state.gateway.auth().revoke_key(&id).await? {
        Ok(Json(json!({"id": id, "revoked": true})))
    } else {
        Err(ApiError(Error::NotFound(format!(
            "no active key with id `{id}`"
        ))))
    }
}
