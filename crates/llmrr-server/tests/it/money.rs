//! Issue 8: prices, exact cost, the ledger, budgets never overspent (SQLite, Postgres, two
//! gateways on Redis), alerts, analytics.

use super::*;
use llmrr_core::store::LedgerRow;
use llmrr_testkit::harness::{redis_url, unique_prefix, SharedDatabase};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Models for money tests: `meter` costs $0.001 per output token and nothing per input token
/// (a reply "echo: a b c" is 4 tokens: exactly $0.004, the most `max_tokens: 4` can cost);
/// `dear` / `cheap` make a route; `mystery` has no price anywhere; `mini` is priced by the
/// catalog (its upstream name is gpt-4o-mini).
fn money_models(mock: &MockProvider) -> String {
    format!(
        r#"
[[models]]
name = "meter"
provider = "openai"
base_url = "{url}"
upstream_model = "mock-ok"
input_cost_per_mtok = 0
output_cost_per_mtok = 1000

[[models]]
name = "meter-500"
provider = "openai"
base_url = "{url}"
upstream_model = "mock-500"
input_cost_per_mtok = 0
output_cost_per_mtok = 1000

[[models]]
name = "meter-slow"
provider = "openai"
base_url = "{url}"
upstream_model = "mock-slow-3000"
input_cost_per_mtok = 0
output_cost_per_mtok = 1000

[[models]]
name = "meter-drip"
provider = "openai"
base_url = "{url}"
upstream_model = "mock-drip-300"
input_cost_per_mtok = 0
output_cost_per_mtok = 1000

[[models]]
name = "dear"
provider = "openai"
base_url = "{url}"
upstream_model = "mock-ok"
input_cost_per_mtok = 0
output_cost_per_mtok = 10000
quality = 0.9

[[models]]
name = "cheap"
provider = "openai"
base_url = "{url}"
upstream_model = "mock-ok"
input_cost_per_mtok = 0
output_cost_per_mtok = 100
quality = 0.88

[[models]]
name = "mystery"
provider = "openai"
base_url = "{url}"
upstream_model = "mock-ok"

[[models]]
name = "mini"
provider = "openai"
base_url = "{url}"
upstream_model = "gpt-4o-mini"

[[models]]
name = "cached"
provider = "openai"
base_url = "{url}"
upstream_model = "mock-cached"
input_cost_per_mtok = 2
output_cost_per_mtok = 8
cached_input_cost_per_mtok = 0.5

[[models]]
name = "a-cached"
provider = "anthropic"
base_url = "{url}"
api_key = "env:UPSTREAM_KEY"
upstream_model = "mock-cached"
input_cost_per_mtok = 3
output_cost_per_mtok = 15
cached_input_cost_per_mtok = 0.3
cache_write_cost_per_mtok = 3.75

[[routes]]
name = "smart"
models = ["dear", "cheap"]
strategy = "quality-first"
"#,
        url = mock.base_url
    )
}

async fn start_money(extra: &str) -> (TestGateway, MockProvider) {
    let mock = MockProvider::start().await;
    let toml = format!("{extra}\n{}", money_models(&mock));
    (
        TestGateway::start(&toml, ENV, StoreChoice::Sqlite).await,
        mock,
    )
}

async fn set_budget(gw: &TestGateway, body: Value) -> Value {
    let resp = post(gw, "/admin/budgets", Some(MASTER), body).await;
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    resp.json().await.expect("json")
}

async fn key_for(gw: &TestGateway, user: Option<&str>, team: Option<&str>) -> (String, String) {
    let k = create_key(
        gw,
        llmrr_core::auth::NewKey {
            name: "money".into(),
            user: user.map(str::to_owned),
            team: team.map(str::to_owned),
            ..Default::default()
        },
    )
    .await;
    (k.key, k.row.id)
}

fn metered(model: &str) -> Value {
    serde_json::json!({"model": model, "max_tokens": 4,
        "messages": [{"role": "user", "content": "a b c"}]})
}

/// The ledger once it holds `n` rows (its writes run after the answer).
async fn ledger_once(gw: &TestGateway, n: usize) -> Vec<LedgerRow> {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let rows = gw
            .state
            .gateway
            .store()
            .ledger_rows(0)
            .await
            .expect("ledger");
        if rows.len() >= n || std::time::Instant::now() > until {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The budget's status (by scope) once nothing is held on it any more.
async fn settled(gw: &TestGateway, scope: &str) -> Value {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let all = get_json(gw, "/admin/budgets").await;
        let b = all["data"]
            .as_array()
            .expect("list")
            .iter()
            .find(|b| b["scope"] == scope)
            .cloned()
            .expect("the budget");
        if b["reserved_usd"] == "0" || std::time::Instant::now() > until {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn issue8_cost_is_exact_with_cached_reads_writes_and_reasoning() {
    let (gw, _mock) = start_money("").await;
    // OpenAI: "echo: …" — prompt "one two three four" = 4 tokens, 2 of them cached.
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("cached", "one two three four"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    // 2 plain * 2 + 2 cached * 0.5 + 5 out * 8 = 4 + 1 + 40 = 45 per million.
    assert_eq!(resp.headers()["x-llmrr-cost-usd"], "0.000045");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"],
        1
    );
    // Anthropic: input 4 + 100 read + 50 written; 4 tokens out ("echo: …" words).
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("a-cached", "one two three four"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let cost = resp.headers()["x-llmrr-cost-usd"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body: Value = resp.json().await.expect("json");
    let input = body["usage"]["prompt_tokens"].as_u64().expect("prompt") - 150;
    let out = body["usage"]["completion_tokens"]
        .as_u64()
        .expect("completion");
    assert_eq!(body["usage"]["cache_creation_input_tokens"], 50);
    assert_eq!(body["usage"]["cache_creation_1h_input_tokens"], 20);
    // 30 five-minute writes at 3.75, 20 one-hour writes at twice the input price (6).
    let expected = (rust_decimal::Decimal::from(input) * rust_decimal::Decimal::from(3)
        + rust_decimal::Decimal::new(100 * 3, 1)
        + rust_decimal::Decimal::new(30 * 375, 2)
        + rust_decimal::Decimal::from(20 * 6)
        + rust_decimal::Decimal::from(out * 15))
        / rust_decimal::Decimal::from(1_000_000);
    assert_eq!(cost, expected.normalize().to_string());
    let rows = ledger_once(&gw, 2).await;
    assert_eq!(rows.len(), 2);
    let a = rows.iter().find(|r| r.model == "a-cached").expect("row");
    assert_eq!((a.cached_tokens, a.cache_write_tokens), (100, 50));
    assert_eq!(
        rust_decimal::Decimal::new(a.cost_pusd, 12)
            .normalize()
            .to_string(),
        cost
    );
    let o = rows.iter().find(|r| r.model == "cached").expect("row");
    assert_eq!(
        (o.cached_tokens, o.reasoning_tokens, o.cost_pusd),
        (2, 1, 45_000_000)
    );
    assert_eq!(o.price_version, "config");
    assert_eq!(o.category.as_deref(), Some("chat"));
    gw.stop().await;
}

#[tokio::test]
async fn issue8_unpriced_is_flagged_catalog_prices_apply_without_numbers() {
    let (gw, _mock) = start_money("").await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("mystery", "hi"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("x-llmrr-cost-usd"));
    assert_eq!(resp.headers()["x-llmrr-cost-unpriced"], "true");
    // gpt-4o-mini from the catalog: 0.15 in, 0.60 out.
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("mini", "one two"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let cost = resp.headers()["x-llmrr-cost-usd"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body: Value = resp.json().await.expect("json");
    let u = &body["usage"];
    let expected = (rust_decimal::Decimal::new(15, 2)
        * rust_decimal::Decimal::from(u["prompt_tokens"].as_u64().expect("p"))
        + rust_decimal::Decimal::new(60, 2)
            * rust_decimal::Decimal::from(u["completion_tokens"].as_u64().expect("c")))
        / rust_decimal::Decimal::from(1_000_000);
    assert_eq!(cost, expected.normalize().to_string());
    let log = rows_once(&gw, 2).await;
    let m = log
        .iter()
        .find(|r| r.model.as_deref() == Some("mystery"))
        .expect("row");
    assert!(m.unpriced);
    let ledger = ledger_once(&gw, 2).await;
    let m = ledger.iter().find(|r| r.model == "mystery").expect("row");
    assert!(m.unpriced && m.price_version == "unpriced" && m.cost_pusd == 0);
    let mini = ledger.iter().find(|r| r.model == "mini").expect("row");
    assert!(
        mini.price_version.starts_with("catalog:"),
        "{}",
        mini.price_version
    );
    // The catalog and each model's price are listed.
    let prices = get_json(&gw, "/admin/prices").await;
    assert!(prices["catalog"].as_array().expect("catalog").len() >= 30);
    let recs = get_json(&gw, "/admin/spend/recommendations").await;
    assert!(
        recs["data"]
            .as_array()
            .expect("list")
            .iter()
            .any(|r| r["kind"] == "unpriced_model" && r["detail"]["model"] == "mystery"),
        "{recs}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn issue8_streams_report_cost_in_the_usage_chunk_and_a_cut_stream_is_estimated() {
    let (gw, _mock) = start_money("").await;
    let mut body = metered("meter");
    body["stream"] = true.into();
    body["stream_options"] = serde_json::json!({"include_usage": true});
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    assert_eq!(resp.status(), 200);
    let data = sse_data(resp).await;
    let usage = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v["usage"].is_object())
        .expect("a usage chunk");
    assert_eq!(usage["llmrr"]["cost_usd"], "0.004");
    let rows = ledger_once(&gw, 1).await;
    assert_eq!(rows[0].cost_pusd, 4_000_000_000);
    assert!(!rows[0].estimated);
    // A client that leaves after the first token: priced from what was counted, marked.
    let mut body = metered("meter-drip");
    body["stream"] = true.into();
    let mut resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.chunk().await.expect("chunk").is_some());
    drop(resp);
    let rows = ledger_once(&gw, 2).await;
    let cut = rows
        .iter()
        .find(|r| r.model == "meter-drip")
        .expect("the cut stream's row");
    assert!(cut.estimated, "{cut:?}");
    assert!(cut.completion_tokens >= 1 && cut.cost_pusd == cut.completion_tokens * 1_000_000_000);
    gw.stop().await;
}

/// 64 concurrent requests against a budget with room for exactly 10: 10 succeed, 54 get
/// `insufficient_quota`, and the recorded spend is exactly the limit.
async fn race(gateways: &[&TestGateway], key: &str) {
    let mut tasks = Vec::new();
    for i in 0..64 {
        let url = gateways[i % gateways.len()].url.clone();
        let key = key.to_owned();
        tasks.push(tokio::spawn(async move {
            client()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(key)
                .json(&metered("meter"))
                .send()
                .await
                .expect("answers")
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        let resp = t.await.expect("task");
        match resp.status().as_u16() {
            200 => ok += 1,
            429 => {
                let v = error_body(resp, 429).await;
                assert_eq!(v["error"]["type"], "insufficient_quota", "{v}");
                let m = v["error"]["message"].as_str().expect("message");
                assert!(m.contains("team:eng") && m.contains("$0.04"), "{m}");
                refused += 1;
            }
            s => panic!("unexpected status {s}: {:?}", resp.text().await),
        }
    }
    assert_eq!((ok, refused), (10, 54));
}

async fn race_on(gw: &TestGateway) {
    let resp = post(
        gw,
        "/admin/teams",
        Some(MASTER),
        serde_json::json!({"id": "eng"}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let resp = post(
        gw,
        "/admin/users",
        Some(MASTER),
        serde_json::json!({"id": "alice", "team": "eng"}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    // The key of a user belongs to the user's team.
    let (key, _) = key_for(gw, Some("alice"), None).await;
    set_budget(
        gw,
        serde_json::json!({"scope": "team:eng", "period": "month", "limit_usd": "0.04"}),
    )
    .await;
    race(&[gw], &key).await;
    let b = settled(gw, "team:eng").await;
    assert_eq!(b["spent_usd"], "0.04", "{b}");
    assert_eq!(b["exceeded"], true);
    let sum: i64 = ledger_once(gw, 10).await.iter().map(|r| r.cost_pusd).sum();
    assert_eq!(sum, 40_000_000_000);
}

#[tokio::test]
async fn issue8_64_against_room_for_10_on_sqlite() {
    let (gw, _mock) = start_money("").await;
    race_on(&gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn issue8_64_against_room_for_10_on_postgres() {
    let mock = MockProvider::start().await;
    let gw = TestGateway::start(&money_models(&mock), ENV, StoreChoice::Postgres).await;
    race_on(&gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn issue8_two_gateways_sharing_redis_never_overspend_and_rebuild_after_a_flush() {
    let mock = MockProvider::start().await;
    let db = SharedDatabase::create().await;
    let prefix = unique_prefix();
    let a = replica(&money_models(&mock), &db.url, &prefix).await;
    let b = replica(&money_models(&mock), &db.url, &prefix).await;
    let (key, _) = key_for(&a, None, Some("eng")).await;
    set_budget(
        &a,
        serde_json::json!({"scope": "team:eng", "period": "day", "limit_usd": "0.04"}),
    )
    .await;
    // The other replica sees the new budget within its reload interval.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    race(&[&a, &b], &key).await;
    assert_eq!(settled(&b, "team:eng").await["spent_usd"], "0.04");
    // Redis loses everything of this deployment: the next request finds the data gone,
    // rebuilds the spend from the ledger, and is still refused.
    let client = redis::Client::open(redis_url()).expect("redis");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert!(!keys.is_empty());
    let _: i64 = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .expect("del");
    let resp = post(&b, "/v1/chat/completions", Some(&key), metered("meter")).await;
    error_body(resp, 429).await;
    let spent: i64 = redis::cmd("HGET")
        .arg(
            keys.iter()
                .find(|k| k.ends_with(":usd"))
                .expect("the usd counter"),
        )
        .arg("spent")
        .query_async(&mut conn)
        .await
        .expect("rebuilt");
    assert_eq!(spent, 40_000_000);
    a.stop().await;
    b.stop().await;
    db.drop().await;
}

#[tokio::test]
async fn issue8_reservations_are_released_on_upstream_failure_and_hang_up() {
    let (gw, _mock) = start_money("").await;
    let (key, key_id) = key_for(&gw, None, None).await;
    // Room for exactly one metered request.
    set_budget(
        &gw,
        serde_json::json!({"scope": format!("key:{key_id}"), "period": "day",
            "limit_usd": "0.004"}),
    )
    .await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(&key),
        metered("meter-500"),
    )
    .await;
    assert_eq!(resp.status(), 500);
    let b = settled(&gw, &format!("key:{key_id}")).await;
    assert_eq!(
        (b["spent_usd"].as_str(), b["reserved_usd"].as_str()),
        (Some("0"), Some("0"))
    );
    // A client that hangs up mid-call: the reservation is released.
    let cut = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&key)
        .json(&metered("meter-slow"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(cut.is_err());
    let b = settled(&gw, &format!("key:{key_id}")).await;
    assert_eq!(b["reserved_usd"], "0", "{b}");
    // The room is whole again: one request fits, the next does not.
    let resp = post(&gw, "/v1/chat/completions", Some(&key), metered("meter")).await;
    assert_eq!(resp.status(), 200);
    let resp = post(&gw, "/v1/chat/completions", Some(&key), metered("meter")).await;
    error_body(resp, 429).await;
    gw.stop().await;
}

/// A webhook receiver: every alert body, with its signature checked. It answers 503 to its
/// first `fail_first` posts (the sender must retry).
async fn webhook(secret: &'static str, fail_first: usize) -> (String, Arc<Mutex<Vec<Value>>>) {
    use axum::routing::post as on_post;
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let store = got.clone();
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        on_post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let store = store.clone();
                let refused = refused.clone();
                async move {
                    if refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < fail_first {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let ts = headers["x-llmrr-timestamp"].to_str().expect("ts");
                    let sig = headers["x-llmrr-signature"].to_str().expect("sig");
                    assert_eq!(sig, llmrr_core::money::alerts::signature(secret, ts, &body));
                    store
                        .lock()
                        .expect("lock")
                        .push(serde_json::from_slice(&body).expect("json"));
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test]
async fn issue8_downgrade_then_alerts_once_per_period() {
    // The receiver refuses the first post: the alert arrives on a retry, once.
    let (hook, got) = webhook("whsec-test-secret", 1).await;
    let extra = format!(
        "[money]\nalert_webhook_url = \"{hook}\"\nalert_webhook_secret = \"env:HOOK_SECRET\"\n"
    );
    let mock = MockProvider::start().await;
    let toml = format!("{extra}\n{}", money_models(&mock));
    let mut env = ENV.to_vec();
    env.push(("HOOK_SECRET", "whsec-test-secret"));
    let gw = TestGateway::start(&toml, &env, StoreChoice::Sqlite).await;
    let (key, key_id) = key_for(&gw, None, None).await;
    // `dear` costs $0.01 per token (max 4 tokens: $0.04), `cheap` $0.0001 ($0.0004).
    set_budget(
        &gw,
        serde_json::json!({"scope": format!("key:{key_id}"), "period": "hour",
            "limit_usd": "0.01", "action": "downgrade"}),
    )
    .await;
    let resp = post(&gw, "/v1/chat/completions", Some(&key), metered("smart")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-llmrr-model"], "cheap");
    let route = resp.headers()["x-llmrr-route"].to_str().expect("ascii");
    assert!(route.contains("downgraded by budget key:"), "{route}");
    // An alert-only budget: over its limit, requests still pass; each threshold fires once.
    set_budget(
        &gw,
        serde_json::json!({"scope": "model:meter", "period": "day", "limit_usd": "0.008",
            "action": "alert", "alert_percent": [50, 100]}),
    )
    .await;
    for _ in 0..4 {
        let resp = post(&gw, "/v1/chat/completions", Some(MASTER), metered("meter")).await;
        assert_eq!(resp.status(), 200);
    }
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while got.lock().expect("lock").len() < 2 && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let alerts = got.lock().expect("lock").clone();
    // Each threshold once (the refused one arrives later, on its retry).
    let mut thresholds: Vec<u64> = alerts
        .iter()
        .filter(|a| a["scope"] == "model:meter")
        .map(|a| a["threshold_percent"].as_u64().expect("n"))
        .collect();
    thresholds.sort_unstable();
    assert_eq!(thresholds, vec![50, 100], "{alerts:?}");
    assert!(alerts.iter().all(|a| a["type"] == "budget.threshold"));
    gw.stop().await;
}

#[tokio::test]
async fn issue8_period_rollover_and_restart_rebuild_from_the_ledger() {
    let (gw, mock) = start_money("").await;
    let (key, key_id) = key_for(&gw, None, None).await;
    let scope = format!("key:{key_id}");
    set_budget(
        &gw,
        serde_json::json!({"scope": scope, "period": "hour", "limit_usd": "0.008",
            "limit_tokens": 1000000}),
    )
    .await;
    for _ in 0..2 {
        let resp = post(&gw, "/v1/chat/completions", Some(&key), metered("meter")).await;
        assert_eq!(resp.status(), 200);
    }
    error_body(
        post(&gw, "/v1/chat/completions", Some(&key), metered("meter")).await,
        429,
    )
    .await;
    assert_eq!(settled(&gw, &scope).await["spent_usd"], "0.008");
    // A restart on the same store: spend comes back from the ledger, still refused.
    let dir = gw.stop_keeping_store().await;
    let db = format!("sqlite://{}/llmrr.db", dir.path().display());
    let toml = format!("[store]\nurl = \"{db}\"\n{}", money_models(&mock));
    let gw = TestGateway::start(&toml, ENV, StoreChoice::AsConfigured).await;
    error_body(
        post(&gw, "/v1/chat/completions", Some(&key), metered("meter")).await,
        429,
    )
    .await;
    // The next hour is a new period: room again.
    let money = gw.state.gateway.money();
    let next = money.now().as_millisecond() + 3_600_000;
    money.set_clock(jiff::Timestamp::from_millisecond(next).expect("time"));
    let resp = post(&gw, "/v1/chat/completions", Some(&key), metered("meter")).await;
    assert_eq!(resp.status(), 200);
    // The new hour's counter holds that one request; the old hour's is untouched.
    let b = settled(&gw, &scope).await;
    assert_eq!(b["spent_usd"], "0.004", "{b}");
    assert_eq!(b["period_start"], iso_hour(next));
    gw.stop().await;
    drop(dir);
}

/// The start of the UTC hour holding `ms`, as the budget status writes it.
fn iso_hour(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms - ms.rem_euclid(3_600_000))
        .expect("time")
        .to_string()
}

fn seeded(id: &str, at: i64, model: &str, cost_pusd: i64) -> LedgerRow {
    LedgerRow {
        id: id.into(),
        created_at_ms: at,
        endpoint: "chat".into(),
        key_id: Some("k1".into()),
        user_id: Some("alice".into()),
        team_id: Some("eng".into()),
        model: model.into(),
        provider: "openai".into(),
        route: Some("smart".into()),
        category: Some("question".into()),
        prompt_hash: Some(format!("h-{}", id.len() % 2)),
        prompt_tokens: 100,
        cached_tokens: 0,
        cache_write_tokens: 0,
        completion_tokens: 100,
        reasoning_tokens: 0,
        cost_pusd,
        price_version: "config".into(),
        estimated: false,
        unpriced: false,
        cache_hit: false,
        saved_pusd: 0,
        baseline_max_pusd: Some(2 * cost_pusd),
        baseline_remote_pusd: None,
        quality: 0.9,
        local: false,
    }
}

#[tokio::test]
async fn issue8_analytics_savings_forecast_and_recommendations_on_a_seeded_ledger() {
    let (gw, _mock) = start_money("").await;
    let store = gw.state.gateway.store();
    let now = gw.state.gateway.money().now().as_millisecond();
    let hour = now - now.rem_euclid(3_600_000);
    // 48 hours of $1 an hour on `dear` (one request an hour), and one $0.5 request on
    // `cheap` an hour ago.
    for h in 1..=48 {
        let at = hour - h * 3_600_000 + 60_000;
        store
            .append_ledger(&[seeded(&format!("r{h}"), at, "dear", 1_000_000_000_000)])
            .await
            .expect("seed");
    }
    store
        .append_ledger(&[seeded("c1", hour - 3_000_000, "cheap", 500_000_000_000)])
        .await
        .expect("seed");
    let report = get_json(&gw, "/admin/spend?from=3d&group_by=model").await;
    assert_eq!(report["totals"]["requests"], 49, "{report}");
    assert_eq!(report["totals"]["cost_usd"], "48.5");
    assert_eq!(report["groups"][0]["group"], "dear");
    assert_eq!(report["groups"][0]["cost_usd"], "48");
    assert_eq!(report["groups"][1]["cost_usd"], "0.5");
    // Routing saved half of every request against the dearest candidate.
    assert_eq!(report["savings"]["routing"]["saved_usd"], "48.5");
    assert_eq!(report["top_teams"][0]["group"], "eng");
    assert_eq!(report["efficiency"]["cost_per_request_p50_usd"], "1");
    assert_eq!(report["efficiency"]["cost_per_request_p99_usd"], "1");
    let tpu = report["efficiency"]["tokens_per_usd"]
        .as_f64()
        .expect("tokens/usd");
    assert!((tpu - 9800.0 / 48.5).abs() < 1e-6, "{tpu}");
    // CSV of a daily breakdown.
    let csv = client()
        .get(format!(
            "{}/admin/spend?from=3d&group_by=model&format=csv",
            gw.url
        ))
        .bearer_auth(MASTER)
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("text");
    assert!(csv.starts_with("group,requests,"), "{csv}");
    assert!(csv.contains("\ndear,48,4800,0,4800,48,0,0\n"), "{csv}");
    // A bad breakdown is a clear 400.
    let resp = client()
        .get(format!("{}/admin/spend?group_by=planet", gw.url))
        .bearer_auth(MASTER)
        .send()
        .await
        .expect("answers");
    let v = error_body(resp, 400).await;
    assert_eq!(v["error"]["param"], "group_by");
    // Forecast: the series is ~flat at $1/hour (the cheap request adds $0.5 once).
    let f = get_json(&gw, "/admin/spend/forecast").await;
    let next = f["next_24h"]["expected_usd"].as_f64().expect("forecast");
    assert!((next - 24.0).abs() < 3.0, "{f}");
    assert!(f["next_24h"]["low_usd"].as_f64() <= Some(next));
    // Recommendations: `cheap` (quality 0.88 vs 0.9) carries the short questions for less;
    // prompts repeated with no cache.
    let recs = get_json(&gw, "/admin/spend/recommendations?days=3").await;
    let kinds: Vec<&str> = recs["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"cheaper_model"), "{recs}");
    assert!(kinds.contains(&"enable_cache"), "{recs}");
    gw.stop().await;
}

#[tokio::test]
async fn issue8_a_full_model_budget_leaves_the_routes_other_models() {
    let (gw, _mock) = start_money("").await;
    set_budget(
        &gw,
        serde_json::json!({"scope": "model:dear", "period": "day", "limit_usd": "0.000001"}),
    )
    .await;
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), metered("smart")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-llmrr-model"], "cheap");
    let route = resp.headers()["x-llmrr-route"].to_str().expect("ascii");
    assert!(
        route.contains("budget model:dear (day) is spent"),
        "{route}"
    );
    // Named directly, nothing else can serve it: refused, naming the budget.
    let v = error_body(
        post(&gw, "/v1/chat/completions", Some(MASTER), metered("dear")).await,
        429,
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("m")
            .contains("model:dear"),
        "{v}"
    );
    // Bad budgets are clear 400s.
    for (body, param) in [
        (
            serde_json::json!({"scope": "model:x", "period": "fortnight", "limit_usd": 1}),
            "period",
        ),
        (
            serde_json::json!({"scope": "model:x", "period": "day", "limit_usd": "-1"}),
            "limit_usd",
        ),
        (
            serde_json::json!({"scope": "model:x", "period": "day", "limit_usd": "1e30"}),
            "limit_usd",
        ),
        (
            serde_json::json!({"scope": "model:x", "period": "day"}),
            "limit_usd",
        ),
        (
            serde_json::json!({"scope": "x", "period": "day", "limit_usd": 1}),
            "scope",
        ),
        (
            serde_json::json!({"scope": "model:x", "period": "day", "limit_usd": 1,
                "default_max_tokens": 0}),
            "default_max_tokens",
        ),
    ] {
        let v = error_body(post(&gw, "/admin/budgets", Some(MASTER), body).await, 400).await;
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    // Only the master key (or an admin key) manages money; a plain key reads its own spend.
    let (key, id) = key_for(&gw, None, None).await;
    let resp = client()
        .get(format!("{}/admin/budgets", gw.url))
        .bearer_auth(&key)
        .send()
        .await
        .expect("answers");
    error_body(resp, 403).await;
    let own: Value = client()
        .get(format!("{}/admin/spend", gw.url))
        .bearer_auth(&key)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(own["scope"], format!("key:{id}"), "{own}");
    assert_eq!(own["totals"]["requests"], 0, "{own}");
    gw.stop().await;
}

#[tokio::test]
async fn issue8_redis_down_degrades_to_this_replicas_counters_from_the_ledger() {
    let mock = MockProvider::start().await;
    // Nothing listens on port 1: the replica starts anyway and enforces budgets alone.
    let toml = format!(
        "[shared]\nredis_url = \"redis://127.0.0.1:1\"\nkey_prefix = \"{}\"\n{}",
        unique_prefix(),
        money_models(&mock)
    );
    let gw = TestGateway::start(&toml, ENV, StoreChoice::Sqlite).await;
    let (key, key_id) = key_for(&gw, None, None).await;
    set_budget(
        &gw,
        serde_json::json!({"scope": format!("key:{key_id}"), "period": "day",
            "limit_usd": "0.004"}),
    )
    .await;
    let resp = post(&gw, "/v1/chat/completions", Some(&key), metered("meter")).await;
    assert_eq!(resp.status(), 200);
    error_body(
        post(&gw, "/v1/chat/completions", Some(&key), metered("meter")).await,
        429,
    )
    .await;
    gw.stop().await;
}
