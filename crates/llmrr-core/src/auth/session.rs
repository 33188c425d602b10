//! Dashboard sessions: signing in with a key gives a random session secret (kept by the
//! browser in an HttpOnly cookie) and a CSRF token (sent back on every write). Only a hash of
//! the secret is stored, in the store every replica shares. A session lives
//! [`SESSION_TTL`] at most, and never longer than the secret that signed in: each use reads
//! the key again, so revoking, expiring or rotating the key (or changing the master key) ends
//! its sessions at once.

use super::{hash_key, Authenticator, KeyContext};
use crate::error::{Error, Result};
use rand::RngCore;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// How long a dashboard session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// A session just made: `secret` goes in the cookie, `csrf` to the page.
pub struct NewSession {
    pub secret: String,
    pub csrf: String,
    pub key: Arc<KeyContext>,
    pub expires_at_ms: i64,
}

/// A signed-in session, as a request presents it.
pub struct Session {
    pub key: Arc<KeyContext>,
    csrf: String,
}

impl Session {
    /// Whether `presented` is the session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        presented.len() == self.csrf.len()
            && bool::from(presented.as_bytes().ct_eq(self.csrf.as_bytes()))
    }

    pub fn csrf(&self) -> &str {
        &self.csrf
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Authenticator {
    /// Sign in with a key: the master key, or any active virtual key (an admin key gets the
    /// admin pages; any other key sees its own spend). A wrong key counts as a failure of
    /// `client`, as on the API.
    pub async fn sign_in(&self, presented: &str, client: Option<IpAddr>) -> Result<NewSession> {
        if presented.trim().is_empty() {
            return Err(Error::Unauthorized {
                message: "give an API key to sign in".into(),
            });
        }
        let key = self.authenticate(Some(presented.trim()), client).await?;
        let secret_hash = hash_key(presented.trim());
        match &key.key_id {
            None if !key.is_master => {
                return Err(Error::Unauthorized {
                    message: "sign in with the master key or a virtual key".into(),
                })
            }
            // A rotated key's previous secret still calls models during its grace, but a
            // session lasts only as long as the current secret: it would end at once.
            Some(id) if self.inner.store.key_hash(id).await?.as_deref() != Some(&secret_hash) => {
                return Err(Error::Unauthorized {
                    message: "this key was rotated: sign in with its new secret".into(),
                })
            }
            _ => {}
        }
        let secret = random_hex();
        let csrf = random_hex();
        let expires_at_ms = crate::store::now_ms() + SESSION_TTL.as_millis() as i64;
        let expires_at_ms = key
            .valid_until_ms
            .map_or(expires_at_ms, |k| k.min(expires_at_ms));
        let key_id = if key.is_master {
            None
        } else {
            key.key_id.as_deref()
        };
        self.inner
            .store
            .insert_session(
                &hash_key(&secret),
                key_id,
                &secret_hash,
                &csrf,
                expires_at_ms,
            )
            .await?;
        Ok(NewSession {
            secret,
            csrf,
            key,
            expires_at_ms,
        })
    }

    /// The session whose secret is `secret`, with its key as it is now; `None`: no such
    /// session, expired, or the secret that signed in no longer works (the key revoked,
    /// expired or rotated; the master key changed or gone).
    pub async fn session(&self, secret: &str) -> Result<Option<Session>> {
        let Some(row) = self.inner.store.session(&hash_key(secret)).await? else {
            return Ok(None);
        };
        let same = |current: &str| bool::from(current.as_bytes().ct_eq(row.secret_hash.as_bytes()));
        let key = match &row.key_id {
            None => self
                .inner
                .master
                .as_ref()
                .filter(|m| same(&hash_key(m.expose())))
                .map(|_| self.inner.master_ctx.clone()),
            Some(id) => match self.inner.store.key_and_hash(id).await? {
                Some((key, current)) if same(&current) => super::active_context(key),
                _ => None,
            },
        };
        Ok(key.map(|key| Session {
            key,
            csrf: row.csrf,
        }))
    }

    /// End the session (on every replica). `false`: there was none.
    pub async fn sign_out(&self, secret: &str) -> Result<bool> {
        self.inner.store.delete_session(&hash_key(secret)).await
    }
}
