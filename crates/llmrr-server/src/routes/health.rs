//! Liveness, readiness (the store answers) and Prometheus metrics.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use llmrr_core::RequestContext;
use serde_json::json;
use std::time::Duration;

/// A store that takes longer than this to answer a ping is not ready.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn live() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the store answers a ping (within a bound). A request-log writer whose writes
/// fail is reported (`"status": "degraded"`, with the reason) but does not make the replica
/// unready: model calls do not depend on the log, and a load balancer that took every replica
/// out over it would turn an analytics outage into a full one.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let ping = tokio::time::timeout(PING_TIMEOUT, state.gateway.store().ping())
        .await
        .unwrap_or_else(|_| Err(llmrr_core::Error::Internal("ping timed out".into())));
    if let (Ok(()), Some(why)) = (&ping, state.gateway.log_health().failing()) {
        return (
            StatusCode::OK,
            Json(json!({"status": "degraded", "request_log": why})),
        );
    }
    match ping {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "reason": "the store does not answer"})),
            )
        }
    }
}

/// Prometheus text. Needs the master key (or no master key configured, loopback only), unless
/// `server.metrics_public`: the metrics name every model and key-independent traffic figures.
pub async fn metrics(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> Result<impl IntoResponse, ApiError> {
    let allowed =
        state.server.metrics_public || ctx.key.is_master || !state.gateway.auth().has_master_key();
    if !allowed {
        return Err(ApiError(llmrr_core::Error::Forbidden {
            message: "`/metrics` needs the master key (or `server.metrics_public = true`)".into(),
        }));
    }
    llmrr_core::telemetry::export_live_stats(state.gateway.models());
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    ))
}
