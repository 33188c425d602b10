//! OpenAI's Responses API: `POST /v1/responses` (streamed or not), `GET /v1/responses/{id}`
//! and `DELETE /v1/responses/{id}`. The request is translated to a chat request (carrying the
//! client's own body for models that speak the Responses API) and takes the gateway's one
//! path; the answer is written as a response object (`dialect::responses`) and,
//! unless `store: false`, kept for `previous_response_id` and `GET`, visible to the key that
//! made it only.

use super::{json_answer, sse_stream_answer};
use crate::dialect::responses::{
    assistant_message, items_of, native_body, new_id, to_chat, Echo, EventWriter, Item,
    ResponsesRequest, Translated,
};
use crate::error::{error_response, ApiError};
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use llmrr_core::answer::completion_of;
use llmrr_core::auth::KeyContext;
use llmrr_core::store::{now_ms, Store, StoredResponse};
use llmrr_core::{Error, RequestContext};
use llmrr_types::openai::{ChatMessage, NativeBody};
use serde_json::{json, Value};
use std::time::Duration;

/// Whose stored responses a key sees: its own (the master key's, and the open gateway's
/// without a master key, are their own too).
fn owner(key: &KeyContext) -> String {
    match (&key.key_id, key.is_master) {
        (Some(id), _) => format!("key:{id}"),
        (None, true) => "master".into(),
        (None, false) => "open".into(),
    }
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("no stored response `{id}`"))
}

/// A stored response is written within this long; past it the answer goes out unstored
/// (said in the log), rather than waiting on a store that hangs.
const KEEP_WITHIN: Duration = Duration::from_secs(5);

/// Keeps a finished response, with its turn of the conversation.
struct Keeper {
    store: Store,
    owner: String,
    expires_at_ms: i64,
    parent: Option<String>,
    turn: Vec<ChatMessage>,
}

impl Keeper {
    async fn keep(self, response: &Value, items: &[Item]) {
        let id = response["id"].as_str().unwrap_or_default().to_owned();
        let mut turn = self.turn;
        turn.push(assistant_message(items));
        let stored = StoredResponse {
            body: response.to_string(),
            turn: serde_json::to_string(&turn).unwrap_or_default(),
            parent: self.parent,
        };
        let put = self
            .store
            .put_response(&id, &self.owner, self.expires_at_ms, &stored);
        match tokio::time::timeout(KEEP_WITHIN, put).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, response = %id, "a response could not be stored")
            }
            Err(_) => tracing::warn!(response = %id, "a response was not stored in time"),
        }
    }
}

/// The conversation that stored response `id` ends, as chat messages.
async fn conversation(store: &Store, id: &str, owner: &str) -> Result<Vec<ChatMessage>, Response> {
    let turns = match store.response_chain(id, owner).await {
        Ok(Some(turns)) => turns,
        Ok(None) => {
            // OpenAI's answer, which clients key on to start afresh.
            let e = Error::invalid(format!("no stored response `{id}`"), None);
            let body = json!({"error": {"message": format!("Previous response with id '{id}' not found."),
                "type": "invalid_request_error", "param": "previous_response_id",
                "code": "previous_response_not_found"}});
            return Err(error_response(&e, body.to_string().into_bytes()));
        }
        Err(e) => return Err(ApiError(e).into_response()),
    };
    let mut messages = Vec::new();
    for t in turns {
        let turn: Vec<ChatMessage> = serde_json::from_str(&t).map_err(|e| {
            ApiError(Error::Internal(format!(
                "a stored conversation is unreadable: {e}"
            )))
            .into_response()
        })?;
        messages.extend(turn);
    }
    Ok(messages)
}

pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(body): JsonBody<Value>,
) -> Response {
    let req: ResponsesRequest = match crate::extract::from_value(&body) {
        Ok(req) => req,
        Err(e) => return ApiError(e).into_response(),
    };
    let owner = owner(&ctx.key);
    let store = state.gateway.store().clone();
    let history = match &req.previous_response_id {
        Some(prev) => match conversation(&store, prev, &owner).await {
            Ok(h) => h,
            Err(resp) => return resp,
        },
        None => Vec::new(),
    };
    answer(state, ctx, req, body, history, owner, store)
        .await
        .unwrap_or_else(|e| ApiError(e).into_response())
}

async fn answer(
    state: AppState,
    mut ctx: RequestContext,
    req: ResponsesRequest,
    body: Value,
    history: Vec<ChatMessage>,
    owner: String,
    store: Store,
) -> Result<Response, Error> {
    ctx.api = Some("responses");
    let native = native_body(body, &history, &req);
    let Translated { mut chat, turn } = to_chat(&req, history)?;
    chat.native = Some(NativeBody::Responses(std::sync::Arc::new(native)));
    let now = now_ms();
    let days = state.responses_retention_days;
    let stored = req.store.unwrap_or(true) && days > 0;
    let mut echo = Echo::of(&req, new_id("resp"), now / 1000, stored);
    let keeper = stored.then(|| Keeper {
        store,
        owner,
        expires_at_ms: now.saturating_add(i64::try_from(days * 86_400_000).unwrap_or(i64::MAX)),
        parent: req.previous_response_id.clone(),
        turn,
    });
    if chat.is_stream() {
        let answer = state.gateway.chat_stream(ctx, chat).await?;
        let writer = EventWriter::new(echo);
        // The response is stored before its `response.completed` goes out: a client that
        // continues from it at once finds it.
        return Ok(sse_stream_answer(answer, move |rx| {
            futures_util::stream::unfold(
                (rx, writer, keeper),
                |(mut rx, mut writer, mut keeper)| async move {
                    let item = rx.recv().await?;
                    let bytes = writer.write(item);
                    if let Some((response, items)) = writer.take_finished() {
                        if let Some(k) = keeper.take() {
                            k.keep(&response, &items).await;
                        }
                    }
                    Some((bytes, (rx, writer, keeper)))
                },
            )
        }));
    }
    let mut answer = state.gateway.chat(ctx, chat).await?;
    let completion = completion_of(&answer.body)
        .map_err(|e| Error::Internal(format!("an answer could not be read: {e}")))?;
    if !completion.model.is_empty() {
        echo.model.clone_from(&completion.model);
    }
    let choice = completion.choices.first().cloned().unwrap_or_default();
    let items = items_of(&choice);
    let mut response = echo.response(
        &items,
        true,
        choice.finish_reason.as_deref(),
        completion.usage.as_ref(),
    );
    if let Some(k) = keeper {
        k.keep(&response, &items).await;
    }
    if let (Some(ext), Value::Object(map)) = (completion.llmrr, &mut response) {
        map.insert("llmrr".into(), ext);
    }
    answer.body = serde_json::to_vec(&response)
        .map_err(|e| Error::Internal(format!("cannot encode the response: {e}")))?
        .into();
    Ok(json_answer(answer))
}

pub async fn get(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let stored = state
        .gateway
        .store()
        .get_response(&id, &owner(&ctx.key))
        .await?
        .ok_or_else(|| not_found(&id))?;
    let body: Value = serde_json::from_str(&stored)
        .map_err(|e| Error::Internal(format!("a stored response is unreadable: {e}")))?;
    Ok(Json(body).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !state
        .gateway
        .store()
        .delete_response(&id, &owner(&ctx.key))
        .await?
    {
        return Err(not_found(&id).into());
    }
    Ok(Json(
        json!({"id": id, "object": "response.deleted", "deleted": true}),
    ))
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

/// `GET /v1/responses/{id}/input_items`: the input the response answered (this turn's, not
/// the earlier turns of its chain), as a list page: `order` (`desc`, the default, or `asc`),
/// `limit` (1-100, default 20), `after` (an item id).
pub async fn input_items(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Error::invalid("`limit` is 1 to 100", Some("limit".into())).into());
    }
    let descending = match q.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => {
            return Err(Error::invalid("`order` is asc or desc", Some("order".into())).into())
        }
    };
    let turn = state
        .gateway
        .store()
        .response_turn(&id, &owner(&ctx.key))
        .await?
        .ok_or_else(|| not_found(&id))?;
    let mut turn: Vec<ChatMessage> = serde_json::from_str(&turn)
        .map_err(|e| Error::Internal(format!("a stored response is unreadable: {e}")))?;
    // The last message is the answer, kept for `previous_response_id`: not input.
    turn.pop();
    let mut items = crate::dialect::responses::input_items::items(&id, &turn);
    if descending {
        items.reverse();
    }
    if let Some(after) = &q.after {
        let at = items
            .iter()
            .position(|i| i["id"] == after.as_str())
            .ok_or_else(|| Error::invalid(format!("no item `{after}`"), Some("after".into())))?;
        items.drain(..=at);
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    Ok(Json(json!({
        "object": "list",
        "first_id": items.first().map(|i| i["id"].clone()),
        "last_id": items.last().map(|i| i["id"].clone()),
        "has_more": has_more,
        "data": items,
    })))
}
