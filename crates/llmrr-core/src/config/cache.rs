//! `[cache]`: the response cache's tiers and policy, and the default rule of every route and
//! model; `cache = { … }` on a route or a model overrides the default for requests naming it.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// The rule of routes and models without their own (`mode` defaults to `off`).
    #[serde(flatten)]
    pub rule: RawCacheRule,
    /// L1: answers kept in memory, at most this many MiB (default 256).
    pub memory_mb: Option<u64>,
    /// L2: an SQLite file that survives restarts (off unless given).
    pub disk_path: Option<String>,
    /// L2's size, at most (MiB, default 1024).
    pub disk_mb: Option<u64>,
    /// L3: share answers between replicas through `[shared] redis_url` (default true when
    /// Redis is configured).
    pub shared: Option<bool>,
    /// Answers larger than this are not kept (KiB, default 1024).
    pub max_entry_kb: Option<u64>,
    /// Prompts in the semantic index, per namespace (default 10000).
    pub semantic_max_entries: Option<u64>,
    /// Keep each cached request (its body, after input guardrails) this many days after it
    /// was last answered, so `llmrr cache warm` can replay it (default 7; 0: keep none).
    pub warm_retention_days: Option<f64>,
    #[serde(default)]
    pub policy: RawCachePolicy,
}

/// The cache rule of a route or a model (and the default one in `[cache]`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheRule {
    /// `exact`, `semantic` or `off`.
    pub mode: Option<String>,
    /// Base lifetime of an entry (seconds, default 3600); the policy lengthens it for costly
    /// answers.
    pub ttl_secs: Option<f64>,
    /// Whose answers a request may read: `team` (default: the key's team, else the key),
    /// `key`, or `global`.
    pub namespace: Option<String>,
    /// Only requests that ask for a repeatable answer (temperature 0, or a seed) are cached
    /// (default true).
    pub only_deterministic: Option<bool>,
    /// Text normalization before keying: any of `whitespace`, `case` (default none).
    pub normalize: Option<Vec<String>>,
    /// `semantic`: the configured model that embeds the last user turn (any model serving
    /// `/v1/embeddings`: remote, or local with `pooling`).
    pub embedding_model: Option<String>,
    /// `semantic`: the cosine similarity a match needs (default 0.95).
    pub similarity: Option<f64>,
}

/// `[cache.policy]`: how cost shapes the lifetime, admission and eviction of entries.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCachePolicy {
    /// An answer that cost this much lives twice the base TTL, twice that four times… up to
    /// `max_ttl_factor` (USD, default 0.01).
    pub ttl_cost_usd: Option<f64>,
    /// The most the TTL is stretched (default 4).
    pub max_ttl_factor: Option<f64>,
    /// An answer that cost at least this is always admitted; a cheaper one with a chance
    /// that grows with its cost from `admit_floor` (USD, default 0: always admitted).
    pub admit_full_usd: Option<f64>,
    /// The chance that a free answer is admitted (default 1).
    pub admit_floor: Option<f64>,
    /// Eviction weighs each entry by hits × cost / size; free answers count as this cost
    /// (USD, default 0.000001) so they still compete by hits and size.
    pub cost_floor_usd: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    Off,
    Exact,
    /// Exact, then by the meaning of the last user turn.
    Semantic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceScope {
    Team,
    Key,
    Global,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheRule {
    pub mode: CacheMode,
    #[serde(with = "crate::config::resolved::secs")]
    pub ttl: Duration,
    pub namespace: NamespaceScope,
    pub only_deterministic: bool,
    pub normalize_whitespace: bool,
    pub normalize_case: bool,
    pub embedding_model: Option<std::sync::Arc<str>>,
    pub similarity: f64,
}

impl Default for CacheRule {
    fn default() -> Self {
        CacheRule {
            mode: CacheMode::Off,
            ttl: Duration::from_secs(3600),
            namespace: NamespaceScope::Team,
            only_deterministic: true,
            normalize_whitespace: false,
            normalize_case: false,
            embedding_model: None,
            similarity: 0.95,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CachePolicy {
    pub ttl_cost_usd: f64,
    pub max_ttl_factor: f64,
    pub admit_full_usd: f64,
    pub admit_floor: f64,
    pub cost_floor_usd: f64,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            ttl_cost_usd: 0.01,
            max_ttl_factor: 4.0,
            admit_full_usd: 0.0,
            admit_floor: 1.0,
            cost_floor_usd: 0.000_001,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CacheConfig {
    /// The rule of routes and models without their own.
    pub default: CacheRule,
    pub memory_bytes: u64,
    pub disk_path: Option<PathBuf>,
    pub disk_bytes: u64,
    pub shared: bool,
    pub max_entry_bytes: u64,
    pub semantic_max_entries: usize,
    /// How long a cached request is kept for `cache warm` (zero: not kept).
    #[serde(with = "crate::config::resolved::secs")]
    pub warm_retention: Duration,
    pub policy: CachePolicy,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            default: CacheRule::default(),
            memory_bytes: 256 << 20,
            disk_path: None,
            disk_bytes: 1024 << 20,
            shared: true,
            max_entry_bytes: 1 << 20,
            semantic_max_entries: 10_000,
            warm_retention: Duration::from_secs(7 * 86_400),
            policy: CachePolicy::default(),
        }
    }
}

pub(super) fn cache(raw: RawCache) -> Result<CacheConfig> {
    let defaults = CacheConfig::default();
    let mb = |path: &str, v: Option<u64>, default: u64| match v {
        Some(0) => Err(Error::config(path, "must be at least 1")),
        Some(v) => Ok(v.saturating_mul(1 << 20)),
        None => Ok(default),
    };
    let policy = &raw.policy;
    let non_negative = |path: &str, v: Option<f64>, default: f64| match v {
        Some(v) if !v.is_finite() || v < 0.0 => Err(Error::config(
            format!("cache.policy.{path}"),
            format!("must be a number ≥ 0 (got {v})"),
        )),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    let d = &defaults.policy;
    let policy = CachePolicy {
        ttl_cost_usd: non_negative("ttl_cost_usd", policy.ttl_cost_usd, d.ttl_cost_usd)?,
        max_ttl_factor: non_negative("max_ttl_factor", policy.max_ttl_factor, d.max_ttl_factor)?
            .max(1.0),
        admit_full_usd: non_negative("admit_full_usd", policy.admit_full_usd, d.admit_full_usd)?,
        admit_floor: non_negative("admit_floor", policy.admit_floor, d.admit_floor)?,
        cost_floor_usd: non_negative("cost_floor_usd", policy.cost_floor_usd, d.cost_floor_usd)?,
    };
    if policy.admit_floor > 1.0 {
        return Err(Error::config(
            "cache.policy.admit_floor",
            "is a chance: between 0 and 1",
        ));
    }
    Ok(CacheConfig {
        default: rule("cache", &raw.rule, &CacheRule::default())?,
        memory_bytes: mb("cache.memory_mb", raw.memory_mb, defaults.memory_bytes)?,
        disk_path: raw.disk_path.map(PathBuf::from),
        disk_bytes: mb("cache.disk_mb", raw.disk_mb, defaults.disk_bytes)?,
        shared: raw.shared.unwrap_or(true),
        max_entry_bytes: match raw.max_entry_kb {
            Some(0) => return Err(Error::config("cache.max_entry_kb", "must be at least 1")),
            Some(kb) => kb.saturating_mul(1024),
            None => defaults.max_entry_bytes,
        },
        semantic_max_entries: match raw.semantic_max_entries {
            Some(0) => {
                return Err(Error::config(
                    "cache.semantic_max_entries",
                    "must be at least 1",
                ))
            }
            Some(n) => n.min(10_000_000) as usize,
            None => defaults.semantic_max_entries,
        },
        warm_retention: match raw.warm_retention_days {
            Some(days) => match Duration::try_from_secs_f64(days * 86_400.0) {
                Ok(d) => d,
                Err(_) => {
                    return Err(Error::config(
                        "cache.warm_retention_days",
                        format!("{days} must be a number of days ≥ 0"),
                    ))
                }
            },
            None => defaults.warm_retention,
        },
        policy,
    })
}

/// Every semantic rule's `embedding_model` names a configured model (`at` of each rule names
/// it in the error).
pub(super) fn check_embedding_models<'a>(
    rules: impl Iterator<Item = (String, &'a CacheRule)>,
    models: &[super::ModelSpec],
) -> Result<()> {
    for (at, rule) in rules.filter(|(_, r)| r.mode == CacheMode::Semantic) {
        let model = rule.embedding_model.as_deref().unwrap_or_default();
        if !models.iter().any(|m| &*m.name == model) {
            return Err(Error::config(
                format!("{at}.embedding_model"),
                format!("`{model}` is not a configured model"),
            ));
        }
    }
    Ok(())
}

/// A route's or model's rule (`at` names it in errors) over `base` (the `[cache]` default).
pub(super) fn rule(at: &str, raw: &RawCacheRule, base: &CacheRule) -> Result<CacheRule> {
    let mode = match raw.mode.as_deref() {
        None => base.mode,
        Some("off") => CacheMode::Off,
        Some("exact") => CacheMode::Exact,
        Some("semantic") => CacheMode::Semantic,
        Some(other) => {
            return Err(Error::config(
                format!("{at}.mode"),
                format!("`{other}` must be `exact`, `semantic` or `off`"),
            ))
        }
    };
    let namespace = match raw.namespace.as_deref() {
        None => base.namespace,
        Some("team") => NamespaceScope::Team,
        Some("key") => NamespaceScope::Key,
        Some("global") => NamespaceScope::Global,
        Some(other) => {
            return Err(Error::config(
                format!("{at}.namespace"),
                format!("`{other}` must be `team`, `key` or `global`"),
            ))
        }
    };
    let ttl = match raw.ttl_secs {
        Some(v) => super::load::seconds(&format!("{at}.ttl_secs"), v)?,
        None => base.ttl,
    };
    let (mut whitespace, mut case) = (base.normalize_whitespace, base.normalize_case);
    if let Some(list) = &raw.normalize {
        (whitespace, case) = (false, false);
        for n in list {
            match n.as_str() {
                "whitespace" => whitespace = true,
                "case" => case = true,
                other => {
                    return Err(Error::config(
                        format!("{at}.normalize"),
                        format!("`{other}` must be `whitespace` or `case`"),
                    ))
                }
            }
        }
    }
    let similarity = match raw.similarity {
        Some(v) if !(v > 0.0 && v <= 1.0) => {
            return Err(Error::config(
                format!("{at}.similarity"),
                format!("{v} must be a cosine similarity in (0, 1]"),
            ))
        }
        Some(v) => v,
        None => base.similarity,
    };
    let embedding_model = raw
        .embedding_model
        .as_deref()
        .map(std::sync::Arc::from)
        .or_else(|| base.embedding_model.clone());
    if mode == CacheMode::Semantic && embedding_model.is_none() {
        return Err(Error::config(
            format!("{at}.embedding_model"),
            "`semantic` needs the model that embeds prompts (a configured embeddings model)",
        ));
    }
    Ok(CacheRule {
        mode,
        ttl,
        namespace,
        only_deterministic: raw.only_deterministic.unwrap_or(base.only_deterministic),
        normalize_whitespace: whitespace,
        normalize_case: case,
        embedding_model,
        similarity,
    })
}
