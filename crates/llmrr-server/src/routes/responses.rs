//! OpenAI's Responses API: `POST /v1/responses` (streamed or not), `GET /v1/responses/{id}`
//! and `DELETE /v1/responses/{id}`. The request is translated to a chat request and takes the
//! gateway's one path; the answer is written as a response object (`dialect::responses`) and,
//! unless `store: false`, kept for `previous_response_id` and `GET`, visible to the key that
//! made it only.

use super::{json_answer, sse_answer_with};
use crate::dialect::responses::{
    assistant_message, items_of, new_id, to_chat, Echo, EventWriter, Item, OnDone,
    ResponsesRequest, Translated,
};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use llmrr_core::answer::completion_of;
use llmrr_core::auth::KeyContext;
use llmrr_core::store::{now_ms, Store, StoredResponse};
use llmrr_core::{Error, RequestContext};
use llmrr_types::openai::ChatMessage;
use serde_json::{json, Value};

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

/// Keeps a finished response, with the conversation it ended.
struct Keeper {
    store: Store,
    owner: String,
    expires_at_ms: i64,
    conversation: Vec<ChatMessage>,
}

impl Keeper {
    async fn keep(self, response: &Value, items: &[Item]) {
        let id = response["id"].as_str().unwrap_or_default().to_owned();
        let mut history = self.conversation;
        history.push(assistant_message(items));
        let stored = StoredResponse {
            body: response.to_string(),
            history: serde_json::to_string(&history).unwrap_or_default(),
        };
        let put = self
            .store
            .put_response(&id, &self.owner, self.expires_at_ms, &stored)
            .await;
        if let Err(e) = put {
            tracing::warn!(error = %e, response = %id, "a response could not be stored");
        }
    }
}

pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(req): JsonBody<ResponsesRequest>,
) -> Response {
    answer(state, ctx, req)
        .await
        .unwrap_or_else(|e| ApiError(e).into_response())
}

async fn answer(
    state: AppState,
    ctx: RequestContext,
    req: ResponsesRequest,
) -> Result<Response, Error> {
    let owner = owner(&ctx.key);
    let store = state.gateway.store().clone();
    let history = match &req.previous_response_id {
        Some(prev) => {
            let stored = store
                .get_response(prev, &owner)
                .await?
                .ok_or_else(|| not_found(prev))?;
            serde_json::from_str(&stored.history)
                .map_err(|e| Error::Internal(format!("a stored conversation is unreadable: {e}")))?
        }
        None => Vec::new(),
    };
    let Translated { chat, conversation } = to_chat(&req, history)?;
    let now = now_ms();
    let mut echo = Echo::of(&req, new_id("resp"), now / 1000);
    let days = state.responses_retention_days;
    let keeper = (req.store.unwrap_or(true) && days > 0).then(|| Keeper {
        store,
        owner,
        expires_at_ms: now.saturating_add(i64::try_from(days * 86_400_000).unwrap_or(i64::MAX)),
        conversation,
    });
    if chat.is_stream() {
        let answer = state.gateway.chat_stream(ctx, chat).await?;
        let on_done = keeper.map(|k| -> OnDone {
            Box::new(move |response: &Value, items: &[Item]| {
                let (response, items) = (response.clone(), items.to_vec());
                tokio::spawn(async move { k.keep(&response, &items).await });
            })
        });
        let mut writer = EventWriter::new(echo, on_done);
        return Ok(sse_answer_with(answer, move |item| writer.write(item)));
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
    let body: Value = serde_json::from_str(&stored.body)
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
