//! Budgets: a limit on spend (USD and/or tokens) over a calendar period, attached to a scope,
//! with an action at the limit. Periods are aligned to the calendar in the configured time
//! zone (an hour, a day, a week from Monday, a month from its first day) or never reset.

use crate::error::{Error, Result};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Who (or what) a budget limits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Global,
    Team(String),
    User(String),
    Key(String),
    Model(String),
    KeyModel(String, String),
    TeamModel(String, String),
}

impl Scope {
    /// `global`, `team:T`, `user:U`, `key:K`, `model:M`, `key:K/model:M`, `team:T/model:M`.
    pub fn parse(s: &str) -> Result<Scope> {
        let bad = || {
            Error::invalid(
                format!(
                    "`{s}` is not a budget scope: global, team:T, user:U, key:K, model:M, \
                     key:K/model:M or team:T/model:M"
                ),
                Some("scope".into()),
            )
        };
        let part = |p: &str, kind: &str| -> Option<String> {
            p.strip_prefix(kind)
                .and_then(|v| v.strip_prefix(':'))
                .filter(|v| !v.is_empty() && !v.contains(['/', ' ']))
                .map(str::to_owned)
        };
        if s == "global" {
            return Ok(Scope::Global);
        }
        if let Some((left, right)) = s.split_once('/') {
            let model = part(right, "model").ok_or_else(bad)?;
            return if let Some(k) = part(left, "key") {
                Ok(Scope::KeyModel(k, model))
            } else if let Some(t) = part(left, "team") {
                Ok(Scope::TeamModel(t, model))
            } else {
                Err(bad())
            };
        }
        if let Some(v) = part(s, "team") {
            Ok(Scope::Team(v))
        } else if let Some(v) = part(s, "user") {
            Ok(Scope::User(v))
        } else if let Some(v) = part(s, "key") {
            Ok(Scope::Key(v))
        } else if let Some(v) = part(s, "model") {
            Ok(Scope::Model(v))
        } else {
            Err(bad())
        }
    }

    /// The model this scope is about, if it is about one.
    pub fn model(&self) -> Option<&str> {
        match self {
            Scope::Model(m) | Scope::KeyModel(_, m) | Scope::TeamModel(_, m) => Some(m),
            _ => None,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Team(t) => write!(f, "team:{t}"),
            Scope::User(u) => write!(f, "user:{u}"),
            Scope::Key(k) => write!(f, "key:{k}"),
            Scope::Model(m) => write!(f, "model:{m}"),
            Scope::KeyModel(k, m) => write!(f, "key:{k}/model:{m}"),
            Scope::TeamModel(t, m) => write!(f, "team:{t}/model:{m}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Hour,
    Day,
    Week,
    Month,
    Lifetime,
}

impl Period {
    pub fn parse(s: &str) -> Result<Period> {
        Ok(match s {
            "hour" | "hourly" => Period::Hour,
            "day" | "daily" => Period::Day,
            "week" | "weekly" => Period::Week,
            "month" | "monthly" => Period::Month,
            "lifetime" | "total" => Period::Lifetime,
            other => {
                return Err(Error::invalid(
                    format!("`{other}` is not a period: hour, day, week, month or lifetime"),
                    Some("period".into()),
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Lifetime => "lifetime",
        }
    }

    /// The period that holds `now`: its start and end (none for a lifetime).
    pub fn window(self, now: Timestamp, tz: &TimeZone) -> Window {
        let z = now.to_zoned(tz.clone());
        let start = match self {
            Period::Lifetime => return Window::LIFETIME,
            Period::Hour => z
                .with()
                .minute(0)
                .second(0)
                .subsec_nanosecond(0)
                .build()
                .ok(),
            Period::Day => z.start_of_day().ok(),
            Period::Week => z.start_of_day().ok().and_then(|d| {
                let back = i64::from(d.weekday().to_monday_zero_offset());
                d.checked_sub(back.days()).ok()
            }),
            Period::Month => z.first_of_month().ok().and_then(|d| d.start_of_day().ok()),
        };
        let Some(start) = start else {
            return Window::LIFETIME;
        };
        let end: Option<Zoned> = match self {
            Period::Hour => start.checked_add(1.hour()).ok(),
            Period::Day => start.checked_add(1.day()).ok(),
            Period::Week => start.checked_add(1.week()).ok(),
            Period::Month => start.checked_add(1.month()).ok(),
            Period::Lifetime => None,
        };
        Window {
            start_ms: start.timestamp().as_millisecond(),
            end_ms: end.map(|e| e.timestamp().as_millisecond()),
        }
    }
}

/// A period's bounds in Unix milliseconds: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: Option<i64>,
}

impl Window {
    pub const LIFETIME: Window = Window {
        start_ms: 0,
        end_ms: None,
    };
}

/// What happens when a request does not fit a hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// 429 `insufficient_quota`.
    Reject,
    /// Continue with the route's candidates that fit what is left, cheapest first.
    Downgrade,
    /// Let it through; alert only (a soft limit).
    Alert,
}

impl Action {
    pub fn parse(s: &str) -> Result<Action> {
        match s {
            "reject" => Ok(Action::Reject),
            "downgrade" => Ok(Action::Downgrade),
            "alert" => Ok(Action::Alert),
            other => Err(Error::invalid(
                format!("`{other}` is not a budget action: reject, downgrade or alert"),
                Some("action".into()),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reject => "reject",
            Action::Downgrade => "downgrade",
            Action::Alert => "alert",
        }
    }
}

/// One budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Budget {
    pub id: String,
    #[serde(serialize_with = "as_text")]
    pub scope: Scope,
    pub period: Period,
    /// USD; `None`: no USD limit.
    #[serde(with = "rust_decimal::serde::str_option")]
    pub limit_usd: Option<Decimal>,
    pub limit_tokens: Option<u64>,
    pub action: Action,
    /// Alert when spend reaches these percentages of `limit_usd` (or of `limit_tokens`).
    pub alert_percent: Vec<u32>,
    /// Caps what a request without `max_tokens` reserves (default: the model's output limit).
    pub default_max_tokens: Option<u32>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

fn as_text<S: serde::Serializer>(scope: &Scope, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(scope)
}

/// The largest limits a budget takes (counters stay exact below 2^53 nano-USD or tokens).
pub const MAX_LIMIT_USD: i64 = 1_000_000;
pub const MAX_LIMIT_TOKENS: u64 = 1 << 50;

pub const DEFAULT_ALERT_PERCENT: [u32; 4] = [50, 80, 90, 100];

/// Nano-USD: the unit of budget counters (exact for every price with up to 3 decimals per
/// million tokens, and a cost is rounded up to it, so counters never under-count).
pub const NANOS_PER_USD: i64 = 1_000_000_000;

/// `usd` in nano-USD, rounded up.
pub fn nanos_up(usd: Decimal) -> i64 {
    (usd * Decimal::from(NANOS_PER_USD))
        .ceil()
        .try_into()
        .unwrap_or(i64::MAX)
}

pub fn usd_of_nanos(n: i64) -> Decimal {
    Decimal::new(n, 9).normalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn scopes_round_trip() {
        for s in [
            "global",
            "team:eng",
            "user:alice",
            "key:key_1",
            "model:gpt-4o",
            "key:key_1/model:gpt-4o",
            "team:eng/model:gpt-4o",
        ] {
            assert_eq!(Scope::parse(s).expect(s).to_string(), s);
        }
        for bad in [
            "",
            "team:",
            "team",
            "org:x",
            "user:a/model:b",
            "key:a/team:b",
            "x y",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn periods_follow_the_calendar_in_the_time_zone() {
        let berlin = TimeZone::get("Europe/Berlin").expect("tz");
        // 2026-03-29 01:30 UTC is 03:30 CEST, the day clocks went forward (a 23-hour day).
        let now = at("2026-03-29T01:30:00Z");
        let day = Period::Day.window(now, &berlin);
        assert_eq!(day.start_ms, at("2026-03-28T23:00:00Z").as_millisecond());
        assert_eq!(
            day.end_ms,
            Some(at("2026-03-29T22:00:00Z").as_millisecond())
        );
        let month = Period::Month.window(now, &berlin);
        assert_eq!(month.start_ms, at("2026-02-28T23:00:00Z").as_millisecond());
        assert_eq!(
            month.end_ms,
            Some(at("2026-03-31T22:00:00Z").as_millisecond())
        );
        // Sunday -> the week started Monday the 23rd.
        let week = Period::Week.window(now, &TimeZone::UTC);
        assert_eq!(week.start_ms, at("2026-03-23T00:00:00Z").as_millisecond());
        let hour = Period::Hour.window(at("2026-11-29T23:59:59.9Z"), &TimeZone::UTC);
        assert_eq!(
            hour.end_ms,
            Some(at("2026-11-30T00:00:00Z").as_millisecond())
        );
        assert_eq!(Period::Lifetime.window(now, &berlin), Window::LIFETIME);
    }

    #[test]
    fn nanos_round_up() {
        assert_eq!(nanos_up(Decimal::new(15, 11)), 1); // 1.5e-10 USD
        assert_eq!(nanos_up(Decimal::new(5253, 7)), 525_300);
        assert_eq!(usd_of_nanos(525_300).to_string(), "0.0005253");
    }
}

/// An amount of USD an operator wrote (a string, `$` allowed, or a number): 0 to
/// [`MAX_LIMIT_USD`], at most 9 decimals; `param` names it in the error.
pub fn usd_amount(v: &serde_json::Value, param: &str) -> Result<Decimal> {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.trim()
        .trim_start_matches('$')
        .parse::<Decimal>()
        .ok()
        .filter(|d| !d.is_sign_negative() && d.scale() <= 9 && *d <= Decimal::from(MAX_LIMIT_USD))
        .ok_or_else(|| {
            Error::invalid(
                format!(
                    "`{text}` is not an amount of USD from 0 to {MAX_LIMIT_USD} (at most 9 \
                     decimals)"
                ),
                Some(param.into()),
            )
        })
}

/// A budget as an operator writes it (admin API body, CLI flags).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    pub scope: String,
    pub period: String,
    /// USD, as a string or a number.
    pub limit_usd: Option<serde_json::Value>,
    pub limit_tokens: Option<u64>,
    /// Default: reject.
    pub action: Option<String>,
    /// Default: 50, 80, 90, 100.
    pub alert_percent: Option<Vec<u32>>,
    pub default_max_tokens: Option<u32>,
}

impl BudgetSpec {
    /// Check every value; a new id (an update keeps the stored one).
    pub fn into_budget(self) -> Result<Budget> {
        let scope = Scope::parse(self.scope.trim())?;
        let period = Period::parse(self.period.trim())?;
        let limit_usd = match &self.limit_usd {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(usd_amount(v, "limit_usd")?),
        };
        if limit_usd.is_none() && self.limit_tokens.is_none() {
            return Err(Error::invalid(
                "a budget needs limit_usd, limit_tokens or both",
                Some("limit_usd".into()),
            ));
        }
        let alert_percent = self
            .alert_percent
            .unwrap_or_else(|| DEFAULT_ALERT_PERCENT.to_vec());
        if alert_percent.iter().any(|p| *p == 0 || *p > 1000) {
            return Err(Error::invalid(
                "alert percentages must be between 1 and 1000",
                Some("alert_percent".into()),
            ));
        }
        if self.default_max_tokens == Some(0) {
            return Err(Error::invalid(
                "default_max_tokens must be at least 1",
                Some("default_max_tokens".into()),
            ));
        }
        if self.limit_tokens.is_some_and(|t| t > MAX_LIMIT_TOKENS) {
            return Err(Error::invalid(
                format!("limit_tokens must be at most {MAX_LIMIT_TOKENS}"),
                Some("limit_tokens".into()),
            ));
        }
        let now = crate::store::now_ms();
        Ok(Budget {
            id: format!("bud_{}", uuid::Uuid::now_v7().simple()),
            scope,
            period,
            limit_usd,
            limit_tokens: self.limit_tokens,
            action: Action::parse(self.action.as_deref().unwrap_or("reject"))?,
            alert_percent,
            default_max_tokens: self.default_max_tokens,
            created_at_ms: now,
            updated_at_ms: now,
        })
    }
}
