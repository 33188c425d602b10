//! The same store on a real Postgres server: migrations, keys, request log.

use super::*;

#[tokio::test]
async fn keys_and_request_log_on_postgres() {
    let mock = MockProvider::start().await;
    let gw = TestGateway::start(&models_toml(&mock), ENV, StoreChoice::Postgres).await;
    assert_eq!(
        gw.state.gateway.store().backend(),
        llmrr_core::store::Backend::Postgres
    );
    let created = create_key(
        &gw,
        llmrr_core::auth::NewKey {
            name: "pg".into(),
            team: Some("t".into()),
            ..Default::default()
        },
    )
    .await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(&created.key),
        chat_body("o-ok", "one two three"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    gw.flush_log().await;
    let rows = gw
        .state
        .gateway
        .store()
        .recent_requests(5)
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].team_id.as_deref(), Some("t"));
    assert_eq!(rows[0].cost_usd, "0.00000285");
    assert!(gw
        .state
        .gateway
        .auth()
        .revoke_key(&created.row.id)
        .await
        .expect("revoke"));
    error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(&created.key),
            chat_body("o-ok", "x"),
        )
        .await,
        401,
    )
    .await;
    gw.stop().await;
}

/// Managed Postgres services require TLS: the store connects with `sslmode=require` (where the
/// test server has TLS on, as Debian's does by default) and the session is encrypted.
#[tokio::test]
async fn the_store_reaches_postgres_over_tls() {
    use sqlx::{Connection, Row};
    let shared = llmrr_testkit::harness::SharedDatabase::create().await;
    let mut plain: sqlx::AnyConnection = Connection::connect(&shared.url).await.expect("connect");
    let ssl: String = sqlx::query("SHOW ssl")
        .fetch_one(&mut plain)
        .await
        .expect("show ssl")
        .get(0);
    if ssl != "on" {
        eprintln!("this Postgres server has TLS off: the TLS connection is not checked");
        shared.drop().await;
        return;
    }
    let sep = if shared.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}sslmode=require", shared.url);
    let store = llmrr_core::store::Store::connect(&url)
        .await
        .expect("the store connects over TLS and migrates");
    assert_eq!(store.backend(), llmrr_core::store::Backend::Postgres);
    let mut tls: sqlx::AnyConnection = Connection::connect(&url).await.expect("connect");
    let encrypted: bool = sqlx::query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut tls)
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(encrypted);
    drop((store, tls, plain));
    shared.drop().await;
}
