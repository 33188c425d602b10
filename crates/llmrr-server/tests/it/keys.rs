//! Virtual keys: the admin API (master key only), use, model limits, revocation, hashing.

use super::*;
use serde_json::json;

async fn admin(
    gw: &TestGateway,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = client().request(method, format!("{}{path}", gw.url));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("answers")
}

#[tokio::test]
async fn create_use_limit_and_revoke() {
    let (gw, _mock) = start().await;
    let resp = admin(&gw, reqwest::Method::POST, "/admin/keys", Some(MASTER),
        Some(json!({"name": "ci", "user": "ana", "team": "search", "models": ["o-ok"], "metadata": {"env": "test"}}))).await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.expect("json");
    let secret = created["key"]
        .as_str()
        .expect("the secret, once")
        .to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(secret.starts_with("sk-llmrr-"));
    assert_eq!(created["owner_team"], "search");

    // At rest: a hash, never the secret.
    let stored = gw
        .state
        .gateway
        .store()
        .key_hash(&id)
        .await
        .expect("query")
        .expect("row");
    assert_eq!(stored, llmrr_core::auth::hash_key(&secret));
    assert!(!stored.contains(&secret[9..]));
    let listed = admin(&gw, reqwest::Method::GET, "/admin/keys", Some(MASTER), None)
        .await
        .text()
        .await
        .expect("text");
    assert!(
        listed.contains(&id) && !listed.contains(&secret),
        "{listed}"
    );

    // Use it, within its models.
    assert_eq!(
        post(
            &gw,
            "/v1/chat/completions",
            Some(&secret),
            chat_body("o-ok", "hi")
        )
        .await
        .status(),
        200
    );
    let v = error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(&secret),
            chat_body("a-ok", "hi"),
        )
        .await,
        403,
    )
    .await;
    assert_eq!(v["error"]["code"], "model_not_allowed");
    let models: Value = client()
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(models["data"].as_array().map(Vec::len), Some(1));

    // Only the master key administers.
    let v = error_body(
        admin(
            &gw,
            reqwest::Method::GET,
            "/admin/keys",
            Some(&secret),
            None,
        )
        .await,
        403,
    )
    .await;
    assert_eq!(v["error"]["type"], "permission_error");
    error_body(
        admin(&gw, reqwest::Method::GET, "/admin/keys", None, None).await,
        401,
    )
    .await;

    // Revoke: the key stops working at once.
    let resp = admin(
        &gw,
        reqwest::Method::DELETE,
        &format!("/admin/keys/{id}"),
        Some(MASTER),
        None,
    )
    .await;
    assert_eq!(resp.status(), 200);
    error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(&secret),
            chat_body("o-ok", "hi"),
        )
        .await,
        401,
    )
    .await;
    error_body(
        admin(
            &gw,
            reqwest::Method::DELETE,
            &format!("/admin/keys/{id}"),
            Some(MASTER),
            None,
        )
        .await,
        404,
    )
    .await;
    let v = error_body(
        admin(
            &gw,
            reqwest::Method::POST,
            "/admin/keys",
            Some(MASTER),
            Some(json!({"name": "x", "colour": "red"})),
        )
        .await,
        400,
    )
    .await;
    assert!(v["error"]["message"]
        .as_str()
        .expect("message")
        .contains("colour"));
    gw.stop().await;
}

#[tokio::test]
async fn without_a_master_key_loopback_is_open_and_admin_is_off() {
    let (gw, _mock) = start_with("", &[("UPSTREAM_KEY", "k")]).await;
    assert_eq!(
        post(&gw, "/v1/chat/completions", None, chat_body("o-ok", "hi"))
            .await
            .status(),
        200
    );
    let v = error_body(
        admin(&gw, reqwest::Method::GET, "/admin/keys", None, None).await,
        403,
    )
    .await;
    assert!(v["error"]["message"]
        .as_str()
        .expect("message")
        .contains("LLMRR_MASTER_KEY"));
    // A presented key is still checked.
    error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some("sk-made-up"),
            chat_body("o-ok", "hi"),
        )
        .await,
        401,
    )
    .await;
    gw.stop().await;
}
