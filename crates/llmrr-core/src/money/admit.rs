//! Admission: reserve the most a request can cost on every budget it falls under, all at once,
//! before the call. A hard limit without room rejects the request, or (action `downgrade`)
//! narrows the plan to the candidates that fit what is left, cheapest first.
//!
//! The most a call can cost: every prompt token — bounded from above by the bytes of the
//! request as JSON (a token is at least one byte), plus 1024 for what providers add (tool-use
//! system prompts), plus 40,000 per image — at the dearest prompt price; plus the output
//! (`max_tokens`; else the budget's `default_max_tokens` or, for a model whose output limit is
//! unknown, 4096 — both then also sent upstream as the request's cap — else the model's output
//! limit), plus the thinking budget `reasoning_effort` may add, times the number of outputs;
//! plus the timeout at the compute price for local models.

use super::book::{self, covers, hard_nanos, hard_tokens, CounterKeys};
use super::budget::{nanos_up, Action, Budget, Window};
use super::cost::most;
use super::Money;
use crate::auth::KeyContext;
use crate::config::ProviderKind;
use crate::error::{Error, Result};
use crate::models::ModelEntry;
use crate::routing::Plan;
use crate::shared::{Hold, Reserve, SharedState};
use std::sync::Arc;
use std::time::Duration;

/// Output tokens reserved (and sent as the cap) for a model whose output limit is unknown,
/// when the request sets none.
pub const UNKNOWN_OUTPUT_LIMIT: u64 = 4096;
/// Prompt tokens a provider may add to what the request holds.
const PROVIDER_OVERHEAD_TOKENS: u64 = 1024;
/// Prompt tokens one image may cost (a high-detail image on the dearest vision pricing).
const IMAGE_TOKENS: u64 = 40_000;
/// Prompt tokens assumed for a request with files or audio by reference, when the model's
/// context window is unknown.
const OPAQUE_PROMPT_TOKENS: u64 = 1_000_000;
/// Amounts stay below 2^53: exact in Redis's Lua numbers, and far from overflowing.
pub const MAX_AMOUNT: i64 = 1 << 53;
/// Attempts at reserving (each downgrade or rebuild is one).
const MAX_ROUNDS: usize = 16;

/// What a request asks for, as far as money is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    /// The request (or its prompt, or its input) serialized as JSON.
    pub prompt_bytes: u64,
    pub images: u64,
    /// Parts whose size the request does not show (files and audio by reference).
    pub opaque_parts: u64,
    pub max_output: Option<u64>,
    /// Output tokens a provider may add (Anthropic's thinking budget).
    pub reasoning_extra: u64,
    /// Outputs: `n` (times `best_of` and the prompts of a legacy completion).
    pub choices: u64,
}

impl Need {
    fn prompt_bound(&self) -> u64 {
        self.prompt_bytes
            .saturating_add(PROVIDER_OVERHEAD_TOKENS)
            .saturating_add(self.images.saturating_mul(IMAGE_TOKENS))
    }
}

/// The outcome of admission.
#[derive(Debug, Default)]
pub struct Admission {
    pub reservation: Option<Reservation>,
    /// Send the request with this `max_tokens` (it had none; a budget caps it).
    pub cap_max_tokens: Option<u32>,
    /// Why the plan was narrowed, if it was.
    pub downgraded: Option<String>,
}

struct Line {
    budget: Arc<Budget>,
    window: Window,
    keys: CounterKeys,
    usd: i64,
    tokens: i64,
}

/// Amounts held on budget counters; settled by `Money::record`, released when dropped.
pub struct Reservation {
    money: Money,
    id: String,
    lines: Vec<(Arc<Budget>, Window)>,
    on_fallback: bool,
    pub(super) done: bool,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("id", &self.id)
            .field("budgets", &self.lines.len())
            .finish()
    }
}

impl Reservation {
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn lines(&self) -> &[(Arc<Budget>, Window)] {
        &self.lines
    }

    pub(super) fn backend(&self) -> &SharedState {
        if self.on_fallback {
            &self.money.inner.fallback
        } else {
            &self.money.inner.shared
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Dropped unsettled (a cancelled call, a panic): give the room back.
        let release: Vec<Hold> = self
            .lines
            .iter()
            .flat_map(|(b, w)| {
                let k = book::counter_keys(b, *w);
                [k.usd, k.tokens].map(|key| Hold {
                    key,
                    limit: None,
                    amount: 0,
                    ttl: None,
                })
            })
            .collect();
        let backend = self.backend().clone();
        let id = std::mem::take(&mut self.id);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = backend.settle(&id, &release).await {
                    tracing::warn!(error = %e, "a budget reservation could not be released; \
                        it expires on its own");
                }
            });
        }
    }
}

/// Frees what a reserve may have held, unless disarmed.
struct PendingRelease {
    backend: SharedState,
    id: String,
    holds: Vec<Hold>,
    armed: bool,
}

impl Drop for PendingRelease {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let zero: Vec<Hold> = std::mem::take(&mut self.holds)
            .into_iter()
            .map(|h| Hold {
                amount: 0,
                limit: None,
                ..h
            })
            .collect();
        let (backend, id) = (self.backend.clone(), std::mem::take(&mut self.id));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = backend.settle(&id, &zero).await;
            });
        }
    }
}

fn candidates(plan: &Plan) -> Vec<Arc<ModelEntry>> {
    let mut all = plan.attempts.clone();
    if let Some(c) = &plan.content_fallback {
        if !all.iter().any(|e| Arc::ptr_eq(e, c)) {
            all.push(c.clone());
        }
    }
    all
}

/// The output tokens reserved for `e` under `b`, and whether the request must be sent with
/// that cap (it set none and the model's own limit is not what bounds it).
fn output_tokens(e: &ModelEntry, b: &Budget, need: &Need) -> (u64, bool) {
    if let Some(m) = need.max_output {
        return (m.saturating_add(need.reasoning_extra), false);
    }
    let model_limit = match (e.spec.max_output_tokens, e.spec.provider) {
        (Some(m), _) => Some(u64::from(m)),
        // What the Anthropic provider sends when the client gives none.
        (None, ProviderKind::Anthropic) => Some(u64::from(crate::config::ANTHROPIC_MAX_TOKENS)),
        // The model's own limit bounds its answer (from the price catalog).
        (None, _) => e.spec.output_limit.map(u64::from),
    };
    let (out, capped) = match (b.default_max_tokens, model_limit) {
        (Some(cap), Some(limit)) => (u64::from(cap).min(limit), u64::from(cap) < limit),
        (Some(cap), None) => (u64::from(cap), true),
        (None, Some(limit)) => (limit, false),
        (None, None) => (UNKNOWN_OUTPUT_LIMIT, true),
    };
    (out.saturating_add(need.reasoning_extra), capped)
}

/// The most `e` can cost (nano-USD) and use (tokens) under `b`.
fn most_of(e: &ModelEntry, b: &Budget, need: &Need) -> (i64, i64) {
    let (out, _) = output_tokens(e, b, need);
    // A billed prompt fits the model's context window: a tighter bound where it is known, and
    // the only one for parts whose size the request does not show.
    let window = e.spec.context_window.map(u64::from);
    let prompt = match (need.opaque_parts, window) {
        (0, Some(w)) => need.prompt_bound().min(w),
        (0, None) => need.prompt_bound(),
        (_, Some(w)) => w,
        (_, None) => need.prompt_bound().max(OPAQUE_PROMPT_TOKENS),
    };
    let compute = if e.spec.pricing.per_compute_second.is_zero() {
        Duration::ZERO
    } else {
        e.spec.timeout
    };
    let choices = need.choices.clamp(1, 1 << 20);
    let usd = nanos_up(most(&e.spec.pricing, prompt, out, choices, compute));
    let tokens = prompt.saturating_add(out.saturating_mul(choices));
    (usd.min(MAX_AMOUNT), tokens.min(MAX_AMOUNT as u64) as i64)
}

/// The output cap to send when a reservation assumed one: the smallest output reserved for
/// any candidate (the cap goes to every attempt, so it must fit each of them).
fn cap(entries: &[Arc<ModelEntry>], lines: &[Line], need: &Need) -> Option<u32> {
    let outputs: Vec<(u64, bool)> = lines
        .iter()
        .flat_map(|l| {
            entries
                .iter()
                .filter(|e| covers(&l.budget, &e.spec.name))
                .map(|e| output_tokens(e, &l.budget, need))
        })
        .collect();
    if !outputs.iter().any(|(_, capped)| *capped) {
        return None;
    }
    outputs
        .iter()
        .map(|(out, _)| out.saturating_sub(need.reasoning_extra))
        .min()
        .map(|c| c.clamp(1, u64::from(u32::MAX)) as u32)
}

impl Money {
    /// Reserve for a request planned as `plan`; may narrow `plan` (downgrade).
    pub async fn admit(
        &self,
        id: &str,
        key: &KeyContext,
        plan: &mut Plan,
        need: Need,
    ) -> Result<Admission> {
        let book = self.book();
        if book.is_empty() {
            return Ok(Admission::default());
        }
        let mut downgraded: Option<String> = None;
        let mut rebuilt = false;
        for _ in 0..MAX_ROUNDS {
            let entries = candidates(plan);
            let names: Vec<&str> = entries.iter().map(|e| &*e.spec.name).collect();
            let budgets = book.applicable(key, &names);
            if budgets.is_empty() {
                return Ok(Admission {
                    downgraded,
                    ..Admission::default()
                });
            }
            let now = self.now();
            let mut lines = Vec::with_capacity(budgets.len());
            for b in budgets {
                let covered = entries.iter().filter(|e| covers(&b, &e.spec.name));
                // One call at most, on the dearest candidate; a cascade may call each.
                let cascade = plan.cascade.is_some();
                let (usd, tokens) = covered.map(|e| most_of(e, &b, &need)).fold(
                    (0i64, 0i64),
                    |(u, t), (u2, t2)| {
                        if cascade {
                            (
                                u.saturating_add(u2).min(MAX_AMOUNT),
                                t.saturating_add(t2).min(MAX_AMOUNT),
                            )
                        } else {
                            (u.max(u2), t.max(t2))
                        }
                    },
                );
                let window = self.window(b.period, now);
                lines.push(Line {
                    keys: book::counter_keys(&b, window),
                    window,
                    budget: b,
                    usd,
                    tokens,
                });
            }
            let holds: Vec<Hold> = lines
                .iter()
                .flat_map(|l| {
                    let ttl = book::ttl(l.window, now);
                    [
                        Hold {
                            key: l.keys.usd.clone(),
                            limit: hard_nanos(&l.budget),
                            amount: l.usd,
                            ttl,
                        },
                        Hold {
                            key: l.keys.tokens.clone(),
                            limit: hard_tokens(&l.budget),
                            amount: l.tokens,
                            ttl,
                        },
                    ]
                })
                .collect();
            let backend = self.backend();
            let on_fallback = std::ptr::eq(backend, &self.inner.fallback);
            // Armed while the reserve is in flight: a caller that goes away (the client hung
            // up) or an error after the script ran must not leave the holds behind.
            let mut pending = PendingRelease {
                backend: backend.clone(),
                id: id.to_owned(),
                holds: holds.clone(),
                armed: true,
            };
            let reserved = backend.reserve(id, &holds, self.inner.hold).await;
            if reserved.is_ok() {
                // Held: the reservation owns it now; full or lost: nothing was held.
                pending.armed = false;
            }
            match reserved {
                Ok(Reserve::Held) => {
                    let cap = cap(&entries, &lines, &need);
                    return Ok(Admission {
                        reservation: Some(Reservation {
                            money: self.clone(),
                            id: id.to_owned(),
                            lines: lines.into_iter().map(|l| (l.budget, l.window)).collect(),
                            on_fallback,
                            done: false,
                        }),
                        cap_max_tokens: cap,
                        downgraded,
                    });
                }
                Ok(Reserve::Lost) if !rebuilt => {
                    tracing::warn!(
                        "shared state lost its data: rebuilding budgets from the ledger"
                    );
                    let all = book.all().to_vec();
                    if let Err(e) = self.rebuild_on(backend, &all, true).await {
                        self.degrade(e).await?;
                    }
                    rebuilt = true;
                }
                Ok(Reserve::Lost) => {
                    return Err(Error::Shared(
                        "the shared state keeps losing its data".into(),
                    ))
                }
                Ok(Reserve::Full { index, used }) => {
                    let line = &lines[index / 2];
                    let tokens = index % 2 == 1;
                    let b = line.budget.clone();
                    let what = book::describe(&b, used, line.window, tokens);
                    let retry_after = line.window.end_ms.map(|end| {
                        Duration::from_millis((end - now.as_millisecond()).max(1000) as u64)
                    });
                    metrics::counter!(crate::telemetry::BUDGET_REFUSALS, "action" => b.action.as_str())
                        .increment(1);
                    // A model's budget that is full leaves the other candidates of the plan.
                    let model_scoped = b.scope.model().is_some()
                        && plan.attempts.iter().any(|e| !covers(&b, &e.spec.name));
                    if b.action != Action::Downgrade && !model_scoped {
                        return Err(Error::BudgetExceeded {
                            message: format!("{what}: this request does not fit"),
                            retry_after,
                        });
                    }
                    let limit = if tokens {
                        hard_tokens(&b)
                    } else {
                        hard_nanos(&b)
                    }
                    .unwrap_or(i64::MAX);
                    let left = limit.saturating_sub(used);
                    let fits = |e: &Arc<ModelEntry>| {
                        if !covers(&b, &e.spec.name) {
                            return true;
                        }
                        if b.action != Action::Downgrade {
                            return false;
                        }
                        let (usd, tok) = most_of(e, &b, &need);
                        (if tokens { tok } else { usd }) <= left
                    };
                    let cost = |e: &Arc<ModelEntry>| most_of(e, &b, &need).0;
                    let before = plan.attempts.len();
                    plan.attempts.retain(fits);
                    let mut dropped_fallback = false;
                    if plan.content_fallback.as_ref().is_some_and(|c| !fits(c)) {
                        plan.content_fallback = None;
                        dropped_fallback = true;
                    }
                    if plan.attempts.is_empty() {
                        return Err(Error::BudgetExceeded {
                            message: format!(
                                "{what}: no model of `{}` fits what is left",
                                plan.decision
                                    .route
                                    .as_deref()
                                    .unwrap_or(&plan.decision.model)
                            ),
                            retry_after,
                        });
                    }
                    if plan.attempts.len() == before && !dropped_fallback {
                        // A cascade whose models fit one by one but not all together: its
                        // dearest step goes, and the rest is reserved again.
                        let dearest = plan
                            .attempts
                            .iter()
                            .enumerate()
                            .filter(|(_, e)| covers(&b, &e.spec.name))
                            .max_by_key(|(_, e)| cost(e))
                            .map(|(i, _)| i)
                            .filter(|_| {
                                plan.cascade.is_some()
                                    && b.action == Action::Downgrade
                                    && plan.attempts.len() > 1
                            });
                        let Some(i) = dearest else {
                            // Nothing changed: the budget's other counter is the one full.
                            return Err(Error::BudgetExceeded {
                                message: format!("{what}: this request does not fit"),
                                retry_after,
                            });
                        };
                        plan.attempts.remove(i);
                    }
                    let why = if b.action == Action::Downgrade {
                        // A cascade keeps its own order (cheapest first by its estimate).
                        if plan.cascade.is_none() {
                            plan.attempts.sort_by_key(|e| cost(e));
                        }
                        format!(
                            "downgraded by budget {} ({}): candidates that fit what is left, \
                             cheapest first",
                            b.scope,
                            b.period.as_str()
                        )
                    } else {
                        format!(
                            "budget {} ({}) is spent: its model is left out",
                            b.scope,
                            b.period.as_str()
                        )
                    };
                    let first = plan.attempts[0].spec.name.to_string();
                    plan.decision.reason = why.clone();
                    plan.decision.model = first;
                    plan.decision.plan = plan
                        .attempts
                        .iter()
                        .map(|e| e.spec.name.to_string())
                        .collect();
                    downgraded = Some(why);
                }
                Err(e) => {
                    // The script may have run before the error (a timeout): free its holds.
                    drop(pending);
                    self.degrade(e).await?
                }
            }
        }
        Err(Error::Internal("budget admission did not settle".into()))
    }
}
