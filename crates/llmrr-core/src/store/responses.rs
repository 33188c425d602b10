//! Stored answers of the Responses API (`store: true`): the response object as the client got
//! it, and its turn of the conversation (the new input and the answer), linked to the response
//! it continued (`previous_response_id`) — so a chain's conversation is read back link by link
//! (one recursive query) and each turn is stored once, however long the chain grows. Scoped to
//! the key that made them and kept for `[store] responses_retention_days`.

use super::{now_ms, Store};
use crate::error::Result;
use sqlx::Row;
use std::sync::atomic::{AtomicI64, Ordering};

/// Expired responses are deleted at most this often (by whichever write or read comes first).
const PRUNE_EVERY_MS: i64 = 60_000;
static LAST_PRUNE_MS: AtomicI64 = AtomicI64::new(0);

/// The longest chain read back (links beyond it are left out, the oldest first).
pub const MAX_CHAIN: i64 = 10_000;

/// One response to store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// The response object (JSON).
    pub body: String,
    /// This turn of the conversation: its input and its answer (JSON: chat messages).
    pub turn: String,
    /// The response it continued.
    pub parent: Option<String>,
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
        sqlx::query(
            "INSERT INTO responses (id, owner, parent, created_at_ms, expires_at_ms, body, history) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(owner)
        .bind(&r.parent)
        .bind(now_ms())
        .bind(expires_at_ms)
        .bind(&r.body)
        .bind(&r.turn)
        .execute(&self.pool)
        .await?;
        self.prune_responses().await;
        Ok(())
    }

    /// The response object `id` when `owner` made it and it has not expired.
    pub async fn get_response(&self, id: &str, owner: &str) -> Result<Option<String>> {
        self.prune_responses().await;
        let row = sqlx::query(
            "SELECT body FROM responses WHERE id = $1 AND owner = $2 AND expires_at_ms >= $3",
        )
        .bind(id)
        .bind(owner)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(r.try_get("body")?)).transpose()
    }

    /// Response `id`'s own turn (its input and the answer), when `owner` made it and it has
    /// not expired.
    pub async fn response_turn(&self, id: &str, owner: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT history FROM responses WHERE id = $1 AND owner = $2 AND expires_at_ms >= $3",
        )
        .bind(id)
        .bind(owner)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(r.try_get("history")?)).transpose()
    }

    /// The turns of the conversation that response `id` ends, oldest first (`None`: no such
    /// response of `owner`). A link that has expired ends the chain there.
    pub async fn response_chain(&self, id: &str, owner: &str) -> Result<Option<Vec<String>>> {
        let rows = sqlx::query(
            "WITH RECURSIVE chain (parent, history, depth) AS ( \
               SELECT parent, history, 0 FROM responses \
               WHERE id = $1 AND owner = $2 AND expires_at_ms >= $3 \
               UNION ALL \
               SELECT r.parent, r.history, c.depth + 1 FROM responses r \
               JOIN chain c ON r.id = c.parent \
               WHERE r.owner = $2 AND r.expires_at_ms >= $3 AND c.depth < $4 \
             ) SELECT history FROM chain ORDER BY depth DESC",
        )
        .bind(id)
        .bind(owner)
        .bind(now_ms())
        .bind(MAX_CHAIN)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        rows.iter()
            .map(|r| Ok(r.try_get("history")?))
            .collect::<Result<Vec<String>>>()
            .map(Some)
    }

    /// Delete response `id` of `owner`; false when there was none (or it had expired).
    pub async fn delete_response(&self, id: &str, owner: &str) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM responses WHERE id = $1 AND owner = $2 AND expires_at_ms >= $3",
        )
        .bind(id)
        .bind(owner)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Delete expired responses, at most once a minute (best-effort).
    async fn prune_responses(&self) {
        let now = now_ms();
        let last = LAST_PRUNE_MS.load(Ordering::Relaxed);
        if now - last < PRUNE_EVERY_MS
            || LAST_PRUNE_MS
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let pruned = sqlx::query("DELETE FROM responses WHERE expires_at_ms < $1")
            .bind(now)
            .execute(&self.pool)
            .await;
        if let Err(e) = pruned {
            tracing::warn!(error = %e, "stored responses: expired ones not deleted");
        }
    }
}
