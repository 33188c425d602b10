//! Integration tests: the real server on a loopback port, the testkit's mock provider over
//! real HTTP, a real SQLite file (and a real Postgres database in `postgres`).

#![expect(clippy::expect_used, reason = "test helpers fail the test loudly")]

mod anthropic;
mod cache;
mod errors;
mod fidelity;
mod hardening_auth;
mod hardening_http;
mod hardening_log;
mod keys;
mod limits;
mod local;
mod local_tools;
mod messages;
mod money;
mod ollama;
mod openai;
mod postgres;
mod request_log;
mod responses;
mod responses_upstream;
mod routing;
mod smart_routing;
mod ui;
mod ui_browser;

use llmrr_testkit::harness::StoreChoice;
use llmrr_testkit::{MockProvider, TestGateway};
use serde_json::Value;

pub const MASTER: &str = "sk-master-test-0123456789";

/// Modes of the mock that every test config exposes, as `o-<mode>` (OpenAI-compatible) and
/// `a-<mode>` (Anthropic).
const MODES: &[&str] = &[
    "ok",
    "tool",
    "429",
    "500",
    "400",
    "401",
    "529",
    "garbage",
    "cut",
    "streamerror",
    "stall",
    "drip-100",
    "slow-2000",
    "policy",
    "echokey",
    "huge",
    "longline",
    "badreq",
    "empty",
    "refuse",
    "length",
    "json",
    "unsure",
];

pub fn models_toml(mock: &MockProvider) -> String {
    let mut t = String::new();
    for mode in MODES {
        t.push_str(&format!(
            "[[models]]\nname = \"o-{mode}\"\nprovider = \"openai\"\nbase_url = \"{url}\"\n\
             api_key = \"env:UPSTREAM_KEY\"\nupstream_model = \"mock-{mode}\"\n\
             input_cost_per_mtok = 0.15\noutput_cost_per_mtok = 0.60\ntimeout_secs = 1.5\n\n\
             [[models]]\nname = \"a-{mode}\"\nprovider = \"anthropic\"\nbase_url = \"{url}\"\n\
             api_key = \"env:UPSTREAM_KEY\"\nupstream_model = \"mock-{mode}\"\n\
             input_cost_per_mtok = 3\noutput_cost_per_mtok = 15\ntimeout_secs = 1.5\n\n",
            url = mock.base_url
        ));
    }
    t
}

pub const ENV: &[(&str, &str)] = &[
    ("UPSTREAM_KEY", "sk-upstream-secret"),
    ("LLMRR_MASTER_KEY", MASTER),
];

/// `toml` loaded as a config (no environment): what a test of config errors reads.
pub fn config_of(toml: &str) -> llmrr_core::Result<llmrr_core::config::Config> {
    llmrr_core::config::load(
        llmrr_core::config::ConfigSource::Text { name: "t", toml },
        None,
        &llmrr_core::config::Env::Map(Default::default()),
    )
}

/// A gateway in front of a fresh mock, with the master key set.
pub async fn start() -> (TestGateway, MockProvider) {
    start_with("", ENV).await
}

pub async fn start_with(extra_toml: &str, env: &[(&str, &str)]) -> (TestGateway, MockProvider) {
    let mock = MockProvider::start().await;
    let toml = format!("{extra_toml}\n{}", models_toml(&mock));
    (
        TestGateway::start(&toml, env, StoreChoice::Sqlite).await,
        mock,
    )
}

/// A gateway whose config is `extra` (where `{mock}` is the mock's URL) plus the mock models.
pub async fn start_routed(extra: &str) -> (TestGateway, MockProvider) {
    let mock = MockProvider::start().await;
    let toml = format!(
        "{}\n{}",
        extra.replace("{mock}", &mock.base_url),
        models_toml(&mock)
    );
    (
        TestGateway::start(&toml, ENV, StoreChoice::Sqlite).await,
        mock,
    )
}

/// One replica of a deployment: the shared store `db` and Redis under `prefix`, `models` as
/// its models.
pub async fn replica(models: &str, db: &str, prefix: &str) -> TestGateway {
    let toml = format!(
        "[store]\nurl = \"{db}\"\n[shared]\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"\n{models}",
        llmrr_testkit::harness::redis_url(),
    );
    TestGateway::start(&toml, ENV, StoreChoice::AsConfigured).await
}

/// `GET /metrics` with the master key, as text.
pub async fn metrics_text(gw: &TestGateway) -> String {
    client()
        .get(format!("{}/metrics", gw.url))
        .bearer_auth(MASTER)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// `POST path` with the master key and extra headers.
pub async fn post_as_master(
    gw: &TestGateway,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> reqwest::Response {
    let mut req = client()
        .post(format!("{}{path}", gw.url))
        .bearer_auth(MASTER)
        .json(&body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("the gateway answers")
}

/// Run one SQL statement on the gateway's store (fault injection: triggers, renamed tables).
pub async fn sql(gw: &TestGateway, statement: &str) {
    use sqlx::Executor;
    gw.state
        .gateway
        .store()
        .pool()
        .execute(statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// Every request-log row, newest first.
pub async fn rows(gw: &TestGateway) -> Vec<llmrr_core::store::LogRow> {
    gw.state
        .gateway
        .store()
        .recent_requests(10_000)
        .await
        .expect("rows")
}

/// The log once it holds `n` rows: a call's task may still be recording its row (a client
/// that hung up), so flush and look again, for at most 5 s.
pub async fn rows_once(gw: &TestGateway, n: usize) -> Vec<llmrr_core::store::LogRow> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        gw.flush_log().await;
        let rows = rows(gw).await;
        if rows.len() >= n || std::time::Instant::now() > until {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A virtual key made directly through the gateway's authenticator.
pub async fn create_key(
    gw: &TestGateway,
    new: llmrr_core::auth::NewKey,
) -> llmrr_core::auth::CreatedKey {
    gw.state.gateway.create_key(new).await.expect("a key")
}

/// `GET path` with the master key, as JSON.
pub async fn get_json(gw: &TestGateway, path: &str) -> Value {
    client()
        .get(format!("{}{path}", gw.url))
        .bearer_auth(MASTER)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub async fn post(
    gw: &TestGateway,
    path: &str,
    key: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut req = client().post(format!("{}{path}", gw.url)).json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.expect("the gateway answers")
}

pub fn chat_body(model: &str, text: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// Read an SSE body to its end: the data payloads, in order (`[DONE]` included).
pub async fn sse_data(resp: reqwest::Response) -> Vec<String> {
    let bytes = resp.bytes().await.expect("a complete body");
    let mut parser = llmrr_core::provider::sse::SseParser::new();
    let mut events = Vec::new();
    parser.push(&bytes, &mut events);
    parser.finish(&mut events);
    events.into_iter().map(|e| e.data).collect()
}

/// The concatenated `delta.content` of chat chunks.
pub fn streamed_text(data: &[String]) -> String {
    data.iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// Assert an OpenAI error envelope and return it.
pub async fn error_body(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status, "status");
    assert!(resp.headers().contains_key("x-llmrr-request-id"));
    let v: Value = resp.json().await.expect("a JSON error body");
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(
        e.get("param").is_some() && e.get("code").is_some(),
        "all four fields: {v}"
    );
    v
}
