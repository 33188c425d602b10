//! Budget rows. One budget per (scope, period): setting it again updates it.

use super::{now_ms, Store};
use crate::error::{Error, Result};
use crate::money::budget::{Action, Budget, Period, Scope};
use rust_decimal::Decimal;
use sqlx::Row;
use std::str::FromStr;

const COLUMNS: &str = "id, scope, period, limit_usd, limit_tokens, action, alert_percent, \
                       default_max_tokens, created_at_ms, updated_at_ms";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Budget> {
    let bad = |what: &str| Error::Internal(format!("a stored budget has an unreadable {what}"));
    let scope: String = r.try_get("scope")?;
    let period: String = r.try_get("period")?;
    let action: String = r.try_get("action")?;
    let limit: Option<String> = r.try_get("limit_usd")?;
    let alerts: String = r.try_get("alert_percent")?;
    Ok(Budget {
        id: r.try_get("id")?,
        scope: Scope::parse(&scope).map_err(|_| bad("scope"))?,
        period: Period::parse(&period).map_err(|_| bad("period"))?,
        limit_usd: limit
            .map(|l| Decimal::from_str(&l).map_err(|_| bad("limit")))
            .transpose()?,
        limit_tokens: r
            .try_get::<Option<i64>, _>("limit_tokens")?
            .map(|t| t.max(0) as u64),
        action: Action::parse(&action).map_err(|_| bad("action"))?,
        alert_percent: serde_json::from_str(&alerts).map_err(|_| bad("alert list"))?,
        default_max_tokens: r
            .try_get::<Option<i64>, _>("default_max_tokens")?
            .map(|t| t.clamp(0, i64::from(u32::MAX)) as u32),
        created_at_ms: r.try_get("created_at_ms")?,
        updated_at_ms: r.try_get("updated_at_ms")?,
    })
}

impl Store {
    /// Insert or update the budget of `b.scope` and `b.period` (its id is kept on update).
    pub async fn upsert_budget(&self, b: &Budget) -> Result<Budget> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO budgets (id, scope, period, limit_usd, limit_tokens, action, \
             alert_percent, default_max_tokens, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (scope, period) DO UPDATE SET limit_usd = excluded.limit_usd, \
             limit_tokens = excluded.limit_tokens, action = excluded.action, \
             alert_percent = excluded.alert_percent, \
             default_max_tokens = excluded.default_max_tokens, \
             updated_at_ms = CASE WHEN excluded.updated_at_ms > budgets.updated_at_ms \
             THEN excluded.updated_at_ms ELSE budgets.updated_at_ms + 1 END",
        )
        .bind(&b.id)
        .bind(b.scope.to_string())
        .bind(b.period.as_str())
        .bind(b.limit_usd.map(|d| d.normalize().to_string()))
        .bind(b.limit_tokens.map(|t| t.min(i64::MAX as u64) as i64))
        .bind(b.action.as_str())
        .bind(serde_json::to_string(&b.alert_percent).unwrap_or_else(|_| "[]".into()))
        .bind(b.default_max_tokens.map(i64::from))
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM budgets WHERE scope = $1 AND period = $2"
        ))
        .bind(b.scope.to_string())
        .bind(b.period.as_str())
        .fetch_one(&self.pool)
        .await?;
        from_row(&row)
    }

    pub async fn list_budgets(&self) -> Result<Vec<Budget>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM budgets ORDER BY scope, period"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Delete by id, or by `scope` (every period of it) when `id` is a scope.
    pub async fn delete_budget(&self, id: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM budgets WHERE id = $1 OR scope = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Changes anywhere in the budgets table: (rows, sum of update times; every update moves
    /// its row's time forward, whatever the writer's clock). Replicas poll it.
    pub async fn budgets_version(&self) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(updated_at_ms), 0) AS BIGINT) AS at \
             FROM budgets",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("n")?, row.try_get("at")?))
    }
}
