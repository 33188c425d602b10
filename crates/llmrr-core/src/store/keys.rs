//! API key rows. Only a hash of each secret is stored, with a short prefix for display.

use super::{now_ms, Store};
use crate::error::Result;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    /// The first characters of the secret, enough to recognise it.
    pub key_prefix: String,
    pub owner_user: Option<String>,
    pub owner_team: Option<String>,
    /// The routing tier (`[tiers]`); none: not limited by tier.
    pub tier: Option<String>,
    /// Models the key may use; empty means every model.
    pub allowed_models: Vec<String>,
    pub metadata: serde_json::Value,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    /// The key stops working at this time.
    pub expires_at_ms: Option<i64>,
    /// After a rotation: the previous secret works until this time.
    pub previous_valid_until_ms: Option<i64>,
    /// When the key was last used (written every few seconds, not per request).
    pub last_used_at_ms: Option<i64>,
    /// An admin key may use the admin API and the dashboard as the master key does.
    pub admin: bool,
    /// The stored model list is not readable (corrupt): the key must fail closed.
    #[serde(skip)]
    pub allowed_models_unreadable: bool,
}

pub struct NewKeyRow<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub key_hash: &'a str,
    pub key_prefix: &'a str,
    pub owner_user: Option<&'a str>,
    pub owner_team: Option<&'a str>,
    pub tier: Option<&'a str>,
    pub allowed_models: &'a [String],
    pub metadata: &'a serde_json::Value,
    pub expires_at_ms: Option<i64>,
    pub admin: bool,
}

const COLUMNS: &str = "id, name, key_prefix, owner_user, owner_team, tier, allowed_models, \
                       metadata, created_at_ms, revoked_at_ms, expires_at_ms, \
                       previous_valid_until_ms, last_used_at_ms, role";

/// The `role` column of an admin key (none: a key that calls models and reads its own spend).
const ADMIN_ROLE: &str = "admin";

fn from_row(row: &sqlx::any::AnyRow) -> Result<KeyRow> {
    let models: String = row.try_get("allowed_models")?;
    let metadata: String = row.try_get("metadata")?;
    let parsed_models = serde_json::from_str::<Vec<String>>(&models);
    Ok(KeyRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        key_prefix: row.try_get("key_prefix")?,
        owner_user: row.try_get("owner_user")?,
        owner_team: row.try_get("owner_team")?,
        tier: row.try_get("tier")?,
        allowed_models_unreadable: parsed_models.is_err(),
        allowed_models: parsed_models.unwrap_or_default(),
        metadata: serde_json::from_str(&metadata).unwrap_or(serde_json::Value::Null),
        created_at_ms: row.try_get("created_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        previous_valid_until_ms: row.try_get("previous_valid_until_ms")?,
        last_used_at_ms: row.try_get("last_used_at_ms")?,
        admin: row.try_get::<Option<String>, _>("role")?.as_deref() == Some(ADMIN_ROLE),
    })
}

impl Store {
    pub async fn insert_key(&self, k: &NewKeyRow<'_>) -> Result<KeyRow> {
        let created = now_ms();
        let models = serde_json::to_string(k.allowed_models).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO api_keys (id, name, key_hash, key_prefix, owner_user, owner_team, \
             tier, allowed_models, metadata, created_at_ms, revoked_at_ms, expires_at_ms, role) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $12)",
        )
        .bind(k.id)
        .bind(k.name)
        .bind(k.key_hash)
        .bind(k.key_prefix)
        .bind(k.owner_user)
        .bind(k.owner_team)
        .bind(k.tier)
        .bind(models)
        .bind(k.metadata.to_string())
        .bind(created)
        .bind(k.expires_at_ms)
        .bind(k.admin.then_some(ADMIN_ROLE))
        .execute(&self.pool)
        .await?;
        Ok(KeyRow {
            id: k.id.to_owned(),
            name: k.name.to_owned(),
            key_prefix: k.key_prefix.to_owned(),
            owner_user: k.owner_user.map(str::to_owned),
            owner_team: k.owner_team.map(str::to_owned),
            tier: k.tier.map(str::to_owned),
            allowed_models: k.allowed_models.to_vec(),
            metadata: k.metadata.clone(),
            created_at_ms: created,
            revoked_at_ms: None,
            expires_at_ms: k.expires_at_ms,
            previous_valid_until_ms: None,
            last_used_at_ms: None,
            admin: k.admin,
            allowed_models_unreadable: false,
        })
    }

    /// The key (not revoked) with this hash — its current secret, or its previous one within
    /// the rotation's grace. `.1`: found by the previous secret. An expired key is returned
    /// (the caller says "expired" rather than "invalid").
    pub async fn find_active_key(&self, key_hash: &str) -> Result<Option<(KeyRow, bool)>> {
        let now = now_ms();
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, key_hash FROM api_keys WHERE (key_hash = $1 \
             OR (previous_hash = $1 AND previous_valid_until_ms > $2)) \
             AND revoked_at_ms IS NULL"
        ))
        .bind(key_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let current: String = row.try_get("key_hash")?;
        Ok(Some((from_row(&row)?, current != key_hash)))
    }

    /// Give the key a new secret (its hash); the old one keeps working until
    /// `previous_valid_until_ms`. `false`: no active key has that id.
    pub async fn rotate_key(
        &self,
        id: &str,
        new_hash: &str,
        new_prefix: &str,
        previous_valid_until_ms: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET previous_hash = key_hash, previous_valid_until_ms = $1, \
             key_hash = $2, key_prefix = $3, updated_at_ms = $4 \
             WHERE id = $5 AND revoked_at_ms IS NULL",
        )
        .bind(previous_valid_until_ms)
        .bind(new_hash)
        .bind(new_prefix)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Set (or clear) when the key expires.
    pub async fn set_key_expiry(&self, id: &str, expires_at_ms: Option<i64>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET expires_at_ms = $1, updated_at_ms = $2 \
             WHERE id = $3 AND revoked_at_ms IS NULL",
        )
        .bind(expires_at_ms)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Record when keys were last used.
    pub async fn touch_keys(&self, used: &[(String, i64)]) -> Result<()> {
        for (id, at) in used {
            sqlx::query(
                "UPDATE api_keys SET last_used_at_ms = $1 WHERE id = $2 \
                 AND (last_used_at_ms IS NULL OR last_used_at_ms < $1)",
            )
            .bind(*at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// The key and the hash of its current secret, in one read.
    pub async fn key_and_hash(&self, id: &str) -> Result<Option<(KeyRow, String)>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, key_hash FROM api_keys WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((from_row(&r)?, r.try_get("key_hash")?)))
            .transpose()
    }

    pub async fn key(&self, id: &str) -> Result<Option<KeyRow>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_keys ORDER BY created_at_ms, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Revoke by id; `false` when no active key has that id.
    pub async fn revoke_key(&self, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ids of the keys revoked, rotated or otherwise changed at or after `since_ms`: every
    /// cached copy of them (any of their secrets, even one two rotations old) must be read
    /// again.
    pub async fn changed_keys_since(&self, since_ms: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM api_keys WHERE revoked_at_ms >= $1 OR updated_at_ms >= $1",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The stored hash of a key's current secret: what a dashboard session checks its
    /// signing-in secret against (and tests check what is at rest).
    pub async fn key_hash(&self, id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT key_hash FROM api_keys WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
