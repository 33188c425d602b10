//! The money admin API (the master key or an admin key): budgets, users, teams, spend
//! reports, forecasts, recommendations and the price catalog. Any other key may read its own
//! spend report and forecast.

use super::admin::{may_govern_scope, require_admin};
use super::query_pairs as query;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use llmrr_core::money::budget::{BudgetSpec, Scope};
use llmrr_core::money::recommend::{RouteInfo, RouteModel};
use llmrr_core::money::{self, price};
use llmrr_core::store::{GroupBy, SpendQuery};
use llmrr_core::{Error, Gateway, RequestContext};
use serde_json::json;
use std::collections::HashMap;

type Reply = Result<Response, ApiError>;

/// `{"id", "deleted": true}`, or 404 naming what was not found.
fn deleted(found: bool, what: &str, id: String) -> Reply {
    if found {
        Ok(Json(json!({"id": id, "deleted": true})).into_response())
    } else {
        Err(ApiError(Error::NotFound(format!("no {what} `{id}`"))))
    }
}

fn list<T: serde::Serialize>(data: T) -> Response {
    Json(json!({"object": "list", "data": data})).into_response()
}

pub async fn set_budget(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(spec): JsonBody<BudgetSpec>,
) -> Reply {
    may_govern_scope(&state, &ctx, &spec.scope).await?;
    let money = state.gateway.money();
    let stored = money.set_budget(spec).await?;
    let status = money
        .status()
        .await?
        .into_iter()
        .find(|s| s.budget.id == stored.id);
    Ok((StatusCode::CREATED, Json(status)).into_response())
}

pub async fn list_budgets(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Reply {
    require_admin(&state, &ctx)?;
    Ok(list(state.gateway.money().status().await?))
}

pub async fn remove_budget(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Reply {
    require_admin(&state, &ctx)?;
    match state.gateway.money().remove_budget(&id).await? {
        0 => Err(ApiError(Error::NotFound(format!("no budget `{id}`")))),
        n => Ok(Json(json!({"id": id, "deleted": n})).into_response()),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTeam {
    id: String,
    name: Option<String>,
}

pub async fn set_team(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(t): JsonBody<NewTeam>,
) -> Reply {
    require_admin(&state, &ctx)?;
    let name = t.name.unwrap_or_else(|| t.id.clone());
    let row = state.gateway.store().upsert_team(&t.id, &name).await?;
    Ok((StatusCode::CREATED, Json(row)).into_response())
}

pub async fn list_teams(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Reply {
    require_admin(&state, &ctx)?;
    Ok(list(state.gateway.store().list_teams().await?))
}

pub async fn remove_team(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Reply {
    require_admin(&state, &ctx)?;
    let found = state.gateway.store().delete_team(&id).await?;
    deleted(found, "team", id)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    id: String,
    name: Option<String>,
    email: Option<String>,
    team: Option<String>,
}

pub async fn set_user(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(u): JsonBody<NewUser>,
) -> Reply {
    require_admin(&state, &ctx)?;
    let name = u.name.unwrap_or_else(|| u.id.clone());
    let row = state
        .gateway
        .store()
        .upsert_user(&u.id, &name, u.email.as_deref(), u.team.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(row)).into_response())
}

pub async fn list_users(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Reply {
    require_admin(&state, &ctx)?;
    Ok(list(state.gateway.store().list_users().await?))
}

pub async fn remove_user(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Reply {
    require_admin(&state, &ctx)?;
    let found = state.gateway.store().delete_user(&id).await?;
    deleted(found, "user", id)
}

/// `from`, `to` (see `parse_time`; default: the last 30 days), `scope`, `group_by`, `limit`.
pub fn spend_query(g: &Gateway, q: &HashMap<String, String>) -> Result<SpendQuery, Error> {
    let now = g.money().now().as_millisecond();
    let time = |name: &str, default: i64| {
        q.get(name)
            .map(|v| money::parse_time(v, now))
            .transpose()
            .map(|t| t.unwrap_or(default))
            .map_err(|e| Error::invalid(e.to_string(), Some(name.into())))
    };
    let from_ms = time("from", now - 30 * 86_400_000)?;
    let to_ms = time("to", now + 1)?;
    if from_ms >= to_ms {
        return Err(Error::invalid(
            "`from` must be before `to`",
            Some("from".into()),
        ));
    }
    let offset = g.money().time_zone().to_offset(g.money().now()).seconds();
    Ok(SpendQuery {
        from_ms,
        to_ms,
        scope: q
            .get("scope")
            .map(|s| Scope::parse(s))
            .transpose()?
            .unwrap_or(Scope::Global),
        group_by: q.get("group_by").map(|s| GroupBy::parse(s)).transpose()?,
        tz_offset_ms: i64::from(offset) * 1000,
        limit: super::query_number(q, "limit", 1..=10_000, 1000)?,
    })
}

/// `GET /admin/spend`: totals, a breakdown (`group_by`), efficiency, savings, top spenders;
/// `format=csv` for the breakdown as CSV.
pub async fn spend(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    RawQuery(raw): RawQuery,
) -> Reply {
    let q = query(raw);
    let mut sq = spend_query(&state.gateway, &q)?;
    sq.scope = readable_scope(&state, &ctx, q.get("scope").map(|_| &sq.scope))?;
    let report = state.gateway.money().spend_report(&sq).await?;
    match q.get("format").map(String::as_str) {
        None | Some("json") => Ok(Json(report).into_response()),
        Some("csv") => {
            let mut r = Response::new(Body::from(report.to_csv()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            Ok(r)
        }
        Some(other) => Err(ApiError(Error::invalid(
            format!("`{other}` is not a format: json or csv"),
            Some("format".into()),
        ))),
    }
}

pub async fn forecast(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    RawQuery(raw): RawQuery,
) -> Reply {
    let q = query(raw);
    let asked = q.get("scope").map(|s| Scope::parse(s)).transpose()?;
    let scope = readable_scope(&state, &ctx, asked.as_ref())?;
    // Other budgets are not a plain key's to see (nor to make us compute).
    let every_budget = ctx.key.may_administer();
    let report = state.gateway.money().forecast(&scope, every_budget).await?;
    Ok(Json(report).into_response())
}

/// The spend a request may read: any scope for the master key or an admin key (`asked`, or
/// everything); for any other key only its own — its user's when it belongs to one, else the
/// key's — asked for or not.
fn readable_scope(
    state: &AppState,
    ctx: &RequestContext,
    asked: Option<&Scope>,
) -> Result<Scope, ApiError> {
    let key = &ctx.key;
    if key.may_administer() {
        return Ok(asked.cloned().unwrap_or(Scope::Global));
    }
    let own = match (&key.user, &key.key_id) {
        (Some(user), _) => Scope::User(user.clone()),
        (None, Some(id)) => Scope::Key(id.clone()),
        (None, None) => return require_admin(state, ctx).map(|()| Scope::Global),
    };
    match asked {
        Some(other) if *other != own => Err(ApiError(Error::Forbidden {
            message: format!("this key may read only its own spend (scope `{own}`)"),
        })),
        _ => Ok(own),
    }
}

/// The routes and models as the recommender needs them.
pub fn route_infos(g: &Gateway) -> (Vec<RouteInfo>, Vec<String>) {
    let router = g.router();
    let routes = router
        .route_names()
        .iter()
        .filter_map(|name| {
            router.route_models(name).map(|models| RouteInfo {
                route: name.to_string(),
                models: models
                    .iter()
                    .map(|e| RouteModel {
                        model: e.spec.name.to_string(),
                        quality: e.spec.quality,
                        pricing: e.spec.pricing.clone(),
                    })
                    .collect(),
            })
        })
        .collect();
    let unpriced = g
        .models()
        .all()
        .iter()
        .filter(|e| !e.spec.pricing.is_priced())
        .map(|e| e.spec.name.to_string())
        .collect();
    (routes, unpriced)
}

pub async fn recommendations(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    RawQuery(raw): RawQuery,
) -> Reply {
    require_admin(&state, &ctx)?;
    let q = query(raw);
    let days = super::query_number(&q, "days", 1..=366, 30)?;
    let (routes, unpriced) = route_infos(&state.gateway);
    let recs = state
        .gateway
        .money()
        .recommend(&routes, &unpriced, days)
        .await?;
    Ok(list(recs))
}

/// `GET /admin/prices`: the built-in catalog, and the price each configured model uses.
pub async fn prices(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Reply {
    require_admin(&state, &ctx)?;
    let models: Vec<_> = state
        .gateway
        .models()
        .all()
        .iter()
        .map(|e| {
            json!({"model": &*e.spec.name, "upstream_model": e.spec.upstream_model,
                        "pricing": e.spec.pricing})
        })
        .collect();
    Ok(Json(json!({"models": models, "catalog": price::catalog()})).into_response())
}
