//! API keys. The master key (from the environment) may do everything; virtual keys are
//! created through the admin API or the CLI, shown once, stored as a BLAKE3 hash (the secrets
//! are 192 random bits, so a fast hash is as strong as a slow one), and carry an owner, the
//! models they may use and metadata. Lookups are cached briefly so that the request path does
//! not hit the database; a revoke on this replica clears the cache at once, on others within
//! [`CACHE_TTL`].

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::store::{KeyRow, NewKeyRow, Store};
use rand::RngCore;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

pub const KEY_PREFIX: &str = "sk-llmrr-";
pub const CACHE_TTL: Duration = Duration::from_secs(30);

/// Who is calling, as the request path sees it.
#[derive(Debug, Clone, Default)]
pub struct KeyContext {
    pub key_id: Option<String>,
    pub key_name: Option<String>,
    pub user: Option<String>,
    pub team: Option<String>,
    /// The routing tier; `None`: not limited by tier.
    pub tier: Option<String>,
    /// `None`: every model.
    pub allowed_models: Option<HashSet<String>>,
    pub is_master: bool,
}

impl KeyContext {
    pub fn may_use(&self, model: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|m| m.contains(model))
    }

    fn from_row(row: KeyRow) -> Self {
        KeyContext {
            key_id: Some(row.id),
            key_name: Some(row.name),
            user: row.owner_user,
            team: row.owner_team,
            tier: row.tier,
            allowed_models: (!row.allowed_models.is_empty())
                .then(|| row.allowed_models.into_iter().collect()),
            is_master: false,
        }
    }
}

/// What to create.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    /// A tier of `[tiers]`.
    #[serde(default)]
    pub tier: Option<String>,
    /// Empty: every model.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// A created key: the row, and the secret, which is never available again.
#[derive(Debug, serde::Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub row: KeyRow,
    pub key: String,
}

pub fn hash_key(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

#[derive(Clone)]
pub struct Authenticator {
    master: Option<Secret>,
    store: Store,
    cache: moka::sync::Cache<String, Option<Arc<KeyContext>>>,
    anonymous: Arc<KeyContext>,
    master_ctx: Arc<KeyContext>,
}

impl Authenticator {
    pub fn new(master: Option<Secret>, store: Store) -> Self {
        Authenticator {
            master,
            store,
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(CACHE_TTL)
                .build(),
            anonymous: Arc::new(KeyContext::default()),
            master_ctx: Arc::new(KeyContext {
                is_master: true,
                key_name: Some("master".into()),
                ..Default::default()
            }),
        }
    }

    pub fn has_master_key(&self) -> bool {
        self.master.is_some()
    }

    /// Check the presented key. Without a master key configured (loopback only) a request
    /// without a key is let through anonymously; a presented key is always checked.
    pub async fn authenticate(&self, presented: Option<&str>) -> Result<Arc<KeyContext>> {
        let Some(key) = presented.filter(|k| !k.is_empty()) else {
            return match self.master {
                None => Ok(self.anonymous.clone()),
                Some(_) => Err(Error::Unauthorized {
                    message: "missing API key: send it as `Authorization: Bearer <key>`".into(),
                }),
            };
        };
        if let Some(master) = &self.master {
            if bool::from(key.as_bytes().ct_eq(master.expose().as_bytes())) {
                return Ok(self.master_ctx.clone());
            }
        }
        let hash = hash_key(key);
        let found = match self.cache.get(&hash) {
            Some(hit) => hit,
            None => {
                let ctx = self
                    .store
                    .find_active_key(&hash)
                    .await?
                    .map(|row| Arc::new(KeyContext::from_row(row)));
                self.cache.insert(hash, ctx.clone());
                ctx
            }
        };
        found.ok_or_else(|| Error::Unauthorized {
            message: "invalid API key".into(),
        })
    }

    pub async fn create_key(&self, new: NewKey) -> Result<CreatedKey> {
        let created = create_key(&self.store, new).await?;
        // A cached "unknown key" must not outlive the key's creation.
        self.cache.invalidate_all();
        Ok(created)
    }

    pub async fn revoke_key(&self, id: &str) -> Result<bool> {
        let revoked = self.store.revoke_key(id).await?;
        self.cache.invalidate_all();
        Ok(revoked)
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyRow>> {
        self.store.list_keys().await
    }
}

/// Create a key directly in the store (the CLI does this without a running server).
pub async fn create_key(store: &Store, new: NewKey) -> Result<CreatedKey> {
    if new.name.trim().is_empty() {
        return Err(Error::invalid(
            "a key needs a non-empty `name`",
            Some("name".into()),
        ));
    }
    let metadata = new.metadata.unwrap_or_else(|| serde_json::json!({}));
    if !metadata.is_object() {
        return Err(Error::invalid(
            "`metadata` must be a JSON object",
            Some("metadata".into()),
        ));
    }
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    let id = format!("key_{}", uuid::Uuid::now_v7().simple());
    let row = store
        .insert_key(&NewKeyRow {
            id: &id,
            name: new.name.trim(),
            key_hash: &hash_key(&secret),
            key_prefix: &secret[..KEY_PREFIX.len() + 4],
            owner_user: new.user.as_deref(),
            owner_team: new.team.as_deref(),
            tier: new.tier.as_deref(),
            allowed_models: &new.models,
            metadata: &metadata,
        })
        .await?;
    Ok(CreatedKey { row, key: secret })
}
