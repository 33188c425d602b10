//! `[money]` (budgets' time zone, alerts, ledger retention, reservations) and `[shared]` (the
//! shared-state server several replicas use).

use super::load::{seconds, secret_ref, Env};
use crate::error::{Error, Result};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMoney {
    /// IANA name; budget periods follow its calendar. Default: UTC.
    pub timezone: Option<String>,
    /// Budget alerts are POSTed here (JSON), signed with `alert_webhook_secret`.
    pub alert_webhook_url: Option<String>,
    /// `env:NAME`.
    pub alert_webhook_secret: Option<String>,
    /// Ledger rows older than this are deleted (default: kept).
    pub ledger_retention_days: Option<u64>,
    /// A reservation frees itself after this even if never settled (a replica that died).
    pub reservation_hold_secs: Option<f64>,
    /// With `[shared]`: what budgets do while Redis is down: `local` (each replica enforces
    /// alone, from the ledger) or `reject` (503).
    pub on_shared_outage: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShared {
    /// `redis://…` or `env:NAME`.
    pub redis_url: Option<String>,
    pub key_prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutagePolicy {
    Local,
    Reject,
}

#[derive(Debug, Clone, Serialize)]
pub struct MoneyConfig {
    pub timezone: String,
    pub alert_webhook_url: Option<String>,
    pub alert_webhook_secret: Option<Secret>,
    pub ledger_retention_days: Option<u64>,
    #[serde(with = "super::resolved::secs")]
    pub reservation_hold: Duration,
    pub on_shared_outage: OutagePolicy,
}

#[derive(Debug, Clone, Serialize)]
pub struct SharedConfig {
    pub redis_url: Option<Secret>,
    pub key_prefix: String,
}

/// `longest_call`: the longest a request can run (the request timeout, the longest model
/// timeout, all attempts together): an unsettled reservation outlives it.
pub(super) fn money(raw: RawMoney, longest_call: Duration, env: &Env) -> Result<MoneyConfig> {
    let timezone = raw.timezone.unwrap_or_else(|| "UTC".into());
    if jiff::tz::TimeZone::get(&timezone).is_err() {
        return Err(Error::config(
            "money.timezone",
            format!("`{timezone}` is not a time zone name such as Europe/Berlin or UTC"),
        ));
    }
    if let Some(u) = &raw.alert_webhook_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(Error::config(
                "money.alert_webhook_url",
                "must be an http:// or https:// URL",
            ));
        }
    }
    let hold = match raw.reservation_hold_secs {
        Some(v) => seconds("money.reservation_hold_secs", v)?,
        None => longest_call + Duration::from_secs(60),
    };
    Ok(MoneyConfig {
        timezone,
        alert_webhook_url: raw.alert_webhook_url,
        alert_webhook_secret: raw
            .alert_webhook_secret
            .as_deref()
            .map(|r| secret_ref("money.alert_webhook_secret", r, env))
            .transpose()?,
        ledger_retention_days: raw.ledger_retention_days,
        reservation_hold: hold,
        on_shared_outage: match raw.on_shared_outage.as_deref() {
            None | Some("local") => OutagePolicy::Local,
            Some("reject") => OutagePolicy::Reject,
            Some(other) => {
                return Err(Error::config(
                    "money.on_shared_outage",
                    format!("`{other}` must be `local` or `reject`"),
                ))
            }
        },
    })
}

pub(super) fn shared(raw: RawShared, env: &Env) -> Result<SharedConfig> {
    let redis_url = match raw.redis_url.as_deref() {
        Some(r) if r.starts_with("env:") => Some(secret_ref("shared.redis_url", r, env)?),
        Some(r) => Some(Secret::new(r)),
        None => None,
    };
    if let Some(u) = &redis_url {
        let u = u.expose();
        if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
            return Err(Error::config(
                "shared.redis_url",
                "must start with redis:// or rediss://",
            ));
        }
    }
    let key_prefix = raw.key_prefix.unwrap_or_else(|| "llmrr".into());
    if key_prefix.is_empty() || key_prefix.contains(char::is_whitespace) {
        return Err(Error::config(
            "shared.key_prefix",
            "must be non-empty, without spaces",
        ));
    }
    Ok(SharedConfig {
        redis_url,
        key_prefix,
    })
}
