//! Resolving `[[routes]]`, `[routing]` and `[tiers]` against the resolved models.

use super::load::{money, seconds};
use super::raw::{RawRoute, RawRouting};
use super::resolved::ModelSpec;
use super::routing::*;
use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

pub(super) fn resolve(
    raw: RawRouting,
    routes: Vec<RawRoute>,
    tiers: BTreeMap<String, Vec<String>>,
    models: &[ModelSpec],
    request_timeout: Duration,
    cache: &super::cache::CacheRule,
) -> Result<(RoutingConfig, Vec<RouteSpec>)> {
    let known = |name: &str| {
        models
            .iter()
            .find(|m| &*m.name == name)
            .map(|m| m.name.clone())
    };
    let ms = |path: &str, v: Option<u64>, d: u64| -> Result<Duration> {
        Ok(Duration::from_millis(v.unwrap_or(d))).and_then(|x| {
            if x.is_zero() && path.contains("attempts") {
                Err(Error::config(path, "must be positive"))
            } else {
                Ok(x)
            }
        })
    };
    let count = |path: &str, v: Option<u32>, d: u32| -> Result<u32> {
        match v.unwrap_or(d) {
            0 => Err(Error::config(path, "0 must be at least 1")),
            n => Ok(n),
        }
    };
    let ratio = raw.breaker_failure_ratio.unwrap_or(0.5);
    if !(ratio > 0.0 && ratio <= 1.0) {
        return Err(Error::config(
            "routing.breaker_failure_ratio",
            format!("{ratio} must be in (0, 1]"),
        ));
    }
    let routing_tiers = tiers
        .into_iter()
        .map(|(name, list)| {
            let models = if list.iter().any(|m| m == "*") {
                None
            } else {
                let mut set = HashSet::new();
                for (i, m) in list.iter().enumerate() {
                    let spec = known(m).ok_or_else(|| {
                        Error::config(
                            format!("tiers.{name}[{i}]"),
                            format!("`{m}` is not a configured model"),
                        )
                    })?;
                    set.insert(spec);
                }
                Some(set)
            };
            Ok(TierSpec { name, models })
        })
        .collect::<Result<Vec<_>>>()?;
    let config = RoutingConfig {
        retry: RetryPolicy {
            max_attempts: count("routing.retry_max_attempts", raw.retry_max_attempts, 2)?,
            base_delay: ms("routing.retry_base_delay_ms", raw.retry_base_delay_ms, 200)?,
            max_delay: ms("routing.retry_max_delay_ms", raw.retry_max_delay_ms, 5_000)?,
            max_total: match raw.max_total_secs {
                Some(s) => seconds("routing.max_total_secs", s)?,
                None => request_timeout,
            },
        },
        breaker: BreakerConfig {
            consecutive_failures: count(
                "routing.breaker_consecutive_failures",
                raw.breaker_consecutive_failures,
                5,
            )?,
            failure_ratio: ratio,
            window: seconds(
                "routing.breaker_window_secs",
                raw.breaker_window_secs.unwrap_or(60.0),
            )?,
            min_requests: count("routing.breaker_min_requests", raw.breaker_min_requests, 20)?,
            cooldown: seconds(
                "routing.breaker_cooldown_secs",
                raw.breaker_cooldown_secs.unwrap_or(30.0),
            )?,
            half_open_probes: count(
                "routing.breaker_half_open_probes",
                raw.breaker_half_open_probes,
                1,
            )?,
            close_after: count("routing.breaker_close_after", raw.breaker_close_after, 2)?,
        },
        health_probe_interval: raw
            .health_probe_interval_secs
            .map(|s| seconds("routing.health_probe_interval_secs", s))
            .transpose()?,
        stats_window: seconds(
            "routing.stats_window_secs",
            raw.stats_window_secs.unwrap_or(60.0),
        )?,
        ewma_half_life: seconds(
            "routing.ewma_half_life_secs",
            raw.ewma_half_life_secs.unwrap_or(30.0),
        )?,
        tiers: routing_tiers,
    };

    let mut out: Vec<RouteSpec> = Vec::with_capacity(routes.len());
    for (i, r) in routes.into_iter().enumerate() {
        let at = |k: &str| format!("routes[{i}].{k}");
        if r.name.trim().is_empty() || r.name.chars().any(char::is_whitespace) {
            return Err(Error::config(
                at("name"),
                format!("`{}` must be a non-empty name without spaces", r.name),
            ));
        }
        if known(&r.name).is_some() {
            return Err(Error::config(
                at("name"),
                format!("`{}` is already a model name", r.name),
            ));
        }
        if out.iter().any(|o| *o.name == *r.name) {
            return Err(Error::config(
                at("name"),
                format!("`{}` is defined twice", r.name),
            ));
        }
        let complexity = complexity_rule(&at, &r, r.models.len())?;
        let strategy = match r.strategy.as_deref() {
            None => StrategyKind::Balanced,
            Some(s) => StrategyKind::parse(s).ok_or_else(|| {
                Error::config(
                    at("strategy"),
                    format!("`{s}` is not a strategy ({})", StrategyKind::names()),
                )
            })?,
        };
        if r.models.is_empty() {
            return Err(Error::config(
                at("models"),
                "a route needs at least one model",
            ));
        }
        let resolve_list = |key: &str, list: &[String]| -> Result<Vec<Arc<str>>> {
            list.iter()
                .enumerate()
                .map(|(j, m)| {
                    known(m).ok_or_else(|| {
                        Error::config(
                            format!("routes[{i}].{key}[{j}]"),
                            format!("`{m}` is not a configured model"),
                        )
                    })
                })
                .collect()
        };
        let route_models = resolve_list("models", &r.models)?;
        let fallbacks = resolve_list("fallbacks", &r.fallbacks)?;
        for (m, w) in &r.weights {
            if !r.models.contains(m) {
                return Err(Error::config(
                    at(&format!("weights.{m}")),
                    "names a model that is not in this route's models",
                ));
            }
            if !(w.is_finite() && *w >= 0.0) {
                return Err(Error::config(
                    at(&format!("weights.{m}")),
                    format!("{w} must be a non-negative number"),
                ));
            }
        }
        let weights: Vec<f64> = r
            .models
            .iter()
            .map(|m| {
                r.weights
                    .get(m)
                    .copied()
                    .unwrap_or(if r.weights.is_empty() { 1.0 } else { 0.0 })
            })
            .collect();
        if strategy == StrategyKind::Weighted && weights.iter().sum::<f64>() <= 0.0 {
            return Err(Error::config(
                at("weights"),
                "weighted routing needs a positive weight",
            ));
        }
        if let Some(q) = r.min_quality {
            if !(0.0..=1.0).contains(&q) {
                return Err(Error::config(
                    at("min_quality"),
                    format!("{q} must be between 0 and 1"),
                ));
            }
        }
        let balanced = match r.balanced {
            None => BalancedWeights::default(),
            Some(b) => {
                let w = [
                    b.quality.unwrap_or(0.0),
                    b.cost.unwrap_or(0.0),
                    b.latency.unwrap_or(0.0),
                ];
                let sum: f64 = w.iter().sum();
                if w.iter().any(|x| !x.is_finite() || *x < 0.0) || sum <= 0.0 {
                    return Err(Error::config(
                        at("balanced"),
                        "weights must be non-negative with a positive sum",
                    ));
                }
                BalancedWeights {
                    quality: w[0] / sum,
                    cost: w[1] / sum,
                    latency: w[2] / sum,
                }
            }
        };
        let content_fallback = r
            .content_fallback
            .as_deref()
            .map(|m| {
                known(m).ok_or_else(|| {
                    Error::config(
                        at("content_fallback"),
                        format!("`{m}` is not a configured model"),
                    )
                })
            })
            .transpose()?;
        let cascade = CascadeRule {
            min_mean_logprob: r
                .cascade
                .as_ref()
                .and_then(|c| c.min_mean_logprob)
                .map(|v| {
                    if v.is_finite() && v <= 0.0 {
                        Ok(v)
                    } else {
                        Err(Error::config(
                            at("cascade.min_mean_logprob"),
                            format!("{v} must be a log-probability (0 or below)"),
                        ))
                    }
                })
                .transpose()?,
        };
        out.push(RouteSpec {
            name: Arc::from(r.name),
            strategy,
            models: route_models,
            fallbacks,
            weights,
            constraints: Constraints {
                min_quality: r.min_quality,
                max_cost_usd: r
                    .max_cost_usd
                    .as_ref()
                    .map(|v| money(&at("max_cost_usd"), Some(v)))
                    .transpose()?,
                max_latency: r
                    .max_latency_ms
                    .map(|v| seconds(&at("max_latency_ms"), v / 1000.0))
                    .transpose()?,
            },
            expected_output_tokens: r
                .expected_output_tokens
                .unwrap_or(RouteSpec::DEFAULT_EXPECTED_OUTPUT),
            content_fallback,
            balanced,
            guardrails: r
                .guardrails
                .map(|g| super::guardrails::compile(&at("guardrails"), g))
                .transpose()?,
            cache: match &r.cache {
                Some(c) => super::cache::rule(&at("cache"), c, cache)?,
                None => cache.clone(),
            },
            complexity,
            log_prompts: r.log_prompts.unwrap_or(false),
            cascade,
        });
    }
    Ok((config, out))
}

/// A route's `thresholds`, `strong_share` and `scorer`, checked; the weights file is read here.
fn complexity_rule(
    at: &dyn Fn(&str) -> String,
    r: &RawRoute,
    models: usize,
) -> Result<ComplexityRule> {
    let mut rule = ComplexityRule::shipped();
    if let Some(path) = &r.scorer {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::config(at("scorer"), format!("cannot read `{path}`: {e}")))?;
        rule.weights = Arc::new(crate::routing::difficulty::Weights::from_bytes(
            &bytes,
            &at("scorer"),
        )?);
        rule.scorer = Some(path.clone());
    }
    if let Some(t) = &r.thresholds {
        if t.len() + 1 != models {
            return Err(Error::config(
                at("thresholds"),
                format!(
                    "{} threshold(s) for {models} models: give one fewer than the models",
                    t.len()
                ),
            ));
        }
        if t.iter().any(|x| !(0.0..=1.0).contains(x)) || t.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::config(
                at("thresholds"),
                "thresholds are difficulty scores in [0, 1], in ascending order",
            ));
        }
        rule.thresholds = t.iter().map(|x| *x as f32).collect();
    }
    if let Some(share) = r.strong_share {
        if r.thresholds.is_some() {
            return Err(Error::config(
                at("strong_share"),
                "give `thresholds` or `strong_share`, not both",
            ));
        }
        if !(share > 0.0 && share < 1.0) {
            return Err(Error::config(
                at("strong_share"),
                format!("{share} must be a share between 0 and 1"),
            ));
        }
        rule.strong_share = Some(share);
    }
    Ok(rule)
}
