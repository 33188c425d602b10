//! L1: answers in memory, bounded by bytes, each with its own expiry, evicted by the
//! cost-aware priority of [`super::policy`].
//!
//! Our own map rather than moka: moka's eviction (TinyLFU + LRU) weighs size and frequency but
//! cannot weigh what an answer cost to make, which is the point of this tier's policy. One
//! mutex guards a hash map and two ordered indexes (priority, expiry); every operation is
//! O(log n) and holds the lock for well under a microsecond.

use super::entry::Entry;
use super::key::CacheKey;
use super::policy;
use crate::config::cache::CachePolicy;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

struct Slot {
    entry: Arc<Entry>,
    hits: u64,
    bytes: u64,
    /// Its place in `by_priority`: (priority bits, sequence).
    rank: (u64, u64),
    /// Its place in `by_expiry`.
    expiry: (i64, u64),
    cost_usd: f64,
}

#[derive(Default)]
struct State {
    map: HashMap<CacheKey, Slot>,
    by_priority: BTreeMap<(u64, u64), CacheKey>,
    by_expiry: BTreeMap<(i64, u64), CacheKey>,
    bytes: u64,
    /// GDSF's clock: the priority of the last entry evicted.
    clock: f64,
    seq: u64,
    evictions: u64,
}

/// Entries and bytes held, evictions so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub entries: u64,
    pub bytes: u64,
    pub evictions: u64,
}

pub struct MemoryTier {
    state: Mutex<State>,
    capacity: u64,
    policy: CachePolicy,
}

impl MemoryTier {
    pub fn new(capacity: u64, policy: CachePolicy) -> Self {
        MemoryTier {
            state: Mutex::default(),
            capacity,
            policy,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry under `key`, unless it expired by `now_ms`; a hit raises its priority.
    pub fn get(&self, key: &CacheKey, now_ms: i64) -> Option<Arc<Entry>> {
        let mut s = self.lock();
        let expired = s.map.get(key)?.entry.meta.expires_ms <= now_ms;
        if expired {
            s.remove(key);
            return None;
        }
        let clock = s.clock;
        s.seq += 1;
        let seq = s.seq;
        let slot = s.map.get_mut(key)?;
        slot.hits += 1;
        let old = slot.rank;
        let p = policy::priority(&self.policy, clock, slot.hits, slot.cost_usd, slot.bytes);
        slot.rank = (p.to_bits(), seq);
        let (entry, rank) = (slot.entry.clone(), slot.rank);
        s.by_priority.remove(&old);
        s.by_priority.insert(rank, *key);
        Some(entry)
    }

    /// Keep `entry` (replacing one under the same key), evicting expired entries first, then
    /// the lowest priorities, until it fits. Returns how many were evicted (an entry larger
    /// than the whole tier is not kept).
    pub fn insert(&self, key: CacheKey, entry: Arc<Entry>, now_ms: i64) -> u64 {
        let bytes = entry.size();
        let cost_usd = entry.meta.cost_pusd as f64 / 1e12;
        let mut s = self.lock();
        // A replacement drops the old answer even when the new one is not kept.
        s.remove(&key);
        if bytes > self.capacity {
            return 0;
        }
        let before = s.evictions;
        while let Some((&(at, seq), _)) = s.by_expiry.first_key_value() {
            if at > now_ms {
                break;
            }
            if let Some(k) = s.by_expiry.remove(&(at, seq)) {
                s.remove(&k);
                s.evictions += 1;
            }
        }
        while s.bytes + bytes > self.capacity {
            let Some((&(bits, _), &victim)) = s.by_priority.first_key_value() else {
                break;
            };
            s.clock = f64::from_bits(bits);
            s.remove(&victim);
            s.evictions += 1;
        }
        s.seq += 1;
        let seq = s.seq;
        let p = policy::priority(&self.policy, s.clock, 0, cost_usd, bytes);
        let rank = (p.to_bits(), seq);
        s.by_priority.insert(rank, key);
        let expiry = (entry.meta.expires_ms, seq);
        s.by_expiry.insert(expiry, key);
        s.bytes += bytes;
        s.map.insert(
            key,
            Slot {
                entry,
                hits: 0,
                bytes,
                rank,
                expiry,
                cost_usd,
            },
        );
        s.evictions - before
    }

    /// Drop every entry `purge` selects; returns how many.
    pub fn remove_where(&self, purge: impl Fn(&Entry) -> bool) -> u64 {
        let mut s = self.lock();
        let keys: Vec<CacheKey> = s
            .map
            .iter()
            .filter(|(_, slot)| purge(&slot.entry))
            .map(|(k, _)| *k)
            .collect();
        for k in &keys {
            s.remove(k);
        }
        keys.len() as u64
    }

    pub fn usage(&self) -> Usage {
        let s = self.lock();
        Usage {
            entries: s.map.len() as u64,
            bytes: s.bytes,
            evictions: s.evictions,
        }
    }
}

impl State {
    fn remove(&mut self, key: &CacheKey) {
        if let Some(slot) = self.map.remove(key) {
            self.by_priority.remove(&slot.rank);
            self.by_expiry.remove(&slot.expiry);
            self.bytes -= slot.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::{tests::entry, Body};
    use bytes::Bytes;

    fn sized(cost_pusd: i64, bytes: usize, expires_ms: i64) -> Arc<Entry> {
        let mut e = entry(Body::Json(Bytes::from(vec![b'x'; bytes])));
        e.meta.cost_pusd = cost_pusd;
        e.meta.expires_ms = expires_ms;
        Arc::new(e)
    }

    fn k(i: u8) -> CacheKey {
        CacheKey::from_bytes([i; 32])
    }

    #[test]
    fn bounded_by_bytes_evicting_cheap_rarely_hit_entries_first() {
        let one = sized(0, 1000, i64::MAX).size();
        let tier = MemoryTier::new(one * 3, CachePolicy::default());
        tier.insert(k(1), sized(10_000_000_000, 1000, i64::MAX), 0); // $0.01
        tier.insert(k(2), sized(1_000, 1000, i64::MAX), 0); // cheap
        tier.insert(k(3), sized(1_000, 1000, i64::MAX), 0); // cheap, but hit
        assert!(tier.get(&k(3), 0).is_some());
        assert_eq!(tier.insert(k(4), sized(1_000, 1000, i64::MAX), 0), 1);
        assert!(
            tier.get(&k(2), 0).is_none(),
            "the cheap entry never hit goes first"
        );
        assert!(tier.get(&k(1), 0).is_some());
        assert!(tier.get(&k(3), 0).is_some());
        let u = tier.usage();
        assert_eq!((u.entries, u.evictions), (3, 1));
        assert!(u.bytes <= one * 3);
    }

    #[test]
    fn entries_expire_on_their_own_time_and_expired_ones_go_first() {
        let one = sized(0, 100, 0).size();
        let tier = MemoryTier::new(one * 2, CachePolicy::default());
        tier.insert(k(1), sized(10_000_000_000, 100, 50), 0);
        tier.insert(k(2), sized(1, 100, 500), 0);
        assert!(tier.get(&k(1), 49).is_some());
        assert!(tier.get(&k(1), 50).is_none(), "expired");
        tier.insert(k(1), sized(10_000_000_000, 100, 60), 0);
        // At 100 the costly entry has expired: it goes, not the cheap live one.
        tier.insert(k(3), sized(1, 100, 500), 100);
        assert!(tier.get(&k(2), 100).is_some());
        assert!(tier.get(&k(3), 100).is_some());
        assert_eq!(tier.usage().entries, 2);
    }

    #[test]
    fn replacing_and_purging_keep_the_byte_count_exact() {
        let tier = MemoryTier::new(1 << 20, CachePolicy::default());
        tier.insert(k(1), sized(1, 100, i64::MAX), 0);
        tier.insert(k(1), sized(1, 300, i64::MAX), 0);
        assert_eq!(tier.usage().bytes, sized(1, 300, 0).size());
        tier.insert(k(2), sized(1, 100, i64::MAX), 0);
        assert_eq!(tier.remove_where(|e| e.meta.namespace == "team:a"), 2);
        assert_eq!(
            tier.usage(),
            Usage {
                entries: 0,
                bytes: 0,
                evictions: 0
            }
        );
        assert_eq!(tier.insert(k(3), sized(1, 2 << 20, i64::MAX), 0), 0);
        assert_eq!(tier.usage().entries, 0, "larger than the tier: not kept");
    }
}
