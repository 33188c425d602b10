//! Which model answers. A request names a concrete model or a route; the [`Router`] turns it
//! into a [`Plan`]: the candidates that may serve it, ranked by the strategy, then the
//! fallbacks — with a [`Decision`] that explains every step.
//!
//! Steps of [`Router::plan`]:
//! 1. resolve the name: a route (its models, strategy, constraints, fallbacks) or a model;
//!    the request's `llmrr` options override the route's defaults for this request only
//! 2. filter every candidate, keeping the reason of each exclusion: key and tier access,
//!    capabilities (tools, images, JSON mode), the estimated prompt against the context
//!    window, circuit breaker, rate limit (Retry-After), then the constraints (min quality,
//!    max estimated cost, max live latency)
//! 3. rank what is left with the strategy
//! 4. an active rollout picks between its two models by its current percentage
//! 5. append the fallbacks (filtered the same way but for the constraints, unless they
//!    replace every ranked model); nothing left: the error says every reason (`exclusion`)
//!
//! Layout: `strategy/` (one file per strategy), `stats` (live numbers per model), `breaker`,
//! `retry` (backoff), `classify` (what an error means for the next attempt), `rollout`,
//! `features` (what a request needs), `options` (the per-request overrides), `exclusion` (why
//! a model is left out, and the error when nothing is left), `window`.

pub mod breaker;
pub mod breaker_sync;
pub mod cascade;
pub mod classify;
pub mod difficulty;
mod exclusion;
pub mod features;
pub mod feedback;
pub mod options;
pub mod retry;
pub mod rollout;
pub mod stats;
pub mod strategy;
mod window;

use crate::auth::KeyContext;
use crate::config::routing::{Constraints, RouteSpec, RoutingConfig, StrategyKind, TierSpec};
use crate::error::{Error, Result};
use crate::models::{ModelEntry, ModelRegistry};
use difficulty::calibrate::ShareCalibrator;
use difficulty::{ChatText, Difficulty};
use exclusion::{access, constraint, health, no_candidate, Cause};
pub use exclusion::{BREAKER_RETRY_AFTER_CAP, RATE_LIMIT_RETRY_AFTER_CAP};
use features::Features;
use llmrr_types::openai::ChatCompletionRequest;
use options::RequestOptions;
use rand::Rng;
use rollout::{RolloutBook, RolloutState};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use strategy::{Candidate, Level, RankInput};

struct RouteState {
    spec: RouteSpec,
    /// `spec.models` and `spec.fallbacks`, resolved once.
    entries: Vec<Arc<ModelEntry>>,
    fallbacks: Vec<Arc<ModelEntry>>,
    cursor: AtomicUsize,
    /// The qualities of `entries`, ascending (`complexity` picks a step of this ladder).
    qualities: Vec<f64>,
    /// Holds `complexity.strong_share` on the live scores, when the route sets it.
    calibrator: Option<ShareCalibrator>,
}

pub struct Router {
    routes: HashMap<Arc<str>, RouteState>,
    ordered: Vec<Arc<str>>,
    pub config: RoutingConfig,
    pub rollouts: RolloutBook,
}

/// One model in a decision: its score, or why it was left out.
#[derive(Debug, Clone, Serialize)]
pub struct RankedModel {
    pub model: String,
    pub score: Option<f64>,
    pub excluded: Option<String>,
    pub quality: f64,
    pub est_cost_usd: String,
    pub latency_ms: Option<f64>,
    pub in_flight: u32,
    pub breaker: &'static str,
}

/// Why the plan is what it is.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub route: Option<String>,
    pub strategy: &'static str,
    /// The first model of the plan.
    pub model: String,
    pub reason: String,
    pub ranking: Vec<RankedModel>,
    /// Models in the order they will be tried.
    pub plan: Vec<String>,
    /// The prompt's difficulty: computed for `complexity` routes, and for every strategy when
    /// the full explanation is asked (`POST /v1/route`, `llmrr.explain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complexity: Option<Complexity>,
    /// `cascade`: each model called, and why its answer was or was not accepted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cascade: Vec<CascadeStep>,
}

/// One call of a cascade.
#[derive(Debug, Clone, Serialize)]
pub struct CascadeStep {
    pub model: String,
    pub accepted: bool,
    /// The check its answer failed (an accepted step has one only when every model after it
    /// failed, so its answer stood).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_check: Option<String>,
    pub cost_usd: String,
}

/// A prompt's difficulty in a decision.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Complexity {
    pub score: f32,
    pub category: &'static str,
    /// The threshold it was compared with (`complexity` routes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
}

impl Decision {
    /// The `x-llmrr-route` header: short, ASCII. `answered`: the model that answered, which
    /// differs from the planned first model after a fallback.
    pub fn header(&self, answered: &str) -> String {
        let mut text = format!(
            "route={}; strategy={}; model={}",
            self.route.as_deref().unwrap_or("-"),
            self.strategy,
            answered,
        );
        // The difficulty before the reason: the reason may be long, and the header is cut.
        if let Some(c) = &self.complexity {
            text.push_str(&format!(
                "; difficulty={:.3}; category={}",
                c.score, c.category
            ));
            if let Some(t) = c.threshold {
                text.push_str(&format!("; threshold={t:.3}"));
            }
        }
        if answered == self.model {
            text.push_str(&format!("; reason={}", self.reason));
        } else {
            text.push_str(&format!(
                "; reason=fallback from {} ({})",
                self.model, self.reason
            ));
        }
        text.chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .take(400)
            .collect()
    }
}

pub struct Plan {
    pub attempts: Vec<Arc<ModelEntry>>,
    pub route: Option<Arc<str>>,
    pub content_fallback: Option<Arc<ModelEntry>>,
    pub decision: Decision,
    /// What the request log keeps of the prompt (routes with `log_prompts = true`).
    pub logged_prompt: Option<String>,
    /// `cascade`: accept an answer only when it passes these checks.
    pub cascade: Option<crate::config::routing::CascadeRule>,
    /// When the attempts must end, set by the first pass over them (a cascade's later passes
    /// share it).
    pub attempts_deadline: Option<tokio::time::Instant>,
}

/// What a plan is asked for.
pub struct PlanRequest<'a> {
    pub name: &'a str,
    pub key: &'a KeyContext,
    pub features: Features,
    pub options: &'a RequestOptions,
    /// Build the full ranking (scores, costs, latencies) and plan in the decision; without
    /// it, only what the header needs is built.
    pub explain: bool,
    /// The chat request, for what the prompt says (its difficulty); `None` for other calls.
    pub prompt: Option<&'a ChatCompletionRequest>,
    /// A decision only (`POST /v1/route`): live state (the strong-share calibration) is read,
    /// not fed.
    pub dry_run: bool,
}

impl Router {
    /// `routes` name only models of `models` (the config loader checked it).
    pub fn new(
        routes: &[RouteSpec],
        config: RoutingConfig,
        rollouts: RolloutBook,
        models: &ModelRegistry,
    ) -> Self {
        let resolve = |names: &[Arc<str>]| {
            names
                .iter()
                .filter_map(|n| models.get(n).cloned())
                .collect()
        };
        Router {
            routes: routes
                .iter()
                .map(|r| {
                    (
                        r.name.clone(),
                        RouteState::new(r, resolve(&r.models), resolve(&r.fallbacks)),
                    )
                })
                .collect(),
            ordered: routes.iter().map(|r| r.name.clone()).collect(),
            config,
            rollouts,
        }
    }

    pub fn route(&self, name: &str) -> Option<&RouteSpec> {
        self.routes.get(name).map(|r| &r.spec)
    }

    /// A route's own models (not its fallbacks), as configured.
    pub fn route_models(&self, name: &str) -> Option<&[Arc<ModelEntry>]> {
        self.routes.get(name).map(|r| &r.entries[..])
    }

    pub fn route_names(&self) -> &[Arc<str>] {
        &self.ordered
    }

    /// Whether `key` may name the route: the route itself or one of its models is allowed.
    pub fn may_use_route(&self, key: &KeyContext, name: &str) -> bool {
        key.may_use(name)
            || self
                .routes
                .get(name)
                .is_some_and(|r| r.entries.iter().any(|e| key.may_use(&e.spec.name)))
    }

    /// The tier the request runs under: the request's own may only narrow the key's.
    fn tier(&self, key: &KeyContext, options: &RequestOptions) -> Result<Option<&TierSpec>> {
        let lookup = |name: &str| {
            self.config.tier(name).ok_or_else(|| Error::Forbidden {
                message: format!("tier `{name}` is not configured"),
            })
        };
        let key_tier = key.tier.as_deref().map(lookup).transpose()?;
        match (options.tier.as_deref(), key_tier) {
            (None, t) => Ok(t),
            (Some(asked), None) => Ok(Some(lookup(asked)?)),
            (Some(asked), Some(own)) => {
                let asked = lookup(asked)?;
                if asked.within(own) {
                    Ok(Some(asked))
                } else {
                    Err(Error::Forbidden {
                        message: format!(
                            "this key's tier `{}` does not reach tier `{}`",
                            own.name, asked.name
                        ),
                    })
                }
            }
        }
    }

    pub fn plan(&self, models: &ModelRegistry, req: PlanRequest<'_>) -> Result<Plan> {
        let opts = req.options;
        let tier = self.tier(req.key, opts)?;
        let (route, strategy_kind, listed, fallbacks, constraints, expected_out) =
            match self.routes.get(req.name) {
                Some(r) => {
                    // A key sees a route only when it may use the route or one of its models.
                    if !req.key.may_use(req.name)
                        && !r.entries.iter().any(|e| req.key.may_use(&e.spec.name))
                    {
                        return Err(Error::ModelNotAllowed {
                            model: req.name.to_owned(),
                        });
                    }
                    let s = &r.spec;
                    let c = Constraints {
                        min_quality: opts.min_quality.or(s.constraints.min_quality),
                        max_cost_usd: opts.max_cost_usd.or(s.constraints.max_cost_usd),
                        max_latency: opts.max_latency.or(s.constraints.max_latency),
                    };
                    (
                        Some(r),
                        opts.strategy.unwrap_or(s.strategy),
                        &r.entries[..],
                        &r.fallbacks[..],
                        c,
                        s.expected_output_tokens,
                    )
                }
                None => {
                    let entry = models.get(req.name).ok_or_else(|| Error::ModelNotFound {
                        model: req.name.to_owned(),
                    })?;
                    if !req.key.may_use(req.name) {
                        return Err(Error::ModelNotAllowed {
                            model: req.name.to_owned(),
                        });
                    }
                    let c = Constraints {
                        min_quality: opts.min_quality,
                        max_cost_usd: opts.max_cost_usd,
                        max_latency: opts.max_latency,
                    };
                    let strategy = opts.strategy.unwrap_or(StrategyKind::CapabilityMatch);
                    (
                        None,
                        strategy,
                        std::slice::from_ref(entry),
                        &[][..],
                        c,
                        crate::config::routing::RouteSpec::DEFAULT_EXPECTED_OUTPUT,
                    )
                }
            };
        // A key that names the route may use the route's models through it (and its
        // configured fallbacks); otherwise each model must be allowed on its own.
        let via_route = route.is_some() && req.key.may_use(req.name);
        let route_model = |name: &str| {
            route.is_some_and(|r| {
                r.entries
                    .iter()
                    .chain(r.fallbacks.iter())
                    .any(|e| *e.spec.name == *name)
            })
        };
        let allowed = |name: &str| req.key.may_use(name) || (via_route && route_model(name));
        let mut extra = Vec::with_capacity(opts.fallbacks.len() + fallbacks.len());
        for (i, name) in opts.fallbacks.iter().enumerate() {
            let e = models.get(name).ok_or_else(|| {
                Error::invalid(
                    format!("fallback `{name}` is not a configured model"),
                    Some(format!("llmrr.fallbacks[{i}]")),
                )
            })?;
            extra.push(e.clone());
        }
        extra.extend(fallbacks.iter().cloned());

        let log_prompts = route.is_some_and(|r| r.spec.log_prompts);
        let wants_score = strategy_kind == StrategyKind::Complexity || req.explain || log_prompts;
        let text = req.prompt.filter(|_| wants_score).map(ChatText::of);
        let difficulty = text.as_ref().map(|t| {
            let weights =
                route.map_or_else(difficulty::shipped, |r| r.spec.complexity.weights.clone());
            Difficulty::of(&weights, &t.view())
        });
        let level = match (route, difficulty) {
            (Some(r), Some(d)) if strategy_kind == StrategyKind::Complexity => {
                Some(r.level(d, req.dry_run))
            }
            _ => None,
        };
        let out_tokens = req
            .features
            .max_output_tokens
            .unwrap_or(u64::from(expected_out));
        let mut ranking = Vec::new();
        let mut reasons: Vec<String> = Vec::new();
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut entries: Vec<Arc<ModelEntry>> = Vec::new();
        // Transient exclusions (rate limit or breaker, and for how long) decide the status
        // when nothing is left.
        let mut transient: Vec<(bool, Duration)> = Vec::new();
        let mut causes: Vec<Cause> = Vec::new();
        for (order, entry) in listed.iter().enumerate() {
            let name = &entry.spec.name;
            // Models the key may not use are not candidates, and not shown either (their
            // names, stats and prices are not this key's business).
            if !allowed(name) {
                continue;
            }
            let est_cost_f64 = req.features.prompt_tokens as f64 * entry.input_per_token
                + out_tokens as f64 * entry.output_per_token;
            // Exact money only where it is compared or shown.
            let est_cost = (constraints.max_cost_usd.is_some() || req.explain)
                .then(|| estimate_cost(entry, req.features.prompt_tokens, out_tokens));
            let stats = entry.stats.live();
            let excluded = if let Some((why, cause)) =
                access(entry, true, route.is_some(), tier, &req.features)
            {
                causes.push(cause);
                Some(why)
            } else if let Some(h) = health(entry) {
                transient.push((h.rate_limited, h.retry_in));
                causes.push(Cause::Other);
                Some(h.reason)
            } else {
                let why = constraint(entry, &constraints, est_cost, &stats, req.features.stream);
                if why.is_some() {
                    causes.push(Cause::Other);
                }
                why
            };
            if let Some(why) = &excluded {
                reasons.push(format!("{name}: {why}"));
            }
            if req.explain {
                ranking.push(RankedModel {
                    model: name.to_string(),
                    score: None,
                    excluded: excluded.clone(),
                    quality: entry.spec.quality,
                    est_cost_usd: est_cost
                        .unwrap_or_default()
                        .round_dp(8)
                        .normalize()
                        .to_string(),
                    latency_ms: if req.features.stream {
                        stats.ttft_ms.or(stats.latency_ms)
                    } else {
                        stats.latency_ms
                    },
                    in_flight: stats.in_flight,
                    breaker: entry.breaker.state().as_str(),
                });
            }
            if excluded.is_none() {
                candidates.push(Candidate {
                    name: entry.spec.name.clone(),
                    quality: entry.spec.quality,
                    est_cost_usd: est_cost_f64,
                    stats,
                    weight: route
                        .map(|r| r.spec.weights.get(order).copied().unwrap_or(1.0))
                        .unwrap_or(1.0),
                    order,
                });
                entries.push(entry.clone());
            }
        }
        // Fallbacks that can serve now: tried after the ranked models, and instead of them
        // when every one of them is left out (a dead primary must not fail the request).
        // When they replace the ranked models they meet the same constraints, and a fallback
        // left out says why, like any candidate.
        let mut usable_fallbacks: Vec<Arc<ModelEntry>> = Vec::new();
        for e in &extra {
            let why = if let Some((why, cause)) =
                access(e, allowed(&e.spec.name), true, tier, &req.features)
            {
                Some((why, cause))
            } else if let Some(h) = health(e) {
                transient.push((h.rate_limited, h.retry_in));
                Some((h.reason, Cause::Other))
            } else if candidates.is_empty() {
                let est = (constraints.max_cost_usd.is_some())
                    .then(|| estimate_cost(e, req.features.prompt_tokens, out_tokens));
                let stats = e.stats.live();
                constraint(e, &constraints, est, &stats, req.features.stream)
                    .map(|why| (why, Cause::Other))
            } else {
                None
            };
            match why {
                None => usable_fallbacks.push(e.clone()),
                Some((why, cause)) if candidates.is_empty() => {
                    reasons.push(format!("fallback {}: {why}", e.spec.name));
                    causes.push(cause);
                }
                Some(_) => {}
            }
        }
        if candidates.is_empty() && usable_fallbacks.is_empty() {
            return Err(no_candidate(req.name, reasons, &causes, &transient));
        }
        let (mut attempts, reason) = if candidates.is_empty() {
            let reason = format!("fallback: {}", reasons.join("; "));
            (Vec::new(), reason)
        } else {
            self.rank(
                RankRequest {
                    route,
                    strategy_kind,
                    candidates: &candidates,
                    entries: &entries,
                    stream: req.features.stream,
                    level,
                },
                &mut ranking,
            )
        };
        for entry in usable_fallbacks {
            if !attempts.iter().any(|a| a.spec.name == entry.spec.name) {
                attempts.push(entry);
            }
        }
        let content_fallback = route
            .and_then(|r| r.spec.content_fallback.as_ref())
            .and_then(|n| models.get(n))
            .filter(|e| access(e, allowed(&e.spec.name), true, tier, &req.features).is_none())
            .cloned();
        let decision = Decision {
            route: route.map(|r| r.spec.name.to_string()),
            strategy: if route.is_some() || opts.strategy.is_some() {
                strategy_kind.as_str()
            } else {
                "direct"
            },
            model: attempts[0].spec.name.to_string(),
            reason,
            ranking,
            plan: if req.explain {
                attempts.iter().map(|e| e.spec.name.to_string()).collect()
            } else {
                Vec::new()
            },
            complexity: difficulty.map(|d| Complexity {
                score: d.score,
                category: d.category,
                threshold: level.map(|l| l.threshold),
            }),
            cascade: Vec::new(),
        };
        Ok(Plan {
            attempts,
            route: route.map(|r| r.spec.name.clone()),
            content_fallback,
            decision,
            logged_prompt: text.filter(|_| log_prompts).map(|t| t.logged()),
            // Streams are not held back for the checks: a cascade route streams from its
            // cheapest model, falling back on errors only.
            cascade: route
                .filter(|_| {
                    strategy_kind == StrategyKind::Cascade
                        && !req.features.stream
                        && req.prompt.is_some()
                })
                .map(|r| r.spec.cascade.clone()),
            attempts_deadline: None,
        })
    }
}

/// What ranking needs.
struct RankRequest<'a> {
    route: Option<&'a RouteState>,
    strategy_kind: StrategyKind,
    candidates: &'a [Candidate],
    entries: &'a [Arc<ModelEntry>],
    stream: bool,
    level: Option<Level>,
}

impl Router {
    /// Rank the candidates by the strategy (scores into `ranking`), then let a rollout put its
    /// drawn model first. Returns the attempts in order and the reason for the first.
    fn rank(
        &self,
        r: RankRequest<'_>,
        ranking: &mut [RankedModel],
    ) -> (Vec<Arc<ModelEntry>>, String) {
        let RankRequest {
            route,
            strategy_kind,
            candidates,
            entries,
            stream,
            level,
        } = r;
        let strategy = strategy::strategy(strategy_kind);
        let fallback_cursor = AtomicUsize::new(0);
        let input = RankInput {
            stream,
            balanced: route.map(|r| r.spec.balanced).unwrap_or_default(),
            cursor: route.map(|r| &r.cursor).unwrap_or(&fallback_cursor),
            level,
        };
        let mut rng = rand::thread_rng();
        let ranked = strategy.rank(candidates, &input, &mut rng);
        let mut reason = strategy.reason(&candidates[ranked[0].index], &input);
        if route.is_none() {
            reason = "the requested model".into();
        }
        for r in &ranked {
            let pos = ranking
                .iter()
                .position(|m| *m.model == *candidates[r.index].name);
            if let Some(p) = pos {
                ranking[p].score = Some((r.score * 1e6).round() / 1e6);
            }
        }
        let mut attempts: Vec<Arc<ModelEntry>> =
            ranked.iter().map(|r| entries[r.index].clone()).collect();

        // A rollout decides between its two models by its current percentage.
        if let Some(r) = route {
            if let Some(rollout) = self.rollouts.get(&r.spec.name) {
                let pos = rollout.position(crate::store::now_ms());
                let pick =
                    if pos.state == RolloutState::Active || pos.state == RolloutState::Completed {
                        if rng.gen_range(0..100u8) < pos.percent_to {
                            &rollout.to
                        } else {
                            &rollout.from
                        }
                    } else {
                        &rollout.from
                    };
                if let Some(i) = attempts.iter().position(|e| *e.spec.name == **pick) {
                    let chosen = attempts.remove(i);
                    attempts.insert(0, chosen);
                    reason = format!(
                        "rollout {:?} at {}% to `{}`: drew `{pick}`",
                        pos.state, pos.percent_to, rollout.to
                    );
                }
            }
        }

        (attempts, reason)
    }
}

impl RouteState {
    fn new(
        spec: &RouteSpec,
        entries: Vec<Arc<ModelEntry>>,
        fallbacks: Vec<Arc<ModelEntry>>,
    ) -> Self {
        let mut qualities: Vec<f64> = entries.iter().map(|e| e.spec.quality).collect();
        qualities.sort_by(f64::total_cmp);
        let c = &spec.complexity;
        RouteState {
            calibrator: c
                .strong_share
                .map(|share| ShareCalibrator::new(share, c.weights.default_threshold)),
            spec: spec.clone(),
            entries,
            fallbacks,
            cursor: AtomicUsize::new(0),
            qualities,
        }
    }

    /// Where `d` puts a prompt on this route's quality ladder (`complexity`); a dry run does
    /// not feed the calibration.
    fn level(&self, d: Difficulty, dry_run: bool) -> Level {
        let steps_total = self.qualities.len().saturating_sub(1);
        let rule = &self.spec.complexity;
        // The strongest model's threshold, and the others evenly below it, unless configured.
        let spread = |top: f32| -> Vec<f32> {
            (1..=steps_total)
                .map(|i| top * i as f32 / steps_total as f32)
                .collect()
        };
        let thresholds = match &self.calibrator {
            Some(c) if dry_run => spread(c.current()),
            Some(c) => spread(c.observe(d.score)),
            None if !rule.thresholds.is_empty() => rule.thresholds.clone(),
            None => spread(rule.weights.default_threshold),
        };
        let steps = thresholds.iter().filter(|t| d.score >= **t).count();
        // The threshold it crossed last, or the first one when it crossed none.
        let shown = thresholds
            .get(steps.saturating_sub(1))
            .copied()
            .unwrap_or(1.0);
        Level {
            score: d.score,
            category: d.category,
            threshold: shown,
            steps,
            target_quality: self.qualities.get(steps).copied().unwrap_or(0.0),
        }
    }
}

/// The router's cost estimate: the one cost function ([`crate::money::cost`]).
pub fn estimate_cost(entry: &ModelEntry, prompt_tokens: u64, output_tokens: u64) -> Decimal {
    crate::money::cost::estimate(&entry.spec.pricing, prompt_tokens, output_tokens)
}
