//! `GET /v1/models` and `GET /v1/models/{id}`: the models the caller's key may use.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use llmrr_core::RequestContext;
use llmrr_types::openai::{Model, ModelList};

pub async fn list(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Json<ModelList> {
    Json(state.gateway.list_models(&ctx.key))
}

/// Model ids may contain `/` (`meta-llama/Llama-3-8B`), hence the wildcard route.
pub async fn get(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<Json<Model>, ApiError> {
    Ok(Json(state.gateway.get_model(&ctx.key, &id)?))
}
