//! Routes, strategies, failure handling and rollouts through the real server and the mock.

use super::*;
use serde_json::json;

/// Fast retries; every failure mode of the mock reachable under its own name.
fn routing_toml(routes: &str) -> String {
    format!(
        r#"
[routing]
retry_max_attempts = 2
retry_base_delay_ms = 1
retry_max_delay_ms = 5
breaker_consecutive_failures = 3
breaker_cooldown_secs = 600

{routes}
"#
    )
}

fn upstream_models(mock: &MockProvider) -> Vec<String> {
    mock.requests()
        .iter()
        .map(|r| r.body["model"].as_str().unwrap_or("").to_owned())
        .collect()
}

async fn chat(gw: &TestGateway, body: Value) -> reqwest::Response {
    post(gw, "/v1/chat/completions", Some(MASTER), body).await
}

#[tokio::test]
async fn falls_back_by_error_class() {
    let extra = routing_toml(
        r#"
[[models]]
name = "small"
provider = "openai"
base_url = "{mock}"
upstream_model = "small-mock-400"
context_window = 1000
[[models]]
name = "mid"
provider = "openai"
base_url = "{mock}"
upstream_model = "mid-mock-ok"
context_window = 1000
[[models]]
name = "big"
provider = "openai"
base_url = "{mock}"
upstream_model = "big-mock-ok"
context_window = 100000

[[routes]]
name = "retry-then-next"
strategy = "capability-match"
models = ["o-500", "o-ok"]
[[routes]]
name = "final-then-next"
strategy = "capability-match"
models = ["o-401", "o-ok"]
[[routes]]
name = "context"
strategy = "capability-match"
models = ["small", "mid", "big"]
[[routes]]
name = "policy"
strategy = "capability-match"
models = ["o-policy", "o-ok"]
content_fallback = "a-ok"
[[routes]]
name = "all-fail"
strategy = "capability-match"
models = ["o-500", "a-500"]
"#,
    );
    let (gw, mock) = start_routed(&extra).await;

    // 5xx: retried once on the same model, then the next model answers.
    let resp = chat(&gw, chat_body("retry-then-next", "hi")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-llmrr-model"], "o-ok");
    assert_eq!(resp.headers()["x-llmrr-attempts"], "3");
    assert!(resp.headers()["x-llmrr-route"]
        .to_str()
        .expect("ascii")
        .contains("route=retry-then-next"));
    assert_eq!(upstream_models(&mock), ["mock-500", "mock-500", "mock-ok"]);

    // 401: final for that model (no retry), the next one answers.
    let resp = chat(&gw, chat_body("final-then-next", "hi")).await;
    assert_eq!(
        (
            resp.status().as_u16(),
            resp.headers()["x-llmrr-attempts"].to_str().ok()
        ),
        (200, Some("2"))
    );

    // Context length: skip to a model with a larger window (`mid` is no larger than `small`).
    let before = mock.requests().len();
    let resp = chat(&gw, chat_body("context", "hi")).await;
    assert_eq!(resp.headers()["x-llmrr-model"], "big");
    assert_eq!(
        upstream_models(&mock)[before..],
        ["small-mock-400", "big-mock-ok"]
    );

    // Content policy: straight to the content fallback, not to the next model.
    let resp = chat(&gw, chat_body("policy", "hi")).await;
    assert_eq!(resp.headers()["x-llmrr-model"], "a-ok");

    // Everything fails: 503 listing each attempt, never made-up text.
    let v = error_body(chat(&gw, chat_body("all-fail", "hi")).await, 503).await;
    assert_eq!(v["error"]["code"], "all_candidates_failed");
    let m = v["error"]["message"].as_str().expect("message");
    assert!(
        m.contains("o-500 -> 500") && m.contains("a-500 -> 500"),
        "{m}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn rate_limited_models_are_skipped_until_retry_after() {
    let (gw, mock) = start_with(&routing_toml("[[routes]]\nname = \"r\"\nstrategy = \"capability-match\"\nmodels = [\"o-429\", \"o-ok\"]"), ENV).await;
    let resp = chat(&gw, chat_body("r", "hi")).await;
    assert_eq!(
        (
            resp.status().as_u16(),
            resp.headers()["x-llmrr-model"].to_str().ok()
        ),
        (200, Some("o-ok"))
    );
    let resp = chat(&gw, chat_body("r", "hi")).await;
    assert!(
        resp.headers().get("x-llmrr-attempts").is_none(),
        "straight to o-ok"
    );
    assert_eq!(
        upstream_models(&mock),
        ["mock-429", "mock-ok", "mock-ok"],
        "429 not retried, then skipped"
    );
    let d: Value = post(&gw, "/v1/route", Some(MASTER), chat_body("r", "hi"))
        .await
        .json()
        .await
        .expect("json");
    let excluded = d["ranking"][0]["excluded"].as_str().expect("excluded");
    assert!(excluded.starts_with("rate limited for"), "{excluded}");
    // Asked directly, the rate-limited model answers 429 with the time left.
    let resp = chat(&gw, chat_body("o-429", "hi")).await;
    assert!(resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse::<u64>()
        .is_ok_and(|s| (1..=7).contains(&s)));
    error_body(resp, 429).await;
    gw.stop().await;
}

#[tokio::test]
async fn breaker_opens_skips_and_shows() {
    let (gw, mock) = start_with(&routing_toml("[[routes]]\nname = \"r\"\nstrategy = \"capability-match\"\nmodels = [\"o-500\", \"o-ok\"]"), ENV).await;
    // 2 tries per request on o-500: after the second request, 4 consecutive failures >= 3.
    for _ in 0..2 {
        assert_eq!(chat(&gw, chat_body("r", "hi")).await.status(), 200);
    }
    let before = mock.requests().len();
    let resp = chat(&gw, chat_body("r", "hi")).await;
    assert_eq!(resp.headers()["x-llmrr-model"], "o-ok");
    assert_eq!(
        mock.requests().len(),
        before + 1,
        "the open breaker kept o-500 out"
    );
    let admin: Value = get_json(&gw, "/admin/models").await;
    let m = admin["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["model"] == "o-500")
        .expect("o-500")
        .clone();
    assert_eq!(m["breaker"], "open");
    assert_eq!(m["stats"]["error_rate"], 1.0);
    let ok = admin["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["model"] == "o-ok")
        .expect("o-ok")
        .clone();
    assert!(ok["stats"]["latency_ms"].as_f64().is_some_and(|l| l > 0.0));
    let text = metrics_text(&gw).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("llmrr_breaker_state{model=\"o-500\"} 2")),
        "breaker gauge"
    );
    assert!(text.contains("llmrr_retries_total") && text.contains("llmrr_fallbacks_total"));
    assert!(
        text.lines()
            .any(|l| l.starts_with("llmrr_attempt_errors_total{")
                && l.contains("model=\"o-500\"")
                && l.contains("error_type=\"upstream_server_error\"")),
        "each failed attempt is counted"
    );
    // Direct calls to an open model get 503 with the cooldown left.
    let resp = chat(&gw, chat_body("o-500", "hi")).await;
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(error_body(resp, 503).await["error"]["code"], "no_candidate");
    gw.stop().await;
}

#[tokio::test]
async fn streams_fall_back_before_the_first_byte_only() {
    let extra = routing_toml(
        r#"
[[models]]
name = "stalls"
provider = "openai"
base_url = "{mock}"
upstream_model = "mock-stall"
ttft_timeout_secs = 0.3
[[models]]
name = "drips"
provider = "openai"
base_url = "{mock}"
upstream_model = "mock-drip-300"
idle_timeout_secs = 0.1

[[routes]]
name = "before"
strategy = "capability-match"
models = ["o-500", "o-ok"]
[[routes]]
name = "after"
strategy = "capability-match"
models = ["o-cut", "o-ok"]
[[routes]]
name = "ttft"
strategy = "capability-match"
models = ["stalls", "o-ok"]
"#,
    );
    let (gw, _mock) = start_routed(&extra).await;
    let stream = |model: &str| {
        let mut b = chat_body(model, "one two three");
        b["stream"] = json!(true);
        b
    };
    // An HTTP error before the stream: transparent fallback.
    let resp = chat(&gw, stream("before")).await;
    assert_eq!(resp.headers()["x-llmrr-model"], "o-ok");
    let data = sse_data(resp).await;
    assert_eq!(streamed_text(&data), "echo: one two three");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));

    // A stream that broke after its first chunk reached the client: an error event.
    let data = sse_data(chat(&gw, stream("after")).await).await;
    let last: Value = serde_json::from_str(data.last().expect("events")).expect("json");
    assert_eq!(last["error"]["code"], "upstream_protocol_error");

    // No first chunk within the TTFT timeout: the next model, transparently.
    let resp = chat(&gw, stream("ttft")).await;
    assert_eq!(resp.headers()["x-llmrr-model"], "o-ok");
    assert_eq!(streamed_text(&sse_data(resp).await), "echo: one two three");

    // Idle between chunks past the timeout: the stream ends with a timeout event.
    let data = sse_data(chat(&gw, stream("drips")).await).await;
    let last: Value = serde_json::from_str(data.last().expect("events")).expect("json");
    assert_eq!(last["error"]["code"], "upstream_timeout", "{data:?}");
    gw.stop().await;
}

#[tokio::test]
async fn explains_its_decisions_and_honours_request_options() {
    let extra = routing_toml(
        r#"
[[models]]
name = "cheap"
provider = "openai"
base_url = "{mock}"
upstream_model = "cheap-mock-ok"
quality = 0.6
input_cost_per_mtok = 0.1
output_cost_per_mtok = 0.4
capabilities = ["json"]
context_window = 300
[[models]]
name = "premium"
provider = "openai"
base_url = "{mock}"
upstream_model = "premium-mock-ok"
quality = 0.95
input_cost_per_mtok = 5
output_cost_per_mtok = 15

[[routes]]
name = "auto"
strategy = "cost-optimized"
models = ["cheap", "premium"]
"#,
    );
    let (gw, mock) = start_routed(&extra).await;

    // Dry run: the decision, no model called.
    let d: Value = post(&gw, "/v1/route", Some(MASTER), chat_body("auto", "hello"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        (d["strategy"].as_str(), d["model"].as_str()),
        (Some("cost-optimized"), Some("cheap"))
    );
    assert_eq!(d["plan"], json!(["cheap", "premium"]));
    assert!(d["reason"].as_str().expect("reason").contains("cheapest"));
    assert!(mock.requests().is_empty());

    // explain: the full ranking in the answer.
    let mut body = chat_body("auto", "hello");
    body["llmrr"] = json!({"explain": true, "strategy": "quality-first"});
    let resp = chat(&gw, body).await;
    assert_eq!(resp.headers()["x-llmrr-model"], "premium");
    assert!(resp.headers()["x-llmrr-route"]
        .to_str()
        .expect("ascii")
        .contains("strategy=quality-first"));
    let v: Value = resp.json().await.expect("json");
    let ranking = v["llmrr"]["route"]["ranking"].as_array().expect("ranking");
    assert_eq!(ranking.len(), 2);
    assert!(ranking
        .iter()
        .all(|r| r["score"].is_number() && r["est_cost_usd"].is_string()));

    // Constraints per request, and capability filtering: tools rule out `cheap`.
    let mut body = chat_body("auto", "hello");
    body["llmrr"] = json!({"min_quality": 0.9});
    assert_eq!(chat(&gw, body).await.headers()["x-llmrr-model"], "premium");
    let mut body = chat_body("auto", "hello");
    body["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
    let d: Value = post(&gw, "/v1/route", Some(MASTER), body)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(d["model"], "premium");
    assert_eq!(d["ranking"][0]["excluded"], "no tool support");
    // The estimated prompt against each context window, before any call.
    let long = "word ".repeat(400);
    let d: Value = post(&gw, "/v1/route", Some(MASTER), chat_body("auto", &long))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(d["model"], "premium", "{d}");
    let why = d["ranking"][0]["excluded"].as_str().expect("excluded");
    assert!(why.starts_with("context window 300 < ~"), "{why}");
    let mut body = chat_body("auto", "hello");
    body["llmrr"] = json!({"max_cost_usd": 0.0000001, "min_quality": 0.9});
    let v = error_body(chat(&gw, body).await, 400).await;
    assert_eq!(v["error"]["code"], "no_candidate");
    let mut body = chat_body("auto", "hello");
    body["llmrr"] = json!({"strategy": "fastest"});
    let v = error_body(chat(&gw, body).await, 400).await;
    assert_eq!(v["error"]["param"], "llmrr.strategy");

    // Routes are listed with the models.
    let list: Value = get_json(&gw, "/v1/models").await;
    assert!(list["data"]
        .as_array()
        .expect("data")
        .iter()
        .any(|m| m["id"] == "auto" && m["owned_by"] == "llmrr-route"));
    gw.stop().await;
}

#[tokio::test]
async fn tiers_limit_what_a_key_reaches() {
    let extra = routing_toml("[tiers]\nfree = [\"o-ok\"]\npremium = [\"*\"]\n\n[[routes]]\nname = \"auto\"\nstrategy = \"quality-first\"\nmodels = [\"a-ok\", \"o-ok\"]");
    let (gw, _mock) = start_with(&extra, ENV).await;
    let created = create_key(
        &gw,
        llmrr_core::auth::NewKey {
            name: "f".into(),
            tier: Some("free".into()),
            ..Default::default()
        },
    )
    .await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(&created.key),
        chat_body("auto", "hi"),
    )
    .await;
    assert_eq!(resp.headers()["x-llmrr-model"], "o-ok");
    let mut body = chat_body("auto", "hi");
    body["llmrr"] = json!({"tier": "premium"});
    let v = error_body(
        post(&gw, "/v1/chat/completions", Some(&created.key), body).await,
        403,
    )
    .await;
    assert!(v["error"]["message"]
        .as_str()
        .expect("message")
        .contains("does not reach tier `premium`"));
    // The master key may ask for a narrower tier.
    let mut body = chat_body("auto", "hi");
    body["llmrr"] = json!({"tier": "free"});
    assert_eq!(chat(&gw, body).await.headers()["x-llmrr-model"], "o-ok");
    gw.stop().await;
}

#[tokio::test]
async fn rollout_shifts_traffic_and_rolls_back() {
    let extra = routing_toml("[[routes]]\nname = \"auto\"\nstrategy = \"capability-match\"\nmodels = [\"o-ok\", \"o-500\"]");
    let (gw, mock) = start_with(&extra, ENV).await;
    let admin = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut r = client()
            .request(method, format!("{}{path}", gw.url))
            .bearer_auth(MASTER);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send()
    };
    let bad = admin(
        reqwest::Method::POST,
        "/admin/rollouts",
        Some(json!({"route": "auto", "to": "a-ok", "stage_minutes": 1})),
    )
    .await
    .expect("answers");
    assert_eq!(error_body(bad, 400).await["error"]["param"], "to");
    let resp = admin(
        reqwest::Method::POST,
        "/admin/rollouts",
        Some(json!({"route": "auto", "to": "o-500", "stages": [100], "stage_minutes": 10, "max_error_rate": 0.5, "min_requests": 2})),
    )
    .await
    .expect("answers");
    assert_eq!(resp.status(), 201);
    let started: Value = resp.json().await.expect("json");
    assert_eq!(
        (
            started["from"].as_str(),
            started["position"]["percent_to"].as_u64()
        ),
        (Some("o-ok"), Some(100))
    );

    // 100 % to o-500: it is tried first (and fails; o-ok still answers).
    let resp = chat(&gw, chat_body("auto", "hi")).await;
    assert_eq!(resp.headers()["x-llmrr-model"], "o-ok");
    assert!(resp.headers()["x-llmrr-route"]
        .to_str()
        .expect("ascii")
        .contains("rollout"));
    assert_eq!(upstream_models(&mock), ["mock-500", "mock-500", "mock-ok"]);
    // Two failures of two calls on o-500: past 50 %, rolled back.
    let list: Value = admin(reqwest::Method::GET, "/admin/rollouts", None)
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(list["data"][0]["state"], "rolled_back", "{list}");
    assert!(list["data"][0]["reason"]
        .as_str()
        .expect("reason")
        .contains("o-500"));
    let before = mock.requests().len();
    let resp = chat(&gw, chat_body("auto", "hi")).await;
    assert!(resp.headers().get("x-llmrr-attempts").is_none());
    assert_eq!(upstream_models(&mock)[before..], ["mock-ok"]);
    // The state is in the store, for the next start.
    gw.flush_log().await;
    let stored = gw
        .state
        .gateway
        .store()
        .load_rollouts()
        .await
        .expect("rows");
    assert!(stored.iter().any(|r| r.contains("rolled_back")));
    let resp = admin(reqwest::Method::DELETE, "/admin/rollouts/auto", None)
        .await
        .expect("answers");
    error_body(resp, 400).await;
    gw.stop().await;
}

#[tokio::test]
async fn health_probes_open_the_breaker_of_a_model_that_is_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let extra = format!(
        "[routing]\nhealth_probe_interval_secs = 0.05\n\n[[models]]\nname = \"down\"\nprovider = \"openai\"\n\
         base_url = \"http://127.0.0.1:{port}/v1\"\n"
    );
    let (gw, mock) = start_with(&extra, ENV).await;
    // Probes run in the background; wait (bounded) for the one that finds `down` down.
    let down = gw
        .state
        .gateway
        .models()
        .get("down")
        .expect("model")
        .clone();
    let mut open = false;
    for _ in 0..100 {
        if down.breaker.state() == llmrr_core::routing::breaker::BreakerState::Open {
            open = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(open, "a failed probe opens the breaker");
    let ok = gw.state.gateway.models().get("o-ok").expect("model");
    assert_eq!(
        ok.breaker.state(),
        llmrr_core::routing::breaker::BreakerState::Closed,
        "a healthy model stays closed"
    );
    assert!(
        mock.requests()
            .iter()
            .all(|r| r.path != "/v1/chat/completions"),
        "probes are not chat calls"
    );
    let v = error_body(chat(&gw, chat_body("down", "hi")).await, 503).await;
    assert_eq!(v["error"]["code"], "no_candidate");
    gw.stop().await;
}

/// Replicas on one store: a rollout started on one is in force on the other within about a
/// second, and an abort on the other reaches the first.
#[tokio::test]
async fn a_rollout_reaches_every_replica() {
    use llmrr_testkit::harness::{unique_prefix, SharedDatabase};
    let mock = MockProvider::start().await;
    let db = SharedDatabase::create().await;
    let prefix = unique_prefix();
    let config = format!(
        "[[routes]]\nname = \"auto\"\nstrategy = \"capability-match\"\nmodels = [\"o-ok\", \"a-ok\"]\n{}",
        models_toml(&mock)
    );
    let a = replica(&config, &db.url, &prefix).await;
    let b = replica(&config, &db.url, &prefix).await;
    assert_eq!(answered_by(&b).await, "o-ok");
    let resp = client()
        .post(format!("{}/admin/rollouts", a.url))
        .bearer_auth(MASTER)
        .json(&json!({"route": "auto", "to": "a-ok", "stages": [100], "stage_minutes": 10}))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 201);
    answers_soon(&b, "a-ok").await;
    let resp = client()
        .delete(format!("{}/admin/rollouts/auto", b.url))
        .bearer_auth(MASTER)
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 200);
    answers_soon(&a, "o-ok").await;
    a.stop().await;
    b.stop().await;
    db.drop().await;
}

/// Replicas on one Redis: a breaker that opens on one opens on the other within about half a
/// second, so the other stops calling the failing model without failing on it first.
#[tokio::test]
async fn an_open_breaker_reaches_every_replica() {
    use llmrr_testkit::harness::{unique_prefix, SharedDatabase};
    let mock = MockProvider::start().await;
    let db = SharedDatabase::create().await;
    let prefix = unique_prefix();
    let config = routing_toml(
        "[[routes]]\nname = \"r\"\nstrategy = \"capability-match\"\nmodels = [\"o-500\", \"o-ok\"]",
    );
    let config = config + &models_toml(&mock);
    let a = replica(&config, &db.url, &prefix).await;
    let b = replica(&config, &db.url, &prefix).await;
    // 2 tries per request on o-500: the third failure in a row opens A's breaker.
    for _ in 0..2 {
        assert_eq!(chat(&a, chat_body("r", "hi")).await.status(), 200);
    }
    let upstream_500 = |m: &MockProvider| {
        m.requests()
            .iter()
            .filter(|r| r.body["model"] == "mock-500")
            .count()
    };
    let failed_on_a = upstream_500(&mock);
    assert!(
        failed_on_a >= 3,
        "A opened its breaker after 3 failures in a row"
    );
    let started = std::time::Instant::now();
    loop {
        let m: Value = get_json(&b, "/admin/models").await;
        let state = m["models"]
            .as_array()
            .expect("models")
            .iter()
            .find(|m| m["model"] == "o-500")
            .expect("o-500")["breaker"]
            .clone();
        if state == "open" {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "B never opened its breaker of o-500 ({state})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let resp = chat(&b, chat_body("r", "hi")).await;
    assert_eq!(resp.headers()["x-llmrr-model"], "o-ok");
    assert_eq!(
        upstream_500(&mock),
        failed_on_a,
        "B never called the model A found failing"
    );
    a.stop().await;
    b.stop().await;
    db.drop().await;
}

/// The model that answers a chat to route `auto`.
async fn answered_by(gw: &TestGateway) -> String {
    let resp = chat(gw, chat_body("auto", "hi")).await;
    assert_eq!(resp.status(), 200);
    resp.headers()["x-llmrr-model"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// Wait (at most 5 s) until `model` answers `auto` on `gw`.
async fn answers_soon(gw: &TestGateway, model: &str) {
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(5) {
        if answered_by(gw).await == model {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{} still does not answer with {model}", gw.url);
}
