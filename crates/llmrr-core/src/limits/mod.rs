//! Limits: what keeps one caller from hurting the others. The gateway calls:
//!
//! 1. [`Limits::admit`] after planning: every rule that applies to the request (the
//!    deployment, its key — or `[limits] default_key` —, user, team, tier, the model or route
//!    it names, and per-model limits inside each) is checked at once through [`crate::shared`]:
//!    GCRA rates (requests and tokens per minute) all or none, then counters (requests in
//!    flight, daily and monthly quotas) all or none. The [`Ticket`] it returns carries the
//!    request's priority class and the `x-ratelimit-*` values; it settles the token estimate
//!    to the real count, and frees the concurrency, when the call ends (or when dropped).
//! 2. [`Limits::upstream`] before each attempt: the model's own account limits (`rpm`, `tpm`
//!    of `[[models]]`): a model at its limit is skipped like one that answered 429.
//! 3. [`Limits::gate`]: the model's admission queue ([`queue`]), when it has a concurrency cap.
//!
//! The global cap on requests and bytes in flight ([`shed`]) sits in the server, before the
//! body is read. Rules are kept in the store (`/admin/limits`) and in `[limits]`; every replica
//! reloads stored rules within [`RELOAD_EVERY`] of a change. With Redis, N replicas enforce ONE
//! limit; while Redis is down, `[limits] on_shared_outage` decides (`local`: per replica).

mod check;
pub mod queue;
mod rules;
pub mod shed;
pub mod spec;

pub use check::{Gauge, RateHeaders, Ticket, UpstreamRefusal};
pub use queue::{Gate, GateSnapshot, Refusal, Slot};
pub use shed::{InFlight, InFlightGuard, InFlightSnapshot};
pub use spec::{check_scope, LimitSet, Priority};

use crate::auth::KeyContext;
use crate::config::limits::{LimitOutage, LimitsConfig};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::money::Money;
use crate::shared::SharedState;
use crate::store::Store;
use rules::Rules;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often replicas look for changed rules.
pub const RELOAD_EVERY: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Limits {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Redis when configured (`[shared]`), else `None`: `local` is the only state.
    shared: Option<SharedState>,
    local: SharedState,
    policy: LimitOutage,
    config: LimitsConfig,
    rules: RwLock<Arc<Rules>>,
    version: std::sync::Mutex<(i64, i64)>,
    /// When the stored rules were last found current (Unix ms).
    checked_at_ms: AtomicI64,
    /// One reload at a time: a slow one cannot write older rules over a newer one's, and
    /// requests that need a reload share one.
    reloading: tokio::sync::Mutex<()>,
    money: Money,
    /// A concurrency hold frees itself after this (a replica that died).
    hold: Duration,
    degraded: AtomicBool,
    last_warning_ms: AtomicI64,
    /// The admission queue of each model with a concurrency cap.
    gates: HashMap<Arc<str>, Arc<Gate>>,
    in_flight: Arc<InFlight>,
}

impl Limits {
    /// Load the rules and start the reload watch. `shared`: the Redis state, if configured.
    pub async fn start(
        config: &Config,
        store: Store,
        shared: Option<SharedState>,
        money: Money,
    ) -> Result<Limits> {
        let limits = Limits {
            inner: Arc::new(Inner {
                store,
                shared,
                local: SharedState::memory(),
                policy: config.limits.on_shared_outage,
                config: config.limits.clone(),
                rules: RwLock::new(Arc::new(Rules::new(&config.limits, Vec::new()))),
                version: std::sync::Mutex::new((-1, -1)),
                checked_at_ms: AtomicI64::new(0),
                reloading: tokio::sync::Mutex::new(()),
                money,
                hold: config.money.reservation_hold,
                degraded: AtomicBool::new(false),
                last_warning_ms: AtomicI64::new(0),
                gates: config
                    .models
                    .iter()
                    .filter_map(|m| {
                        let cap = m.limits.max_concurrent?;
                        Some((
                            m.name.clone(),
                            Gate::new(m.name.clone(), cap, m.limits.max_queue),
                        ))
                    })
                    .collect(),
                in_flight: InFlight::new(
                    config.limits.max_in_flight,
                    config.limits.max_buffered_bytes,
                ),
            }),
        };
        limits.mark_intact().await;
        limits.reload().await?;
        let weak = Arc::downgrade(&limits.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if let Err(e) = (Limits { inner }).reload().await {
                    tracing::debug!(error = %e, "limits: reload failed; keeping the last rules");
                }
            }
        });
        Ok(limits)
    }

    /// Counters of limits need no rebuild: their data is complete by definition (a lost
    /// counter starts again from zero).
    async fn mark_intact(&self) {
        if let Some(shared) = &self.inner.shared {
            if let Err(e) = shared.rebuild(&[], true).await {
                tracing::warn!(error = %e, "limits: Redis does not answer yet");
            }
        }
    }

    /// Load the stored rules again if they changed.
    pub async fn reload(&self) -> Result<()> {
        let now_ms = crate::store::now_ms();
        let _one = self.inner.reloading.lock().await;
        if self.inner.checked_at_ms.load(Ordering::Relaxed) > now_ms {
            // Another reload started after this call and has finished: nothing newer to see.
            return Ok(());
        }
        let version = self.inner.store.limits_version().await?;
        if *self.inner.version.lock().unwrap_or_else(|p| p.into_inner()) == version {
            self.inner.checked_at_ms.store(now_ms, Ordering::Relaxed);
            return Ok(());
        }
        let stored = self.inner.store.list_limits().await?;
        *self.inner.rules.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Rules::new(&self.inner.config, stored));
        *self.inner.version.lock().unwrap_or_else(|p| p.into_inner()) = version;
        self.inner.checked_at_ms.store(now_ms, Ordering::Relaxed);
        Ok(())
    }

    /// A key created after (or about when) this replica last read the rules may have a rule
    /// this replica has not seen yet (made on another replica): read them now. Clocks of
    /// replicas may differ a little: a second of margin.
    pub async fn fresh_for(&self, key: &KeyContext) {
        const MARGIN_MS: i64 = 1000;
        /// A store that does not answer does not hold requests: the last rules stand.
        const WAIT: Duration = Duration::from_millis(200);
        // A key from a replica whose clock runs ahead counts as made now.
        let created = key.created_at_ms.min(crate::store::now_ms());
        if created + MARGIN_MS <= self.inner.checked_at_ms.load(Ordering::Relaxed) {
            return;
        }
        match tokio::time::timeout(WAIT, self.reload()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "limits: reload failed; keeping the last rules")
            }
            Err(_) => {
                tracing::debug!("limits: reload slower than {WAIT:?}; keeping the last rules")
            }
        }
    }

    /// Reload whatever the version says (a change here within the same millisecond as the
    /// last one would not move it).
    pub async fn reload_now(&self) -> Result<()> {
        *self.inner.version.lock().unwrap_or_else(|p| p.into_inner()) = (-1, -1);
        self.reload().await
    }

    fn rules(&self) -> Arc<Rules> {
        self.inner
            .rules
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.inner.config
    }

    /// The rules as the admin API lists them: stored ones, then the config's.
    pub async fn list(&self) -> Result<Vec<(String, LimitSet, &'static str)>> {
        let mut out: Vec<_> = self
            .inner
            .store
            .list_limits()
            .await?
            .into_iter()
            .map(|(scope, set)| (scope, set, "store"))
            .collect();
        let c = &self.inner.config;
        let from_config = c
            .global
            .iter()
            .map(|g| ("global".to_owned(), g.clone()))
            .chain(
                c.default_key
                    .iter()
                    .map(|k| ("default_key".to_owned(), k.clone())),
            )
            .chain(
                c.models
                    .iter()
                    .map(|(m, s)| (format!("model:{m}"), s.clone())),
            )
            .chain(
                c.tiers
                    .iter()
                    .map(|(t, s)| (format!("tier:{t}"), s.clone())),
            );
        out.extend(from_config.map(|(scope, set)| (scope, set, "config")));
        Ok(out)
    }

    /// Set the rule of `scope` (every replica applies it within a second).
    pub async fn set(&self, scope: &str, set: &LimitSet) -> Result<()> {
        check_scope(scope)?;
        set.check(scope)?;
        self.inner.store.set_limits(scope, set).await?;
        self.reload_now().await
    }

    pub async fn remove(&self, scope: &str) -> Result<bool> {
        let removed = self.inner.store.remove_limits(scope).await?;
        self.reload_now().await?;
        Ok(removed)
    }

    /// The state to use now: Redis, or this replica's while Redis is down (policy `local`).
    fn backend(&self) -> &SharedState {
        match &self.inner.shared {
            Some(s) if !self.inner.degraded.load(Ordering::Relaxed) => s,
            _ => &self.inner.local,
        }
    }

    /// Redis failed: apply the outage policy. `Ok(Some(state))`: go on with it; `Ok(None)`:
    /// not enforced (`allow`).
    fn on_outage(&self, e: &Error) -> Result<Option<&SharedState>> {
        let now = crate::store::now_ms();
        let last = self.inner.last_warning_ms.load(Ordering::Relaxed);
        if now - last > 10_000 {
            self.inner.last_warning_ms.store(now, Ordering::Relaxed);
            tracing::error!(error = %e, policy = ?self.inner.policy,
            "limits: Redis is down; rate limits, quotas and concurrency are {}",
            match self.inner.policy {
                LimitOutage::Local => "enforced per replica",
                LimitOutage::Allow => "NOT enforced",
                LimitOutage::Reject => "refusing requests",
            });
        }
        metrics::counter!(crate::telemetry::LIMITS_OUTAGES).increment(1);
        match self.inner.policy {
            LimitOutage::Local => {
                if !self.inner.degraded.swap(true, Ordering::Relaxed) {
                    metrics::gauge!(crate::telemetry::LIMITS_DEGRADED).set(1.0);
                    self.spawn_recovery();
                }
                Ok(Some(&self.inner.local))
            }
            LimitOutage::Allow => Ok(None),
            LimitOutage::Reject => Err(Error::Unavailable {
                message: "rate limits cannot be checked right now; try again".into(),
                retry_after: Some(Duration::from_secs(1)),
            }),
        }
    }

    /// While degraded: try Redis every few seconds; switch back once it answers.
    fn spawn_recovery(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let Some(inner) = weak.upgrade() else { return };
                let Some(shared) = &inner.shared else { return };
                if shared.rebuild(&[], true).await.is_ok() {
                    inner.degraded.store(false, Ordering::Relaxed);
                    metrics::gauge!(crate::telemetry::LIMITS_DEGRADED).set(0.0);
                    tracing::warn!("limits: Redis answers again; limits are shared again");
                    return;
                }
            }
        });
    }

    /// The admission queue of `model`, if it has a concurrency cap.
    pub fn gate(&self, model: &str) -> Option<&Arc<Gate>> {
        self.inner.gates.get(model)
    }

    /// The global cap on requests and bytes in flight (the server enters it).
    pub fn in_flight(&self) -> &Arc<InFlight> {
        &self.inner.in_flight
    }

    /// Every model queue, for `/admin/queues`.
    pub fn queues(&self) -> Vec<GateSnapshot> {
        let mut out: Vec<_> = self.inner.gates.values().map(|g| g.snapshot()).collect();
        out.sort_by(|a, b| a.model.cmp(&b.model));
        out
    }

    pub(crate) fn money(&self) -> &Money {
        &self.inner.money
    }
}
