//! Rollout state, one row per route, replaced on every change.

use super::{now_ms, Store};
use crate::error::Result;

impl Store {
    /// Write the rollout of `route` started at `started_at_ms`, unless the row holds a later
    /// one (another replica started it meanwhile): `false` then, and nothing is written.
    pub async fn save_rollout(&self, route: &str, started_at_ms: i64, body: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO rollouts (route, body, updated_at_ms, started_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (route) DO UPDATE SET body = excluded.body, \
             updated_at_ms = excluded.updated_at_ms, started_at_ms = excluded.started_at_ms \
             WHERE rollouts.started_at_ms <= excluded.started_at_ms",
        )
        .bind(route)
        .bind(body)
        .bind(now_ms())
        .bind(started_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn load_rollouts(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT body FROM rollouts ORDER BY route")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
