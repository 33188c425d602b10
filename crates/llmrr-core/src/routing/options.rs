//! The per-request body extension `"llmrr": {...}`: overrides of the route's defaults for this
//! request only (no shared state is changed).

use crate::config::routing::StrategyKind;
use crate::error::{Error, Result};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestOptions {
    pub strategy: Option<StrategyKind>,
    pub min_quality: Option<f64>,
    pub max_cost_usd: Option<Decimal>,
    pub max_latency: Option<Duration>,
    pub tier: Option<String>,
    pub fallbacks: Vec<String>,
    pub explain: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    strategy: Option<String>,
    min_quality: Option<f64>,
    max_cost_usd: Option<serde_json::Value>,
    max_latency_ms: Option<f64>,
    tier: Option<String>,
    #[serde(default)]
    fallbacks: Vec<String>,
    #[serde(default)]
    explain: bool,
}

fn bad(field: &str, message: impl Into<String>) -> Error {
    Error::invalid(message, Some(format!("llmrr.{field}")))
}

impl RequestOptions {
    pub fn parse(value: Option<&serde_json::Value>) -> Result<Self> {
        let Some(value) = value else {
            return Ok(Self::default());
        };
        let raw: Raw = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "" } else { &path };
            Error::invalid(
                format!("invalid `llmrr` options: {}", e.inner()),
                Some(format!("llmrr.{field}").trim_end_matches('.').to_owned()),
            )
        })?;
        let strategy = raw
            .strategy
            .as_deref()
            .map(|s| {
                StrategyKind::parse(s).ok_or_else(|| {
                    bad(
                        "strategy",
                        format!("`{s}` is not a strategy ({})", StrategyKind::names()),
                    )
                })
            })
            .transpose()?;
        if let Some(q) = raw.min_quality {
            if !(0.0..=1.0).contains(&q) {
                return Err(bad("min_quality", format!("{q} must be between 0 and 1")));
            }
        }
        let max_cost_usd = match &raw.max_cost_usd {
            None => None,
            Some(v) => {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                match text.parse::<Decimal>() {
                    Ok(d) if d >= Decimal::ZERO => Some(d),
                    _ => {
                        return Err(bad(
                            "max_cost_usd",
                            format!("`{v}` must be a non-negative number of USD"),
                        ))
                    }
                }
            }
        };
        let max_latency = match raw.max_latency_ms {
            Some(ms) if ms.is_finite() && ms > 0.0 => Some(Duration::from_secs_f64(ms / 1000.0)),
            Some(ms) => {
                return Err(bad(
                    "max_latency_ms",
                    format!("{ms} must be a positive number"),
                ))
            }
            None => None,
        };
        Ok(RequestOptions {
            strategy,
            min_quality: raw.min_quality,
            max_cost_usd,
            max_latency,
            tier: raw.tier,
            fallbacks: raw.fallbacks,
            explain: raw.explain,
        })
    }
}
