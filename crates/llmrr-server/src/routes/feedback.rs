//! `POST /v1/feedback`: how good an answer was (a score in [0, 1], or thumbs up/down), from
//! the key that made the request; `llmrr router train --from-log` learns from it.

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::extract::State;
use axum::{Extension, Json};
use llmrr_core::routing::feedback::Feedback;
use llmrr_core::RequestContext;
use serde_json::{json, Value};

pub async fn feedback(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(f): JsonBody<Feedback>,
) -> Result<Json<Value>, ApiError> {
    let score = state.gateway.feedback(&ctx.key, &f).await?;
    Ok(Json(json!({
        "object": "feedback",
        "request_id": f.request_id,
        "score": score,
    })))
}
