//! `POST /v1/route`: the routing decision for a chat request, without calling a model.

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::extract::State;
use axum::{Extension, Json};
use llmrr_core::routing::Decision;
use llmrr_core::RequestContext;
use llmrr_types::openai::ChatCompletionRequest;

pub async fn route(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(req): JsonBody<ChatCompletionRequest>,
) -> Result<Json<Decision>, ApiError> {
    Ok(Json(state.gateway.route(&ctx.key, &req)?))
}
