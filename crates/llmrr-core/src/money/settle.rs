//! After the call: the ledger row first (committed), then the reservation settled to the real
//! cost, then the alerts that the new spend crossed.

use super::admit::Reservation;
use super::alerts::AlertEvent;
use super::book::{self, covers, iso};
use super::budget::{usd_of_nanos, Budget, Window};
use super::Money;
use crate::shared::{Hold, Usage};
use crate::store::LedgerRow;
use std::sync::Arc;
use std::time::Duration;

/// What a request spent, for its settlement.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spent {
    /// Nano-USD, rounded up.
    pub nanos: i64,
    pub tokens: i64,
}

impl Money {
    /// Queue `row` for the ledger without waiting for its commit: a row nothing is settled
    /// after (a cache hit's). `Some(row)` back when the queue is full: [`Money::record`] it.
    pub fn queue_row(&self, row: LedgerRow) -> Option<LedgerRow> {
        self.inner.ledger.enqueue(row)
    }

    /// Wait until every ledger row queued so far is committed (or given up).
    pub async fn flush_ledger(&self) {
        self.inner.ledger.flush().await
    }

    /// Append `row` to the ledger (when the request cost anything or used tokens), then settle
    /// `reservation` to what was `spent` (per model: a cascade calls several), then fire the
    /// alerts it crossed.
    pub async fn record(
        &self,
        row: Option<LedgerRow>,
        reservation: Option<Reservation>,
        spent: &[(Option<String>, Spent)],
    ) {
        if let Some(row) = row {
            self.inner.ledger.append(row).await;
        }
        if let Some(r) = reservation {
            self.settle(r, spent).await;
        }
    }

    async fn settle(&self, mut r: Reservation, spent: &[(Option<String>, Spent)]) {
        let now = self.now();
        let actual: Vec<Hold> = r
            .lines()
            .iter()
            .flat_map(|(b, w)| {
                let (nanos, tokens) = spent
                    .iter()
                    .filter(|(model, _)| model.as_deref().is_some_and(|m| covers(b, m)))
                    .fold((0i64, 0i64), |(n, t), (_, s)| {
                        (n.saturating_add(s.nanos), t.saturating_add(s.tokens))
                    });
                let keys = book::counter_keys(b, *w);
                let ttl = book::ttl(*w, now);
                [
                    Hold {
                        key: keys.usd,
                        limit: None,
                        amount: nanos,
                        ttl,
                    },
                    Hold {
                        key: keys.tokens,
                        limit: None,
                        amount: tokens,
                        ttl,
                    },
                ]
            })
            .collect();
        r.done = true;
        let Some(after) = self.settle_somewhere(&r, &actual).await else {
            return;
        };
        let lines: Vec<(Arc<Budget>, Window)> = r.lines().to_vec();
        for (i, (b, w)) in lines.iter().enumerate() {
            let usd = after.get(2 * i).map_or(0, |u| u.spent);
            let tokens = after.get(2 * i + 1).map_or(0, |u| u.spent);
            self.check_alerts(b, *w, usd, tokens).await;
        }
    }

    /// Settle on the counters in use now (a reservation made before an outage settles on
    /// this replica's counters, one made during it on Redis once it is back: the hold it
    /// leaves behind expires), retrying; Redis still failing degrades to this replica's.
    async fn settle_somewhere(&self, r: &Reservation, actual: &[Hold]) -> Option<Vec<Usage>> {
        let mut last = None;
        for wait in [
            Duration::ZERO,
            Duration::from_millis(100),
            Duration::from_millis(500),
        ] {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let backend = if r.backend().kind() == self.backend().kind() {
                r.backend()
            } else {
                self.backend()
            };
            match backend.settle(r.id(), actual).await {
                Ok(after) => return Some(after),
                Err(e) => last = Some(e),
            }
        }
        let e = last?;
        tracing::warn!(error = %e, "a budget reservation could not be settled on the shared state");
        if self.degrade(e).await.is_ok() {
            if let Ok(after) = self.backend().settle(r.id(), actual).await {
                return Some(after);
            }
        }
        tracing::error!(
            request_id = r.id(),
            "a budget settlement is lost until the next \
            rebuild from the ledger; its hold expires on its own"
        );
        None
    }

    /// Fire the highest threshold that spend has newly crossed (once per period each).
    async fn check_alerts(&self, b: &Budget, w: Window, spent_nanos: i64, tokens: i64) {
        use rust_decimal::Decimal;
        let hundred = Decimal::from(100);
        // The fuller of the two limits decides.
        let usd = b
            .limit_usd
            .filter(|l| !l.is_zero())
            .map(|l| usd_of_nanos(spent_nanos) * hundred / l);
        let tok = b
            .limit_tokens
            .filter(|l| *l > 0)
            .map(|l| Decimal::from(tokens) * hundred / Decimal::from(l));
        let Some(percent) = usd.into_iter().chain(tok).max() else {
            return;
        };
        let mut crossed: Option<u32> = None;
        let mut thresholds = b.alert_percent.clone();
        thresholds.sort_unstable();
        let ttl = w
            .end_ms
            .map(|end| Duration::from_millis((end - self.now().as_millisecond()).max(0) as u64))
            .unwrap_or(Duration::from_secs(10 * 365 * 86_400))
            + Duration::from_secs(3600);
        for t in thresholds {
            if percent < Decimal::from(t) {
                break;
            }
            let key = format!("alert:{}:{}:{t}", b.id, w.start_ms);
            let first = match self.backend().claim_once(&key, ttl).await {
                Ok(first) => first,
                Err(e) => {
                    tracing::warn!(error = %e, "budget alert state unavailable");
                    false
                }
            };
            if first {
                crossed = Some(t);
            }
        }
        if let Some(t) = crossed {
            self.inner.alerts.fire(AlertEvent {
                kind: "budget.threshold",
                budget_id: b.id.clone(),
                scope: b.scope.to_string(),
                period: b.period.as_str(),
                threshold_percent: t,
                spent_usd: usd_of_nanos(spent_nanos).to_string(),
                limit_usd: b.limit_usd.map(|l| l.normalize().to_string()),
                spent_tokens: tokens,
                limit_tokens: b.limit_tokens,
                action: b.action.as_str(),
                period_start: iso(w.start_ms),
                resets_at: w.end_ms.map(iso),
                at: self.now().to_string(),
            });
        }
    }
}
