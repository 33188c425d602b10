//! Dashboard sign-in sessions. Only a hash of each session's secret is stored (as for keys),
//! with the key that signed in (none: the master key) and the session's CSRF token; every
//! replica reads the same rows, so a session works on all and a sign-out ends it on all.

use super::{now_ms, Store};
use crate::error::Result;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// The key that signed in; `None`: the master key.
    pub key_id: Option<String>,
    /// The hash of the secret that signed in: a session ends when its key's secret changes
    /// (a rotation; a new master key).
    pub secret_hash: String,
    pub csrf: String,
    pub expires_at_ms: i64,
}

impl Store {
    pub async fn insert_session(
        &self,
        id_hash: &str,
        key_id: Option<&str>,
        secret_hash: &str,
        csrf: &str,
        expires_at_ms: i64,
    ) -> Result<()> {
        let now = now_ms();
        // Expired sessions go as new ones come: the table holds live sessions only.
        sqlx::query("DELETE FROM ui_sessions WHERE expires_at_ms <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO ui_sessions (id_hash, key_id, secret_hash, csrf, created_at_ms, \
             expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id_hash)
        .bind(key_id)
        .bind(secret_hash)
        .bind(csrf)
        .bind(now)
        .bind(expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session with this hash, unless it has expired.
    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRow>> {
        let row = sqlx::query(
            "SELECT key_id, secret_hash, csrf, expires_at_ms FROM ui_sessions \
             WHERE id_hash = $1 AND expires_at_ms > $2",
        )
        .bind(id_hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SessionRow {
                key_id: r.try_get("key_id")?,
                secret_hash: r.try_get("secret_hash")?,
                csrf: r.try_get("csrf")?,
                expires_at_ms: r.try_get("expires_at_ms")?,
            })
        })
        .transpose()
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM ui_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
