//! `POST /v1/chat/completions`, streamed or not.

use super::{json_answer, sse_answer};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use llmrr_core::RequestContext;
use llmrr_types::openai::ChatCompletionRequest;

pub async fn chat(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(req): JsonBody<ChatCompletionRequest>,
) -> Response {
    let result = if req.is_stream() {
        state.gateway.chat_stream(ctx, req).await.map(sse_answer)
    } else {
        state.gateway.chat(ctx, req).await.map(json_answer)
    };
    result.unwrap_or_else(|e| ApiError(e).into_response())
}
