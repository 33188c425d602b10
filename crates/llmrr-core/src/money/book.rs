//! The loaded budgets, indexed by scope, and which of them a request falls under.

use super::budget::{usd_of_nanos, Action, Budget, Scope, Window, NANOS_PER_USD};
use super::Money;
use crate::auth::KeyContext;
use crate::error::Result;
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
pub(super) struct Book {
    all: Vec<Arc<Budget>>,
    by_scope: HashMap<Scope, Vec<Arc<Budget>>>,
}

impl Book {
    pub(super) fn new(budgets: Vec<Budget>) -> Book {
        let all: Vec<Arc<Budget>> = budgets.into_iter().map(Arc::new).collect();
        let mut by_scope: HashMap<Scope, Vec<Arc<Budget>>> = HashMap::new();
        for b in &all {
            by_scope.entry(b.scope.clone()).or_default().push(b.clone());
        }
        Book { all, by_scope }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub(super) fn all(&self) -> &[Arc<Budget>] {
        &self.all
    }

    pub(super) fn get(&self, id: &str) -> Option<&Arc<Budget>> {
        self.all.iter().find(|b| b.id == id)
    }

    /// The budgets a request of `key` falls under when served by any of `models`.
    pub(super) fn applicable(&self, key: &KeyContext, models: &[&str]) -> Vec<Arc<Budget>> {
        let mut out = Vec::new();
        let mut take = |scope: Scope| {
            if let Some(list) = self.by_scope.get(&scope) {
                out.extend(list.iter().cloned());
            }
        };
        take(Scope::Global);
        if let Some(t) = &key.team {
            take(Scope::Team(t.clone()));
        }
        if let Some(u) = &key.user {
            take(Scope::User(u.clone()));
        }
        if let Some(k) = &key.key_id {
            take(Scope::Key(k.clone()));
        }
        let mut seen: Vec<&str> = Vec::with_capacity(models.len());
        for m in models {
            if seen.contains(m) {
                continue;
            }
            seen.push(m);
            take(Scope::Model((*m).to_owned()));
            if let Some(k) = &key.key_id {
                take(Scope::KeyModel(k.clone(), (*m).to_owned()));
            }
            if let Some(t) = &key.team {
                take(Scope::TeamModel(t.clone(), (*m).to_owned()));
            }
        }
        out
    }
}

/// Whether `b` counts a call served by `model`.
pub(super) fn covers(b: &Budget, model: &str) -> bool {
    b.scope.model().is_none_or(|m| m == model)
}

pub(super) struct CounterKeys {
    pub(super) usd: String,
    pub(super) tokens: String,
}

/// A budget's counters for one period: a new period starts new counters.
pub(super) fn counter_keys(b: &Budget, w: Window) -> CounterKeys {
    CounterKeys {
        usd: format!("b:{}:{}:usd", b.id, w.start_ms),
        tokens: format!("b:{}:{}:tok", b.id, w.start_ms),
    }
}

/// Counters outlive their period by an hour (late settlements), then go.
pub(super) fn ttl(w: Window, now: Timestamp) -> Option<Duration> {
    w.end_ms.map(|end| {
        Duration::from_millis((end - now.as_millisecond()).max(0) as u64)
            + Duration::from_secs(3600)
    })
}

/// A budget as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetStatus {
    #[serde(flatten)]
    pub budget: Budget,
    pub period_start: String,
    pub resets_at: Option<String>,
    #[serde(with = "rust_decimal::serde::str")]
    pub spent_usd: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub reserved_usd: Decimal,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub remaining_usd: Option<Decimal>,
    pub spent_tokens: i64,
    pub remaining_tokens: Option<i64>,
    /// At the average rate of the period so far, when the limit is reached (none: not within
    /// the period).
    pub projected_exhaustion: Option<String>,
    pub exceeded: bool,
}

pub(super) fn iso(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

pub(super) async fn status(money: &Money) -> Result<Vec<BudgetStatus>> {
    let now = money.now();
    let book = money.book();
    let mut out = Vec::with_capacity(book.all.len());
    for b in book.all() {
        let window = money.window(b.period, now);
        let keys = counter_keys(b, window);
        // The counters may be on Redis; the ledger is the truth for what was spent.
        let (pico, tokens) = money.store().ledger_spent(&b.scope, window).await?;
        let held = money
            .backend()
            .read(&[keys.usd])
            .await
            .map(|u| u[0].held)
            .unwrap_or(0);
        let spent = super::cost::usd_of_picos(pico);
        let remaining = b.limit_usd.map(|l| (l - spent).max(Decimal::ZERO));
        let exceeded = b.limit_usd.is_some_and(|l| spent >= l)
            || b.limit_tokens.is_some_and(|l| tokens >= l as i64);
        // At the period's average rate so far (a lifetime budget has no period to average).
        let projected = b
            .limit_usd
            .filter(|_| window.end_ms.is_some())
            .and_then(|limit| {
                let elapsed = (now.as_millisecond() - window.start_ms).max(1) as f64;
                let rate = pico as f64 / 1e12 / elapsed;
                let limit = limit.to_string().parse::<f64>().ok()?;
                if rate <= 0.0 {
                    return None;
                }
                let at = window.start_ms as f64 + limit / rate;
                let at = at.min(i64::MAX as f64) as i64;
                (window.end_ms.is_none_or(|end| at < end))
                    .then(|| iso(at.max(now.as_millisecond())))
            });
        out.push(BudgetStatus {
            budget: b.as_ref().clone(),
            period_start: iso(window.start_ms),
            resets_at: window.end_ms.map(iso),
            spent_usd: spent,
            reserved_usd: usd_of_nanos(held),
            remaining_usd: remaining,
            spent_tokens: tokens,
            remaining_tokens: b.limit_tokens.map(|l| (l as i64 - tokens).max(0)),
            projected_exhaustion: projected,
            exceeded,
        });
    }
    Ok(out)
}

/// "budget team:eng (month): $50 limit, $49.99 spent, resets 2026-12-01T00:00:00Z".
pub(super) fn describe(b: &Budget, used_nanos: i64, w: Window, tokens: bool) -> String {
    let reset = match w.end_ms {
        Some(end) => format!("resets {}", iso(end)),
        None => "never resets".into(),
    };
    if tokens {
        format!(
            "budget {} ({}): limit {} tokens, {} used or reserved, {reset}",
            b.scope,
            b.period.as_str(),
            b.limit_tokens.unwrap_or(0),
            used_nanos
        )
    } else {
        format!(
            "budget {} ({}): limit ${}, ${} spent or reserved, {reset}",
            b.scope,
            b.period.as_str(),
            b.limit_usd.unwrap_or_default().normalize(),
            usd_of_nanos(used_nanos)
        )
    }
}

/// The hard limit in nano-USD a reservation must stay within (`None`: alert only).
pub(super) fn hard_nanos(b: &Budget) -> Option<i64> {
    if b.action == Action::Alert {
        return None;
    }
    b.limit_usd.map(|l| {
        l.checked_mul(Decimal::from(NANOS_PER_USD))
            .and_then(|n| n.floor().try_into().ok())
            .unwrap_or(i64::MAX)
    })
}

pub(super) fn hard_tokens(b: &Budget) -> Option<i64> {
    if b.action == Action::Alert {
        return None;
    }
    b.limit_tokens.map(|t| t.min(i64::MAX as u64) as i64)
}
