//! Shared state: what several replicas must agree on (budget counters, rate limits, quotas and
//! concurrency; the L3 cache builds on the same layer), behind one small interface with two
//! backends:
//!
//! - [`memory`]: in-process (the embedded default: one replica, no server);
//! - [`redis`]: `[shared] redis_url`; every check-and-update is one Lua script, atomic across
//!   replicas, through a `redis` connection manager (reconnects on its own).
//!
//! Redis is a cache of truth, never its only copy: a sentinel key marks its data as complete;
//! when it is missing (a flush, a restart without persistence) a reserve answers
//! [`Reserve::Lost`] and the caller rebuilds the counters from its ledger. A Redis outage is
//! an `Err(Error::Shared)`: the caller decides (per feature) whether to fall back to
//! per-replica state or to refuse.
//!
//! Counters: a reservation (`id`) holds an amount on several counters at once, all or none,
//! only while every counter stays within its limit; it expires after `hold` (a replica that
//! died cannot hold it forever). Settling replaces the held amount with the real one.
//!
//! Rates: [`SharedState::rate`] checks several GCRA limits ([`gcra`]) at once, all or none;
//! [`SharedState::rate_adjust`] moves one by a settled difference.

pub mod gcra;
pub mod memory;
pub mod redis;

use crate::error::Result;
use std::time::Duration;

/// One counter of a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub key: String,
    /// Spent + held + `amount` may not pass it; `None`: counted, never refused.
    pub limit: Option<i64>,
    pub amount: i64,
    /// The counter is dropped this long after its last change (the end of its period);
    /// `None`: kept.
    pub ttl: Option<Duration>,
}

/// What a reserve found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// Held on every counter.
    Held,
    /// The counter at this index has no room: `used` is its spent + held amount.
    Full { index: usize, used: i64 },
    /// The shared data was lost (see the module docs): rebuild, then try again.
    Lost,
}

/// A counter after a settle or as read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub spent: i64,
    pub held: i64,
}

/// One rate limit of a check: `cost` units against `limit` per `period` on `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    pub key: String,
    pub limit: u64,
    pub period: Duration,
    /// Units this request takes (or, for [`SharedState::rate_adjust`], gives back when
    /// negative).
    pub cost: i64,
}

/// A rate limit as a check left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    pub remaining: u64,
    /// Until the limit is whole again.
    pub reset: Duration,
}

/// What a rate check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateCheck {
    /// The first limit that refused (nothing was taken), if any.
    pub refused: Option<usize>,
    /// Refused: when the cost would fit (`None`: never, it is above the limit).
    pub retry_after: Option<Duration>,
    /// Each limit, in the order given.
    pub states: Vec<RateState>,
}

/// `*`-only glob matching (Redis `MATCH` semantics for the patterns this crate builds, which
/// never hold `?`, `[` or escapes).
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = match parts.split_first() {
        Some(p) => p,
        None => return text.is_empty(),
    };
    let Some(mut text) = text.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return text.is_empty();
    };
    for part in middle {
        match text.find(part) {
            Some(at) => text = &text[at + part.len()..],
            None => return false,
        }
    }
    text.len() >= last.len() && text.ends_with(last)
}

/// The backend in use.
#[derive(Clone)]
pub enum SharedState {
    Memory(memory::Memory),
    Redis(redis::RedisState),
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl SharedState {
    pub fn memory() -> Self {
        SharedState::Memory(memory::Memory::default())
    }

    /// Connect to Redis (`url`), every key under `prefix`.
    pub async fn redis(url: &str, prefix: &str) -> Result<Self> {
        Ok(SharedState::Redis(
            redis::RedisState::connect(url, prefix).await?,
        ))
    }

    /// The same backend with its own key space (`{prefix}:{name}` in Redis; a fresh store
    /// in process), sharing the connection.
    pub fn scoped(&self, name: &str) -> Self {
        match self {
            SharedState::Memory(_) => SharedState::memory(),
            SharedState::Redis(r) => SharedState::Redis(r.scoped(name)),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            SharedState::Memory(_) => "memory",
            SharedState::Redis(_) => "redis",
        }
    }

    /// Hold `holds` under `id` for at most `hold`, all or none.
    pub async fn reserve(&self, id: &str, holds: &[Hold], hold: Duration) -> Result<Reserve> {
        match self {
            SharedState::Memory(m) => Ok(m.reserve(id, holds, hold)),
            SharedState::Redis(r) => r.reserve(id, holds, hold).await,
        }
    }

    /// Replace what `id` holds on each counter by the real amount (0: a release). Returns
    /// each counter after it.
    pub async fn settle(&self, id: &str, actual: &[Hold]) -> Result<Vec<Usage>> {
        match self {
            SharedState::Memory(m) => Ok(m.settle(id, actual)),
            SharedState::Redis(r) => r.settle(id, actual).await,
        }
    }

    pub async fn read(&self, keys: &[String]) -> Result<Vec<Usage>> {
        match self {
            SharedState::Memory(m) => Ok(m.read(keys)),
            SharedState::Redis(r) => r.read(keys).await,
        }
    }

    /// Set each counter's spent amount (a rebuild from the ledger), keeping what is held, and
    /// with `overwrite`, mark the data complete (callers overwrite with every budget). Without
    /// it, counters that exist are kept (they are live: overwriting them could lose a settle
    /// that lands meanwhile), and data that was lost stays known as lost.
    pub async fn rebuild(&self, spent: &[Hold], overwrite: bool) -> Result<()> {
        match self {
            SharedState::Memory(m) => {
                m.rebuild(spent, overwrite);
                Ok(())
            }
            SharedState::Redis(r) => r.rebuild(spent, overwrite).await,
        }
    }

    /// Check every rate at once: all take their cost, or (one refuses) none does.
    pub async fn rate(&self, rates: &[Rate]) -> Result<RateCheck> {
        match self {
            SharedState::Memory(m) => Ok(m.rate(rates)),
            SharedState::Redis(r) => r.rate(rates).await,
        }
    }

    /// Add `rate.cost` units to a limit without a check (negative: give them back).
    pub async fn rate_adjust(&self, rate: &Rate) -> Result<()> {
        match self {
            SharedState::Memory(m) => {
                m.rate_adjust(rate);
                Ok(())
            }
            SharedState::Redis(r) => r.rate_adjust(rate).await,
        }
    }

    /// A value set with [`SharedState::set`], unless it expired.
    pub async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>> {
        match self {
            SharedState::Memory(m) => Ok(m.get(key)),
            SharedState::Redis(r) => r.get(key).await,
        }
    }

    /// Keep `value` under `key` for `ttl`.
    pub async fn set(&self, key: &str, value: bytes::Bytes, ttl: Duration) -> Result<()> {
        match self {
            SharedState::Memory(m) => {
                m.set(key, value, ttl);
                Ok(())
            }
            SharedState::Redis(r) => r.set(key, value, ttl).await,
        }
    }

    /// The first `len` bytes of a value (what a purge needs to read of an entry).
    pub async fn head(&self, key: &str, len: usize) -> Result<Option<bytes::Bytes>> {
        match self {
            SharedState::Memory(m) => Ok(m.get(key).map(|v| v.slice(..len.min(v.len())))),
            SharedState::Redis(r) => r.head(key, len).await,
        }
    }

    /// The keys of values that match `pattern` (`*` matches any run of characters).
    pub async fn keys_matching(&self, pattern: &str) -> Result<Vec<String>> {
        match self {
            SharedState::Memory(m) => Ok(m.keys_matching(pattern)),
            SharedState::Redis(r) => r.keys_matching(pattern).await,
        }
    }

    /// Drop these values; returns how many there were.
    pub async fn delete(&self, keys: &[String]) -> Result<u64> {
        match self {
            SharedState::Memory(m) => Ok(m.delete(keys)),
            SharedState::Redis(r) => r.delete(keys).await,
        }
    }

    /// True the first time `key` is claimed within `ttl` (once-per-period alerts).
    pub async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool> {
        match self {
            SharedState::Memory(m) => Ok(m.claim_once(key, ttl)),
            SharedState::Redis(r) => r.claim_once(key, ttl).await,
        }
    }
}
