//! API keys. The master key (from the environment) may do everything; virtual keys are
//! created through the admin API or the CLI, shown once, stored as a BLAKE3 hash (the secrets
//! are 192 random bits, so a fast hash is as strong as a slow one), and carry an owner, the
//! models they may use and metadata.
//!
//! Layout: this file has the key types and [`Authenticator::authenticate`]; `cache` what is
//! remembered between requests (fresh, stale-on-error, unknown keys, failures per client);
//! `create` the checks a new key must pass; `revocation` the watch that makes a revoke (or a
//! rotation, an expiry change) made anywhere (another replica, the CLI) effective here within
//! [`REVOCATION_POLL`], and that records when keys were last used.
//!
//! Lifecycle: a key may expire (`expires_at_ms`); a rotation gives it a new secret while the
//! old one keeps working until the grace period ends; both are checked at every use, cached
//! or not.

mod cache;
mod create;
mod revocation;
mod session;

pub use cache::{FAILURE_WINDOW, MAX_FAILURES_PER_MINUTE, STALE_TTL};
pub use create::{create_key, display_prefix, new_secret, KeyRules, MAX_NAME_CHARS};
pub use revocation::REVOCATION_POLL;
pub use session::{NewSession, Session, SESSION_TTL};

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::store::{KeyRow, Store};
use cache::KeyCache;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

pub const KEY_PREFIX: &str = "sk-llmrr-";
/// A store lookup of a key that takes longer than this fails fast (503, or the stale copy).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// An admin key: the admin API and the dashboard, as the master key.
    pub is_admin: bool,
    /// The secret used stops working at this time (expiry, or a rotation's grace).
    pub valid_until_ms: Option<i64>,
    /// When the key was created (Unix ms; 0: the master key or none): a key newer than a
    /// replica's last look at the limit rules makes it look again before admitting.
    pub created_at_ms: i64,
}

impl KeyContext {
    /// The master key or an admin key: the admin API and the dashboard's admin pages.
    pub fn may_administer(&self) -> bool {
        self.is_master || self.is_admin
    }

    pub fn may_use(&self, model: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|m| m.contains(model))
    }

    fn from_row(row: KeyRow, via_previous: bool) -> Self {
        let grace = row.previous_valid_until_ms.filter(|_| via_previous);
        let valid_until_ms = match (row.expires_at_ms, grace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        KeyContext {
            valid_until_ms,
            ..Self::from_row_unchecked(row)
        }
    }

    fn from_row_unchecked(row: KeyRow) -> Self {
        if row.allowed_models_unreadable {
            // Fail closed: a key whose model list cannot be read may use no model at all.
            tracing::error!(key_id = %row.id, "the key's allowed_models cannot be read; it may use no model");
            return KeyContext {
                allowed_models: Some(HashSet::new()),
                key_id: Some(row.id),
                key_name: Some(row.name),
                user: row.owner_user,
                team: row.owner_team,
                tier: row.tier,
                is_master: false,
                is_admin: false,
                valid_until_ms: None,
                created_at_ms: row.created_at_ms,
            };
        }
        KeyContext {
            key_id: Some(row.id),
            key_name: Some(row.name),
            user: row.owner_user,
            team: row.owner_team,
            tier: row.tier,
            allowed_models: (!row.allowed_models.is_empty())
                .then(|| row.allowed_models.into_iter().collect()),
            is_master: false,
            is_admin: row.admin,
            valid_until_ms: None,
            created_at_ms: row.created_at_ms,
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
    /// RFC 3339 time at which the key stops working…
    #[serde(default)]
    pub expires_at: Option<String>,
    /// …or seconds from now.
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
    /// Rate limits, quotas, concurrency and priority of the key (a `key:ID` limit rule).
    #[serde(default)]
    pub limits: Option<crate::limits::LimitSet>,
    /// An admin key (`true`): may use the admin API and sign in to the dashboard as an
    /// administrator. Otherwise the key calls models and reads its own spend.
    #[serde(default)]
    pub admin: bool,
}

/// An RFC 3339 time or seconds from `now_ms` as Unix ms; in the past is refused.
pub fn expiry_ms(at: Option<&str>, in_secs: Option<u64>, now_ms: i64) -> Result<Option<i64>> {
    let ms = match (at, in_secs) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "give `expires_at` or `expires_in_secs`, not both",
                Some("expires_at".into()),
            ))
        }
        (Some(t), None) => Some(
            t.parse::<jiff::Timestamp>()
                .map_err(|e| {
                    Error::invalid(
                        format!("`expires_at` must be an RFC 3339 time ({e})"),
                        Some("expires_at".into()),
                    )
                })?
                .as_millisecond(),
        ),
        (None, Some(s)) => Some(now_ms.saturating_add(s.min(1 << 40).saturating_mul(1000) as i64)),
        (None, None) => None,
    };
    if ms.is_some_and(|ms| ms <= now_ms) {
        return Err(Error::invalid(
            "the expiry is in the past",
            Some("expires_at".into()),
        ));
    }
    Ok(ms)
}

impl NewKey {
    pub fn expires_at_ms(&self, now_ms: i64) -> Result<Option<i64>> {
        expiry_ms(self.expires_at.as_deref(), self.expires_in_secs, now_ms)
    }
}

/// A rotated key: its id and its new secret (shown once).
#[derive(Debug, serde::Serialize)]
pub struct RotatedKey {
    pub id: String,
    pub key: String,
    /// The previous secret works until then.
    pub previous_valid_until_ms: i64,
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

/// A cloneable handle; the revocation watch holds it weakly and stops when it is dropped.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    master: Option<Secret>,
    store: Store,
    cache: KeyCache,
    rules: KeyRules,
    anonymous: Arc<KeyContext>,
    master_ctx: Arc<KeyContext>,
    /// Key id -> when it was last used, written to the store by the watch.
    used: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

/// What a request with the key of `row` would be, unless the key is revoked or expired.
pub(crate) fn active_context(row: KeyRow) -> Option<Arc<KeyContext>> {
    let now = crate::store::now_ms();
    if row.revoked_at_ms.is_some() || row.expires_at_ms.is_some_and(|at| at <= now) {
        return None;
    }
    Some(Arc::new(KeyContext::from_row(row, false)))
}

impl Authenticator {
    /// `rules`: what a new key may name; `cache_ttl`: how long a key found in the store is
    /// served without asking again. Starts the revocation watch on the current runtime.
    pub fn new(master: Option<Secret>, store: Store, rules: KeyRules, cache_ttl: Duration) -> Self {
        let auth = Authenticator {
            inner: Arc::new(Inner {
                master,
                store,
                cache: KeyCache::new(cache_ttl),
                rules,
                anonymous: Arc::new(KeyContext::default()),
                master_ctx: Arc::new(KeyContext {
                    is_master: true,
                    key_name: Some("master".into()),
                    ..Default::default()
                }),
                used: Default::default(),
            }),
        };
        revocation::spawn_watch(&auth);
        auth
    }

    pub fn has_master_key(&self) -> bool {
        self.inner.master.is_some()
    }

    /// Check the presented key. Without a master key configured (loopback only) a request
    /// without a key is let through anonymously; a presented key is always checked.
    ///
    /// Known keys come from the cache; while the store fails they are served from the stale
    /// copy (bounded by [`STALE_TTL`]); a lookup fails fast ([`LOOKUP_TIMEOUT`], then 503). A
    /// client address with more than [`MAX_FAILURES_PER_MINUTE`] failures gets 429 for keys
    /// the cache does not know, without a store query.
    pub async fn authenticate(
        &self,
        presented: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Arc<KeyContext>> {
        let inner = &self.inner;
        let Some(key) = presented.filter(|k| !k.is_empty()) else {
            return match inner.master {
                None => Ok(inner.anonymous.clone()),
                Some(_) => Err(Error::Unauthorized {
                    message: "missing API key: send it as `Authorization: Bearer <key>`".into(),
                }),
            };
        };
        if let Some(master) = &inner.master {
            if bool::from(key.as_bytes().ct_eq(master.expose().as_bytes())) {
                return Ok(inner.master_ctx.clone());
            }
        }
        let hash = hash_key(key);
        let found = match inner.cache.get(&hash) {
            Some(hit) => hit,
            // A throttled address still gets the keys known from before (behind a proxy, all
            // clients share one address); only unknown keys are refused unasked.
            None if inner.cache.throttled(client) => match inner.cache.stale(&hash) {
                Some(key) => Some(key),
                None => {
                    return Err(Error::Throttled {
                        message: "too many failed authentications from this address; try \
                                  again later"
                            .into(),
                        retry_after: Some(FAILURE_WINDOW),
                    })
                }
            },
            None => self.look_up(hash.clone()).await?,
        };
        let key = found.ok_or_else(|| {
            inner.cache.failed(client);
            Error::Unauthorized {
                message: "invalid API key".into(),
            }
        })?;
        let now = crate::store::now_ms();
        if key.valid_until_ms.is_some_and(|until| until <= now) {
            // The cached copy stays: it is refused again without a store query.
            inner.cache.failed(client);
            return Err(Error::Unauthorized {
                message: "this API key has expired (or was rotated and its grace period is over)"
                    .into(),
            });
        }
        if let Some(id) = &key.key_id {
            let mut used = inner.used.lock().unwrap_or_else(|p| p.into_inner());
            match used.get_mut(id) {
                Some(at) => *at = now,
                None => {
                    used.insert(id.clone(), now);
                }
            }
        }
        Ok(key)
    }

    /// What a request made with key `id` would be (`None`: the master key, or no key where
    /// none is configured), read from the store; `Ok(None)`: the key is gone (revoked,
    /// expired, deleted). `cache warm` replays requests as the keys that made them.
    pub async fn context_of(&self, id: Option<&str>) -> Result<Option<Arc<KeyContext>>> {
        let inner = &self.inner;
        let Some(id) = id else {
            return Ok(Some(match inner.master {
                Some(_) => inner.master_ctx.clone(),
                None => inner.anonymous.clone(),
            }));
        };
        Ok(inner.store.key(id).await?.and_then(active_context))
    }

    /// The keys used since the last call, with when (the watch writes them to the store).
    pub(crate) fn take_used(&self) -> Vec<(String, i64)> {
        let mut used = self.inner.used.lock().unwrap_or_else(|p| p.into_inner());
        used.drain().collect()
    }

    /// A new secret for key `id`; the old one works for `grace` more.
    pub async fn rotate_key(&self, id: &str, grace: Duration) -> Result<Option<RotatedKey>> {
        let secret = new_secret();
        let until =
            crate::store::now_ms().saturating_add(grace.as_millis().min(i64::MAX as u128) as i64);
        let store = &self.inner.store;
        if !store
            .rotate_key(id, &hash_key(&secret), display_prefix(&secret), until)
            .await?
        {
            return Ok(None);
        }
        // Every cached copy, whichever secret it was found by: the previous secret's copy
        // must learn the grace period, an older one stops at once.
        self.inner.cache.forget_key(id);
        self.inner.cache.forget_unknown();
        Ok(Some(RotatedKey {
            id: id.to_owned(),
            key: secret,
            previous_valid_until_ms: until,
        }))
    }

    /// Set or clear key `id`'s expiry.
    pub async fn set_key_expiry(&self, id: &str, expires_at_ms: Option<i64>) -> Result<bool> {
        let done = self.inner.store.set_key_expiry(id, expires_at_ms).await?;
        self.inner.cache.forget_key(id);
        Ok(done)
    }

    async fn look_up(&self, hash: String) -> Result<Option<Arc<KeyContext>>> {
        let inner = &self.inner;
        let looked_up = tokio::time::timeout(LOOKUP_TIMEOUT, inner.store.find_active_key(&hash))
            .await
            .unwrap_or_else(|_| Err(Error::Internal("the key lookup timed out".into())));
        match looked_up {
            Ok(row) => {
                let key = row.map(|(row, previous)| Arc::new(KeyContext::from_row(row, previous)));
                inner.cache.found(hash, key.clone());
                Ok(key)
            }
            Err(e) => {
                metrics::counter!(crate::telemetry::AUTH_STORE_ERRORS).increment(1);
                match inner.cache.stale(&hash) {
                    Some(key) => {
                        tracing::warn!(error = %e, "key store failing: serving a known key from the cache");
                        Ok(Some(key))
                    }
                    None => {
                        tracing::error!(error = %e, "key store failing: cannot check a key");
                        Err(Error::Unavailable {
                            message: "the gateway cannot check API keys right now".into(),
                            retry_after: Some(Duration::from_secs(1)),
                        })
                    }
                }
            }
        }
    }

    pub async fn create_key(&self, new: NewKey) -> Result<CreatedKey> {
        let created = create_key(&self.inner.store, &self.inner.rules, new).await?;
        self.inner.cache.forget_unknown();
        Ok(created)
    }

    pub async fn revoke_key(&self, id: &str) -> Result<bool> {
        let revoked = self.inner.store.revoke_key(id).await?;
        // Only this key (both its secrets): the others' stale copies must survive for a
        // later store outage.
        self.inner.cache.forget_key(id);
        Ok(revoked)
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyRow>> {
        self.inner.store.list_keys().await
    }
}
