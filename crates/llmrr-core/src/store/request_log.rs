//! The append-only request log: one row per model call, inserted in batches.

use super::Store;
use crate::error::Result;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogRow {
    pub id: String,
    pub created_at_ms: i64,
    pub endpoint: String,
    pub key_id: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub requested_model: String,
    /// The concrete model that answered (or was tried last).
    pub model: Option<String>,
    pub provider: Option<String>,
    pub stream: bool,
    /// The HTTP status the client got; 499 when it hung up first.
    pub status: i64,
    pub error_type: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// The upstream never reported usage (the client left first): tokens are estimates.
    pub usage_estimated: bool,
    pub latency_us: i64,
    pub ttft_us: Option<i64>,
    pub upstream_us: Option<i64>,
    /// Exact decimal text, in USD.
    pub cost_usd: String,
}

const COLUMNS: &str = "id, created_at_ms, endpoint, key_id, user_id, team_id, requested_model, \
     model, provider, stream, status, error_type, prompt_tokens, completion_tokens, \
     usage_estimated, latency_us, ttft_us, upstream_us, cost_usd";

impl Store {
    /// Insert rows in one transaction: all or none.
    pub async fn insert_log_rows(&self, rows: &[LogRow]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for r in rows {
            sqlx::query(&format!(
                "INSERT INTO request_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                 $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
            ))
            .bind(&r.id)
            .bind(r.created_at_ms)
            .bind(&r.endpoint)
            .bind(&r.key_id)
            .bind(&r.user_id)
            .bind(&r.team_id)
            .bind(&r.requested_model)
            .bind(&r.model)
            .bind(&r.provider)
            .bind(r.stream as i64)
            .bind(r.status)
            .bind(&r.error_type)
            .bind(r.prompt_tokens)
            .bind(r.completion_tokens)
            .bind(r.usage_estimated as i64)
            .bind(r.latency_us)
            .bind(r.ttft_us)
            .bind(r.upstream_us)
            .bind(&r.cost_usd)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The newest rows first.
    pub async fn recent_requests(&self, limit: i64) -> Result<Vec<LogRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM request_log ORDER BY created_at_ms DESC, id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LogRow {
                    id: r.try_get("id")?,
                    created_at_ms: r.try_get("created_at_ms")?,
                    endpoint: r.try_get("endpoint")?,
                    key_id: r.try_get("key_id")?,
                    user_id: r.try_get("user_id")?,
                    team_id: r.try_get("team_id")?,
                    requested_model: r.try_get("requested_model")?,
                    model: r.try_get("model")?,
                    provider: r.try_get("provider")?,
                    stream: r.try_get::<i64, _>("stream")? != 0,
                    status: r.try_get("status")?,
                    error_type: r.try_get("error_type")?,
                    prompt_tokens: r.try_get("prompt_tokens")?,
                    completion_tokens: r.try_get("completion_tokens")?,
                    usage_estimated: r.try_get::<i64, _>("usage_estimated")? != 0,
                    latency_us: r.try_get("latency_us")?,
                    ttft_us: r.try_get("ttft_us")?,
                    upstream_us: r.try_get("upstream_us")?,
                    cost_usd: r.try_get("cost_usd")?,
                })
            })
            .collect()
    }
}
