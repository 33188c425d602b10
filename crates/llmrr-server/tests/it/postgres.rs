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
