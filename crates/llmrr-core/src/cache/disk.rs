//! L2: answers in an SQLite file that survives restarts, bounded by bytes, evicted by the same
//! cost-aware priority as L1 (an indexed column, so the cheapest goes first).
//!
//! SQLite rather than redb or sled: it is already in the binary (the embedded store), it is
//! crash-safe in WAL mode, and purges by namespace, route or key are one indexed `DELETE`.

use super::entry::Entry;
use super::key::CacheKey;
use super::policy;
use super::semantic::{vector_bytes, vector_of, Item};
use crate::config::cache::CachePolicy;
use crate::error::{Error, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::sync::Arc;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS cache_entries (
        key BLOB PRIMARY KEY,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        key_id TEXT,
        bytes INTEGER NOT NULL,
        cost_pusd INTEGER NOT NULL,
        hits INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        priority REAL NOT NULL,
        value BLOB NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS cache_entries_priority ON cache_entries (priority)",
    "CREATE INDEX IF NOT EXISTS cache_entries_expiry ON cache_entries (expires_ms)",
    "CREATE INDEX IF NOT EXISTS cache_entries_namespace ON cache_entries (namespace)",
    "CREATE INDEX IF NOT EXISTS cache_entries_name ON cache_entries (name)",
    "CREATE INDEX IF NOT EXISTS cache_entries_key_id ON cache_entries (key_id)",
    "CREATE TABLE IF NOT EXISTS cache_vectors (
        key BLOB PRIMARY KEY,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        key_id TEXT,
        context BLOB NOT NULL,
        prompt TEXT NOT NULL,
        vector BLOB NOT NULL,
        expires_ms INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS cache_vectors_expiry ON cache_vectors (expires_ms)",
];

/// Which entries a purge drops.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Purge {
    pub namespace: Option<String>,
    /// The model or route requests named.
    pub route: Option<String>,
    /// The key whose requests made them.
    pub key_id: Option<String>,
}

impl Purge {
    pub fn selects(&self, e: &Entry) -> bool {
        self.namespace
            .as_ref()
            .is_none_or(|n| *n == e.meta.namespace)
            && self.route.as_ref().is_none_or(|r| *r == e.meta.name)
            && self
                .key_id
                .as_ref()
                .is_none_or(|k| Some(k) == e.meta.key_id.as_ref())
    }
}

struct Bounds {
    bytes: u64,
    clock: f64,
}

pub struct DiskTier {
    pool: SqlitePool,
    capacity: u64,
    policy: CachePolicy,
    /// Writers one at a time (SQLite has one writer anyway), with the byte count they keep.
    bounds: Arc<tokio::sync::Mutex<Bounds>>,
}

fn disk(e: sqlx::Error) -> Error {
    Error::Internal(format!("cache disk tier: {e}"))
}

impl DiskTier {
    pub async fn open(path: &Path, capacity: u64, policy: CachePolicy) -> Result<DiskTier> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Internal(format!("cache disk tier: {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(disk)?;
        for statement in SCHEMA {
            sqlx::query(statement).execute(&pool).await.map_err(disk)?;
        }
        let row = sqlx::query(
            "SELECT COALESCE(SUM(bytes), 0) AS bytes, COALESCE(MIN(priority), 0.0) AS clock \
             FROM cache_entries",
        )
        .fetch_one(&pool)
        .await
        .map_err(disk)?;
        let bounds = Bounds {
            bytes: row.try_get::<i64, _>("bytes").map_err(disk)?.max(0) as u64,
            clock: row.try_get("clock").map_err(disk)?,
        };
        Ok(DiskTier {
            pool,
            capacity,
            policy,
            bounds: Arc::new(tokio::sync::Mutex::new(bounds)),
        })
    }

    pub async fn get(&self, key: &CacheKey, now_ms: i64) -> Result<Option<Entry>> {
        let row = sqlx::query(
            "SELECT value, expires_ms, hits, cost_pusd, bytes FROM cache_entries WHERE key = ?",
        )
        .bind(&key.as_bytes()[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(disk)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let expires: i64 = row.try_get("expires_ms").map_err(disk)?;
        if expires <= now_ms {
            self.remove(key).await?;
            return Ok(None);
        }
        let value: Vec<u8> = row.try_get("value").map_err(disk)?;
        let Some(entry) = Entry::decode(&value) else {
            tracing::warn!(key = ?key, "cache disk tier: a corrupt entry, dropped");
            self.remove(key).await?;
            return Ok(None);
        };
        let hits = row.try_get::<i64, _>("hits").map_err(disk)?.max(0) as u64 + 1;
        let cost = row.try_get::<i64, _>("cost_pusd").map_err(disk)? as f64 / 1e12;
        let bytes = row.try_get::<i64, _>("bytes").map_err(disk)?.max(0) as u64;
        let clock = self.bounds.lock().await.clock;
        let priority = policy::priority(&self.policy, clock, hits, cost, bytes);
        sqlx::query("UPDATE cache_entries SET hits = ?, priority = ? WHERE key = ?")
            .bind(hits as i64)
            .bind(priority)
            .bind(&key.as_bytes()[..])
            .execute(&self.pool)
            .await
            .map_err(disk)?;
        Ok(Some(entry))
    }

    /// Keep `entry`, evicting expired entries, then the lowest priorities, until the tier
    /// is within its size. Returns how many were evicted.
    pub async fn put(&self, key: &CacheKey, entry: &Entry, now_ms: i64) -> Result<u64> {
        let value = entry.encode();
        let bytes = value.len() as u64;
        if bytes > self.capacity {
            return Ok(0);
        }
        let mut bounds = self.bounds.lock().await;
        let old: Option<i64> = sqlx::query_scalar("SELECT bytes FROM cache_entries WHERE key = ?")
            .bind(&key.as_bytes()[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(disk)?;
        let cost = entry.meta.cost_pusd as f64 / 1e12;
        let priority = policy::priority(&self.policy, bounds.clock, 0, cost, bytes);
        sqlx::query(
            "INSERT OR REPLACE INTO cache_entries \
             (key, namespace, name, key_id, bytes, cost_pusd, hits, expires_ms, priority, value) \
             VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
        )
        .bind(&key.as_bytes()[..])
        .bind(&entry.meta.namespace)
        .bind(&entry.meta.name)
        .bind(&entry.meta.key_id)
        .bind(bytes as i64)
        .bind(entry.meta.cost_pusd)
        .bind(entry.meta.expires_ms)
        .bind(priority)
        .bind(&value[..])
        .execute(&self.pool)
        .await
        .map_err(disk)?;
        bounds.bytes = (bounds.bytes + bytes).saturating_sub(old.unwrap_or(0).max(0) as u64);
        let mut evicted = 0;
        if bounds.bytes > self.capacity {
            let expired = sqlx::query("DELETE FROM cache_entries WHERE expires_ms <= ?")
                .bind(now_ms)
                .execute(&self.pool)
                .await
                .map_err(disk)?;
            evicted += expired.rows_affected();
            bounds.bytes = self.total_bytes().await?;
        }
        while bounds.bytes > self.capacity {
            let victims = sqlx::query(
                "SELECT key, bytes, priority FROM cache_entries WHERE key <> ? \
                 ORDER BY priority LIMIT 64",
            )
            .bind(&key.as_bytes()[..])
            .fetch_all(&self.pool)
            .await
            .map_err(disk)?;
            if victims.is_empty() {
                break;
            }
            for v in victims {
                if bounds.bytes <= self.capacity {
                    break;
                }
                let k: Vec<u8> = v.try_get("key").map_err(disk)?;
                let b: i64 = v.try_get("bytes").map_err(disk)?;
                bounds.clock = v.try_get("priority").map_err(disk)?;
                sqlx::query("DELETE FROM cache_entries WHERE key = ?")
                    .bind(k)
                    .execute(&self.pool)
                    .await
                    .map_err(disk)?;
                bounds.bytes = bounds.bytes.saturating_sub(b.max(0) as u64);
                evicted += 1;
            }
        }
        Ok(evicted)
    }

    async fn total_bytes(&self) -> Result<u64> {
        let b: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(bytes), 0) FROM cache_entries")
            .fetch_one(&self.pool)
            .await
            .map_err(disk)?;
        Ok(b.max(0) as u64)
    }

    async fn remove(&self, key: &CacheKey) -> Result<()> {
        let mut bounds = self.bounds.lock().await;
        sqlx::query("DELETE FROM cache_entries WHERE key = ?")
            .bind(&key.as_bytes()[..])
            .execute(&self.pool)
            .await
            .map_err(disk)?;
        bounds.bytes = self.total_bytes().await?;
        Ok(())
    }

    /// Keep a semantic index item with its entry (loaded again at start).
    pub async fn put_vector(&self, meta: &super::entry::Meta, item: &Item) -> Result<()> {
        // Items of expired answers go as new ones come (the table stays near the index's size).
        sqlx::query("DELETE FROM cache_vectors WHERE expires_ms <= ?")
            .bind(meta.created_ms)
            .execute(&self.pool)
            .await
            .map_err(disk)?;
        sqlx::query(
            "INSERT OR REPLACE INTO cache_vectors \
             (key, namespace, name, key_id, context, prompt, vector, expires_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&item.key.as_bytes()[..])
        .bind(&meta.namespace)
        .bind(&meta.name)
        .bind(&meta.key_id)
        .bind(&item.context.as_bytes()[..])
        .bind(&item.prompt)
        .bind(vector_bytes(&item.vector))
        .bind(meta.expires_ms)
        .execute(&self.pool)
        .await
        .map_err(disk)?;
        Ok(())
    }

    /// The semantic index items whose entries have not expired, oldest first, by namespace.
    pub async fn vectors(&self, now_ms: i64) -> Result<Vec<(String, Item)>> {
        sqlx::query("DELETE FROM cache_vectors WHERE expires_ms <= ?")
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(disk)?;
        let rows = sqlx::query(
            "SELECT key, namespace, context, prompt, vector, expires_ms FROM cache_vectors \
             ORDER BY expires_ms",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(disk)?;
        let key = |b: Vec<u8>| <[u8; 32]>::try_from(b).ok().map(CacheKey::from_bytes);
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let (Some(k), Some(context)) = (
                key(r.try_get("key").map_err(disk)?),
                key(r.try_get("context").map_err(disk)?),
            ) else {
                continue;
            };
            out.push((
                r.try_get("namespace").map_err(disk)?,
                Item {
                    key: k,
                    context,
                    prompt: r.try_get("prompt").map_err(disk)?,
                    vector: vector_of(&r.try_get::<Vec<u8>, _>("vector").map_err(disk)?),
                    expires_ms: r.try_get("expires_ms").map_err(disk)?,
                },
            ));
        }
        Ok(out)
    }

    pub async fn purge(&self, p: &Purge) -> Result<u64> {
        self.delete_selected("cache_vectors", p).await?;
        let mut bounds = self.bounds.lock().await;
        let done = self.delete_selected("cache_entries", p).await?;
        bounds.bytes = self.total_bytes().await?;
        Ok(done)
    }

    /// Delete the rows of `table` that `p` selects; returns how many.
    async fn delete_selected(&self, table: &str, p: &Purge) -> Result<u64> {
        let done = sqlx::query(&format!(
            "DELETE FROM {table} WHERE (? IS NULL OR namespace = ?) \
             AND (? IS NULL OR name = ?) AND (? IS NULL OR key_id = ?)"
        ))
        .bind(&p.namespace)
        .bind(&p.namespace)
        .bind(&p.route)
        .bind(&p.route)
        .bind(&p.key_id)
        .bind(&p.key_id)
        .execute(&self.pool)
        .await
        .map_err(disk)?;
        Ok(done.rows_affected())
    }

    /// Entries and bytes held.
    pub async fn usage(&self) -> Result<(u64, u64)> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cache_entries")
            .fetch_one(&self.pool)
            .await
            .map_err(disk)?;
        Ok((n.max(0) as u64, self.bounds.lock().await.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::{tests::entry, Body};
    use bytes::Bytes;

    fn sized(cost_pusd: i64, bytes: usize) -> Entry {
        let mut e = entry(Body::Json(Bytes::from(vec![b'x'; bytes])));
        e.meta.cost_pusd = cost_pusd;
        e.meta.expires_ms = i64::MAX;
        e
    }

    #[tokio::test]
    async fn survives_reopening_stays_within_its_size_and_purges_by_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        // Room for two entries (their headers differ by a few bytes of cost).
        let room = sized(0, 1000).encode().len() as u64 * 2 + 100;
        let k = |i: u8| CacheKey::from_bytes([i; 32]);
        {
            let tier = DiskTier::open(&path, room, CachePolicy::default())
                .await
                .unwrap();
            tier.put(&k(1), &sized(10_000_000_000, 1000), 0)
                .await
                .unwrap();
            tier.put(&k(2), &sized(1, 1000), 0).await.unwrap();
            assert_eq!(tier.put(&k(3), &sized(1, 1000), 0).await.unwrap(), 1);
            assert!(
                tier.get(&k(2), 0).await.unwrap().is_none(),
                "cheapest evicted"
            );
        }
        let tier = DiskTier::open(&path, room, CachePolicy::default())
            .await
            .unwrap();
        assert_eq!(tier.usage().await.unwrap().0, 2);
        assert_eq!(
            tier.get(&k(1), 0).await.unwrap(),
            Some(sized(10_000_000_000, 1000))
        );
        let mut expiring = sized(1, 10);
        expiring.meta.expires_ms = 5;
        tier.put(&k(4), &expiring, 0).await.unwrap();
        assert!(tier.get(&k(4), 5).await.unwrap().is_none(), "expired");
        let by_key = Purge {
            key_id: Some("k1".into()),
            ..Purge::default()
        };
        assert_eq!(
            tier.purge(&by_key).await.unwrap(),
            1,
            "k1 (k3 was evicted for k4)"
        );
        assert_eq!(tier.usage().await.unwrap(), (0, 0));
    }
}
