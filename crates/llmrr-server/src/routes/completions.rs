//! `POST /v1/completions` (legacy), streamed or not.

use super::{json_answer, sse_answer};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use llmrr_core::RequestContext;
use llmrr_types::openai::CompletionRequest;

pub async fn completions(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(req): JsonBody<CompletionRequest>,
) -> Response {
    let result = if req.is_stream() {
        state
            .gateway
            .completion_stream(ctx, req)
            .await
            .map(sse_answer)
    } else {
        state.gateway.completion(ctx, req).await.map(json_answer)
    };
    result.unwrap_or_else(|e| ApiError(e).into_response())
}
