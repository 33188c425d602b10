//! Rollout state, one row per route, replaced on every change.

use super::{now_ms, Store};
use crate::error::Result;

impl Store {
    pub async fn save_rollout(&self, route: &str, body: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO rollouts (route, body, updated_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (route) DO UPDATE SET body = excluded.body, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(route)
        .bind(body)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn load_rollouts(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT body FROM rollouts ORDER BY route")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
