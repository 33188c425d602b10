//! Ollama's API in front of every model and route: `POST /api/chat`, `/api/generate`,
//! `/api/embed` (and the older `/api/embeddings`), `GET /api/tags`, `POST /api/show`,
//! `GET /api/ps`, `POST /api/pull`, `GET /api/version`. Requests take the gateway's one path
//! (keys, routing, limits, budgets, cache, the request log with endpoint `ollama`); streams are
//! NDJSON; `keep_alive` sets how long a local model stays loaded.

use super::{json_answer, ndjson_answer};
use crate::dialect::ollama::request::{self as req, KeepAlive};
use crate::dialect::ollama::response::{self as resp, LineWriter, OllamaError, Shape};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use llmrr_core::answer::completion_of;
use llmrr_core::auth::KeyContext;
use llmrr_core::models::ModelEntry;
use llmrr_core::{Error, RequestContext};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

type Body = Result<JsonBody<Value>, ApiError>;

fn parse<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, Error> {
    let JsonBody(v) = body.map_err(|ApiError(e)| e)?;
    crate::extract::from_value(&v)
}

fn or_error(r: Result<Response, Error>) -> Response {
    r.unwrap_or_else(|e| OllamaError(e).into_response())
}

/// As Ollama does, every request through its API sets how long the local model that answered
/// stays loaded: its `keep_alive`, or the model's configured one when it gives none. Only for
/// a model the key may name itself (not one it reaches through a route); applied off the
/// answer's path (an unload waits for llama.cpp).
fn keep(state: &AppState, key: &KeyContext, model: &str, keep: Option<KeepAlive>) {
    let Some(entry) = state.gateway.models().get(model).cloned() else {
        return;
    };
    if entry.spec.local.is_none() || !key.may_use(model) {
        return;
    }
    let model = model.to_owned();
    tokio::spawn(async move {
        if let Err(e) = entry
            .provider
            .keep_alive(keep.map(KeepAlive::duration), false)
            .await
        {
            tracing::warn!(model, error = %e, "keep_alive not applied");
        }
    });
}

/// Whether `name` is a local model (which reads `top_k`, `min_p`, `repeat_penalty`).
fn is_local(state: &AppState, name: &str) -> bool {
    state
        .gateway
        .models()
        .get(name)
        .is_some_and(|e| e.spec.local.is_some())
}

pub async fn chat(
    State(state): State<AppState>,
    Extension(mut ctx): Extension<RequestContext>,
    body: Body,
) -> Response {
    ctx.api = Some("ollama");
    or_error(
        async {
            let r: req::ChatRequest = parse(body)?;
            let keep_alive = req::keep_alive(r.keep_alive.as_ref())?;
            if r.messages.is_empty() {
                return load_or_unload(&state, &ctx.key, &r.model, keep_alive, Shape::Chat).await;
            }
            let chat = req::chat(&r, is_local(&state, &r.model))?;
            answer(&state, ctx, chat, Shape::Chat, &r.model, keep_alive).await
        }
        .await,
    )
}

pub async fn generate(
    State(state): State<AppState>,
    Extension(mut ctx): Extension<RequestContext>,
    body: Body,
) -> Response {
    ctx.api = Some("ollama");
    or_error(
        async {
            let r: req::GenerateRequest = parse(body)?;
            let keep_alive = req::keep_alive(r.keep_alive.as_ref())?;
            let empty = r.prompt.as_deref().unwrap_or("").is_empty()
                && r.images.as_ref().is_none_or(Vec::is_empty);
            if empty {
                return load_or_unload(&state, &ctx.key, &r.model, keep_alive, Shape::Generate)
                    .await;
            }
            let chat = req::generate(&r, is_local(&state, &r.model))?;
            answer(&state, ctx, chat, Shape::Generate, &r.model, keep_alive).await
        }
        .await,
    )
}

async fn answer(
    state: &AppState,
    ctx: RequestContext,
    chat: llmrr_types::openai::ChatCompletionRequest,
    shape: Shape,
    requested: &str,
    keep_alive: Option<KeepAlive>,
) -> Result<Response, Error> {
    let started = Instant::now();
    let key = ctx.key.clone();
    if chat.is_stream() {
        let a = state.gateway.chat_stream(ctx, chat).await?;
        keep(state, &key, &a.model, keep_alive);
        let mut writer = LineWriter::new(shape, requested, started);
        return Ok(ndjson_answer(a, move |item| writer.write(item)));
    }
    let mut a = state.gateway.chat(ctx, chat).await?;
    keep(state, &key, &a.model, keep_alive);
    let completion = completion_of(&a.body)
        .map_err(|e| Error::Internal(format!("an answer could not be read: {e}")))?;
    let body = resp::answer(shape, requested, &completion, started);
    a.body = serde_json::to_vec(&body)
        .map_err(|e| Error::Internal(format!("cannot encode the answer: {e}")))?
        .into();
    Ok(json_answer(a))
}

/// `/api/generate` with no prompt, or `/api/chat` with no messages: load the model (or, with
/// `keep_alive: 0`, unload it), as Ollama does. The model (a route's: the one it would call
/// first) must be one the key's plan may use — its models, its tier —, and a local model the
/// key may name itself; a remote model has nothing to load: the answer says so as Ollama
/// would, without a call.
async fn load_or_unload(
    state: &AppState,
    key: &KeyContext,
    model: &str,
    keep_alive: Option<KeepAlive>,
    shape: Shape,
) -> Result<Response, Error> {
    let probe: llmrr_types::openai::ChatCompletionRequest = crate::extract::from_value(
        &json!({"model": model, "messages": [{"role": "user", "content": "load"}]}),
    )?;
    let planned = state.gateway.route(key, &probe)?.model;
    let unload = keep_alive == Some(KeepAlive::For(std::time::Duration::ZERO));
    if let Some(entry) = state.gateway.models().get(&planned) {
        if entry.spec.local.is_some() && key.may_use(&planned) {
            entry
                .provider
                .keep_alive(keep_alive.map(KeepAlive::duration), !unload)
                .await?;
        }
    }
    let mut out = json!({
        "model": model,
        "created_at": resp::now(),
        "done": true,
        "done_reason": if unload { "unload" } else { "load" },
    });
    match shape {
        Shape::Chat => out["message"] = json!({"role": "assistant", "content": ""}),
        Shape::Generate => out["response"] = "".into(),
    }
    Ok(Json(out).into_response())
}

pub async fn embed(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Body,
) -> Response {
    embeddings(state, ctx, body, false).await
}

/// `/api/embeddings`: the older endpoint, one `prompt`, one `embedding`.
pub async fn embeddings_legacy(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Body,
) -> Response {
    embeddings(state, ctx, body, true).await
}

async fn embeddings(
    state: AppState,
    mut ctx: RequestContext,
    body: Body,
    legacy: bool,
) -> Response {
    ctx.api = Some("ollama");
    or_error(
        async {
            let started = Instant::now();
            let r: req::EmbedRequest = parse(body)?;
            let keep_alive = req::keep_alive(r.keep_alive.as_ref())?;
            let e = req::embed(&r)?;
            let key = ctx.key.clone();
            let mut a = state.gateway.embeddings(ctx, e).await?;
            keep(&state, &key, &a.model, keep_alive);
            let body = resp::embeddings(&r.model, &a.body, legacy, started)?;
            a.body = serde_json::to_vec(&body)
                .map_err(|e| Error::Internal(format!("cannot encode the answer: {e}")))?
                .into();
            Ok(json_answer(a))
        }
        .await,
    )
}

/// A stable id for a model, in the place of Ollama's file digest (a hash of its name and
/// where it is served from: it changes when the model does).
fn digest(entry: Option<&ModelEntry>, name: &str) -> String {
    let source = entry
        .map(|e| match &e.spec.local {
            Some(l) => l.path.display().to_string(),
            None => format!("{}:{}", e.spec.provider.as_str(), e.spec.upstream_model),
        })
        .unwrap_or_else(|| "route".into());
    blake3::hash(format!("{name}\n{source}").as_bytes())
        .to_hex()
        .to_string()
}

fn details(entry: Option<&ModelEntry>) -> Value {
    let (format, family) = match entry {
        Some(e) if e.spec.local.is_some() => ("gguf", "local"),
        Some(e) => ("", e.spec.provider.as_str()),
        None => ("", "llmrr-route"),
    };
    json!({"parent_model": "", "format": format, "family": family, "families": [family],
           "parameter_size": "", "quantization_level": ""})
}

/// A local model's file: its size and modification time.
fn file_of(entry: Option<&ModelEntry>) -> Option<(u64, String)> {
    let path = &entry?.spec.local.as_ref()?.path;
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map(|t| t.to_string())
        .unwrap_or_else(resp::now);
    Some((meta.len(), modified))
}

fn entry<'a>(state: &'a AppState, name: &str) -> Option<&'a Arc<ModelEntry>> {
    state.gateway.models().get(name)
}

pub async fn tags(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Response {
    let started = resp::now();
    let models: Vec<Value> = state
        .gateway
        .list_models(&ctx.key)
        .data
        .into_iter()
        .map(|m| {
            let e = entry(&state, &m.id).map(Arc::as_ref);
            let (size, modified) = file_of(e).unwrap_or((0, started.clone()));
            json!({"name": m.id, "model": m.id, "modified_at": modified, "size": size,
                   "digest": digest(e, &m.id), "details": details(e)})
        })
        .collect();
    Json(json!({ "models": models })).into_response()
}

#[derive(serde::Deserialize)]
struct ShowRequest {
    #[serde(alias = "name")]
    model: String,
}

pub async fn show(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Body,
) -> Response {
    or_error(
        async {
            let r: ShowRequest = parse(body)?;
            state.gateway.get_model(&ctx.key, &r.model)?;
            let e = entry(&state, &r.model).map(Arc::as_ref);
            let mut capabilities = vec!["completion"];
            let mut info = serde_json::Map::new();
            if let Some(e) = e {
                if e.spec.capabilities.tools {
                    capabilities.push("tools");
                }
                if e.spec.capabilities.vision {
                    capabilities.push("vision");
                }
                if e.spec.local.as_ref().is_some_and(|l| l.pooling.is_some()) {
                    capabilities.push("embedding");
                }
                if let Some(window) = e.spec.context_window {
                    info.insert("llmrr.context_length".into(), window.into());
                }
                info.insert("llmrr.provider".into(), e.spec.provider.as_str().into());
                info.insert("llmrr.quality".into(), e.spec.quality.into());
            }
            let modified = file_of(e).map(|(_, m)| m).unwrap_or_else(resp::now);
            Ok(Json(json!({
                "modelfile": "", "parameters": "", "template": "", "license": "",
                "details": details(e), "model_info": info, "capabilities": capabilities,
                "modified_at": modified,
            }))
            .into_response())
        }
        .await,
    )
}

/// The local models loaded now, with their memory and when they unload.
pub async fn ps(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Response {
    let now = jiff::Timestamp::now();
    let models: Vec<Value> = state
        .gateway
        .models()
        .all()
        .iter()
        .filter(|e| ctx.key.may_use(&e.spec.name))
        .filter_map(|e| {
            let s = e.provider.status()?;
            if s["state"] != "loaded" {
                return None;
            }
            // A pinned model never unloads.
            let left = if s["pinned"] == true {
                f64::INFINITY
            } else {
                (s["keep_alive_secs"].as_f64()? - s["idle_secs"].as_f64().unwrap_or(0.0)).max(0.0)
            };
            let expires = jiff::SignedDuration::try_from_secs_f64(left)
                .ok()
                .and_then(|d| now.checked_add(d).ok())
                .map(|t| t.to_string())
                // Kept for good: as far as a timestamp goes.
                .unwrap_or_else(|| "9999-12-31T23:59:59Z".into());
            let name = e.spec.name.to_string();
            Some(json!({"name": name, "model": name,
                "size": s["memory_budgeted_bytes"], "digest": digest(Some(e), &name),
                "details": details(Some(e)), "expires_at": expires, "size_vram": 0}))
        })
        .collect();
    Json(json!({ "models": models })).into_response()
}

#[derive(serde::Deserialize)]
struct PullRequest {
    #[serde(alias = "name")]
    model: String,
    #[serde(default)]
    stream: Option<bool>,
}

/// llmrr serves the models of its config: a configured model is there already (`success`);
/// any other is a clear 404 saying how to add it (`llmrr models pull`, then the config).
pub async fn pull(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Body,
) -> Response {
    or_error(
        async {
            let r: PullRequest = parse(body)?;
            state
                .gateway
                .get_model(&ctx.key, &r.model)
                .map_err(|e| match e {
                    Error::ModelNotFound { .. } => Error::NotFound(format!(
                    "`{}` is not a model of this gateway: download GGUF files with `llmrr models \
                     pull OWNER/REPO` and add them to the config (llmrr serves the models of its \
                     config)",
                    r.model
                )),
                    e => e,
                })?;
            let done = json!({"status": "success"});
            if r.stream == Some(false) {
                return Ok(Json(done).into_response());
            }
            let mut line = serde_json::to_vec(&done).unwrap_or_default();
            line.push(b'\n');
            let mut out = Response::new(axum::body::Body::from(line));
            out.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/x-ndjson"),
            );
            Ok(out)
        }
        .await,
    )
}

pub async fn version() -> Response {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") })).into_response()
}
