//! Anthropic's Messages API: `POST /v1/messages` (streamed or not) and
//! `POST /v1/messages/count_tokens`. The request is translated to a chat request and takes
//! the gateway's one path; the answer is written in Anthropic's shapes (`dialect::anthropic`).

use super::{json_answer, sse_answer_with};
use crate::dialect::anthropic::{self as dialect, AnthropicError, EventWriter};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use llmrr_core::answer::completion_of;
use llmrr_core::{Error, RequestContext};
use llmrr_types::anthropic::MessagesRequest;
use serde_json::Value;

pub async fn messages(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Result<JsonBody<Value>, ApiError>,
) -> Response {
    answer(state, ctx, body)
        .await
        .unwrap_or_else(|e| AnthropicError(e).into_response())
}

async fn answer(
    state: AppState,
    mut ctx: RequestContext,
    body: Result<JsonBody<Value>, ApiError>,
) -> Result<Response, Error> {
    ctx.api = Some("messages");
    let JsonBody(native) = body.map_err(|ApiError(e)| e)?;
    let req: MessagesRequest = crate::extract::from_value(&native)?;
    let requested = req.model.clone();
    let chat = dialect::to_chat(req, Some(native))?;
    if chat.is_stream() {
        let answer = state.gateway.chat_stream(ctx, chat).await?;
        let mut writer = EventWriter::new(&requested);
        return Ok(sse_answer_with(answer, move |item| writer.write(item)));
    }
    let mut answer = state.gateway.chat(ctx, chat).await?;
    let completion = completion_of(&answer.body)
        .map_err(|e| Error::Internal(format!("an answer could not be read: {e}")))?;
    // llmrr's extension (cost, cache, the routing explanation) stays beside the message.
    let ext = completion.llmrr.clone();
    let mut message = serde_json::to_value(dialect::to_message(completion))
        .map_err(|e| Error::Internal(format!("cannot encode the message: {e}")))?;
    if let (Some(ext), Value::Object(map)) = (ext, &mut message) {
        map.insert("llmrr".into(), ext);
    }
    answer.body = serde_json::to_vec(&message)
        .map_err(|e| Error::Internal(format!("cannot encode the message: {e}")))?
        .into();
    Ok(json_answer(answer))
}

/// The prompt's size in tokens: Anthropic's own count for an Anthropic model, else llmrr's
/// estimate (4 bytes a token, as admission and budgets count) — said in
/// `x-llmrr-token-count: upstream | estimate`.
pub async fn count_tokens(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Result<JsonBody<Value>, ApiError>,
) -> Response {
    let counted = async {
        let JsonBody(native) = body.map_err(|ApiError(e)| e)?;
        let req = dialect::token_count_request(&native)?;
        let chat = dialect::to_chat(req, Some(native))?;
        state.gateway.count_tokens(&ctx.key, &chat).await
    };
    match counted.await {
        Ok((tokens, exact)) => {
            let mut r = Json(serde_json::json!({ "input_tokens": tokens })).into_response();
            r.headers_mut().insert(
                "x-llmrr-token-count",
                HeaderValue::from_static(if exact { "upstream" } else { "estimate" }),
            );
            r
        }
        Err(e) => AnthropicError(e).into_response(),
    }
}
