//! Why a model is left out of a plan — access, capabilities, health, constraints — and the
//! error when nothing is left.

use super::features::Features;
use super::stats::StatsSnapshot;
use crate::config::routing::{Constraints, TierSpec};
use crate::error::Error;
use crate::models::ModelEntry;
use rust_decimal::Decimal;
use std::time::Duration;

/// Why a model was left out, as far as it decides the error when nothing is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    /// The key or tier, a constraint, or health: nothing the request itself can change.
    Other,
    /// A capability the request needs (the parameter that needs it).
    Capability(&'static str),
    /// The prompt (plus the output asked for) does not fit the context window.
    ContextWindow,
}

/// Whether the caller may use the model (`allowed`: by its key) and the model can serve the
/// request. `kind_check`: also what its provider kind can honour — skipped for a model named
/// directly, whose provider then refuses with the exact parameter named.
pub(super) fn access(
    e: &ModelEntry,
    allowed: bool,
    kind_check: bool,
    tier: Option<&TierSpec>,
    f: &Features,
) -> Option<(String, Cause)> {
    let caps = e.spec.capabilities;
    if !allowed {
        return Some(("not allowed for this key".into(), Cause::Other));
    }
    if let Some(t) = tier {
        if !t.allows(&e.spec.name) {
            return Some((format!("not in tier `{}`", t.name), Cause::Other));
        }
    }
    if f.tools && !caps.tools {
        return Some(("no tool support".into(), Cause::Capability("tools")));
    }
    if f.vision && !caps.vision {
        return Some(("no image input".into(), Cause::Capability("messages")));
    }
    if f.json && !caps.json {
        return Some(("no JSON mode".into(), Cause::Capability("response_format")));
    }
    if let Some(param) = kind_check
        .then(|| e.spec.provider.cannot_serve(f))
        .flatten()
    {
        return Some((
            format!(
                "{} models cannot honour `{param}`",
                e.spec.provider.as_str()
            ),
            Cause::Capability(param),
        ));
    }
    if let Some(window) = e.spec.context_window {
        let needed = f.prompt_tokens + f.max_output_tokens.unwrap_or(0);
        if needed > u64::from(window) {
            return Some((
                format!("context window {window} < ~{needed} tokens needed"),
                Cause::ContextWindow,
            ));
        }
    }
    None
}

/// A 503 for open breakers says when to try again, capped: a client that sleeps a whole
/// cooldown (minutes) would wait far longer than a probe needs.
pub const BREAKER_RETRY_AFTER_CAP: Duration = Duration::from_secs(5);
/// A 429 from rate limits says the soonest reset, capped likewise.
pub const RATE_LIMIT_RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// The error when no model is left: every reason listed; the code says whether only the
/// prompt's size or only a capability stood in the way.
pub(super) fn no_candidate(
    requested: &str,
    reasons: Vec<String>,
    causes: &[Cause],
    transient: &[(bool, Duration)],
) -> Error {
    use crate::error::NoCandidateCause;
    let (status, retry_after) = if transient.is_empty() {
        (400, None)
    } else {
        let all_rate = transient.iter().all(|(rate, _)| *rate);
        let cap = if all_rate {
            RATE_LIMIT_RETRY_AFTER_CAP
        } else {
            BREAKER_RETRY_AFTER_CAP
        };
        let soonest = transient.iter().map(|(_, d)| *d).min();
        (
            if all_rate { 429 } else { 503 },
            soonest.map(|d| d.clamp(Duration::from_secs(1), cap)),
        )
    };
    let capability = causes.iter().find_map(|c| match c {
        Cause::Capability(param) => Some(*param),
        _ => None,
    });
    let cause = if status != 400 || causes.is_empty() {
        NoCandidateCause::Unavailable
    } else if causes.iter().all(|c| *c == Cause::ContextWindow) {
        NoCandidateCause::ContextLength
    } else if causes.iter().all(|c| *c != Cause::Other) {
        capability.map_or(NoCandidateCause::Unavailable, |param| {
            NoCandidateCause::Unsupported { param }
        })
    } else {
        NoCandidateCause::Unavailable
    };
    Error::NoCandidate {
        requested: requested.to_owned(),
        reasons: if reasons.is_empty() {
            vec!["no model is configured for it".into()]
        } else {
            reasons
        },
        status,
        retry_after,
        cause,
    }
}

pub(super) struct Unhealthy {
    pub(super) reason: String,
    pub(super) rate_limited: bool,
    pub(super) retry_in: Duration,
}

/// Transient reasons: the breaker, a rate limit.
pub(super) fn health(e: &ModelEntry) -> Option<Unhealthy> {
    if let Some(retry_in) = e.breaker.refused_for() {
        return Some(Unhealthy {
            reason: "circuit open".into(),
            rate_limited: false,
            retry_in,
        });
    }
    e.rate_limited().map(|d| Unhealthy {
        reason: format!("rate limited for {:.1}s more", d.as_secs_f64()),
        rate_limited: true,
        retry_in: d,
    })
}

pub(super) fn constraint(
    e: &ModelEntry,
    c: &Constraints,
    est_cost: Option<Decimal>,
    stats: &StatsSnapshot,
    stream: bool,
) -> Option<String> {
    if let Some(min) = c.min_quality {
        if e.spec.quality < min {
            return Some(format!("quality {} < min {min}", e.spec.quality));
        }
    }
    if let (Some(max), Some(est)) = (c.max_cost_usd, est_cost) {
        if est > max {
            return Some(format!(
                "est. cost ${} > max ${max}",
                est.round_dp(8).normalize()
            ));
        }
    }
    if let Some(max) = c.max_latency {
        let measured = if stream {
            stats.ttft_ms.or(stats.latency_ms)
        } else {
            stats.latency_ms
        };
        if let Some(ms) = measured {
            if ms > max.as_secs_f64() * 1000.0 {
                return Some(format!(
                    "latency {ms:.0} ms > max {:.0} ms",
                    max.as_secs_f64() * 1000.0
                ));
            }
        }
    }
    None
}
