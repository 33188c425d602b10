//! What the admin API and the CLI share: budgets set and removed (and seen by this replica at
//! once), time ranges written as operators write them.

use super::budget::{Budget, BudgetSpec};
use super::Money;
use crate::error::{Error, Result};

impl Money {
    /// Create or update the budget of a scope and period; returns it as stored.
    pub async fn set_budget(&self, spec: BudgetSpec) -> Result<Budget> {
        let budget = spec.into_budget()?;
        let stored = self.store().upsert_budget(&budget).await?;
        self.reload().await?;
        Ok(stored)
    }

    /// Remove a budget by id, or every budget of a scope; returns how many.
    pub async fn remove_budget(&self, id_or_scope: &str) -> Result<u64> {
        let n = self.store().delete_budget(id_or_scope).await?;
        self.reload().await?;
        Ok(n)
    }
}

/// A point in time: RFC 3339 (`2026-11-01T00:00:00Z`), a date (`2026-11-01`, midnight UTC),
/// Unix milliseconds, or an age before `now_ms` (`30m`, `24h`, `7d`).
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64> {
    let s = s.trim();
    let bad = || {
        Error::invalid(
            format!("`{s}` is not a time: use 2026-11-01T00:00:00Z, 2026-11-01, Unix ms, or 24h / 7d ago"),
            None,
        )
    };
    if let Some((n, unit)) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .filter(|(n, u)| !n.is_empty() && ["m", "h", "d", "w"].contains(u))
    {
        let n: i64 = n.parse().map_err(|_| bad())?;
        let ms = match unit {
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => 7 * 86_400_000,
        };
        return Ok(now_ms - n.saturating_mul(ms));
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return d
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|_| bad());
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_as_operators_write_them() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("24h", now).ok(), Some(now - 86_400_000));
        assert_eq!(parse_time("7d", now).ok(), Some(now - 7 * 86_400_000));
        assert_eq!(
            parse_time("1700000000000", now).ok(),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_time("2026-11-01T00:00:00Z", now).ok(),
            Some(1_793_491_200_000)
        );
        assert_eq!(parse_time("2026-11-01", now).ok(), Some(1_793_491_200_000));
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("5y", now).is_err());
    }
}
