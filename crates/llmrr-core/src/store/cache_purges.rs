//! Cache purges, kept so that every replica applies each one to its own memory and disk tiers
//! (the shared tier is purged once, by the replica that was asked).

use super::{now_ms, Store};
use crate::cache::Purge;
use crate::error::Result;
use sqlx::Row;

/// Purges are kept this long: replicas poll every second, and one that starts with a disk tier
/// applies the last day's (its file may hold entries purged while it was down).
pub const CACHE_PURGES_KEPT_MS: i64 = 86_400_000;

impl Store {
    /// Record purge `id`; now and then forget the old ones.
    pub async fn record_cache_purge(&self, id: &str, p: &Purge) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO cache_purges (id, created_at_ms, namespace, route, key_id) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(now)
        .bind(&p.namespace)
        .bind(&p.route)
        .bind(&p.key_id)
        .execute(&self.pool)
        .await?;
        let forget = sqlx::query("DELETE FROM cache_purges WHERE created_at_ms < $1")
            .bind(now - CACHE_PURGES_KEPT_MS)
            .execute(&self.pool)
            .await;
        if let Err(e) = forget {
            tracing::warn!(error = %e, "cache: old purges not forgotten");
        }
        Ok(())
    }

    /// The purges recorded at or after `since_ms`, oldest first: (id, time, purge).
    pub async fn cache_purges_since(&self, since_ms: i64) -> Result<Vec<(String, i64, Purge)>> {
        let rows = sqlx::query(
            "SELECT id, created_at_ms, namespace, route, key_id FROM cache_purges \
             WHERE created_at_ms >= $1 ORDER BY created_at_ms, id",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get("created_at_ms")?,
                    Purge {
                        namespace: r.try_get("namespace")?,
                        route: r.try_get("route")?,
                        key_id: r.try_get("key_id")?,
                    },
                ))
            })
            .collect()
    }
}
