//! The spend ledger: one append-only row per priced request, written (and committed) before
//! the request's budget reservation is settled. Money is exact: integer pico-USD (1e-12 USD)
//! on SQLite and Postgres alike (every catalog price is a whole number of pico-USD per token).

use super::Store;
use crate::error::Result;
use crate::money::budget::{Scope, Window};
use sqlx::Row;

/// Pico-USD per USD.
pub const PICOS_PER_USD: i64 = 1_000_000_000_000;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LedgerRow {
    /// The request id.
    pub id: String,
    pub created_at_ms: i64,
    pub endpoint: String,
    pub key_id: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub model: String,
    pub provider: String,
    pub route: Option<String>,
    pub category: Option<String>,
    /// blake3 of the request's model and messages: repeated prompts are found by it.
    pub prompt_hash: Option<String>,
    pub prompt_tokens: i64,
    pub cached_tokens: i64,
    pub cache_write_tokens: i64,
    pub completion_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_pusd: i64,
    pub price_version: String,
    /// Tokens were counted or estimated by llmrr, not reported by the upstream.
    pub estimated: bool,
    /// The model has no price: the cost is unknown (0 here, flagged).
    pub unpriced: bool,
    pub cache_hit: bool,
    /// What a cache hit avoided paying.
    pub saved_pusd: i64,
    /// The same usage on the route's most expensive candidate (routing's baseline).
    pub baseline_max_pusd: Option<i64>,
    /// A local model's request: the same usage on the route's cheapest remote candidate.
    pub baseline_remote_pusd: Option<i64>,
    /// The answering model's configured quality.
    pub quality: f64,
    pub local: bool,
}

const COLUMNS: &str = "id, created_at_ms, endpoint, key_id, user_id, team_id, model, provider, \
     route, category, prompt_hash, prompt_tokens, cached_tokens, cache_write_tokens, \
     completion_tokens, reasoning_tokens, cost_pusd, price_version, estimated, unpriced, \
     cache_hit, saved_pusd, baseline_max_pusd, baseline_remote_pusd, quality, local";

const COLUMN_COUNT: usize = 26;
/// 26 x 64 = 1664 parameters a statement, well under SQLite's and Postgres's limits.
const ROWS_PER_STATEMENT: usize = 64;

/// `WHERE` text and its binds for rows of `scope` inside `window`.
pub(crate) fn scope_filter(scope: &Scope, window: Window) -> (String, Vec<String>, i64, i64) {
    let (mut sql, binds): (Vec<&str>, Vec<String>) = match scope {
        Scope::Global => (vec![], vec![]),
        Scope::Team(t) => (vec!["team_id = $3"], vec![t.clone()]),
        Scope::User(u) => (vec!["user_id = $3"], vec![u.clone()]),
        Scope::Key(k) => (vec!["key_id = $3"], vec![k.clone()]),
        Scope::Model(m) => (vec!["model = $3"], vec![m.clone()]),
        Scope::KeyModel(k, m) => (
            vec!["key_id = $3", "model = $4"],
            vec![k.clone(), m.clone()],
        ),
        Scope::TeamModel(t, m) => (
            vec!["team_id = $3", "model = $4"],
            vec![t.clone(), m.clone()],
        ),
    };
    sql.insert(0, "created_at_ms >= $1 AND created_at_ms < $2");
    (
        sql.join(" AND "),
        binds,
        window.start_ms,
        window.end_ms.unwrap_or(i64::MAX),
    )
}

impl Store {
    /// Append rows in one transaction, committed when this returns (group commit: the
    /// ledger writer batches what arrives together). A row already there (a retried write
    /// whose first commit was not acknowledged) is not an error.
    ///
    /// A failed write closes its connection instead of returning it to the pool (a SQLite
    /// connection whose write failed mid-transaction — disk full — could hold the write lock
    /// for good and stop the request log too); a write over 30 s fails the same way.
    pub async fn append_ledger(&self, rows: &[LedgerRow]) -> Result<()> {
        let limit = std::time::Duration::from_secs(30);
        let mut conn = tokio::time::timeout(limit, self.pool.acquire())
            .await
            .map_err(|_| crate::error::Error::Internal("a ledger write waited 30 s".into()))??;
        match tokio::time::timeout(limit, self.append_ledger_on(&mut conn, rows)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                drop(conn.detach());
                Err(e)
            }
            Err(_) => {
                drop(conn.detach());
                Err(crate::error::Error::Internal(
                    "a ledger write took longer than 30 s".into(),
                ))
            }
        }
    }

    async fn append_ledger_on(
        &self,
        conn: &mut sqlx::AnyConnection,
        rows: &[LedgerRow],
    ) -> Result<()> {
        let mut tx = sqlx::Connection::begin(conn).await?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = super::multi_insert_sql(
                "spend_ledger",
                COLUMNS,
                COLUMN_COUNT,
                chunk.len(),
                self.backend,
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.id.clone())
                    .bind(r.created_at_ms)
                    .bind(r.endpoint.clone())
                    .bind(r.key_id.clone())
                    .bind(r.user_id.clone())
                    .bind(r.team_id.clone())
                    .bind(r.model.clone())
                    .bind(r.provider.clone())
                    .bind(r.route.clone())
                    .bind(r.category.clone())
                    .bind(r.prompt_hash.clone())
                    .bind(r.prompt_tokens)
                    .bind(r.cached_tokens)
                    .bind(r.cache_write_tokens)
                    .bind(r.completion_tokens)
                    .bind(r.reasoning_tokens)
                    .bind(r.cost_pusd)
                    .bind(r.price_version.clone())
                    .bind(i64::from(r.estimated))
                    .bind(i64::from(r.unpriced))
                    .bind(i64::from(r.cache_hit))
                    .bind(r.saved_pusd)
                    .bind(r.baseline_max_pusd)
                    .bind(r.baseline_remote_pusd)
                    .bind(r.quality)
                    .bind(i64::from(r.local));
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Spend of `scope` inside `window`: (pico-USD, tokens). Cache hits cost nothing and
    /// their tokens (served, not used upstream) count against no budget.
    pub async fn ledger_spent(&self, scope: &Scope, window: Window) -> Result<(i64, i64)> {
        let (filter, binds, from, to) = scope_filter(scope, window);
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(cost_pusd), 0) AS BIGINT) AS cost, \
             CAST(COALESCE(SUM(CASE WHEN cache_hit = 0 THEN prompt_tokens + completion_tokens \
             ELSE 0 END), 0) AS BIGINT) AS tokens \
             FROM spend_ledger WHERE {filter}"
        );
        let mut q = sqlx::query(&sql).bind(from).bind(to);
        for b in binds {
            q = q.bind(b);
        }
        let row = q.fetch_one(&self.pool).await?;
        Ok((row.try_get("cost")?, row.try_get("tokens")?))
    }

    /// Every ledger row of a request id (tests and audits).
    pub async fn ledger_rows(&self, since_ms: i64) -> Result<Vec<LedgerRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM spend_ledger WHERE created_at_ms >= $1 ORDER BY created_at_ms"
        ))
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ledger_row).collect()
    }

    /// Delete rows older than `before_ms` (retention); returns how many.
    pub async fn prune_ledger(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM spend_ledger WHERE created_at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

fn ledger_row(r: &sqlx::any::AnyRow) -> Result<LedgerRow> {
    let flag = |name: &str| -> Result<bool> { Ok(r.try_get::<i64, _>(name)? != 0) };
    Ok(LedgerRow {
        id: r.try_get("id")?,
        created_at_ms: r.try_get("created_at_ms")?,
        endpoint: r.try_get("endpoint")?,
        key_id: r.try_get("key_id")?,
        user_id: r.try_get("user_id")?,
        team_id: r.try_get("team_id")?,
        model: r.try_get("model")?,
        provider: r.try_get("provider")?,
        route: r.try_get("route")?,
        category: r.try_get("category")?,
        prompt_hash: r.try_get("prompt_hash")?,
        prompt_tokens: r.try_get("prompt_tokens")?,
        cached_tokens: r.try_get("cached_tokens")?,
        cache_write_tokens: r.try_get("cache_write_tokens")?,
        completion_tokens: r.try_get("completion_tokens")?,
        reasoning_tokens: r.try_get("reasoning_tokens")?,
        cost_pusd: r.try_get("cost_pusd")?,
        price_version: r.try_get("price_version")?,
        estimated: flag("estimated")?,
        unpriced: flag("unpriced")?,
        cache_hit: flag("cache_hit")?,
        saved_pusd: r.try_get("saved_pusd")?,
        baseline_max_pusd: r.try_get("baseline_max_pusd")?,
        baseline_remote_pusd: r.try_get("baseline_remote_pusd")?,
        quality: r.try_get("quality")?,
        local: flag("local")?,
    })
}
