//! Issue 15: keys keep working through a store outage, floods of random keys are bounded,
//! revokes reach running servers, keys are checked at creation and fail closed, and what a
//! key sees is scoped.

use super::*;
use llmrr_core::auth::NewKey;
use serde_json::json;
use std::time::{Duration, Instant};

async fn chat(gw: &TestGateway, key: &str, model: &str) -> reqwest::Response {
    post(
        gw,
        "/v1/chat/completions",
        Some(key),
        chat_body(model, "hi"),
    )
    .await
}

fn named(name: &str) -> NewKey {
    NewKey {
        name: name.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn issue15_known_keys_keep_working_while_the_store_is_down() {
    let (gw, _mock) = start_with("[server]\nkey_cache_secs = 0.2\n", ENV).await;
    let key = create_key(&gw, named("app")).await.key;
    assert_eq!(chat(&gw, &key, "o-ok").await.status(), 200);
    sql(&gw, "ALTER TABLE api_keys RENAME TO api_keys_away").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The fresh cache entry has expired: the key is served from the stale copy.
    assert_eq!(chat(&gw, &key, "o-ok").await.status(), 200);
    // An unknown key cannot be checked: a fast 503, not a 10 s wait and a 500.
    let started = Instant::now();
    let resp = chat(&gw, "sk-llmrr-unknown", "o-ok").await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(resp.headers().contains_key("retry-after"));
    error_body(resp, 503).await;
    sql(&gw, "ALTER TABLE api_keys_away RENAME TO api_keys").await;
    assert_eq!(chat(&gw, &key, "o-ok").await.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn issue15_a_flood_of_random_keys_is_throttled_and_known_keys_are_still_served() {
    let (gw, _mock) = start_with("[server]\nkey_cache_secs = 0.2\n", ENV).await;
    let key = create_key(&gw, named("app")).await.key;
    assert_eq!(chat(&gw, &key, "o-ok").await.status(), 200);
    let mut statuses = Vec::new();
    for i in 0..40 {
        let resp = chat(&gw, &format!("sk-llmrr-random-{i}"), "o-ok").await;
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            assert!(resp.headers().contains_key("retry-after"));
        }
    }
    let limit = llmrr_core::auth::MAX_FAILURES_PER_MINUTE as usize;
    assert!(statuses[..limit].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[limit..].iter().all(|s| *s == 429), "{statuses:?}");
    // The valid key is still known and served from the throttled address, even once its
    // fresh cache entry has expired (behind a proxy every client shares one address).
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(chat(&gw, &key, "o-ok").await.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn issue15_a_revoke_made_elsewhere_reaches_a_running_server_within_a_second() {
    let (gw, _mock) = start().await;
    // As `llmrr keys create|revoke` do: straight on the store, not through this server.
    let store = gw.state.gateway.store().clone();
    let rules = llmrr_core::auth::KeyRules::default();
    let created = llmrr_core::auth::create_key(&store, &rules, named("cli"))
        .await
        .expect("created");
    assert_eq!(chat(&gw, &created.key, "o-ok").await.status(), 200);
    assert!(store.revoke_key(&created.row.id).await.expect("revoked"));
    let revoked_at = Instant::now();
    loop {
        let status = chat(&gw, &created.key, "o-ok").await.status();
        if status == 401 {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "still {status} a second after the revoke"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await;
}

async fn refused(gw: &TestGateway, body: Value, param: &str) {
    let resp = client()
        .post(format!("{}/admin/keys", gw.url))
        .bearer_auth(MASTER)
        .json(&body)
        .send()
        .await
        .expect("answers");
    let v = error_body(resp, 400).await;
    assert_eq!(v["error"]["param"], param, "{v}");
}

async fn keys_are_checked_at_creation(gw: &TestGateway) {
    refused(
        gw,
        json!({"name": "k", "models": ["o-ok", "nope"]}),
        "models[1]",
    )
    .await;
    refused(gw, json!({"name": "k", "tier": "gold"}), "tier").await;
    refused(gw, json!({"name": "x".repeat(10 * 1024 * 1024)}), "name").await;
    refused(gw, json!({"name": "nul\u{0}name"}), "name").await;
    refused(gw, json!({"name": "k", "team": "t\u{0}"}), "team").await;
    assert!(gw
        .state
        .gateway
        .auth()
        .list_keys()
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn issue15_keys_naming_unknown_models_or_tiers_or_with_bad_names_are_refused() {
    let (gw, _mock) = start().await;
    keys_are_checked_at_creation(&gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn issue15_a_nul_in_a_key_name_is_a_400_on_postgres() {
    let mock = MockProvider::start().await;
    let gw = TestGateway::start(&models_toml(&mock), ENV, StoreChoice::Postgres).await;
    keys_are_checked_at_creation(&gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn issue15_a_corrupt_allowed_models_fails_closed() {
    let (gw, _mock) = start().await;
    let created = create_key(
        &gw,
        NewKey {
            name: "limited".into(),
            models: vec!["o-ok".into()],
            ..Default::default()
        },
    )
    .await;
    sql(
        &gw,
        &format!(
            "UPDATE api_keys SET allowed_models = '{{broken' WHERE id = '{}'",
            created.row.id
        ),
    )
    .await;
    error_body(chat(&gw, &created.key, "o-ok").await, 403).await;
    error_body(chat(&gw, &created.key, "o-500").await, 403).await;
    gw.stop().await;
}

#[tokio::test]
async fn issue15_route_decisions_models_and_metrics_are_scoped_to_the_key() {
    let (gw, _mock) = start_routed(
        "[[routes]]\nname = \"auto\"\nstrategy = \"quality-first\"\nmodels = [\"o-ok\", \"a-ok\"]\n\n\
         [[routes]]\nname = \"other\"\nstrategy = \"quality-first\"\nmodels = [\"a-ok\"]\n",
    )
    .await;
    let key = create_key(
        &gw,
        NewKey {
            name: "one-model".into(),
            models: vec!["o-ok".into()],
            ..Default::default()
        },
    )
    .await
    .key;
    let resp = post(&gw, "/v1/route", Some(&key), chat_body("auto", "hi")).await;
    assert_eq!(resp.status(), 200);
    let decision: Value = resp.json().await.expect("json");
    let shown: Vec<&str> = decision["ranking"]
        .as_array()
        .expect("ranking")
        .iter()
        .filter_map(|r| r["model"].as_str())
        .collect();
    assert_eq!(shown, ["o-ok"], "{decision}");
    assert!(!decision.to_string().contains("a-ok"), "{decision}");
    error_body(
        post(&gw, "/v1/route", Some(&key), chat_body("other", "hi")).await,
        403,
    )
    .await;
    let models: Value = client()
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth(&key)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["o-ok", "auto"], "{models}");

    let metrics = |k: Option<String>| {
        let mut req = client().get(format!("{}/metrics", gw.url));
        if let Some(k) = k {
            req = req.bearer_auth(k);
        }
        req.send()
    };
    error_body(metrics(Some(key.clone())).await.expect("answers"), 403).await;
    assert_eq!(
        metrics(Some(MASTER.into()))
            .await
            .expect("answers")
            .status(),
        200
    );
    gw.stop().await;

    let (public, _mock) = start_with("[server]\nmetrics_public = true\n", ENV).await;
    let resp = client()
        .get(format!("{}/metrics", public.url))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 200);
    public.stop().await;
}

#[tokio::test]
async fn issue15_upstream_text_never_carries_our_secrets() {
    let (gw, _mock) = start().await;
    let resp = chat(&gw, MASTER, "o-echokey").await;
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("text");
    assert!(status >= 400, "{status}");
    assert!(!text.contains("sk-upstream-secret"), "{text}");
    assert!(text.contains("********"), "{text}");
    gw.flush_log().await;
    gw.stop().await;
}

#[tokio::test]
async fn issue15_without_a_master_key_cross_site_requests_are_refused() {
    // Even with CORS open to every origin: `*` never opens the keyless server to every site.
    let cors = "[server.cors]\nallowed_origins = [\"*\"]\n";
    let (gw, _mock) = start_with(cors, &[("UPSTREAM_KEY", "sk-upstream-secret")]).await;
    let url = format!("{}/v1/chat/completions", gw.url);
    let send = |headers: &[(&'static str, &'static str)]| {
        let mut req = client()
            .post(&url)
            .body(chat_body("o-ok", "hi").to_string());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send()
    };
    const JSON: (&str, &str) = ("content-type", "application/json");
    // A cross-site form post: `text/plain` needs no CORS preflight.
    let resp = send(&[("content-type", "text/plain")])
        .await
        .expect("answers");
    error_body(resp, 415).await;
    // DNS rebinding: the page's own host name, resolved to 127.0.0.1.
    let resp = send(&[("host", "attacker.example"), JSON])
        .await
        .expect("answers");
    error_body(resp, 403).await;
    let resp = send(&[("origin", "https://attacker.example"), JSON])
        .await
        .expect("answers");
    error_body(resp, 403).await;
    // A local client is served as before.
    let resp = send(&[JSON]).await.expect("answers");
    assert_eq!(resp.status(), 200);
    gw.stop().await;
}
