//! Spend reports from the ledger: totals, a breakdown, efficiency, savings (each against its
//! stated baseline), top spenders, and forecasts with each budget's run-out date.

use super::book::iso;
use super::budget::Scope;
use super::forecast::{self, Forecast};
use super::Money;
use crate::error::Result;
use crate::store::{Breakdown, GroupBy, SpendQuery, SpendTotals, PICOS_PER_USD};
use serde::Serialize;

/// USD text from pico-USD, exactly.
pub fn usd(pico: i64) -> String {
    super::cost::usd_of_picos(pico).to_string()
}

fn usd_f64(pico: i64) -> f64 {
    pico as f64 / PICOS_PER_USD as f64
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub requests: i64,
    pub prompt_tokens: i64,
    pub cached_tokens: i64,
    pub completion_tokens: i64,
    pub cost_usd: String,
    pub estimated_requests: i64,
    pub unpriced_requests: i64,
}

impl From<&SpendTotals> for Totals {
    fn from(t: &SpendTotals) -> Self {
        Totals {
            requests: t.requests,
            prompt_tokens: t.prompt_tokens,
            cached_tokens: t.cached_tokens,
            completion_tokens: t.completion_tokens,
            cost_usd: usd(t.cost_pusd),
            estimated_requests: t.estimated_requests,
            unpriced_requests: t.unpriced_requests,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub group: String,
    #[serde(flatten)]
    pub totals: Totals,
}

#[derive(Debug, Clone, Serialize)]
pub struct Efficiency {
    /// Tokens (prompt + completion) per USD; none when nothing was spent.
    pub tokens_per_usd: Option<f64>,
    /// The answering models' configured quality summed per USD.
    pub quality_per_usd: Option<f64>,
    pub cost_per_request_p50_usd: Option<String>,
    pub cost_per_request_p90_usd: Option<String>,
    pub cost_per_request_p99_usd: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Saving {
    pub saved_usd: String,
    pub baseline: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Savings {
    pub cache: Saving,
    pub routing: Saving,
    pub local: Saving,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpendReport {
    pub from: String,
    pub to: String,
    pub scope: String,
    pub totals: Totals,
    pub group_by: Option<GroupBy>,
    pub groups: Vec<Group>,
    pub efficiency: Efficiency,
    pub savings: Savings,
    pub top_keys: Vec<Group>,
    pub top_users: Vec<Group>,
    pub top_teams: Vec<Group>,
}

fn time_error(e: jiff::Error) -> crate::error::Error {
    crate::error::Error::Internal(format!("calendar arithmetic failed: {e}"))
}

fn to_groups(rows: Vec<Breakdown>, time: bool) -> Vec<Group> {
    rows.into_iter()
        .map(|b| Group {
            group: if time {
                b.group.parse::<i64>().map(iso).unwrap_or(b.group)
            } else {
                b.group
            },
            totals: Totals::from(&b.totals),
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct BudgetRunOut {
    pub budget_id: String,
    pub scope: String,
    pub period: &'static str,
    /// When the forecast says the limit is reached (none: not within the period or 400 days).
    pub runs_out_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ForecastReport {
    pub scope: String,
    pub history_hours: usize,
    pub next_24h: Forecast,
    pub next_7d: Forecast,
    pub next_30d: Forecast,
    pub budgets: Vec<BudgetRunOut>,
}

/// Spend today and this calendar month (in the money time zone), and where the month is
/// heading: what it has spent plus the forecast of its remaining hours.
#[derive(Debug, Clone, Serialize)]
pub struct Outlook {
    pub scope: String,
    pub today_usd: String,
    pub month_usd: String,
    pub month_forecast: Forecast,
    /// Month to date plus the forecast's expected spend for the rest of the month.
    pub month_expected_usd: f64,
}

/// History the forecast learns from.
const HISTORY_DAYS: i64 = 28;

impl Money {
    pub async fn spend_report(&self, q: &SpendQuery) -> Result<SpendReport> {
        let store = self.store();
        let t = store.spend_totals(q).await?;
        let groups = match q.group_by {
            Some(by) => to_groups(store.spend_breakdown(q, by).await?, by.is_time()),
            None => Vec::new(),
        };
        let top = |by| async move {
            let mut top = q.clone();
            top.limit = 10;
            store
                .spend_breakdown(&top, by)
                .await
                .map(|r| to_groups(r, false))
        };
        let rank = |p: f64| {
            let nth = ((t.requests as f64 - 1.0) * p).round() as i64;
            async move { store.spend_cost_at_rank(q, nth).await }
        };
        let spent = usd_f64(t.cost_pusd);
        let per_usd = |v: f64| (spent > 0.0).then(|| v / spent);
        let efficiency = Efficiency {
            tokens_per_usd: per_usd((t.prompt_tokens + t.completion_tokens) as f64),
            quality_per_usd: per_usd(t.quality_sum),
            cost_per_request_p50_usd: rank(0.5).await?.map(usd),
            cost_per_request_p90_usd: rank(0.9).await?.map(usd),
            cost_per_request_p99_usd: rank(0.99).await?.map(usd),
        };
        let savings = Savings {
            cache: Saving {
                saved_usd: usd(t.saved_pusd),
                baseline: "the cost of each cache hit had it been sent to its model",
            },
            routing: Saving {
                saved_usd: usd(t.routed_baseline_pusd - t.routed_cost_pusd),
                baseline: "every routed request on its route's most expensive candidate",
            },
            local: Saving {
                saved_usd: usd(t.local_baseline_pusd - t.local_cost_pusd),
                baseline: "every local request on its route's cheapest remote candidate",
            },
        };
        Ok(SpendReport {
            from: iso(q.from_ms),
            to: iso(q.to_ms),
            scope: q.scope.to_string(),
            totals: Totals::from(&t),
            group_by: q.group_by,
            groups,
            efficiency,
            savings,
            top_keys: top(GroupBy::Key).await?,
            top_users: top(GroupBy::User).await?,
            top_teams: top(GroupBy::Team).await?,
        })
    }

    /// Spend today, this month, and the month's forecast, for `scope`.
    pub async fn outlook(&self, scope: &Scope) -> Result<Outlook> {
        let now = self.now();
        let zoned = now.to_zoned(self.time_zone().clone());
        let day = zoned.start_of_day().map_err(time_error)?;
        let month = zoned
            .first_of_month()
            .and_then(|m| m.start_of_day())
            .map_err(time_error)?;
        let next_month = month
            .checked_add(jiff::Span::new().months(1))
            .map_err(time_error)?;
        let spent = |from: i64| {
            let q = SpendQuery {
                from_ms: from,
                to_ms: now.as_millisecond() + 1,
                scope: scope.clone(),
                group_by: None,
                tz_offset_ms: 0,
                limit: 1,
            };
            async move { self.store().spend_totals(&q).await.map(|t| t.cost_pusd) }
        };
        let today = spent(day.timestamp().as_millisecond()).await?;
        let month_to_date = spent(month.timestamp().as_millisecond()).await?;
        let left_ms = next_month.timestamp().as_millisecond() - now.as_millisecond();
        let hours_left = (left_ms as f64 / 3_600_000.0).ceil().max(1.0) as u32;
        let (series, weekday) = self.hourly_series(scope).await?;
        let month_forecast = forecast::forecast(&series, weekday, hours_left);
        Ok(Outlook {
            scope: scope.to_string(),
            today_usd: usd(today),
            month_usd: usd(month_to_date),
            month_expected_usd: usd_f64(month_to_date) + month_forecast.expected_usd,
            month_forecast,
        })
    }

    /// The hourly series of `scope` over the last `HISTORY_DAYS`, ending with the hour that
    /// just ended; and the weekday (0 = Monday) and hour of day of its first hour.
    async fn hourly_series(&self, scope: &Scope) -> Result<(Vec<f64>, (u32, u32))> {
        let now = self.now().as_millisecond();
        let to = now - now.rem_euclid(3_600_000);
        let from = to - HISTORY_DAYS * 86_400_000;
        let q = SpendQuery {
            from_ms: from,
            to_ms: to,
            scope: scope.clone(),
            group_by: Some(GroupBy::Hour),
            tz_offset_ms: 0,
            limit: (HISTORY_DAYS * 24) + 1,
        };
        let rows = self.store().spend_breakdown(&q, GroupBy::Hour).await?;
        // Start at the first hour with data: a new deployment is not 4 weeks of zeros.
        let first = rows
            .iter()
            .filter_map(|r| r.group.parse::<i64>().ok())
            .min()
            .unwrap_or(to - 3_600_000);
        let hours = ((to - first) / 3_600_000).max(1) as usize;
        let mut series = vec![0.0; hours];
        for r in rows {
            if let Ok(at) = r.group.parse::<i64>() {
                let i = ((at - first) / 3_600_000) as usize;
                if i < hours {
                    series[i] += usd_f64(r.totals.cost_pusd);
                }
            }
        }
        let weekday = jiff::Timestamp::from_millisecond(first)
            .map(|t| {
                let z = t.to_zoned(self.time_zone().clone());
                (z.weekday().to_monday_zero_offset() as u32, z.hour() as u32)
            })
            .unwrap_or((0, 0));
        Ok((series, weekday))
    }

    /// The forecast of `scope`, with the run-out date of every budget (`every_budget`) or
    /// only of the budgets of `scope` itself.
    pub async fn forecast(&self, scope: &Scope, every_budget: bool) -> Result<ForecastReport> {
        let (series, weekday) = self.hourly_series(scope).await?;
        let mut budgets = Vec::new();
        for s in self.status().await? {
            if !every_budget && s.budget.scope != *scope {
                continue;
            }
            let Some(limit) = s.budget.limit_usd else {
                continue;
            };
            let (own, own_weekday) = self.hourly_series(&s.budget.scope).await?;
            let left: f64 = (limit - s.spent_usd).to_string().parse().unwrap_or(0.0);
            let now = self.now().as_millisecond();
            let next_hour = now - now.rem_euclid(3_600_000) + 3_600_000;
            let horizon = 400 * 24;
            let mut acc = 0.0;
            let mut runs_out_at = None;
            if left <= 0.0 {
                runs_out_at = Some(iso(now));
            } else {
                for (h, cost) in forecast::hourly_path(&own, own_weekday, horizon)
                    .into_iter()
                    .enumerate()
                {
                    acc += cost;
                    if acc >= left {
                        let at = next_hour + h as i64 * 3_600_000;
                        let within = s
                            .resets_at
                            .as_ref()
                            .and_then(|r| r.parse::<jiff::Timestamp>().ok())
                            .is_none_or(|end| at < end.as_millisecond());
                        runs_out_at = within.then(|| iso(at));
                        break;
                    }
                }
            }
            budgets.push(BudgetRunOut {
                budget_id: s.budget.id.clone(),
                scope: s.budget.scope.to_string(),
                period: s.budget.period.as_str(),
                runs_out_at,
            });
        }
        Ok(ForecastReport {
            scope: scope.to_string(),
            history_hours: series.len(),
            next_24h: forecast::forecast(&series, weekday, 24),
            next_7d: forecast::forecast(&series, weekday, 7 * 24),
            next_30d: forecast::forecast(&series, weekday, 30 * 24),
            budgets,
        })
    }
}

impl SpendReport {
    /// The groups as CSV (or the totals, with no breakdown).
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "group,requests,prompt_tokens,cached_tokens,completion_tokens,cost_usd,\
             estimated_requests,unpriced_requests\n",
        );
        let quote = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_owned()
            }
        };
        let rows: Vec<(&str, &Totals)> = if self.groups.is_empty() {
            vec![("total", &self.totals)]
        } else {
            self.groups
                .iter()
                .map(|g| (g.group.as_str(), &g.totals))
                .collect()
        };
        for (group, t) in rows {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                quote(group),
                t.requests,
                t.prompt_tokens,
                t.cached_tokens,
                t.completion_tokens,
                t.cost_usd,
                t.estimated_requests,
                t.unpriced_requests
            ));
        }
        out
    }
}
