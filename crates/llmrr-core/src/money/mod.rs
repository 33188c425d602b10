//! Money: prices, exact cost, the spend ledger, budgets that are never overspent, alerts, and
//! the analytics built on the ledger. The gateway calls two things (and, for a cache hit,
//! which reserves nothing, [`Money::queue_row`]):
//!
//! 1. [`Money::admit`] after planning: finds the budgets the request falls under, reserves the
//!    most the request can cost on all of them at once (atomically, through [`crate::shared`]),
//!    and rejects it or narrows the plan (downgrade) when a hard limit has no room. The
//!    returned [`Reservation`] releases itself when dropped unsettled (a cancelled future
//!    cannot leak it).
//! 2. [`Money::record`] after the call: appends the ledger row (committed), then settles the
//!    reservation to the real cost and fires the alerts that spend crossed.
//!
//! Budgets live in the store; every replica reloads them when they change. Counters live in
//! the shared state and are rebuilt from the ledger at startup, when a budget is added or
//! changed, and when Redis has lost its data.
//!
//! Layout: `price` (the catalog), `cost` (the one cost function), `budget` (scopes, periods,
//! actions), `book` (the loaded budgets and which apply), `admit` (reservations and
//! downgrades), `settle` (ledger, settlement, alerts), `alerts` (the webhook), `category`
//! (request categories), `report` (spend, efficiency, savings), `forecast`, `recommend`.

mod admin;
pub use admin::parse_time;
pub mod admit;
pub mod alerts;
mod book;
pub mod budget;
pub mod category;
pub mod cost;
pub mod forecast;
mod ledger;
pub mod price;
pub mod recommend;
pub mod report;
mod settle;

pub use admit::{Admission, Reservation};
pub use book::BudgetStatus;
pub use settle::Spent;

use crate::config::{Config, OutagePolicy};
use crate::error::Result;
use crate::shared::{memory::Memory, SharedState};
use crate::store::Store;
use book::Book;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often replicas look for budget changes.
const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// How often a degraded replica tries Redis again.
const RECONNECT_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Money {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Money")
            .field("shared", &self.inner.shared)
            .finish()
    }
}

struct Inner {
    store: Store,
    shared: SharedState,
    /// Per-replica counters while Redis is down (policy `local`).
    fallback: SharedState,
    degraded: AtomicBool,
    degrading: tokio::sync::Mutex<()>,
    policy: OutagePolicy,
    book: RwLock<Arc<Book>>,
    book_version: RwLock<(i64, i64)>,
    tz: TimeZone,
    hold: Duration,
    alerts: alerts::Alerts,
    ledger: ledger::LedgerWriter,
    /// Tests move the clock (Unix ms; 0: the real one).
    clock_ms: AtomicI64,
    /// The current window of each period (calendar arithmetic in a time zone is not free).
    windows: std::sync::Mutex<[Option<budget::Window>; 5]>,
}

impl Money {
    /// Connect the shared state, load the budgets and rebuild their counters from the ledger.
    pub async fn start(config: &Config, store: Store) -> Result<Money> {
        let shared = match &config.shared.redis_url {
            Some(url) => SharedState::redis(url.expose(), &config.shared.key_prefix).await?,
            None => SharedState::memory(),
        };
        Self::with_shared(config, store, shared).await
    }

    pub async fn with_shared(config: &Config, store: Store, shared: SharedState) -> Result<Money> {
        let tz = TimeZone::get(&config.money.timezone).unwrap_or(TimeZone::UTC);
        let money = Money {
            inner: Arc::new(Inner {
                store: store.clone(),
                shared,
                fallback: SharedState::Memory(Memory::default()),
                degraded: AtomicBool::new(false),
                degrading: tokio::sync::Mutex::new(()),
                policy: config.money.on_shared_outage,
                book: RwLock::new(Arc::new(Book::default())),
                book_version: RwLock::new((-1, -1)),
                tz,
                hold: config.money.reservation_hold,
                alerts: alerts::Alerts::new(&config.money),
                ledger: ledger::LedgerWriter::start(store.clone()),
                clock_ms: AtomicI64::new(0),
                windows: std::sync::Mutex::new([None; 5]),
            }),
        };
        money.reload().await?;
        if let Some(days) = config.money.ledger_retention_days {
            money.spawn_retention(days);
        }
        let weak = Arc::downgrade(&money.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RELOAD_EVERY).await;
                let Some(inner) = weak.upgrade() else { return };
                let money = Money { inner };
                if let Err(e) = money.reload().await {
                    tracing::warn!(error = %e, "budgets: reload failed; keeping the last ones");
                }
                if money.inner.degraded.load(Ordering::Relaxed) {
                    money.try_recover().await;
                }
            }
        });
        Ok(money)
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.inner.tz
    }

    /// Now, by the money clock.
    pub fn now(&self) -> Timestamp {
        match self.inner.clock_ms.load(Ordering::Relaxed) {
            0 => Timestamp::now(),
            ms => Timestamp::from_millisecond(ms).unwrap_or_else(|_| Timestamp::now()),
        }
    }

    /// Tests: pin the money clock (periods, alerts) at `at`.
    pub fn set_clock(&self, at: Timestamp) {
        self.inner
            .clock_ms
            .store(at.as_millisecond(), Ordering::Relaxed);
    }

    /// The window of `period` that holds `now` (cached until it ends).
    pub fn window(&self, period: budget::Period, now: Timestamp) -> budget::Window {
        let ms = now.as_millisecond();
        let mut cache = self.inner.windows.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut cache[period as usize];
        match slot {
            Some(w) if w.start_ms <= ms && w.end_ms.is_none_or(|end| ms < end) => *w,
            _ => {
                let w = period.window(now, &self.inner.tz);
                *slot = Some(w);
                w
            }
        }
    }

    pub fn has_budgets(&self) -> bool {
        !self.book().is_empty()
    }

    fn book(&self) -> Arc<Book> {
        self.inner
            .book
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Load the budgets again if they changed; new or changed budgets get their counters
    /// rebuilt from the ledger.
    pub async fn reload(&self) -> Result<()> {
        let version = self.inner.store.budgets_version().await?;
        if *self
            .inner
            .book_version
            .read()
            .unwrap_or_else(|p| p.into_inner())
            == version
        {
            return Ok(());
        }
        let budgets = self.inner.store.list_budgets().await?;
        let old = self.book();
        let book = Book::new(budgets);
        let changed: Vec<_> = book
            .all()
            .iter()
            .filter(|b| old.get(&b.id).is_none_or(|o| o.as_ref() != b.as_ref()))
            .cloned()
            .collect();
        // New budgets get their counters from the ledger; live counters are kept. Redis down:
        // the outage policy decides (the fallback is rebuilt with every budget).
        if let Err(e) = self.rebuild_on(self.backend(), &changed, false).await {
            if !matches!(e, crate::error::Error::Shared(_)) {
                return Err(e);
            }
            self.degrade(e).await?;
        }
        *self.inner.book.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(book);
        *self
            .inner
            .book_version
            .write()
            .unwrap_or_else(|p| p.into_inner()) = version;
        Ok(())
    }

    /// The counters in use: the shared ones, or this replica's while Redis is down.
    pub(crate) fn backend(&self) -> &SharedState {
        if self.inner.degraded.load(Ordering::Relaxed) {
            &self.inner.fallback
        } else {
            &self.inner.shared
        }
    }

    /// Set each budget's counters for its current period from the ledger.
    async fn rebuild_on(
        &self,
        target: &SharedState,
        budgets: &[Arc<budget::Budget>],
        overwrite: bool,
    ) -> Result<()> {
        if budgets.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let mut holds = Vec::with_capacity(budgets.len() * 2);
        for b in budgets {
            let window = self.window(b.period, now);
            let (pico, tokens) = self.inner.store.ledger_spent(&b.scope, window).await?;
            let keys = book::counter_keys(b, window);
            let ttl = book::ttl(window, now);
            // Pico-USD to nano-USD, rounded up like every settle.
            let nanos = pico / 1000 + i64::from(pico % 1000 != 0);
            holds.push(crate::shared::Hold {
                key: keys.usd,
                limit: None,
                amount: nanos,
                ttl,
            });
            holds.push(crate::shared::Hold {
                key: keys.tokens,
                limit: None,
                amount: tokens,
                ttl,
            });
        }
        target.rebuild(&holds, overwrite).await
    }

    /// Redis failed: refuse (policy `reject`) or continue on this replica's counters, rebuilt
    /// from the ledger, until Redis answers again.
    pub(crate) async fn degrade(&self, e: crate::error::Error) -> Result<()> {
        if self.inner.policy == OutagePolicy::Reject {
            return Err(crate::error::Error::Unavailable {
                message: "budgets cannot be checked: the shared state (Redis) is down".into(),
                retry_after: Some(RECONNECT_EVERY),
            });
        }
        // One rebuild at a time; requests that fail meanwhile wait for it, then use it.
        let _one = self.inner.degrading.lock().await;
        if self.inner.degraded.load(Ordering::Relaxed) {
            return Ok(());
        }
        tracing::error!(error = %e, "shared state is down: budgets are enforced per replica \
            from the ledger until it is back");
        let all = self.book().all().to_vec();
        self.rebuild_on(&self.inner.fallback, &all, true).await?;
        // Only now: no request reserves on counters that are not rebuilt yet.
        self.inner.degraded.store(true, Ordering::Relaxed);
        metrics::gauge!(crate::telemetry::SHARED_STATE_DEGRADED).set(1.0);
        Ok(())
    }

    async fn try_recover(&self) {
        let all = self.book().all().to_vec();
        match self.rebuild_on(&self.inner.shared, &all, true).await {
            Ok(()) => {
                self.inner.degraded.store(false, Ordering::Relaxed);
                metrics::gauge!(crate::telemetry::SHARED_STATE_DEGRADED).set(0.0);
                tracing::warn!("shared state is back: budgets are shared again");
            }
            Err(e) => tracing::debug!(error = %e, "shared state still down"),
        }
    }

    fn spawn_retention(&self, days: u64) {
        let store = self.inner.store.clone();
        tokio::spawn(async move {
            loop {
                let before = crate::store::now_ms() - (days as i64) * 86_400_000;
                match store.prune_ledger(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, days, "ledger retention: pruned"),
                    Err(e) => tracing::warn!(error = %e, "ledger retention failed"),
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        });
    }

    /// Every budget with its spend in the current period.
    pub async fn status(&self) -> Result<Vec<BudgetStatus>> {
        book::status(self).await
    }
}
