//! Limit rules: one row per scope (`global`, `key:ID`, `user:ID`, `team:ID`, `model:NAME`),
//! the limits as JSON. Every replica polls [`Store::limits_version`] and reloads on a change.

use super::{now_ms, Store};
use crate::error::{Error, Result};
use crate::limits::LimitSet;
use sqlx::Row;

impl Store {
    /// Set (or replace) the rule of `scope`.
    pub async fn set_limits(&self, scope: &str, limits: &LimitSet) -> Result<()> {
        let json = serde_json::to_string(limits)
            .map_err(|e| Error::Internal(format!("limits do not serialize: {e}")))?;
        sqlx::query(
            "INSERT INTO rate_limits (scope, limits, updated_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (scope) DO UPDATE SET limits = excluded.limits, \
             updated_at_ms = CASE WHEN excluded.updated_at_ms > rate_limits.updated_at_ms \
             THEN excluded.updated_at_ms ELSE rate_limits.updated_at_ms + 1 END",
        )
        .bind(scope)
        .bind(json)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn remove_limits(&self, scope: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM rate_limits WHERE scope = $1")
            .bind(scope)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every rule; one that cannot be read is skipped with an error in the log.
    pub async fn list_limits(&self) -> Result<Vec<(String, LimitSet)>> {
        let rows = sqlx::query("SELECT scope, limits FROM rate_limits ORDER BY scope")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let scope: String = row.try_get("scope")?;
            let json: String = row.try_get("limits")?;
            match serde_json::from_str(&json) {
                Ok(limits) => out.push((scope, limits)),
                Err(e) => {
                    tracing::error!(scope, error = %e, "a limit rule cannot be read; skipped")
                }
            }
        }
        Ok(out)
    }

    /// Changes whenever a rule is added, changed or removed (an update always moves its
    /// row's time forward, even within one millisecond).
    pub async fn limits_version(&self) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(updated_at_ms), 0) AS BIGINT) AS at \
             FROM rate_limits",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("n")?, row.try_get("at")?))
    }
}
