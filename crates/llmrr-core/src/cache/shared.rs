//! L3: answers in the shared state (Redis with `[shared] redis_url`), read by every replica.
//!
//! Each entry is one value `e:{namespace tag}:{name tag}:{key}` with Redis's own expiry (the
//! cost-aware TTL); tags are short hashes, so purging a namespace or a route is one `SCAN
//! MATCH` and never mistakes one name for another. Redis's memory policy does the eviction
//! (`volatile-lfu` is the one to set: every entry has a TTL).

use super::disk::Purge;
use super::entry::{meta_of, Entry};
use super::key::CacheKey;
use crate::error::{Error, Result};
use crate::shared::SharedState;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Bytes read of an entry to learn who made it (its header).
const HEAD: usize = 4096;
/// A read on the request path waits at most this long: past it, a miss.
const READ_TIMEOUT: Duration = Duration::from_millis(250);
/// After a failure the tier is skipped this long (no request waits on a Redis that is down).
const COOLDOWN_MS: i64 = 5_000;

pub struct SharedTier {
    state: SharedState,
    /// Skipped until then (ms since the Unix epoch) after a failure.
    down_until_ms: AtomicI64,
}

fn tag(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex()[..16].to_owned()
}

impl SharedTier {
    pub fn new(state: SharedState) -> Self {
        SharedTier {
            state,
            down_until_ms: AtomicI64::new(0),
        }
    }

    /// False while the tier cools down after a failure (it is skipped, silently).
    pub fn available(&self) -> bool {
        self.down_until_ms.load(Ordering::Relaxed) <= crate::store::now_ms()
    }

    /// Run `op` unless the tier is cooling down after a failure; a failure (or a read past
    /// `limit`) starts a cooldown.
    async fn guarded<T>(
        &self,
        limit: Option<Duration>,
        op: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let now = crate::store::now_ms();
        if self.down_until_ms.load(Ordering::Relaxed) > now {
            return Err(Error::Shared("skipped: failed recently".into()));
        }
        let result = match limit {
            Some(d) => tokio::time::timeout(d, op)
                .await
                .unwrap_or_else(|_| Err(Error::Shared("timed out".into()))),
            None => op.await,
        };
        if result.is_err() {
            self.down_until_ms
                .store(crate::store::now_ms() + COOLDOWN_MS, Ordering::Relaxed);
        }
        result
    }

    fn name(key: &CacheKey, namespace: &str, name: &str) -> String {
        format!("e:{}:{}:{}", tag(namespace), tag(name), key.hex())
    }

    pub async fn get(&self, key: &CacheKey, namespace: &str, name: &str) -> Result<Option<Entry>> {
        let name = Self::name(key, namespace, name);
        let value = self
            .guarded(Some(READ_TIMEOUT), self.state.get(&name))
            .await?;
        Ok(value.and_then(|v| Entry::decode(&v)))
    }

    pub async fn put(&self, key: &CacheKey, entry: &Entry, ttl: Duration) -> Result<()> {
        let name = Self::name(key, &entry.meta.namespace, &entry.meta.name);
        self.guarded(None, self.state.set(&name, entry.encode(), ttl))
            .await
    }

    pub async fn purge(&self, p: &Purge) -> Result<u64> {
        let pattern = format!(
            "e:{}:{}:*",
            p.namespace.as_deref().map_or("*".into(), tag),
            p.route.as_deref().map_or("*".into(), tag)
        );
        let mut keys = self.state.keys_matching(&pattern).await?;
        if let Some(key_id) = &p.key_id {
            let mut made = Vec::new();
            for k in keys {
                let head = self.state.head(&k, HEAD).await?;
                if head
                    .and_then(|h| meta_of(&h))
                    .is_some_and(|m| m.key_id.as_ref() == Some(key_id))
                {
                    made.push(k);
                }
            }
            keys = made;
        }
        self.state.delete(&keys).await
    }

    /// Entries held (a SCAN: for stats, not the request path).
    pub async fn entries(&self) -> Result<u64> {
        Ok(self.state.keys_matching("e:*").await?.len() as u64)
    }
}
