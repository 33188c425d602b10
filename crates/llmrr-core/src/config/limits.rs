//! `[limits]`: the global caps on work in flight, the limits of keys without a rule of their
//! own, per-model limits on what clients ask for, and what limits do while Redis is down.
//! Rules per key, user, team and model also live in the store (`/admin/limits`), editable
//! without a restart; a stored rule replaces the config's for its scope.

use crate::error::{Error, Result};
use crate::limits::LimitSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Requests in flight in this process, all together; past it new requests get 503 fast.
    pub max_in_flight: Option<u64>,
    /// Request bytes held by requests in flight, all together (MiB).
    pub max_buffered_mb: Option<u64>,
    /// What rate limits, quotas and concurrency do while Redis is down: `local` (each replica
    /// enforces alone), `allow` (not enforced) or `reject` (503).
    pub on_shared_outage: Option<String>,
    /// The limits of a key that has no rule of its own.
    pub default_key: Option<LimitSet>,
    /// The limits of the deployment as a whole (every request).
    pub global: Option<LimitSet>,
    /// Limits per model or route name, over every caller (`[limits.models."gpt-4o"]`).
    #[serde(default)]
    pub models: BTreeMap<String, LimitSet>,
    /// Limits and priority of the keys of a tier (`[limits.tiers.free]`), each key on its own.
    #[serde(default)]
    pub tiers: BTreeMap<String, LimitSet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitOutage {
    Local,
    Allow,
    Reject,
}

#[derive(Debug, Clone, Serialize)]
pub struct LimitsConfig {
    pub max_in_flight: usize,
    pub max_buffered_bytes: u64,
    pub on_shared_outage: LimitOutage,
    pub default_key: Option<LimitSet>,
    pub global: Option<LimitSet>,
    pub models: BTreeMap<String, LimitSet>,
    pub tiers: BTreeMap<String, LimitSet>,
}

pub const DEFAULT_MAX_IN_FLIGHT: u64 = 4096;
pub const DEFAULT_MAX_BUFFERED_MB: u64 = 1024;

pub(super) fn limits(raw: RawLimits) -> Result<LimitsConfig> {
    let positive = |path: &str, v: u64| {
        if v == 0 {
            Err(Error::config(path, "must be at least 1"))
        } else {
            Ok(v)
        }
    };
    let max_in_flight = positive(
        "limits.max_in_flight",
        raw.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
    )?;
    let mb = positive(
        "limits.max_buffered_mb",
        raw.max_buffered_mb.unwrap_or(DEFAULT_MAX_BUFFERED_MB),
    )?;
    let check = |path: &str, set: &LimitSet| {
        set.check(path)
            .map_err(|e| Error::config(path, e.to_string()))
    };
    if let Some(set) = &raw.default_key {
        check("limits.default_key", set)?;
    }
    if let Some(set) = &raw.global {
        check("limits.global", set)?;
    }
    for (name, set) in &raw.models {
        check(&format!("limits.models.{name}"), set)?;
    }
    for (name, set) in &raw.tiers {
        check(&format!("limits.tiers.{name}"), set)?;
    }
    Ok(LimitsConfig {
        max_in_flight: max_in_flight.min(usize::MAX as u64) as usize,
        max_buffered_bytes: mb.saturating_mul(1 << 20),
        on_shared_outage: match raw.on_shared_outage.as_deref() {
            None | Some("local") => LimitOutage::Local,
            Some("allow") => LimitOutage::Allow,
            Some("reject") => LimitOutage::Reject,
            Some(other) => {
                return Err(Error::config(
                    "limits.on_shared_outage",
                    format!("`{other}` must be `local`, `allow` or `reject`"),
                ))
            }
        },
        default_key: raw.default_key,
        global: raw.global,
        models: raw.models,
        tiers: raw.tiers,
    })
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT as usize,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_MB << 20,
            on_shared_outage: LimitOutage::Local,
            default_key: None,
            global: None,
            models: BTreeMap::new(),
            tiers: BTreeMap::new(),
        }
    }
}
