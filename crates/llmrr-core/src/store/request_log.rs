//! The append-only request log: one row per model call, inserted in batches.

use super::{Backend, Store};
use crate::error::Result;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogRow {
    pub id: String,
    pub created_at_ms: i64,
    pub endpoint: String,
    pub key_id: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub requested_model: String,
    /// The concrete model that answered (or was tried last).
    pub model: Option<String>,
    pub provider: Option<String>,
    pub stream: bool,
    /// The HTTP status the client got; 499 when it hung up first.
    pub status: i64,
    pub error_type: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// The upstream never reported usage (the client left first): tokens are estimates.
    pub usage_estimated: bool,
    pub latency_us: i64,
    pub ttft_us: Option<i64>,
    pub upstream_us: Option<i64>,
    /// Exact decimal text, in USD.
    pub cost_usd: String,
    /// The model has no price: `cost_usd` is 0 because the cost is unknown.
    pub unpriced: bool,
    /// The response cache: `hit`, `miss` or `bypass` (`None`: off for the request).
    pub cache: Option<String>,
    /// The request's response-cache key (hex), when the cache keyed it: what `cache warm`
    /// counts to find the most frequent requests.
    pub cache_key: Option<String>,
    /// The prompt's difficulty score in ten-thousandths, when the router computed it.
    pub difficulty: Option<i64>,
    /// The prompt's category, with the difficulty.
    pub category: Option<String>,
    /// What the difficulty scorer read of the prompt (JSON, see `routing::feedback`), only
    /// for routes with `log_prompts = true`: what `llmrr router train --from-log` learns from.
    pub prompt: Option<String>,
    /// The route the request named, when it named one.
    pub route: Option<String>,
    /// Why the router chose the model (the strategy and its reason), when it chose one.
    pub reason: Option<String>,
}

pub(super) const COLUMNS: &str =
    "id, created_at_ms, endpoint, key_id, user_id, team_id, requested_model, \
     model, provider, stream, status, error_type, prompt_tokens, completion_tokens, \
     usage_estimated, latency_us, ttft_us, upstream_us, cost_usd, unpriced, cache, cache_key, \
     difficulty, category, prompt, route, reason";

/// Columns per row, and rows per statement: 27 x 64 = 1728 parameters, well under SQLite's
/// (32766) and Postgres's (65535) limits.
const COLUMN_COUNT: usize = 27;
const ROWS_PER_STATEMENT: usize = 64;

/// Longest text kept in a column of the log (bytes, cut on a char boundary). A model name or
/// label longer than this is a client's mistake or an attack: the row keeps its start.
pub const MAX_TEXT_BYTES: usize = 256;

impl LogRow {
    /// The row as it may be stored: every text column without NUL or other control characters
    /// (Postgres refuses NUL in TEXT) and at most [`MAX_TEXT_BYTES`] long.
    pub fn sanitized(mut self) -> LogRow {
        for text in [
            &mut self.id,
            &mut self.endpoint,
            &mut self.requested_model,
            &mut self.cost_usd,
        ] {
            sanitize(text);
        }
        for text in [
            &mut self.key_id,
            &mut self.user_id,
            &mut self.team_id,
            &mut self.model,
            &mut self.provider,
            &mut self.error_type,
            &mut self.category,
            &mut self.route,
        ]
        .into_iter()
        .flatten()
        {
            sanitize(text);
        }
        if let Some(reason) = &mut self.reason {
            sanitize_to(reason, MAX_REASON_BYTES);
        }
        self
    }
}

/// Control characters become U+FFFD; the text is cut to [`MAX_TEXT_BYTES`] with a `…`.
pub fn sanitize(text: &mut String) {
    sanitize_to(text, MAX_TEXT_BYTES);
}

/// Longest routing explanation kept (bytes).
const MAX_REASON_BYTES: usize = 1024;

fn sanitize_to(text: &mut String, max: usize) {
    if text.len() <= max && !text.chars().any(char::is_control) {
        return;
    }
    let mut clean = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let c = if c.is_control() { '\u{FFFD}' } else { c };
        if clean.len() + c.len_utf8() > max - '…'.len_utf8() {
            clean.push('…');
            break;
        }
        clean.push(c);
    }
    *text = clean;
}

/// JSON escapes control characters, but a prompt is checked anyway: Postgres refuses NUL.
fn without_nul(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

fn insert_sql(rows: usize, backend: Backend) -> String {
    super::multi_insert_sql("request_log", COLUMNS, COLUMN_COUNT, rows, backend)
}

impl Store {
    /// Insert rows in one transaction: all or none; returns how many were new (a row whose id
    /// is already stored is skipped). Rows go in multi-row `INSERT`s, which cost a fraction of
    /// one statement per row (measured: the writer's CPU fell ~5x).
    ///
    /// A failed write closes its connection instead of returning it to the pool, so the next
    /// write starts on a fresh connection and transaction (a SQLite connection whose write
    /// failed mid-transaction — disk full — could otherwise hold the write lock for good).
    /// A write that takes longer than `limit` fails the same way, its connection closed too
    /// (a hung store must not keep pool slots).
    pub async fn insert_log_rows(&self, rows: &[LogRow], limit: Duration) -> Result<u64> {
        let until = tokio::time::Instant::now() + limit;
        let timed_out = || {
            crate::error::Error::Internal(format!("a request-log write took longer than {limit:?}"))
        };
        let mut conn = tokio::time::timeout_at(until, self.pool.acquire())
            .await
            .map_err(|_| timed_out())??;
        let insert = insert_in_transaction(&mut conn, rows, self.backend);
        match tokio::time::timeout_at(until, insert).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => {
                drop(conn.detach());
                Err(e)
            }
            Err(_) => {
                drop(conn.detach());
                Err(timed_out())
            }
        }
    }
}

async fn insert_in_transaction(
    conn: &mut sqlx::AnyConnection,
    rows: &[LogRow],
    backend: Backend,
) -> Result<u64> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    let mut written = 0;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = insert_sql(chunk.len(), backend);
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(&r.id)
                .bind(r.created_at_ms)
                .bind(&r.endpoint)
                .bind(&r.key_id)
                .bind(&r.user_id)
                .bind(&r.team_id)
                .bind(&r.requested_model)
                .bind(&r.model)
                .bind(&r.provider)
                .bind(r.stream as i64)
                .bind(r.status)
                .bind(&r.error_type)
                .bind(r.prompt_tokens)
                .bind(r.completion_tokens)
                .bind(r.usage_estimated as i64)
                .bind(r.latency_us)
                .bind(r.ttft_us)
                .bind(r.upstream_us)
                .bind(&r.cost_usd)
                .bind(r.unpriced as i64)
                .bind(&r.cache)
                .bind(&r.cache_key)
                .bind(r.difficulty)
                .bind(&r.category)
                .bind(r.prompt.as_deref().map(without_nul))
                .bind(&r.route)
                .bind(&r.reason);
        }
        written += q.execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    Ok(written)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A row of the log (for the store's tests): `created_at_ms` is `i`.
    pub(in crate::store) fn row(i: usize) -> LogRow {
        LogRow {
            id: format!("req_{i:04}"),
            created_at_ms: i as i64,
            endpoint: "chat".into(),
            key_id: i.is_multiple_of(2).then(|| "key_a".into()),
            user_id: None,
            team_id: Some("t".into()),
            requested_model: "auto".into(),
            model: Some("m".into()),
            provider: Some("openai".into()),
            stream: i.is_multiple_of(3),
            status: 200,
            error_type: None,
            prompt_tokens: i as i64,
            completion_tokens: 2,
            usage_estimated: false,
            latency_us: 10,
            ttft_us: None,
            upstream_us: Some(5),
            cost_usd: "0.000001".into(),
            unpriced: false,
            cache: None,
            cache_key: i.is_multiple_of(5).then(|| format!("{i:064x}")),
            difficulty: i.is_multiple_of(4).then_some(1234),
            category: Some("math".into()),
            prompt: None,
            route: Some("r".into()),
            reason: i.is_multiple_of(7).then(|| "balanced: best score".into()),
        }
    }

    #[tokio::test]
    async fn batches_span_several_statements_and_migrations_run_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let store = Store::connect(&url).await.expect("connect");
        let rows: Vec<LogRow> = (0..150).map(row).collect();
        let limit = Duration::from_secs(10);
        assert_eq!(
            store.insert_log_rows(&rows, limit).await.expect("insert"),
            150
        );
        // Written again (an acknowledgement lost on the way back): skipped, not an error.
        assert_eq!(
            store
                .insert_log_rows(&rows[..10], limit)
                .await
                .expect("again"),
            0
        );
        let back = store.recent_requests(1000).await.expect("read");
        assert_eq!(back.len(), 150);
        assert_eq!(back[0], rows[149], "newest first, every column round-trips");
        store.close().await;
        // Connecting again finds the schema in place.
        let again = Store::connect(&url).await.expect("reconnect");
        assert_eq!(again.recent_requests(1).await.expect("read").len(), 1);
    }
}
