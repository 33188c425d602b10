//! Start the gateway on a free loopback port with a config written by the test, over a fresh
//! SQLite file or a fresh Postgres database.

use llmrr_core::config::{self, ConfigSource, Env};
use llmrr_core::Secret;
use llmrr_server::AppState;
use sqlx::Executor;
use std::collections::HashMap;
use tokio::sync::oneshot;

/// The default server on these machines; `LLMRR_TEST_POSTGRES_URL` overrides it.
pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which store a test gateway uses.
pub enum StoreChoice {
    Sqlite,
    /// A new database on the Postgres server, dropped when the gateway stops.
    Postgres,
    /// The `[store] url` of the test's config, as it is.
    AsConfigured,
}

pub struct TestGateway {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    postgres_db: Option<String>,
    _dir: tempfile::TempDir,
}

impl TestGateway {
    /// `toml` may use `{mock}` for the mock provider's base URL; `env` is the whole
    /// environment the config sees.
    pub async fn start(toml: &str, env: &[(&str, &str)], store: StoreChoice) -> TestGateway {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut config = config::load(
            ConfigSource::Text {
                name: "test.toml",
                toml,
            },
            None,
            &Env::Map(env),
        )
        .expect("the test config is valid");
        let (url, postgres_db) = match store {
            StoreChoice::AsConfigured => (config.store.url.expose().to_owned(), None),
            StoreChoice::Sqlite => (format!("sqlite://{}/llmrr.db", dir.path().display()), None),
            StoreChoice::Postgres => {
                let (url, db) = fresh_postgres_database().await;
                (url, Some(db))
            }
        };
        config.store.display_url = url.clone();
        config.store.url = Secret::new(url);
        let state = AppState::build(&config).await.expect("the gateway starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free loopback port");
        let addr = listener.local_addr().expect("address");
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(llmrr_server::serve(listener, state.clone(), async {
            let _ = rx.await;
        }));
        TestGateway {
            url: format!("http://{addr}"),
            state,
            shutdown: Some(tx),
            server: Some(server),
            postgres_db,
            _dir: dir,
        }
    }

    /// Graceful stop: the server drains, the request log is flushed, a Postgres test
    /// database is dropped.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.state.gateway.store().close().await;
        if let Some(db) = self.postgres_db.take() {
            drop_postgres_database(&db).await;
        }
    }

    /// Graceful stop of the server alone: the store stays open for the test to read. Returns
    /// the temporary folder (the SQLite file lives there until it is dropped).
    pub async fn stop_keeping_store(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::mem::replace(&mut self._dir, dir)
    }

    pub async fn flush_log(&self) {
        self.state.gateway.flush_log().await;
    }
}

/// The Redis server tests use (`LLMRR_TEST_REDIS_URL` overrides it); each test keeps its keys
/// under its own prefix ([`unique_prefix`]).
pub fn redis_url() -> String {
    std::env::var("LLMRR_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS.to_owned())
}

pub const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379";

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("llmrr-test-{}", uuid::Uuid::now_v7().simple())
}

/// A Postgres database several gateways share (multi-replica tests): `url` goes into each
/// gateway's `[store]`, started with [`StoreChoice::AsConfigured`].
pub struct SharedDatabase {
    pub url: String,
    db: String,
}

impl SharedDatabase {
    pub async fn create() -> SharedDatabase {
        let (url, db) = fresh_postgres_database().await;
        SharedDatabase { url, db }
    }

    pub async fn drop(self) {
        drop_postgres_database(&self.db).await;
    }
}

/// The Postgres server tests use.
pub fn postgres_url() -> String {
    std::env::var("LLMRR_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned())
}

async fn admin_connection() -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    let url = postgres_url();
    sqlx::Connection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "Postgres is not reachable at {url} ({e}). Start it, or point \
             LLMRR_TEST_POSTGRES_URL at a server where this user may create databases."
        )
    })
}

async fn fresh_postgres_database() -> (String, String) {
    let db = format!("llmrr_test_{}", uuid::Uuid::now_v7().simple());
    let mut conn = admin_connection().await;
    conn.execute(format!("CREATE DATABASE {db}").as_str())
        .await
        .expect("create a test database");
    let base = postgres_url();
    let (server, _) = base.rsplit_once('/').expect("a database URL has a path");
    (format!("{server}/{db}"), db)
}

async fn drop_postgres_database(db: &str) {
    let mut conn = admin_connection().await;
    let _ = conn
        .execute(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)").as_str())
        .await;
}
