//! Persistence: SQLite (the embedded default, WAL mode, created on first start) or Postgres,
//! through one `sqlx` Any pool and the same SQL (numbered `$N` placeholders work on both).
//! Migrations run on connect. The request log is append-only; keys are stored hashed.

mod budgets;
mod cache_purges;
mod cache_requests;
mod entities;
mod feedback;
mod keys;
mod ledger;
mod limits;
mod migrate;
mod request_log;
mod request_query;
mod responses;
mod rollouts;
mod spend;
mod ui_sessions;

pub use cache_purges::CACHE_PURGES_KEPT_MS;
pub use cache_requests::{CacheRequest, WarmCandidate};
pub use entities::{check_id, TeamRow, UserRow};
pub use feedback::FeedbackRow;
pub use keys::{KeyRow, NewKeyRow};
pub use ledger::{LedgerRow, PICOS_PER_USD};
pub use request_log::{LogRow, MAX_TEXT_BYTES};
pub use request_query::{RequestFilter, TrafficSummary};
pub use responses::StoredResponse;
pub use spend::{Breakdown, GroupBy, SpendQuery, SpendTotals};
pub use ui_sessions::SessionRow;

use crate::error::{Error, Result};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A cloneable handle over the connection pool.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

impl Store {
    /// Connect (creating a SQLite file and its folder when needed) and migrate.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(path) = url.strip_prefix("sqlite://") {
            let file = path.split('?').next().unwrap_or(path);
            if let Some(dir) = std::path::Path::new(file).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        Error::config("store.url", format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
            }
            let url = if path.contains("mode=") {
                url.to_owned()
            } else if path.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else {
            (Backend::Postgres, url.to_owned())
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            // SQLite has one writer at a time; a few connections serve reads alongside.
            .max_connections(if backend == Backend::Sqlite { 4 } else { 16 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode=WAL").await?;
                        conn.execute("PRAGMA busy_timeout=5000").await?;
                        conn.execute("PRAGMA synchronous=NORMAL").await?;
                        // 16 MiB of page cache (default 2 MiB): the log's and the ledger's
                        // indexes stay in memory instead of being read back for every insert.
                        conn.execute("PRAGMA cache_size=-16384").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let store = Store { pool, backend };
        migrate::run(&store).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// For readiness checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Whether `e` is the fault of the data written (a value the database refuses, a
    /// constraint) rather than of the connection or the server: such a write fails again
    /// however often it is retried, so the row must be set aside, not kept.
    pub fn is_data_error(&self, e: &Error) -> bool {
        let Error::Store(sqlx::Error::Database(db)) = e else {
            return false;
        };
        let Some(code) = db.code() else {
            return false;
        };
        match self.backend {
            // SQLSTATE classes 22 (data exception), 23 (integrity constraint), 54 (too large).
            Backend::Postgres => ["22", "23", "54"].iter().any(|c| code.starts_with(c)),
            // Primary result codes (the low byte of an extended code): TOOBIG, CONSTRAINT,
            // MISMATCH.
            Backend::Sqlite => code
                .parse::<i32>()
                .is_ok_and(|c| matches!(c & 0xff, 18..=20)),
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `INSERT INTO table (columns) VALUES (…), (…) ON CONFLICT (id) DO NOTHING` for `rows` rows.
///
/// SQLite gets anonymous `?` placeholders: binding a statement with named ones (`$N`) looks
/// each name up in a list as long as the statement's parameters (`sqlite3_bind_parameter_name`
/// is a linear scan), quadratic in the row count — measured at 35% of the gateway's CPU under
/// load with 64-row statements. Postgres needs `$N`. A row whose earlier insert committed but
/// whose acknowledgement was lost is written again on retry: the conflict must not fail (and so
/// poison) the whole batch.
pub(crate) fn multi_insert_sql(
    table: &str,
    columns: &str,
    column_count: usize,
    rows: usize,
    backend: Backend,
) -> String {
    let mut sql = format!("INSERT INTO {table} ({columns}) VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..column_count {
            if c > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => sql.push_str(&format!("${}", r * column_count + c + 1)),
            }
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (id) DO NOTHING");
    sql
}

pub fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}
