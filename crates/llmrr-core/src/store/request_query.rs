//! Reading the request log: the newest rows matching a filter (the dashboard's recent
//! requests, `GET /admin/requests`), and the traffic of a recent window (its overview).

use super::request_log::{LogRow, COLUMNS};
use super::Store;
use crate::error::Result;
use sqlx::Row;

/// Which rows to read, newest first. Every field narrows; `None` does not.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// The model that answered, or the one the request named.
    pub model: Option<String>,
    pub key_id: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub route: Option<String>,
    /// `Some(true)`: answered (status < 400); `Some(false)`: failed.
    pub ok: Option<bool>,
    /// Only rows older than this `(created_at_ms, id)` (without an id: than this time): the
    /// next page after a page whose last row it names.
    pub before: Option<(i64, Option<String>)>,
    pub limit: i64,
}

/// The traffic of a window, from the request log (so every replica's requests count).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TrafficSummary {
    pub window_secs: i64,
    pub requests: i64,
    pub errors: i64,
    pub requests_per_sec: f64,
    pub error_rate: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p95_ms: Option<f64>,
    /// The percentiles read the newest rows only, at most this many.
    pub sampled: i64,
}

/// Rows read for a summary's percentiles at most: a busy window is sampled by its newest.
const SUMMARY_ROWS: i64 = 20_000;

impl Store {
    /// The newest rows first.
    pub async fn recent_requests(&self, limit: i64) -> Result<Vec<LogRow>> {
        self.find_requests(&RequestFilter {
            limit,
            ..Default::default()
        })
        .await
    }

    /// The newest rows matching `f`.
    pub async fn find_requests(&self, f: &RequestFilter) -> Result<Vec<LogRow>> {
        let mut clauses: Vec<String> = Vec::new();
        let mut texts: Vec<&str> = Vec::new();
        for (sql, value) in [
            ("(model = ? OR requested_model = ?)", &f.model),
            ("key_id = ?", &f.key_id),
            ("user_id = ?", &f.user_id),
            ("team_id = ?", &f.team_id),
            ("route = ?", &f.route),
        ] {
            if let Some(v) = value {
                texts.push(v);
                clauses.push(sql.replace('?', &format!("${}", texts.len())));
            }
        }
        match f.ok {
            Some(true) => clauses.push("status < 400".into()),
            Some(false) => clauses.push("status >= 400".into()),
            None => {}
        }
        // The page's time (and id) come after the filters' texts.
        let filters = texts.len();
        let mut at = filters;
        if let Some((_, id)) = &f.before {
            at += 1;
            match id {
                None => clauses.push(format!("created_at_ms < ${at}")),
                Some(id) => {
                    texts.push(id);
                    clauses.push(format!(
                        "(created_at_ms < ${at} OR (created_at_ms = ${at} AND id < ${}))",
                        at + 1
                    ));
                    at += 1;
                }
            }
        }
        let limit_at = at + 1;
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM request_log {filter} \
             ORDER BY created_at_ms DESC, id DESC LIMIT ${limit_at}"
        );
        let mut q = sqlx::query(&sql);
        for t in &texts[..filters] {
            q = q.bind(*t);
        }
        if let Some((ms, _)) = &f.before {
            q = q.bind(*ms);
        }
        for t in &texts[filters..] {
            q = q.bind(*t);
        }
        let rows = q.bind(f.limit).fetch_all(&self.pool).await?;
        rows.iter().map(log_row).collect()
    }

    /// Requests, errors, rate and latency percentiles since `now_ms - window_secs`.
    pub async fn traffic_summary(&self, now_ms: i64, window_secs: i64) -> Result<TrafficSummary> {
        let since = now_ms - window_secs * 1000;
        let totals = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), 0) \
             AS errors FROM request_log WHERE created_at_ms >= $1",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        let requests: i64 = totals.try_get("n")?;
        let errors: i64 = totals.try_get("errors")?;
        let rows = sqlx::query(
            "SELECT latency_us, ttft_us FROM request_log \
             WHERE created_at_ms >= $1 AND status < 400 \
             ORDER BY created_at_ms DESC LIMIT $2",
        )
        .bind(since)
        .bind(SUMMARY_ROWS)
        .fetch_all(&self.pool)
        .await?;
        let mut latency = Vec::with_capacity(rows.len());
        let mut ttft = Vec::new();
        for r in &rows {
            latency.push(r.try_get::<i64, _>("latency_us")?);
            if let Some(t) = r.try_get::<Option<i64>, _>("ttft_us")? {
                ttft.push(t);
            }
        }
        let ms = |v: &mut Vec<i64>, q: f64| percentile(v, q).map(|us| us as f64 / 1000.0);
        Ok(TrafficSummary {
            window_secs,
            requests,
            errors,
            requests_per_sec: requests as f64 / window_secs.max(1) as f64,
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            latency_p50_ms: ms(&mut latency, 0.50),
            latency_p95_ms: ms(&mut latency, 0.95),
            ttft_p50_ms: ms(&mut ttft, 0.50),
            ttft_p95_ms: ms(&mut ttft, 0.95),
            sampled: rows.len() as i64,
        })
    }
}

/// The nearest-rank percentile `q` (0..=1) of `values` (sorted in place).
fn percentile(values: &mut [i64], q: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

fn log_row(r: &sqlx::any::AnyRow) -> Result<LogRow> {
    Ok(LogRow {
        id: r.try_get("id")?,
        created_at_ms: r.try_get("created_at_ms")?,
        endpoint: r.try_get("endpoint")?,
        key_id: r.try_get("key_id")?,
        user_id: r.try_get("user_id")?,
        team_id: r.try_get("team_id")?,
        requested_model: r.try_get("requested_model")?,
        model: r.try_get("model")?,
        provider: r.try_get("provider")?,
        stream: r.try_get::<i64, _>("stream")? != 0,
        status: r.try_get("status")?,
        error_type: r.try_get("error_type")?,
        prompt_tokens: r.try_get("prompt_tokens")?,
        completion_tokens: r.try_get("completion_tokens")?,
        usage_estimated: r.try_get::<i64, _>("usage_estimated")? != 0,
        latency_us: r.try_get("latency_us")?,
        ttft_us: r.try_get("ttft_us")?,
        upstream_us: r.try_get("upstream_us")?,
        cost_usd: r.try_get("cost_usd")?,
        unpriced: r.try_get::<i64, _>("unpriced")? != 0,
        cache: r.try_get("cache")?,
        cache_key: r.try_get("cache_key")?,
        difficulty: r.try_get("difficulty")?,
        category: r.try_get("category")?,
        prompt: r.try_get("prompt")?,
        route: r.try_get("route")?,
        reason: r.try_get("reason")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<i64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 0.5), Some(50));
        assert_eq!(percentile(&mut v, 0.95), Some(95));
        assert_eq!(percentile(&mut [7], 0.95), Some(7));
        assert_eq!(percentile(&mut [], 0.5), None);
    }

    #[tokio::test]
    async fn pages_walk_rows_of_one_millisecond_once_each() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .expect("connect");
        // Five rows in the same millisecond, one older.
        let mut rows: Vec<LogRow> = (0..6).map(crate::store::request_log::tests::row).collect();
        for r in &mut rows[1..] {
            r.created_at_ms = 7;
        }
        let limit = std::time::Duration::from_secs(10);
        store.insert_log_rows(&rows, limit).await.expect("insert");
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = store
                .find_requests(&RequestFilter {
                    before: before.clone(),
                    limit: 2,
                    ..Default::default()
                })
                .await
                .expect("page");
            let Some(last) = page.last() else { break };
            before = Some((last.created_at_ms, Some(last.id.clone())));
            seen.extend(page.into_iter().map(|r| r.id));
        }
        let mut want: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        want.sort();
        want.reverse();
        let oldest = want.iter().position(|id| *id == rows[0].id).expect("there");
        let first = want.remove(oldest);
        want.push(first);
        assert_eq!(
            seen, want,
            "newest first, the same millisecond by id, each once"
        );
        // A filter and a page together: `$N` in order.
        let page = store
            .find_requests(&RequestFilter {
                model: Some("m".into()),
                before: Some((7, Some(rows[3].id.clone()))),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("page");
        let ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                rows[2].id.as_str(),
                rows[1].id.as_str(),
                rows[0].id.as_str()
            ]
        );
    }
}
