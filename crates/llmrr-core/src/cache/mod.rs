//! The response cache: answers kept by the hash of what shapes them ([`key`]), in three tiers
//! read fastest first — L1 memory ([`memory`]), L2 an SQLite file ([`disk`]), L3 the shared
//! state of every replica ([`shared`]) — where a hit in a slower tier fills the faster ones and
//! a tier that fails is skipped with a warning and a metric, never failing the request.
//! [`policy`] makes lifetime, admission and eviction cost-aware; [`flight`] coalesces
//! identical requests in flight into one upstream call, streams included; [`semantic`] finds
//! an earlier answer to a prompt that means the same.
//!
//! The gateway calls [`ResponseCache::lookup`], [`ResponseCache::join`] and
//! [`ResponseCache::store`]; `/admin/cache` reads [`ResponseCache::stats`] and
//! [`ResponseCache::purge`].

pub mod disk;
pub mod entry;
pub mod flight;
pub mod key;
pub mod memory;
pub mod policy;
pub mod semantic;
pub mod shared;

pub use disk::Purge;
pub use entry::{Body, Chunk, Entry, Meta};
pub use flight::{End, Follower, Join, Lead, Next};
pub use key::{key_of, CacheKey, KeyScope, Normalize};

use crate::config::cache::CacheConfig;
use crate::error::Result;
use crate::shared::SharedState;
use crate::telemetry;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    L1,
    L2,
    L3,
    /// An identical request's call in flight.
    Coalesced,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::L1 => "l1",
            Tier::L2 => "l2",
            Tier::L3 => "l3",
            Tier::Coalesced => "coalesced",
        }
    }
}

/// What a request asks of the cache (`Cache-Control`, `x-llmrr-cache-ttl`,
/// `x-llmrr-cache-namespace`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheDirectives {
    /// `no-cache`: do not answer from the cache (a fresh answer still refreshes it).
    pub no_read: bool,
    /// `no-store`: do not keep this answer.
    pub no_store: bool,
    /// This answer's lifetime instead of the rule's.
    pub ttl: Option<Duration>,
    /// A partition inside the caller's own namespace.
    pub namespace: Option<String>,
    /// A replay by `cache warm`: a fresh answer (with `no_read`), logged as `warm`, not
    /// counted as asked.
    pub warming: bool,
}

/// What the cache did for an answer (`x-llmrr-cache`, `x-llmrr-cache-tier`).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheStatus {
    /// `hit`, `miss` or `bypass`.
    pub status: &'static str,
    pub tier: Option<Tier>,
    /// A hit: what the answer cost to make (USD), where the model had a price.
    pub saved_usd: Option<rust_decimal::Decimal>,
    /// A semantic hit: how close the prompt was to the one answered.
    pub similarity: Option<f32>,
    /// The request's key (of the entry it matched, for a semantic hit), when it was keyed.
    pub key: Option<CacheKey>,
}

impl CacheStatus {
    pub fn hit(tier: Tier, entry: &Entry) -> Self {
        CacheStatus {
            status: "hit",
            tier: Some(tier),
            saved_usd: entry.meta.priced.then(|| {
                rust_decimal::Decimal::from_i128_with_scale(i128::from(entry.meta.cost_pusd), 12)
                    .normalize()
            }),
            similarity: None,
            key: None,
        }
    }

    /// A hit found by meaning (`semantic-hit`).
    pub fn semantic_hit(tier: Tier, entry: &Entry, similarity: f32) -> Self {
        CacheStatus {
            status: "semantic-hit",
            similarity: Some(similarity),
            ..CacheStatus::hit(tier, entry)
        }
    }

    pub fn plain(status: &'static str) -> Self {
        CacheStatus {
            status,
            tier: None,
            saved_usd: None,
            similarity: None,
            key: None,
        }
    }

    /// The same, with the request's key.
    pub fn keyed(self, key: CacheKey) -> Self {
        CacheStatus {
            key: Some(key),
            ..self
        }
    }
}

/// Counters of one tier.
#[derive(Default)]
struct TierCounters {
    hits: AtomicU64,
    fills: AtomicU64,
    evictions: AtomicU64,
    errors: AtomicU64,
}

#[derive(Default)]
struct Counters {
    tiers: [TierCounters; 4],
    misses: AtomicU64,
    bypasses: AtomicU64,
    saved_pusd: AtomicU64,
}

/// One tier in `/admin/cache`.
#[derive(Debug, Clone, Serialize)]
pub struct TierStats {
    pub tier: Tier,
    pub enabled: bool,
    /// `None` where the tier cannot tell cheaply (L3 when Redis does not answer).
    pub entries: Option<u64>,
    pub bytes: Option<u64>,
    pub capacity_bytes: Option<u64>,
    pub hits: u64,
    pub fills: u64,
    pub evictions: u64,
    pub errors: u64,
}

/// `GET /admin/cache`: since this process started (tiers' entries and bytes are now).
#[derive(Debug, Clone, Serialize)]
pub struct CacheStats {
    pub tiers: Vec<TierStats>,
    pub hits: u64,
    pub misses: u64,
    pub bypasses: u64,
    /// Hits / (hits + misses).
    pub hit_rate: f64,
    /// What hits would have cost upstream (USD, exact decimal text).
    pub saved_usd: String,
    pub in_flight: usize,
}

/// Entries dropped by a purge, per tier.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Purged {
    pub l1: u64,
    pub l2: u64,
    pub l3: u64,
}

struct Inner {
    config: CacheConfig,
    l1: memory::MemoryTier,
    l2: Option<disk::DiskTier>,
    l3: Option<shared::SharedTier>,
    semantic: Option<semantic::SemanticIndex>,
    flights: Arc<flight::Flights>,
    counters: Counters,
    /// The cache's clock (ms since the Unix epoch), on tokio's time so that tests can move it.
    origin_ms: i64,
    origin: tokio::time::Instant,
    /// Purges this replica has applied (its own, and those read from the store), by id,
    /// with when they were made.
    purges_applied: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

/// Each look for other replicas' purges reads those recorded over this long before now (by
/// this replica's clock): replicas' clocks may differ, and a row may commit late.
const PURGE_WINDOW_MS: i64 = 60_000;

#[derive(Clone)]
pub struct ResponseCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseCache")
    }
}

impl ResponseCache {
    /// The tiers `config` asks for; L3 on `shared` (the cache's own scope of the shared
    /// state, Redis) when given and not turned off.
    /// With `semantic`, the semantic index too (loaded from L2 when it is on).
    pub async fn start(
        config: &CacheConfig,
        shared: Option<&SharedState>,
        semantic: bool,
    ) -> Result<Self> {
        let l2 = match &config.disk_path {
            Some(path) => {
                Some(disk::DiskTier::open(path, config.disk_bytes, config.policy.clone()).await?)
            }
            None => None,
        };
        let l3 = shared
            .filter(|_| config.shared)
            .map(|s| shared::SharedTier::new(s.clone()));
        let semantic = semantic.then(|| semantic::SemanticIndex::new(config.semantic_max_entries));
        if let (Some(index), Some(disk)) = (&semantic, &l2) {
            for (namespace, item) in disk.vectors(crate::store::now_ms()).await? {
                index.add(&namespace, item);
            }
        }
        Ok(ResponseCache {
            inner: Arc::new(Inner {
                l1: memory::MemoryTier::new(config.memory_bytes, config.policy.clone()),
                l2,
                l3,
                semantic,
                flights: Arc::default(),
                purges_applied: Default::default(),
                counters: Counters::default(),
                origin_ms: crate::store::now_ms(),
                origin: tokio::time::Instant::now(),
                config: config.clone(),
            }),
        })
    }

    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    pub fn now_ms(&self) -> i64 {
        self.inner.origin_ms + self.inner.origin.elapsed().as_millis() as i64
    }

    /// The entry under `key`, fastest tier first; a hit in a slower tier fills the faster
    /// ones. A tier that fails is skipped.
    pub async fn lookup(
        &self,
        key: &CacheKey,
        namespace: &str,
        name: &str,
    ) -> Option<(Arc<Entry>, Tier)> {
        let found = self.find(key, namespace, name).await;
        if let Some((e, tier)) = &found {
            self.counted_hit(*tier, e);
        }
        found
    }

    /// Whether `key` has an entry (filling the faster tiers from a slower one), not counted
    /// as a hit: what `cache warm` asks before it replays a request.
    pub async fn holds(&self, key: &CacheKey, namespace: &str, name: &str) -> bool {
        self.find(key, namespace, name).await.is_some()
    }

    async fn find(
        &self,
        key: &CacheKey,
        namespace: &str,
        name: &str,
    ) -> Option<(Arc<Entry>, Tier)> {
        let now = self.now_ms();
        let i = &self.inner;
        if let Some(e) = i.l1.get(key, now) {
            return Some((e, Tier::L1));
        }
        if let Some(l2) = &i.l2 {
            match l2.get(key, now).await {
                Ok(Some(e)) => {
                    let e = Arc::new(e);
                    self.fill_l1(*key, e.clone(), now);
                    return Some((e, Tier::L2));
                }
                Ok(None) => {}
                Err(e) => self.tier_failed(Tier::L2, "read", &e),
            }
        }
        if let Some(l3) = i.l3.as_ref().filter(|l| l.available()) {
            match l3.get(key, namespace, name).await {
                Ok(Some(e)) if e.meta.expires_ms > now => {
                    let e = Arc::new(e);
                    self.fill_l1(*key, e.clone(), now);
                    if i.l2.is_some() {
                        // Off the answer's path.
                        let (this, key, e2) = (self.clone(), *key, e.clone());
                        tokio::spawn(async move {
                            if let Some(l2) = &this.inner.l2 {
                                this.fill_l2(l2, &key, &e2, now).await;
                            }
                        });
                    }
                    return Some((e, Tier::L3));
                }
                Ok(_) => {}
                Err(e) => self.tier_failed(Tier::L3, "read", &e),
            }
        }
        None
    }

    /// Count a hit (of any tier, coalesced included) and what it saved.
    pub fn counted_hit(&self, tier: Tier, e: &Entry) {
        let c = &self.inner.counters;
        c.tiers[tier as usize].hits.fetch_add(1, Ordering::Relaxed);
        let saved = e.meta.cost_pusd.max(0) as u64;
        c.saved_pusd.fetch_add(saved, Ordering::Relaxed);
        metrics::counter!(telemetry::CACHE_HITS, "tier" => tier.as_str()).increment(1);
        metrics::counter!(telemetry::CACHE_SAVED_NANO_USD).increment(saved / 1000);
        if tier == Tier::Coalesced {
            metrics::counter!(telemetry::CACHE_COALESCED).increment(1);
        }
    }

    pub fn counted_miss(&self) {
        self.inner.counters.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(telemetry::CACHE_MISSES).increment(1);
    }

    pub fn counted_bypass(&self, reason: &'static str) {
        self.inner.counters.bypasses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(telemetry::CACHE_BYPASSES, "reason" => reason).increment(1);
    }

    /// The earlier prompt of `context` in `namespace` closest to `vector`, at `threshold`
    /// or nearer.
    pub fn semantic_search(
        &self,
        namespace: &str,
        context: &CacheKey,
        vector: &[f32],
        threshold: f32,
    ) -> Option<semantic::Match> {
        self.inner
            .semantic
            .as_ref()?
            .search(namespace, context, vector, threshold, self.now_ms())
    }

    /// Index a prompt whose answer was just kept; the returned work keeps it with L2.
    pub fn semantic_add(
        &self,
        item: semantic::Item,
        meta: &Meta,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let this = self.clone();
        let meta = meta.clone();
        if let Some(index) = &self.inner.semantic {
            index.add(&meta.namespace, item.clone());
        }
        async move {
            if let (Some(_), Some(l2)) = (&this.inner.semantic, &this.inner.l2) {
                if let Err(e) = l2.put_vector(&meta, &item).await {
                    this.tier_failed(Tier::L2, "write", &e);
                }
            }
        }
    }

    /// A failure of the embedding model (the semantic step is skipped).
    pub fn semantic_failed(&self, e: &crate::Error) {
        metrics::counter!(telemetry::CACHE_ERRORS, "tier" => "semantic", "op" => "embed")
            .increment(1);
        tracing::warn!(error = %e, "cache: embedding the prompt failed: semantic step skipped");
    }

    /// Follow the identical request in flight, or lead it.
    pub fn join(&self, key: CacheKey) -> Join {
        self.inner.flights.join(key)
    }

    /// The lifetime of an answer that cost `cost_usd` under a rule of `base` TTL.
    pub fn ttl(&self, base: Duration, cost_usd: f64) -> Duration {
        policy::ttl(&self.inner.config.policy, base, cost_usd)
    }

    /// Whether the policy admits an answer that cost `cost_usd`, and it is small enough.
    pub fn admits(&self, entry: &Entry) -> bool {
        let cost = entry.meta.cost_pusd as f64 / 1e12;
        entry.size() <= self.inner.config.max_entry_bytes
            && policy::admit(&self.inner.config.policy, cost, rand::random::<f64>())
    }

    /// Keep `entry` in L1 now; the returned work writes L2 and L3 (run it off the answer's
    /// path).
    pub fn store(
        &self,
        key: CacheKey,
        entry: Arc<Entry>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let now = self.now_ms();
        self.fill_l1(key, entry.clone(), now);
        let this = self.clone();
        async move {
            let i = &this.inner;
            if let Some(l2) = &i.l2 {
                this.fill_l2(l2, &key, &entry, now).await;
            }
            if let Some(l3) = i.l3.as_ref().filter(|l| l.available()) {
                let ttl = Duration::from_millis((entry.meta.expires_ms - now).max(1) as u64);
                match l3.put(&key, &entry, ttl).await {
                    Ok(()) => this.filled(Tier::L3, 0),
                    Err(e) => this.tier_failed(Tier::L3, "write", &e),
                }
            }
        }
    }

    fn fill_l1(&self, key: CacheKey, entry: Arc<Entry>, now: i64) {
        let evicted = self.inner.l1.insert(key, entry, now);
        self.filled(Tier::L1, evicted);
        let u = self.inner.l1.usage();
        metrics::gauge!(telemetry::CACHE_BYTES, "tier" => "l1").set(u.bytes as f64);
        metrics::gauge!(telemetry::CACHE_ENTRIES, "tier" => "l1").set(u.entries as f64);
    }

    async fn fill_l2(&self, l2: &disk::DiskTier, key: &CacheKey, entry: &Entry, now: i64) {
        match l2.put(key, entry, now).await {
            Ok(evicted) => self.filled(Tier::L2, evicted),
            Err(e) => self.tier_failed(Tier::L2, "write", &e),
        }
    }

    fn filled(&self, tier: Tier, evicted: u64) {
        let c = &self.inner.counters.tiers[tier as usize];
        c.fills.fetch_add(1, Ordering::Relaxed);
        c.evictions.fetch_add(evicted, Ordering::Relaxed);
        metrics::counter!(telemetry::CACHE_FILLS, "tier" => tier.as_str()).increment(1);
        if evicted > 0 {
            metrics::counter!(telemetry::CACHE_EVICTIONS, "tier" => tier.as_str())
                .increment(evicted);
        }
    }

    fn tier_failed(&self, tier: Tier, op: &'static str, e: &crate::Error) {
        self.inner.counters.tiers[tier as usize]
            .errors
            .fetch_add(1, Ordering::Relaxed);
        metrics::counter!(telemetry::CACHE_ERRORS, "tier" => tier.as_str(), "op" => op)
            .increment(1);
        tracing::warn!(tier = tier.as_str(), op, error = %e, "cache tier failed: skipped");
    }

    /// Record the purge in `store` (so that every other replica drops the entries from its
    /// own L1 and L2 within about a second: [`ResponseCache::watch_purges`]), then drop the
    /// entries `p` selects from every tier here and from L3. Recorded first: a purge that
    /// cannot be recorded purges nothing (and says so); applying one twice is harmless.
    pub async fn purge(&self, store: &crate::store::Store, p: &Purge) -> Result<Purged> {
        let id = format!("purge_{}", uuid::Uuid::now_v7().simple());
        store.record_cache_purge(&id, p).await?;
        self.first_sight(&id);
        let mut out = self.purge_here(p).await?;
        if let Some(l3) = &self.inner.l3 {
            out.l3 = l3.purge(p).await?;
        }
        Ok(out)
    }

    /// This replica's part of a purge: L1, the semantic index, L2.
    async fn purge_here(&self, p: &Purge) -> Result<Purged> {
        let i = &self.inner;
        let mut out = Purged {
            l1: i.l1.remove_where(|e| p.selects(e)),
            ..Purged::default()
        };
        if let (Some(index), None, None) = (&i.semantic, &p.route, &p.key_id) {
            // Items of purged entries elsewhere just miss (their entries are gone).
            index.remove_namespaces(|ns| p.namespace.as_ref().is_none_or(|n| n == ns));
        }
        if let Some(l2) = &i.l2 {
            out.l2 = l2.purge(p).await?;
        }
        Ok(out)
    }

    /// True the first time purge `id` is seen here; forgets ids seen long before the window
    /// the watch reads.
    fn first_sight(&self, id: &str) -> bool {
        let now = crate::store::now_ms();
        let mut seen = self
            .inner
            .purges_applied
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if seen.contains_key(id) {
            return false;
        }
        seen.retain(|_, at| *at >= now - 2 * PURGE_WINDOW_MS);
        seen.insert(id.to_owned(), now);
        true
    }

    /// Apply, every `every`, the purges other replicas recorded in `store` — read by this
    /// replica's own clock over the last [`PURGE_WINDOW_MS`], so writers' clock skew and late
    /// commits up to that long are harmless. With L2 on, the purges of the last day are
    /// applied to it first (it may have been down during some; extra misses are the price).
    /// The task ends when the cache is dropped.
    pub fn watch_purges(&self, store: crate::store::Store, every: Duration) {
        let weak = Arc::downgrade(&self.inner);
        let catch_up = self.inner.l2.is_some();
        tokio::spawn(async move {
            let mut since = if catch_up {
                crate::store::now_ms() - crate::store::CACHE_PURGES_KEPT_MS
            } else {
                crate::store::now_ms() - PURGE_WINDOW_MS
            };
            loop {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let cache = ResponseCache { inner };
                match store.cache_purges_since(since).await {
                    Ok(found) => {
                        for (id, _, p) in found {
                            if cache.first_sight(&id) {
                                if let Err(e) = cache.purge_here(&p).await {
                                    tracing::warn!(error = %e, "cache: another replica's purge failed here");
                                }
                            }
                        }
                        since = crate::store::now_ms() - PURGE_WINDOW_MS;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cache: purges of other replicas not read")
                    }
                }
                drop(cache);
                tokio::time::sleep(every).await;
            }
        });
    }

    pub async fn stats(&self) -> CacheStats {
        let i = &self.inner;
        let c = &i.counters;
        let tier = |t: Tier, enabled: bool| {
            let tc = &c.tiers[t as usize];
            TierStats {
                tier: t,
                enabled,
                entries: None,
                bytes: None,
                capacity_bytes: None,
                hits: tc.hits.load(Ordering::Relaxed),
                fills: tc.fills.load(Ordering::Relaxed),
                evictions: tc.evictions.load(Ordering::Relaxed),
                errors: tc.errors.load(Ordering::Relaxed),
            }
        };
        let u = i.l1.usage();
        let mut l1 = tier(Tier::L1, true);
        l1.entries = Some(u.entries);
        l1.bytes = Some(u.bytes);
        l1.capacity_bytes = Some(i.config.memory_bytes);
        l1.evictions = u.evictions;
        let mut l2 = tier(Tier::L2, i.l2.is_some());
        if let Some(d) = &i.l2 {
            if let Ok((entries, bytes)) = d.usage().await {
                l2.entries = Some(entries);
                l2.bytes = Some(bytes);
            }
            l2.capacity_bytes = Some(i.config.disk_bytes);
        }
        let mut l3 = tier(Tier::L3, i.l3.is_some());
        if let Some(s) = &i.l3 {
            l3.entries = s.entries().await.ok();
        }
        let hits: u64 = c.tiers.iter().map(|t| t.hits.load(Ordering::Relaxed)).sum();
        let misses = c.misses.load(Ordering::Relaxed);
        let saved = rust_decimal::Decimal::from_i128_with_scale(
            i128::from(c.saved_pusd.load(Ordering::Relaxed)),
            12,
        );
        CacheStats {
            tiers: vec![l1, l2, l3, tier(Tier::Coalesced, true)],
            hits,
            misses,
            bypasses: c.bypasses.load(Ordering::Relaxed),
            hit_rate: if hits + misses == 0 {
                0.0
            } else {
                hits as f64 / (hits + misses) as f64
            },
            saved_usd: saved.normalize().to_string(),
            in_flight: i.flights.in_flight(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::tests::entry;

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_their_ttl_on_the_caches_clock() {
        let cache = ResponseCache::start(&CacheConfig::default(), None, false)
            .await
            .unwrap();
        let key = CacheKey::from_bytes([9; 32]);
        let mut e = entry(Body::Json(bytes::Bytes::from_static(b"{}")));
        e.meta.expires_ms = cache.now_ms() + 10_000;
        cache.store(key, Arc::new(e)).await;
        assert_eq!(
            cache.lookup(&key, "team:a", "gpt").await.map(|(_, t)| t),
            Some(Tier::L1)
        );
        tokio::time::advance(Duration::from_millis(9_900)).await;
        assert!(cache.lookup(&key, "team:a", "gpt").await.is_some());
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(
            cache.lookup(&key, "team:a", "gpt").await.is_none(),
            "expired"
        );
        let s = cache.stats().await;
        assert_eq!((s.hits, s.tiers[0].entries), (2, Some(0)));
    }

    #[tokio::test]
    async fn a_hit_in_a_slower_tier_fills_the_faster_ones_and_purges_reach_every_tier() {
        let dir = tempfile::tempdir().unwrap();
        let config = CacheConfig {
            disk_path: Some(dir.path().join("c.sqlite")),
            ..CacheConfig::default()
        };
        let shared = SharedState::memory();
        let writer = ResponseCache::start(&config, Some(&shared), false)
            .await
            .unwrap();
        let key = CacheKey::from_bytes([3; 32]);
        let mut e = entry(Body::Json(bytes::Bytes::from_static(b"{\"a\":1}")));
        e.meta.expires_ms = writer.now_ms() + 60_000;
        writer.store(key, Arc::new(e.clone())).await;
        // Another process on the same shared state, without the disk file.
        let reader = ResponseCache::start(&CacheConfig::default(), Some(&shared), false)
            .await
            .unwrap();
        let (got, tier) = reader.lookup(&key, "team:a", "gpt").await.unwrap();
        assert_eq!((&*got, tier), (&e, Tier::L3));
        assert_eq!(
            reader.lookup(&key, "team:a", "gpt").await.unwrap().1,
            Tier::L1
        );
        let store =
            crate::store::Store::connect(&format!("sqlite://{}/s.db", dir.path().display()))
                .await
                .unwrap();
        let purge = Purge {
            namespace: Some("team:a".into()),
            ..Purge::default()
        };
        let purged = writer.purge(&store, &purge).await.unwrap();
        // Recorded for the other replicas, and already applied here.
        let recorded = store.cache_purges_since(0).await.unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].2, purge);
        assert!(!writer.first_sight(&recorded[0].0));
        assert_eq!((purged.l1, purged.l2, purged.l3), (1, 1, 1));
        assert!(writer.lookup(&key, "team:a", "gpt").await.is_none());
    }
}
