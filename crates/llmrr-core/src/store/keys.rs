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
}

const COLUMNS: &str = "id, name, key_prefix, owner_user, owner_team, tier, allowed_models, \
                       metadata, created_at_ms, revoked_at_ms";

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
    })
}

impl Store {
    pub async fn insert_key(&self, k: &NewKeyRow<'_>) -> Result<KeyRow> {
        let created = now_ms();
        let models = serde_json::to_string(k.allowed_models).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO api_keys (id, name, key_hash, key_prefix, owner_user, owner_team, \
             tier, allowed_models, metadata, created_at_ms, revoked_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)",
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
            allowed_models_unreadable: false,
        })
    }

    /// The active (not revoked) key with this hash.
    pub async fn find_active_key(&self, key_hash: &str) -> Result<Option<KeyRow>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at_ms IS NULL"
        ))
        .bind(key_hash)
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

    /// Hashes of the keys revoked at or after `since_ms`.
    pub async fn revoked_since(&self, since_ms: i64) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT key_hash FROM api_keys WHERE revoked_at_ms >= $1")
                .bind(since_ms)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The stored hash of a key, for tests that check what is at rest.
    pub async fn key_hash(&self, id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT key_hash FROM api_keys WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
