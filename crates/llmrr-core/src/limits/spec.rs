//! What a limit rule says: rates, concurrency, quotas and priority, for one scope (the
//! deployment, a key, a user, a team or a model), with optional per-model limits inside it
//! (key×model, team×model…).

use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// Priority classes of the admission queue, lowest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
    Critical,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }

    /// `x-llmrr-priority`'s value.
    pub fn parse(s: &str) -> Result<Priority> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::invalid(
                    format!(
                        "x-llmrr-priority must be one of critical, high, normal, low (got `{s}`)"
                    ),
                    Some("x-llmrr-priority".into()),
                )
            })
    }
}

/// Limits of one scope. Every field is optional: absent means not limited by this rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSet {
    /// Requests per minute (GCRA: a full minute's worth may come at once, then evenly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens per minute: the request's estimate (prompt + max output) is taken up front and
    /// settled to the real count after the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_day: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_month: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_month: Option<u64>,
    /// The admission class of requests that do not ask for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// The highest class a request may ask for with `x-llmrr-priority` (default: `priority`,
    /// else normal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_priority: Option<Priority>,
    /// Limits on requests naming one model or route, inside this scope.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, LimitSet>,
}

/// Limits above this are refused as typos (and keep every amount exact in Lua's doubles).
const MAX_LIMIT: u64 = 1 << 50;

impl LimitSet {
    pub fn check(&self, what: &str) -> Result<()> {
        let numbers = [
            ("rpm", self.rpm),
            ("tpm", self.tpm),
            ("max_concurrent", self.max_concurrent),
            ("requests_per_day", self.requests_per_day),
            ("tokens_per_day", self.tokens_per_day),
            ("requests_per_month", self.requests_per_month),
            ("tokens_per_month", self.tokens_per_month),
        ];
        for (name, value) in numbers {
            if let Some(v) = value {
                if v == 0 || v > MAX_LIMIT {
                    return Err(Error::invalid(
                        format!("{what}: `{name}` must be between 1 and {MAX_LIMIT} (got {v})"),
                        Some(name.into()),
                    ));
                }
            }
        }
        if let (Some(p), Some(max)) = (self.priority, self.max_priority) {
            if p > max {
                return Err(Error::invalid(
                    format!(
                        "{what}: `priority` {} is above `max_priority` {}",
                        p.as_str(),
                        max.as_str()
                    ),
                    Some("priority".into()),
                ));
            }
        }
        for (model, inner) in &self.models {
            let path = format!("{what}.models.{model}");
            if !inner.models.is_empty() || inner.priority.is_some() || inner.max_priority.is_some()
            {
                return Err(Error::invalid(
                    format!("{path}: per-model limits take rates, concurrency and quotas only"),
                    Some("models".into()),
                ));
            }
            inner.check(&path)?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        *self == LimitSet::default()
    }
}

/// A scope of limit rules as written in the admin API and the CLI: `global`, `key:ID`,
/// `user:ID`, `team:ID`, `tier:NAME` (each key of the tier on its own) or `model:NAME`.
pub fn check_scope(scope: &str) -> Result<()> {
    let ok = scope == "global"
        || ["key:", "user:", "team:", "tier:", "model:"]
            .iter()
            .any(|p| {
                scope
                    .strip_prefix(p)
                    .is_some_and(|id| !id.is_empty() && id.len() <= 256)
            });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!(
                "`{scope}` is not a limit scope: global, key:ID, user:ID, team:ID or model:NAME"
            ),
            Some("scope".into()),
        ))
    }
}
