//! The admin API (the master key or an admin key): virtual keys, models, rollouts.

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use llmrr_core::auth::NewKey;
use llmrr_core::{Error, RequestContext};
use serde_json::json;

/// The master key or an admin key (`"admin": true`).
pub(crate) fn require_admin(state: &AppState, ctx: &RequestContext) -> Result<(), ApiError> {
    if ctx.key.may_administer() {
        return Ok(());
    }
    let message = if state.gateway.auth().has_master_key() {
        "the admin API needs the master key or an admin key"
    } else {
        "the admin API is off: it needs a master key (set LLMRR_MASTER_KEY)"
    };
    Err(ApiError(Error::Forbidden {
        message: message.into(),
    }))
}

/// Admin keys are the master key's to make, rotate, change and revoke: an admin key cannot
/// mint more of itself, nor take over or lock out another admin.
fn only_master_on_admin_keys(ctx: &RequestContext) -> Result<(), ApiError> {
    if ctx.key.is_master {
        return Ok(());
    }
    Err(ApiError(Error::Forbidden {
        message: "only the master key creates, rotates, changes or revokes admin keys".into(),
    }))
}

/// `require_admin`, and the master key when a limit or budget `scope` names an admin key
/// (`key:ID`, alone or with a model): an admin key cannot throttle another.
pub(crate) async fn may_govern_scope(
    state: &AppState,
    ctx: &RequestContext,
    scope: &str,
) -> Result<(), ApiError> {
    require_admin(state, ctx)?;
    for id in scope
        .split(['|', '/'])
        .filter_map(|part| part.trim().strip_prefix("key:"))
    {
        may_manage_key(state, ctx, id).await?;
    }
    Ok(())
}

/// `require_admin`, and the master key when key `id` is an admin key.
async fn may_manage_key(state: &AppState, ctx: &RequestContext, id: &str) -> Result<(), ApiError> {
    require_admin(state, ctx)?;
    if !ctx.key.is_master
        && state
            .gateway
            .store()
            .key(id)
            .await?
            .is_some_and(|k| k.admin)
    {
        return only_master_on_admin_keys(ctx);
    }
    Ok(())
}

pub async fn create_key(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(new): JsonBody<NewKey>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &ctx)?;
    if new.admin {
        only_master_on_admin_keys(&ctx)?;
    }
    let created = state.gateway.create_key(new).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn list_keys(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &ctx)?;
    let keys = state.gateway.auth().list_keys().await?;
    Ok(Json(json!({"object": "list", "data": keys})))
}

pub async fn revoke_key(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    may_manage_key(&state, &ctx, &id).await?;
    if state.gateway.auth().revoke_key(&id).await? {
        Ok(Json(json!({"id": id, "revoked": true})))
    } else {
        Err(ApiError(Error::NotFound(format!(
            "no active key with id `{id}`"
        ))))
    }
}

/// `POST /admin/keys/{id}/rotate` `{"grace_secs": N}`: a new secret (shown once); the old
/// one works for N more seconds (default 0).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    #[serde(default)]
    pub grace_secs: Option<u64>,
}

pub async fn rotate_key(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    may_manage_key(&state, &ctx, &id).await?;
    // The body is optional: none means no grace.
    let rotation: Rotation = if body.iter().all(u8::is_ascii_whitespace) {
        Rotation::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Error::invalid(format!("invalid rotation: {e}"), None))?
    };
    let grace = rotation.grace_secs.unwrap_or(0).min(366 * 86_400);
    match state
        .gateway
        .auth()
        .rotate_key(&id, std::time::Duration::from_secs(grace))
        .await?
    {
        Some(rotated) => Ok(Json(rotated)),
        None => Err(ApiError(Error::NotFound(format!(
            "no active key with id `{id}`"
        )))),
    }
}

/// `PATCH /admin/keys/{id}`: `{"expires_at": RFC 3339 | null}` or `{"expires_in_secs": N}`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUpdate {
    #[serde(default, with = "double_option")]
    pub expires_at: Option<Option<String>>,
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

/// `null` and absent told apart: `Some(None)` clears.
mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

pub async fn update_key(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    JsonBody(update): JsonBody<KeyUpdate>,
) -> Result<impl IntoResponse, ApiError> {
    may_manage_key(&state, &ctx, &id).await?;
    let now = llmrr_core::store::now_ms();
    let expires = match (update.expires_at, update.expires_in_secs) {
        (None, None) => {
            return Err(ApiError(Error::invalid(
                "give `expires_at` (RFC 3339, or null to never expire) or `expires_in_secs`",
                Some("expires_at".into()),
            )))
        }
        (Some(None), None) => None,
        (at, secs) => llmrr_core::auth::expiry_ms(at.flatten().as_deref(), secs, now)?,
    };
    if !state.gateway.auth().set_key_expiry(&id, expires).await? {
        return Err(ApiError(Error::NotFound(format!(
            "no active key with id `{id}`"
        ))));
    }
    Ok(Json(json!({"id": id, "expires_at_ms": expires})))
}

/// `GET /admin/models`: every model's live stats, breaker and rate-limit state, and every
/// route with its rollout.
pub async fn models(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &ctx)?;
    let g = &state.gateway;
    let models: Vec<serde_json::Value> = g
        .models()
        .all()
        .iter()
        .map(|e| {
            json!({
                "model": &*e.spec.name,
                "provider": e.spec.provider.as_str(),
                "upstream_model": e.spec.upstream_model,
                "quality": e.spec.quality,
                "context_window": e.spec.context_window,
                "pricing": e.spec.pricing,
                "capabilities": e.spec.capabilities,
                "breaker": e.breaker.state().as_str(),
                "rate_limited_for_secs": e.rate_limited().map(|d| d.as_secs_f64()),
                "stats": e.stats.snapshot(),
                "local": e.provider.status(),
            })
        })
        .collect();
    let router = g.router();
    let routes: Vec<serde_json::Value> = router
        .route_names()
        .iter()
        .filter_map(|n| router.route(n))
        .map(|r| {
            json!({
                "route": &*r.name,
                "strategy": r.strategy.as_str(),
                "models": r.models,
                "fallbacks": r.fallbacks,
                "rollout": router.rollouts.get(&r.name),
            })
        })
        .collect();
    Ok(Json(json!({"models": models, "routes": routes})))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRollout {
    route: String,
    from: Option<String>,
    to: String,
    #[serde(default = "default_stages")]
    stages: Vec<u8>,
    stage_minutes: f64,
    #[serde(default = "default_error_rate")]
    max_error_rate: f64,
    #[serde(default = "default_min_requests")]
    min_requests: u32,
}

fn default_stages() -> Vec<u8> {
    vec![10, 30, 70, 100]
}
fn default_error_rate() -> f64 {
    0.1
}
fn default_min_requests() -> u32 {
    20
}

/// `POST /admin/rollouts`: move a route's traffic from one of its models to another.
pub async fn start_rollout(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(new): JsonBody<NewRollout>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &ctx)?;
    let router = state.gateway.router();
    let route = router.route(&new.route).ok_or_else(|| {
        Error::invalid(
            format!("no route named `{}`", new.route),
            Some("route".into()),
        )
    })?;
    let from = new.from.unwrap_or_else(|| route.models[0].to_string());
    for (param, m) in [("from", &from), ("to", &new.to)] {
        if !route.models.iter().any(|x| **x == **m) {
            return Err(ApiError(Error::invalid(
                format!("`{m}` is not one of route `{}`'s models", route.name),
                Some(param.into()),
            )));
        }
    }
    let rollout = llmrr_core::routing::rollout::Rollout {
        route: new.route,
        from,
        to: new.to,
        stages: new.stages,
        stage_secs: new.stage_minutes * 60.0,
        max_error_rate: new.max_error_rate,
        min_requests: new.min_requests,
        started_at_ms: llmrr_core::store::now_ms(),
        state: llmrr_core::routing::rollout::RolloutState::Active,
        ended_at_ms: None,
        reason: None,
    };
    let started = router.rollouts.start(rollout).await?;
    Ok((StatusCode::CREATED, Json(with_position(&started))))
}

fn with_position(r: &llmrr_core::routing::rollout::Rollout) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["position"] =
        serde_json::to_value(r.position(llmrr_core::store::now_ms())).unwrap_or_default();
    v
}

pub async fn list_rollouts(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &ctx)?;
    let all: Vec<serde_json::Value> = state
        .gateway
        .router()
        .rollouts
        .list()
        .iter()
        .map(with_position)
        .collect();
    Ok(Json(json!({"object": "list", "data": all})))
}

pub async fn abort_rollout(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(route): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &ctx)?;
    let r = state.gateway.router().rollouts.abort(&route).await?;
    Ok(Json(with_position(&r)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelAction {
    model: String,
}

/// `POST /admin/models/load` and `POST /admin/models/unload` `{"model": NAME}`: a local
/// model loaded now (and kept as configured), or unloaded once its requests in flight end.
pub async fn model_lifecycle(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(action): Path<String>,
    JsonBody(m): JsonBody<ModelAction>,
) -> Result<impl IntoResponse, ApiError> {
    require_admin(&state, &ctx)?;
    let (keep, load) = match action.as_str() {
        "load" => (None, true),
        "unload" => (Some(std::time::Duration::ZERO), false),
        _ => {
            return Err(ApiError(Error::NotFound(format!(
                "`{action}` is not a model action: load or unload"
            ))))
        }
    };
    let entry = state
        .gateway
        .models()
        .get(&m.model)
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("no model named `{}`", m.model)))?;
    if !entry.provider.keep_alive(keep, load).await? {
        return Err(ApiError(Error::invalid(
            format!(
                "`{}` is not a local model: only local models load and unload",
                m.model
            ),
            Some("model".into()),
        )));
    }
    Ok(Json(json!({
        "model": m.model,
        "action": action,
        "local": entry.provider.status(),
    })))
}
