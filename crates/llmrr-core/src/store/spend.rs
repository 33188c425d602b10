//! Spend analytics over the ledger: totals and breakdowns by one dimension over a time range,
//! cost percentiles, repeated prompts. Sums are computed by the database on the indexed
//! columns; money stays integer pico-USD until it is shown.

use super::ledger::scope_filter;
use super::Store;
use crate::error::{Error, Result};
use crate::money::budget::{Scope, Window};
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Model,
    Provider,
    Key,
    User,
    Team,
    Route,
    Category,
    Hour,
    Day,
}

impl GroupBy {
    pub fn parse(s: &str) -> Result<GroupBy> {
        Ok(match s {
            "model" => GroupBy::Model,
            "provider" => GroupBy::Provider,
            "key" => GroupBy::Key,
            "user" => GroupBy::User,
            "team" => GroupBy::Team,
            "route" => GroupBy::Route,
            "category" => GroupBy::Category,
            "hour" => GroupBy::Hour,
            "day" => GroupBy::Day,
            other => {
                return Err(Error::invalid(
                    format!(
                        "`{other}` is not a breakdown: model, provider, key, user, team, \
                         route, category, hour or day"
                    ),
                    Some("group_by".into()),
                ))
            }
        })
    }

    /// The SQL of the group's value, as text. `off`: the time zone's offset (ms) for days.
    fn expr(self, off: i64) -> String {
        let text = |c: &str| format!("COALESCE({c}, '-')");
        match self {
            GroupBy::Model => "model".into(),
            GroupBy::Provider => "provider".into(),
            GroupBy::Key => text("key_id"),
            GroupBy::User => text("user_id"),
            GroupBy::Team => text("team_id"),
            GroupBy::Route => text("route"),
            GroupBy::Category => text("category"),
            GroupBy::Hour => "CAST((created_at_ms / 3600000) * 3600000 AS TEXT)".into(),
            GroupBy::Day => {
                format!("CAST(((created_at_ms + {off}) / 86400000) * 86400000 - {off} AS TEXT)")
            }
        }
    }

    pub fn is_time(self) -> bool {
        matches!(self, GroupBy::Hour | GroupBy::Day)
    }
}

/// What is asked: a range, optionally one scope, optionally a breakdown.
#[derive(Debug, Clone)]
pub struct SpendQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub scope: Scope,
    pub group_by: Option<GroupBy>,
    /// The report's time zone offset from UTC, for day buckets.
    pub tz_offset_ms: i64,
    /// Groups kept, the most expensive first.
    pub limit: i64,
}

/// Sums over a set of ledger rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SpendTotals {
    pub requests: i64,
    pub prompt_tokens: i64,
    pub cached_tokens: i64,
    pub completion_tokens: i64,
    pub cost_pusd: i64,
    /// Avoided by cache hits.
    pub saved_pusd: i64,
    pub estimated_requests: i64,
    pub unpriced_requests: i64,
    /// Routed requests: what they cost, and the same usage on each route's dearest model.
    pub routed_cost_pusd: i64,
    pub routed_baseline_pusd: i64,
    /// Local requests: what they cost, and the same usage on the cheapest remote candidate.
    pub local_cost_pusd: i64,
    pub local_baseline_pusd: i64,
    /// Sum of the answering models' quality (quality per dollar = this / requests / cost).
    pub quality_sum: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    pub group: String,
    #[serde(flatten)]
    pub totals: SpendTotals,
}

const SUMS: &str = "COUNT(*) AS requests, \
    CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
    CAST(COALESCE(SUM(cached_tokens), 0) AS BIGINT) AS cached_tokens, \
    CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
    CAST(COALESCE(SUM(cost_pusd), 0) AS BIGINT) AS cost, \
    CAST(COALESCE(SUM(saved_pusd), 0) AS BIGINT) AS saved, \
    CAST(COALESCE(SUM(estimated), 0) AS BIGINT) AS estimated, \
    CAST(COALESCE(SUM(unpriced), 0) AS BIGINT) AS unpriced, \
    CAST(COALESCE(SUM(CASE WHEN baseline_max_pusd IS NULL THEN 0 ELSE cost_pusd END), 0) \
      AS BIGINT) AS routed_cost, \
    CAST(COALESCE(SUM(baseline_max_pusd), 0) AS BIGINT) AS routed_baseline, \
    CAST(COALESCE(SUM(CASE WHEN baseline_remote_pusd IS NULL THEN 0 ELSE cost_pusd END), 0) \
      AS BIGINT) AS local_cost, \
    CAST(COALESCE(SUM(baseline_remote_pusd), 0) AS BIGINT) AS local_baseline, \
    CAST(COALESCE(SUM(quality), 0) AS DOUBLE PRECISION) AS quality_sum";

fn totals(r: &sqlx::any::AnyRow) -> Result<SpendTotals> {
    Ok(SpendTotals {
        requests: r.try_get("requests")?,
        prompt_tokens: r.try_get("prompt_tokens")?,
        cached_tokens: r.try_get("cached_tokens")?,
        completion_tokens: r.try_get("completion_tokens")?,
        cost_pusd: r.try_get("cost")?,
        saved_pusd: r.try_get("saved")?,
        estimated_requests: r.try_get("estimated")?,
        unpriced_requests: r.try_get("unpriced")?,
        routed_cost_pusd: r.try_get("routed_cost")?,
        routed_baseline_pusd: r.try_get("routed_baseline")?,
        local_cost_pusd: r.try_get("local_cost")?,
        local_baseline_pusd: r.try_get("local_baseline")?,
        quality_sum: r.try_get("quality_sum")?,
    })
}

/// Rows of `q` (its range and scope) for `sql`, where `{filter}` stands for the condition.
async fn rows_of(store: &Store, q: &SpendQuery, sql: &str) -> Result<Vec<sqlx::any::AnyRow>> {
    let (filter, binds, from, to) = scope_filter(&q.scope, window(q));
    let sql = sql.replace("{filter}", &filter);
    let mut query = sqlx::query(&sql).bind(from).bind(to);
    for b in binds {
        query = query.bind(b);
    }
    Ok(query.fetch_all(&store.pool).await?)
}

fn window(q: &SpendQuery) -> Window {
    Window {
        start_ms: q.from_ms,
        end_ms: Some(q.to_ms),
    }
}

impl Store {
    /// Cache hits in the ledger (every replica's), and what they saved (pico-USD).
    pub async fn cache_savings(&self) -> Result<(i64, i64)> {
        let r = sqlx::query(
            "SELECT COUNT(*) AS hits, CAST(COALESCE(SUM(saved_pusd), 0) AS BIGINT) AS saved \
             FROM spend_ledger WHERE cache_hit = 1",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((r.try_get("hits")?, r.try_get("saved")?))
    }

    pub async fn spend_totals(&self, q: &SpendQuery) -> Result<SpendTotals> {
        let sql = format!("SELECT {SUMS} FROM spend_ledger WHERE {{filter}}");
        match rows_of(self, q, &sql).await?.first() {
            Some(r) => totals(r),
            None => Ok(SpendTotals::default()),
        }
    }

    /// Groups by `q.group_by` (the most expensive first; time groups in time order).
    pub async fn spend_breakdown(&self, q: &SpendQuery, by: GroupBy) -> Result<Vec<Breakdown>> {
        let order = if by.is_time() { "g" } else { "cost DESC, g" };
        let sql = format!(
            "SELECT {} AS g, {SUMS} FROM spend_ledger WHERE {{filter}} GROUP BY g \
             ORDER BY {order} LIMIT {}",
            by.expr(q.tz_offset_ms),
            q.limit.max(1)
        );
        rows_of(self, q, &sql)
            .await?
            .iter()
            .map(|r| {
                Ok(Breakdown {
                    group: r.try_get("g")?,
                    totals: totals(r)?,
                })
            })
            .collect()
    }

    /// The cost of the request at rank `nth` (0-based, cheapest first).
    pub async fn spend_cost_at_rank(&self, q: &SpendQuery, nth: i64) -> Result<Option<i64>> {
        let sql = format!(
            "SELECT cost_pusd FROM spend_ledger WHERE {{filter}} ORDER BY cost_pusd \
             LIMIT 1 OFFSET {}",
            nth.max(0)
        );
        match rows_of(self, q, &sql).await?.first() {
            Some(r) => Ok(Some(r.try_get("cost_pusd")?)),
            None => Ok(None),
        }
    }

    /// Prompts sent more than once without a cache hit: (hash, times, total pico-USD), the
    /// most expensive first.
    pub async fn repeated_prompts(&self, q: &SpendQuery) -> Result<Vec<(String, i64, i64)>> {
        let sql = "SELECT prompt_hash AS h, COUNT(*) AS n, \
             CAST(COALESCE(SUM(cost_pusd), 0) AS BIGINT) AS cost FROM spend_ledger \
             WHERE {filter} AND prompt_hash IS NOT NULL AND cache_hit = 0 \
             GROUP BY prompt_hash HAVING COUNT(*) > 1 ORDER BY cost DESC LIMIT 100";
        rows_of(self, q, sql)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("h")?, r.try_get("n")?, r.try_get("cost")?)))
            .collect()
    }

    /// Short prompts of simple categories per (route, model): the traffic a cheaper model of
    /// the same route could carry. (route, model, requests, prompt, completion, pico-USD).
    pub async fn simple_traffic(
        &self,
        q: &SpendQuery,
        max_prompt_tokens: i64,
    ) -> Result<Vec<(String, String, i64, i64, i64, i64)>> {
        let sql = format!(
            "SELECT route, model, COUNT(*) AS n, \
             CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS p, \
             CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS c, \
             CAST(COALESCE(SUM(cost_pusd), 0) AS BIGINT) AS cost FROM spend_ledger \
             WHERE {{filter}} AND route IS NOT NULL AND prompt_tokens <= {max_prompt_tokens} \
             AND category IN ('question', 'chat', 'translation', 'summarization') \
             GROUP BY route, model ORDER BY cost DESC LIMIT 100"
        );
        let rows = rows_of(self, q, &sql).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("route")?,
                    r.try_get("model")?,
                    r.try_get("n")?,
                    r.try_get("p")?,
                    r.try_get("c")?,
                    r.try_get("cost")?,
                ))
            })
            .collect()
    }
}
