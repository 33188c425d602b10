//! `cascade` routes: an answer that fails the route's checks (`routing::cascade`) is held and
//! the next model is called. When the cascade ends, each held answer is costed and logged as a
//! step of its own (rows `<id>.<n>`, marked `cascade_escalated`); when every later model
//! fails, the last held answer is the answer after all (a complete, paid-for answer is better
//! than an error).

use super::attempt::{Outcome, Success};
use super::*;
use crate::money::budget::nanos_up;
use crate::money::Spent;
use crate::routing::CascadeStep;

/// Longest check text kept in an explanation (it may quote the answer).
const MAX_CHECK_CHARS: usize = 160;

/// An answer that failed the route's checks.
pub(super) struct Rejected {
    entry: Arc<ModelEntry>,
    probe: bool,
    took: Duration,
    /// Upstream time of the attempts that led to it, its own included.
    upstream: Duration,
    completed: Completed,
    grant: Ticket,
    check: String,
}

impl Rejected {
    pub(super) fn check(&self) -> &str {
        &self.check
    }

    /// The held answer as the request's answer (every later model failed, after
    /// `failed_upstream` of upstream time).
    pub(super) fn into_answer(
        self,
        failed: &Error,
        failed_upstream: Duration,
    ) -> (Success, String) {
        let mut attempts = Attempts::new();
        attempts.upstream = self.upstream.saturating_sub(self.took) + failed_upstream;
        let note = format!(
            "cascade: every model after `{}` failed ({}); its answer stands although {}",
            self.entry.spec.name,
            cut(&failed.client_message()),
            self.check
        );
        let success = Success {
            flight: Flight::start(&self.entry),
            started: Instant::now()
                .checked_sub(self.took)
                .unwrap_or_else(Instant::now),
            entry: self.entry,
            probe: self.probe,
            outcome: Outcome::Completed(self.completed),
            attempts,
            grant: self.grant,
            // Its attempt's span ended when its answer was held back.
            span: tracing::Span::none(),
        };
        (success, note)
    }
}

impl Gateway {
    /// `s` when it passes the cascade's checks (or nothing is left to escalate to); else the
    /// answer held back, and why.
    pub(super) fn cascade_check(
        &self,
        call: &Call,
        plan: &Plan,
        s: Success,
    ) -> std::result::Result<Success, Box<Rejected>> {
        let (Some(rule), Some(req), Outcome::Completed(completed)) =
            (&plan.cascade, call.chat(), &s.outcome)
        else {
            return Ok(s);
        };
        if plan.attempts.is_empty() {
            return Ok(s);
        }
        let Some(check) = crate::routing::cascade::rejects(rule, req, &completed.body) else {
            return Ok(s);
        };
        let Success {
            entry,
            probe,
            started,
            flight,
            outcome,
            attempts,
            grant,
            span,
        } = s;
        let completed = match outcome {
            Outcome::Completed(c) => c,
            outcome => {
                return Ok(Success {
                    entry,
                    probe,
                    started,
                    flight,
                    outcome,
                    attempts,
                    grant,
                    span,
                })
            }
        };
        spans::usage(&span, &completed.usage);
        drop(flight);
        let took = started.elapsed();
        Err(Box::new(Rejected {
            entry,
            probe,
            took,
            upstream: attempts.upstream + took,
            completed,
            grant,
            check: cut(&check),
        }))
    }

    /// The cascade's held answers, costed and logged as steps; the explanation lists every
    /// step. Adds their upstream time to `upstream` and what they spent to `finish`.
    pub(super) async fn cascade_steps(
        &self,
        ctx: &RequestContext,
        call: &Call,
        plan: &mut Plan,
        held: Vec<Rejected>,
        finish: &mut Finish<'_>,
        upstream: &mut Duration,
    ) {
        let mut escalated = Vec::new();
        for (n, r) in held.into_iter().enumerate() {
            let sample = Sample {
                success: true,
                latency: Some(r.took),
                ttft: None,
                output_tokens: r.completed.usage.completion_tokens,
            };
            self.observe(plan, &r.entry, r.probe, sample, None);
            // The step's row: its own call's time, not the cascade's whole.
            let step = RequestContext {
                id: format!("{}.{}", ctx.id, n + 1),
                sub_call: true,
                started: Instant::now()
                    .checked_sub(r.upstream)
                    .unwrap_or(ctx.started)
                    .max(ctx.started),
                ..ctx.clone()
            };
            let mut row = Finish::new(&step, call, false);
            row.plan_from(plan);
            row.entry = Some(&r.entry);
            row.usage = r.completed.usage;
            row.compute = r.completed.compute;
            row.upstream = Some(r.upstream);
            row.tickets.push(r.grant);
            row.escalated = true;
            let cost = self.finish(row).await;
            *upstream += r.upstream;
            let model = r.entry.spec.name.to_string();
            escalated.push(format!("`{model}` ({})", r.check));
            plan.decision.cascade.push(CascadeStep {
                model: model.clone(),
                accepted: false,
                failed_check: Some(r.check),
                cost_usd: cost.normalize().to_string(),
            });
            let used = r.completed.usage.prompt_tokens + r.completed.usage.completion_tokens;
            finish.earlier.push((
                model,
                Spent {
                    nanos: nanos_up(cost),
                    tokens: used.min(i64::MAX as u64) as i64,
                },
            ));
        }
        if !escalated.is_empty() {
            plan.decision.reason = format!("cascade: escalated from {}", escalated.join(", "));
        }
    }

    /// The last step of the explanation: the answer given.
    pub(super) fn cascade_answered(
        plan: &mut Plan,
        entry: &ModelEntry,
        completed: &Completed,
        kept: Option<String>,
    ) {
        if plan.cascade.is_none() {
            return;
        }
        plan.decision.model = entry.spec.name.to_string();
        plan.decision.cascade.push(CascadeStep {
            model: entry.spec.name.to_string(),
            accepted: true,
            failed_check: kept,
            cost_usd: cost_of(&entry.spec.pricing, &completed.usage, completed.compute)
                .normalize()
                .to_string(),
        });
    }
}

fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_CHECK_CHARS {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX_CHECK_CHARS).collect();
    out.push('…');
    out
}
