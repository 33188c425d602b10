//! What the authenticator remembers between requests, each part bounded on its own so that
//! one part cannot crowd out another:
//!
//! - `fresh`: keys found active in the store, served without a query for `server.key_cache_secs`
//!   (a revoke still reaches every server within the revocation watch's poll);
//! - `stale`: the same keys for longer ([`STALE_TTL`]), served only while the store fails
//!   (stale-on-error: a store outage does not lock out known keys);
//! - `unknown`: keys the store does not know, briefly, in a small cache of their own (a flood
//!   of random keys cannot evict a valid key);
//! - `failures`: failed authentications per client address in the current minute; past the
//!   limit that client's unknown keys are refused without a store query.

use super::KeyContext;
use moka::sync::Cache;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const STALE_TTL: Duration = Duration::from_secs(15 * 60);
const UNKNOWN_TTL: Duration = Duration::from_secs(5);
const KNOWN_CAPACITY: u64 = 100_000;
const UNKNOWN_CAPACITY: u64 = 10_000;
const CLIENTS_CAPACITY: u64 = 100_000;
/// Failed authentications one client address may make per minute before it is slowed down.
pub const MAX_FAILURES_PER_MINUTE: u32 = 30;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub(super) struct KeyCache {
    fresh: Cache<String, Arc<KeyContext>>,
    stale: Cache<String, Arc<KeyContext>>,
    unknown: Cache<String, ()>,
    failures: Cache<IpAddr, Arc<AtomicU32>>,
}

impl KeyCache {
    pub(super) fn new(fresh_ttl: Duration) -> Self {
        let known = |ttl| {
            Cache::builder()
                .max_capacity(KNOWN_CAPACITY)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build()
        };
        KeyCache {
            fresh: known(fresh_ttl),
            stale: known(STALE_TTL.max(fresh_ttl)),
            unknown: Cache::builder()
                .max_capacity(UNKNOWN_CAPACITY)
                .time_to_live(UNKNOWN_TTL)
                .build(),
            failures: Cache::builder()
                .max_capacity(CLIENTS_CAPACITY)
                .time_to_live(FAILURE_WINDOW)
                .build(),
        }
    }

    /// `Some(Some(key))`: known; `Some(None)`: known to be unknown; `None`: ask the store.
    pub(super) fn get(&self, hash: &str) -> Option<Option<Arc<KeyContext>>> {
        if let Some(key) = self.fresh.get(hash) {
            return Some(Some(key));
        }
        self.unknown.get(hash).map(|()| None)
    }

    pub(super) fn stale(&self, hash: &str) -> Option<Arc<KeyContext>> {
        self.stale.get(hash)
    }

    pub(super) fn found(&self, hash: String, key: Option<Arc<KeyContext>>) {
        match key {
            Some(key) => {
                self.stale.insert(hash.clone(), key.clone());
                self.fresh.insert(hash, key);
            }
            None => self.unknown.insert(hash, ()),
        }
    }

    /// Key `id` changed (revoked, rotated, new expiry): forget every copy of it, whichever
    /// secret it was found by.
    pub(super) fn forget_key(&self, id: &str) {
        for cache in [&self.fresh, &self.stale] {
            let id = id.to_owned();
            let dropped =
                cache.invalidate_entries_if(move |_, k| k.key_id.as_deref() == Some(id.as_str()));
            if let Err(e) = dropped {
                tracing::warn!(error = %e, "keys: cached copies could not be dropped; clearing all");
                cache.invalidate_all();
            }
        }
    }

    /// A key was created: no cached "unknown" may outlive it.
    pub(super) fn forget_unknown(&self) {
        self.unknown.invalidate_all();
    }

    /// Whether this client has failed too often this minute.
    pub(super) fn throttled(&self, client: Option<IpAddr>) -> bool {
        client
            .and_then(|ip| self.failures.get(&network(ip)))
            .is_some_and(|n| n.load(Ordering::Relaxed) >= MAX_FAILURES_PER_MINUTE)
    }

    pub(super) fn failed(&self, client: Option<IpAddr>) {
        if let Some(ip) = client {
            self.failures
                .get_with(network(ip), || Arc::new(AtomicU32::new(0)))
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Failures are counted per IPv4 address and per IPv6 /64 (one host can use a whole /64).
fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
    }
}
