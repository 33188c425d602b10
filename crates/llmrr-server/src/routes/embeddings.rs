//! `POST /v1/embeddings`.

use super::json_answer;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use llmrr_core::RequestContext;
use llmrr_types::openai::EmbeddingRequest;

pub async fn embeddings(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(req): JsonBody<EmbeddingRequest>,
) -> Response {
    match state.gateway.embeddings(ctx, req).await {
        Ok(a) => json_answer(a),
        Err(e) => ApiError(e).into_response(),
    }
}
