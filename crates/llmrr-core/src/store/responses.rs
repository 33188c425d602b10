//! Stored answers of the Responses API (`store: true`): the response object as the client got
//! it, and the conversation it ended (for `previous_response_id`), scoped to the key that made
//! it and kept for `[store] responses_retention_days`.

use super::{now_ms, Store};
use crate::error::Result;
use sqlx::Row;
use std::sync::atomic::{AtomicI64, Ordering};

/// Expired responses are deleted at most this often (by whichever write comes first).
const PRUNE_EVERY_MS: i64 = 60_000;
static LAST_PRUNE_MS: AtomicI64 = AtomicI64::new(0);

/// One stored response.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// The response object (JSON).
    pub body: String,
    /// The conversation up to and including the answer (JSON: chat messages).
    pub history: String,
}

impl Store {
    /// Keep response `id` of `owner` until `expires_at_ms`.
    pub async fn put_response(
        &self,
        id: &str,
        owner: &str,
        expires_at_ms: i64,
        r: &StoredResponse,
    ) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO responses (id, owner, created_at_ms, expires_at_ms, body, history) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(owner)
        .bind(now)
        .bind(expires_at_ms)
        .bind(&r.body)
        .bind(&r.history)
        .execute(&self.pool)
        .await?;
        let last = LAST_PRUNE_MS.load(Ordering::Relaxed);
        if now - last >= PRUNE_EVERY_MS
            && LAST_PRUNE_MS
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let pruned = sqlx::query("DELETE FROM responses WHERE expires_at_ms < $1")
                .bind(now)
                .execute(&self.pool)
                .await;
            if let Err(e) = pruned {
                tracing::warn!(error = %e, "stored responses: expired ones not deleted");
            }
        }
        Ok(())
    }

    /// Response `id` when `owner` made it and it has not expired.
    pub async fn get_response(&self, id: &str, owner: &str) -> Result<Option<StoredResponse>> {
        let row = sqlx::query(
            "SELECT body, history FROM responses \
             WHERE id = $1 AND owner = $2 AND expires_at_ms >= $3",
        )
        .bind(id)
        .bind(owner)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredResponse {
                body: r.try_get("body")?,
                history: r.try_get("history")?,
            })
        })
        .transpose()
    }

    /// Delete response `id` of `owner`; false when there was none.
    pub async fn delete_response(&self, id: &str, owner: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM responses WHERE id = $1 AND owner = $2")
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
