//! `cascade` routes: an answer that fails the route's checks (`routing::cascade`) is costed,
//! logged as its own step, and the next model is called.

use super::attempt::{Outcome, Success};
use super::*;
use crate::money::budget::nanos_up;
use crate::money::Spent;
use crate::routing::CascadeStep;

impl Gateway {
    /// Accept `s`, or record it as an escalated step of the cascade and say what it spent.
    /// Only non-streamed answers are checked, and only while a next model is left.
    pub(super) async fn cascade_check(
        &self,
        ctx: &RequestContext,
        call: &Call,
        plan: &mut Plan,
        s: Success,
    ) -> std::result::Result<Success, (String, Spent)> {
        let (Some(rule), Some(req), Outcome::Completed(completed)) =
            (&plan.cascade, call.chat(), &s.outcome)
        else {
            return Ok(s);
        };
        let model = s.entry.spec.name.to_string();
        let rejected = crate::routing::cascade::rejects(rule, req, &completed.body);
        let why = match (plan.attempts.is_empty(), rejected) {
            (false, Some(why)) => why,
            _ => {
                plan.decision.cascade.push(CascadeStep {
                    model,
                    accepted: true,
                    escalated: None,
                    cost_usd: cost_of(&s.entry.spec.pricing, &completed.usage, completed.compute)
                        .normalize()
                        .to_string(),
                });
                return Ok(s);
            }
        };
        let Success {
            entry,
            probe,
            started,
            flight,
            outcome: Outcome::Completed(completed),
            attempts,
            grant,
        } = s
        else {
            return Err((model, Spent::default()));
        };
        drop(flight);
        let took = started.elapsed();
        let sample = Sample {
            success: true,
            latency: Some(took),
            ttft: None,
            output_tokens: completed.usage.completion_tokens,
        };
        self.observe(plan, &entry, probe, sample, None);
        // The step is a request-log and ledger row of its own: `<id>.<step>`.
        let step = RequestContext {
            id: format!("{}.{}", ctx.id, plan.decision.cascade.len() + 1),
            ..ctx.clone()
        };
        let mut finish = Finish::new(&step, call, false);
        finish.plan_from(plan);
        finish.entry = Some(&entry);
        finish.usage = completed.usage;
        finish.compute = completed.compute;
        finish.upstream = Some(attempts.upstream + took);
        finish.tickets.push(grant);
        finish.escalated = true;
        let cost = self.finish(finish).await;
        let next = plan
            .attempts
            .first()
            .map(|e| e.spec.name.to_string())
            .unwrap_or_default();
        plan.decision.reason = format!("cascade: escalated from `{model}` ({why})");
        plan.decision.model = next;
        plan.decision.cascade.push(CascadeStep {
            model: model.clone(),
            accepted: false,
            escalated: Some(why),
            cost_usd: cost.normalize().to_string(),
        });
        let used = completed.usage.prompt_tokens + completed.usage.completion_tokens;
        Err((
            model,
            Spent {
                nanos: nanos_up(cost),
                tokens: used.min(i64::MAX as u64) as i64,
            },
        ))
    }
}
