//! The checks of one request: [`Limits::admit`] (the client's limits), [`Limits::upstream`]
//! (a model's account limits), and the [`Ticket`] that settles them when the call ends.

use super::{Limits, Priority};
use crate::auth::KeyContext;
use crate::error::{Error, Result};
use crate::models::ModelEntry;
use crate::money::budget::Period;
use crate::shared::{Hold, Rate, RateCheck, Reserve, SharedState};
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);
/// A quota counter outlives its period by this (clocks of replicas a little apart).
const QUOTA_MARGIN: Duration = Duration::from_secs(3600);
/// Retry-After of a refusal for concurrency: a slot frees when any call ends.
const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);

/// Why a model's own account limits refused an attempt.
#[derive(Debug)]
pub struct UpstreamRefusal {
    pub reason: String,
    pub wait: Option<Duration>,
    /// Every request would be refused now (skip the model for everyone until `wait`).
    pub whole_model: bool,
}

/// One `x-ratelimit-*` trio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gauge {
    pub limit: u64,
    pub remaining: u64,
    pub reset: Duration,
}

/// The tightest request and token limits of a request, for OpenAI's headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Gauge>,
    pub tokens: Option<Gauge>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Concurrency,
    Requests,
    Tokens,
}

/// What a request took from its limits, settled when its call ends: the token estimate
/// becomes the real count, its concurrency is freed, its quotas count what it used. Dropped
/// unsettled (a panic, a cancelled task), it settles at the estimate in the background.
#[must_use = "a ticket settles its limits when the call ends"]
pub struct Ticket {
    pub class: Priority,
    pending: Option<Pending>,
}

struct Pending {
    id: String,
    estimate: u64,
    rates: Option<(SharedState, Vec<Rate>)>,
    holds: Option<(SharedState, Vec<Hold>, Vec<Kind>)>,
}

impl Drop for Pending {
    /// Dropped before it was settled or undone (the admission future was cancelled midway:
    /// the client left): give back what it took.
    fn drop(&mut self) {
        if self.rates.is_none() && self.holds.is_none() {
            return;
        }
        let rest = Pending {
            id: std::mem::take(&mut self.id),
            estimate: self.estimate,
            rates: self.rates.take(),
            holds: self.holds.take(),
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(rest.undo());
        }
    }
}

impl Pending {
    async fn undo(mut self) {
        if let Some((state, rates)) = self.rates.take() {
            for r in rates {
                let back = Rate { cost: -r.cost, ..r };
                if let Err(e) = state.rate_adjust(&back).await {
                    tracing::debug!(error = %e, "limits: a refund was lost");
                }
            }
        }
        if let Some((state, holds, _)) = self.holds.take() {
            let released: Vec<Hold> = holds.into_iter().map(|h| Hold { amount: 0, ..h }).collect();
            if let Err(e) = state.settle(&self.id, &released).await {
                tracing::warn!(error = %e, "limits: a release was lost (its holds expire)");
            }
        }
    }

    async fn run(mut self, used: u64) {
        let delta = used as i64 - self.estimate as i64;
        if let Some((state, rates)) = self.rates.take().filter(|_| delta != 0) {
            for r in rates.into_iter().filter(|r| r.key.ends_with(":tpm")) {
                let adjust = Rate { cost: delta, ..r };
                if let Err(e) = state.rate_adjust(&adjust).await {
                    tracing::debug!(error = %e, "limits: a token settle was lost");
                }
            }
        }
        if let Some((state, holds, kinds)) = self.holds.take() {
            let actual: Vec<Hold> = holds
                .into_iter()
                .zip(kinds)
                .map(|(h, kind)| Hold {
                    amount: match kind {
                        Kind::Concurrency => 0,
                        Kind::Requests => 1,
                        Kind::Tokens => used.min(i64::MAX as u64) as i64,
                    },
                    ..h
                })
                .collect();
            if let Err(e) = state.settle(&self.id, &actual).await {
                tracing::warn!(error = %e, "limits: a settle was lost (its holds expire)");
            }
        }
    }
}

impl Ticket {
    pub fn free(class: Priority) -> Ticket {
        Ticket {
            class,
            pending: None,
        }
    }

    /// The work that settles this ticket with `used` tokens (none when nothing was taken).
    pub fn settle(mut self, used: u64) -> Option<impl std::future::Future<Output = ()> + Send> {
        self.pending.take().map(|p| p.run(used))
    }

    /// The work that gives everything back: the request did not go ahead (a budget refused
    /// it, the model's queue or breaker did): no request, no token, no slot counted.
    pub fn cancel(mut self) -> Option<impl std::future::Future<Output = ()> + Send> {
        self.pending.take().map(Pending::undo)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let estimate = p.estimate;
                rt.spawn(p.run(estimate));
            }
        }
    }
}

/// The per-minute rates of one scope: a request counts 1 against `rpm` and its `tokens`
/// against `tpm`. Keys are `{scope}:{limit}:{rpm|tpm}` (see [`rate_name`]).
fn push_minute_rates(
    rates: &mut Vec<Rate>,
    scope: &str,
    rpm: Option<u64>,
    tpm: Option<u64>,
    tokens: u64,
) {
    let tokens = tokens.min(1 << 50) as i64;
    for (limit, kind, cost) in [(rpm, "rpm", 1), (tpm, "tpm", tokens)] {
        if let Some(limit) = limit {
            rates.push(Rate {
                key: format!("{scope}:{limit}:{kind}"),
                limit,
                period: MINUTE,
                cost,
            });
        }
    }
}

fn refused(message: String, retry_after: Option<Duration>) -> Error {
    metrics::counter!(crate::telemetry::RATE_LIMITED).increment(1);
    Error::RateLimited {
        message,
        retry_after,
    }
}

fn headers(rates: &[Rate], check: &RateCheck) -> RateHeaders {
    let tightest = |tokens: bool| {
        // The caller's own limits only (key, user, team): a deployment-wide or per-model
        // limit's remaining count would show every tenant the others' traffic.
        rates
            .iter()
            .zip(&check.states)
            .filter(|(r, _)| r.key.ends_with(":tpm") == tokens)
            .filter(|(r, _)| !(r.key.starts_with("global") || r.key.starts_with("model:")))
            .map(|(r, s)| Gauge {
                limit: r.limit,
                remaining: s.remaining,
                reset: s.reset,
            })
            .min_by_key(|g| g.remaining)
    };
    RateHeaders {
        requests: tightest(false),
        tokens: tightest(true),
    }
}

/// The scope and what a rate key limits. Keys are `{scope}:{limit}:{rpm|tpm}`: the limit is
/// part of the key, so that a changed limit applies at once (a fresh bucket) instead of being
/// read through the old one's state.
fn rate_name(key: &str) -> (&str, &'static str) {
    let (rest, kind) = key.rsplit_once(':').unwrap_or((key, "rpm"));
    let scope = rest.rsplit_once(':').map_or(rest, |(scope, _limit)| scope);
    match kind {
        "tpm" => (scope, "tokens per minute"),
        _ => (scope, "requests per minute"),
    }
}

impl Limits {
    /// Check every limit that applies to `key` asking for `requested` with an estimate of
    /// `tokens`, all or none. `asked`: the class the request asked for.
    pub async fn admit(
        &self,
        key: &KeyContext,
        id: &str,
        requested: &str,
        tokens: u64,
        asked: Option<Priority>,
        rate_out: &std::sync::OnceLock<RateHeaders>,
    ) -> Result<Ticket> {
        self.fresh_for(key).await;
        let rules = self.rules();
        let class = rules.priority(key, asked);
        if rules.is_empty() {
            return Ok(Ticket::free(class));
        }
        let applied = rules.applying(key, requested);
        if applied.is_empty() {
            return Ok(Ticket::free(class));
        }
        let tokens_i = tokens.min(1 << 50) as i64;
        let mut rates = Vec::new();
        let mut holds = Vec::new();
        let mut kinds = Vec::new();
        // Per counter: its scope, what it counts, and when its period ends (for messages).
        let mut named: Vec<(&str, &'static str, Option<i64>)> = Vec::new();
        let now = self.money().now();
        let now_ms = now.as_millisecond();
        for a in &applied {
            let s = a.set;
            push_minute_rates(&mut rates, &a.scope, s.rpm, s.tpm, tokens);
            if let Some(limit) = s.max_concurrent {
                holds.push(Hold {
                    key: format!("{}:cc", a.scope),
                    limit: Some(limit as i64),
                    amount: 1,
                    ttl: None,
                });
                kinds.push(Kind::Concurrency);
                named.push((a.scope.as_str(), "concurrency", None));
            }
            let quotas = [
                (
                    Period::Day,
                    "rpd",
                    s.requests_per_day,
                    Kind::Requests,
                    "daily request quota",
                ),
                (
                    Period::Day,
                    "tpd",
                    s.tokens_per_day,
                    Kind::Tokens,
                    "daily token quota",
                ),
                (
                    Period::Month,
                    "rpmo",
                    s.requests_per_month,
                    Kind::Requests,
                    "monthly request quota",
                ),
                (
                    Period::Month,
                    "tpmo",
                    s.tokens_per_month,
                    Kind::Tokens,
                    "monthly token quota",
                ),
            ];
            for (period, tag, limit, kind, what) in quotas {
                let Some(limit) = limit else { continue };
                let w = self.money().window(period, now);
                let left = w.end_ms.map_or(Duration::from_secs(86_400 * 31), |end| {
                    Duration::from_millis((end - now_ms).max(1) as u64)
                });
                holds.push(Hold {
                    key: format!("{}:{tag}:{}", a.scope, w.start_ms),
                    limit: Some(limit as i64),
                    amount: if kind == Kind::Tokens { tokens_i } else { 1 },
                    ttl: Some(left + QUOTA_MARGIN),
                });
                kinds.push(kind);
                named.push((a.scope.as_str(), what, w.end_ms));
            }
        }
        let mut ticket = Ticket::free(class);
        let mut pending = Pending {
            id: id.to_owned(),
            estimate: tokens,
            rates: None,
            holds: None,
        };
        if !rates.is_empty() {
            let Some((state, check)) = self.rate_on_backend(&rates).await? else {
                return Ok(ticket);
            };
            let _ = rate_out.set(headers(&rates, &check));
            if let Some(i) = check.refused {
                let (scope, what) = rate_name(&rates[i].key);
                let wait = check.retry_after.map_or_else(
                    || {
                        format!(
                            "this request's {} tokens are more than the whole limit",
                            tokens
                        )
                    },
                    |d| format!("try again in {:.1}s", d.as_secs_f64()),
                );
                return Err(refused(
                    format!(
                        "rate limit reached: {what} of {scope} (limit {}); {wait}",
                        rates[i].limit
                    ),
                    check.retry_after.map(|d| d.max(Duration::from_millis(1))),
                ));
            }
            pending.rates = Some((state.clone(), rates));
        }
        if !holds.is_empty() {
            let (state, reserved) = match self.reserve_on_backend(id, &holds).await {
                Ok(Some(found)) => found,
                Ok(None) => {
                    ticket.pending = Some(pending);
                    return Ok(ticket);
                }
                Err(e) => {
                    pending.undo().await;
                    return Err(e);
                }
            };
            if let Reserve::Full { index, used } = reserved {
                // Give back the rates taken: the request does not go ahead.
                pending.undo().await;
                let limit = holds[index].limit.unwrap_or(0);
                let (scope, what, end_ms) = named[index];
                let (message, retry) = match end_ms {
                    None if what == "concurrency" => (
                        format!("concurrency limit reached: {limit} requests in flight at once for {scope}"),
                        CONCURRENCY_RETRY,
                    ),
                    end => {
                        let left = end.unwrap_or(now_ms) - now_ms;
                        (
                            format!("{what} of {scope} reached: {used} of {limit} used; it resets in {:.0}s",
                                left.max(0) as f64 / 1000.0),
                            Duration::from_millis(left.max(1000) as u64),
                        )
                    }
                };
                return Err(refused(message, Some(retry)));
            }
            pending.holds = Some((state.clone(), holds, kinds));
        }
        ticket.pending = Some(pending);
        Ok(ticket)
    }

    /// A rate check on the backend in use, with the outage policy when Redis fails. `None`:
    /// not enforced (policy `allow`).
    async fn rate_on_backend(&self, rates: &[Rate]) -> Result<Option<(SharedState, RateCheck)>> {
        let state = self.backend();
        match state.rate(rates).await {
            Ok(c) => Ok(Some((state.clone(), c))),
            Err(e) => match self.on_outage(&e)? {
                Some(local) => Ok(Some((local.clone(), local.rate(rates).await?))),
                None => Ok(None),
            },
        }
    }

    async fn reserve_on_backend(
        &self,
        id: &str,
        holds: &[Hold],
    ) -> Result<Option<(SharedState, Reserve)>> {
        let state = self.backend();
        let mut tried = state.reserve(id, holds, self.inner.hold).await;
        if matches!(tried, Ok(Reserve::Lost)) {
            // Redis lost its data: limits start again from zero.
            let _ = state.rebuild(&[], true).await;
            tried = state.reserve(id, holds, self.inner.hold).await;
        }
        match tried {
            Ok(Reserve::Lost) => {
                let e = Error::Shared("redis: limit counters lost twice in a row".into());
                match self.on_outage(&e)? {
                    Some(local) => Ok(Some((
                        local.clone(),
                        local.reserve(id, holds, self.inner.hold).await?,
                    ))),
                    None => Ok(None),
                }
            }
            Ok(r) => Ok(Some((state.clone(), r))),
            Err(e) => match self.on_outage(&e)? {
                Some(local) => Ok(Some((
                    local.clone(),
                    local.reserve(id, holds, self.inner.hold).await?,
                ))),
                None => Ok(None),
            },
        }
    }

    /// The model's own account limits (`rpm`, `tpm` of `[[models]]`) before an attempt with
    /// an estimate of `tokens`. `Err((reason, wait))`: skip the model.
    ///
    /// When the request named something else (a route, a fallback), the caller's per-model
    /// rules of this model (`models` entries, `model:NAME`: requests and tokens per minute)
    /// are checked here too, so a route is no way around them; they skip the model for this
    /// request only.
    pub async fn upstream(
        &self,
        key: &KeyContext,
        requested: &str,
        entry: &ModelEntry,
        tokens: u64,
    ) -> std::result::Result<Ticket, UpstreamRefusal> {
        let spec = &entry.spec;
        let mut rates = Vec::new();
        if *spec.name != *requested {
            let rules = self.rules();
            for a in rules.for_model(key, &spec.name) {
                push_minute_rates(&mut rates, &a.scope, a.set.rpm, a.set.tpm, tokens);
            }
        }
        let caller_rates = rates.len();
        let scope = format!("upstream:{}", spec.name);
        push_minute_rates(&mut rates, &scope, spec.limits.rpm, spec.limits.tpm, tokens);
        if rates.is_empty() {
            return Ok(Ticket::free(Priority::Normal));
        }
        let checked = self
            .rate_on_backend(&rates)
            .await
            .map_err(|e| UpstreamRefusal {
                reason: format!("{}: {}", spec.name, e),
                wait: Some(Duration::from_secs(1)),
                whole_model: false,
            })?;
        let Some((state, check)) = checked else {
            return Ok(Ticket::free(Priority::Normal));
        };
        if let Some(i) = check.refused {
            let (scope, what) = rate_name(&rates[i].key);
            let wait = check.retry_after;
            if i < caller_rates {
                return Err(UpstreamRefusal {
                    reason: format!(
                        "{}: the {what} of {scope} (limit {}) is reached",
                        spec.name, rates[i].limit
                    ),
                    wait,
                    whole_model: false,
                });
            }
            return Err(UpstreamRefusal {
                reason: format!(
                    "{}: at its configured {what} ({}){}",
                    spec.name,
                    rates[i].limit,
                    wait.map_or(String::new(), |d| format!(
                        " for {:.1}s more",
                        d.as_secs_f64()
                    ))
                ),
                wait,
                // Requests per minute: every request is refused alike, the model is at its
                // limit. Tokens: it may be this request's size only.
                whole_model: rates[i].key.ends_with(":rpm"),
            });
        }
        Ok(Ticket {
            class: Priority::Normal,
            pending: Some(Pending {
                id: String::new(),
                estimate: tokens,
                rates: Some((state, rates)),
                holds: None,
            }),
        })
    }
}
