//! Issue 9: rate limits and quotas (one limit across replicas on Redis), priority admission
//! with deadlines, the global cap, key rotation and expiry, guardrails.

use super::*;
use llmrr_core::auth::NewKey;
use llmrr_core::limits::LimitSet;
use llmrr_testkit::harness::{unique_prefix, SharedDatabase};
use std::time::{Duration, Instant};

async fn limited_key(gw: &TestGateway, limits: LimitSet) -> (String, String) {
    let k = create_key(
        gw,
        NewKey {
            name: "limited".into(),
            limits: Some(limits),
            ..Default::default()
        },
    )
    .await;
    (k.key, k.row.id)
}

/// A chat call through `gw` with `key`.
async fn chat(gw: &TestGateway, key: &str, model: &str, text: &str) -> reqwest::Response {
    post(
        gw,
        "/v1/chat/completions",
        Some(key),
        chat_body(model, text),
    )
    .await
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn issue9_rpm_and_tpm_send_openai_headers_and_429_names_the_limit() {
    let (gw, _mock) = start().await;
    let (key, id) = limited_key(
        &gw,
        LimitSet {
            rpm: Some(3),
            tpm: Some(100_000),
            ..Default::default()
        },
    )
    .await;
    for left in [2, 1, 0] {
        let resp = chat(&gw, &key, "o-ok", "hi").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-ratelimit-limit-requests"), Some("3"));
        assert_eq!(
            header(&resp, "x-ratelimit-remaining-requests"),
            Some(left.to_string().as_str())
        );
        assert!(header(&resp, "x-ratelimit-reset-requests").is_some());
        assert_eq!(header(&resp, "x-ratelimit-limit-tokens"), Some("100000"));
        assert!(header(&resp, "x-ratelimit-remaining-tokens").is_some());
    }
    let resp = chat(&gw, &key, "o-ok", "hi").await;
    let retry: u64 = header(&resp, "retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), Some("0"));
    let v = error_body(resp, 429).await;
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let message = v["error"]["message"].as_str().expect("message");
    assert!(
        message.contains(&format!("requests per minute of key:{id}")),
        "{message}"
    );
    // Another key is not affected.
    let other = create_key(
        &gw,
        NewKey {
            name: "other".into(),
            ..Default::default()
        },
    )
    .await;
    let resp = chat(&gw, &other.key, "o-ok", "hi").await;
    assert_eq!(resp.status(), 200);
    // (What it sees is the upstream's own headers, passed through.)
    assert_ne!(header(&resp, "x-ratelimit-limit-requests"), Some("3"));
    let rows = rows_once(&gw, 5).await;
    assert_eq!(rows.iter().filter(|r| r.status == 429).count(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn issue9_tokens_are_reserved_up_front_and_settled_to_the_real_count() {
    let (gw, _mock) = start().await;
    let (key, _) = limited_key(
        &gw,
        LimitSet {
            tpm: Some(300),
            ..Default::default()
        },
    )
    .await;
    let body = |max: u64| {
        serde_json::json!({"model": "o-ok", "max_tokens": max,
            "messages": [{"role": "user", "content": "a b c"}]})
    };
    // 250 reserved; the answer uses a few tokens and the rest is given back, so a second
    // request of the same size fits. Without the settle it would not.
    assert_eq!(
        post(&gw, "/v1/chat/completions", Some(&key), body(250))
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = post(&gw, "/v1/chat/completions", Some(&key), body(250)).await;
    assert_eq!(second.status(), 200);
    // A request above the whole limit never fits, and says so.
    let v = error_body(
        post(&gw, "/v1/chat/completions", Some(&key), body(400)).await,
        429,
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("tokens per minute")),
        "{v}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn issue9_concurrency_and_daily_quota() {
    let (gw, _mock) = start_routed(
        "[[models]]\nname = \"slow\"\nprovider = \"openai\"\nbase_url = \"{mock}\"\n\
         upstream_model = \"mock-slow-400\"\ninput_cost_per_mtok = 1\noutput_cost_per_mtok = 1\n",
    )
    .await;
    let (key, id) = limited_key(
        &gw,
        LimitSet {
            max_concurrent: Some(1),
            requests_per_day: Some(3),
            ..Default::default()
        },
    )
    .await;
    let (a, b) = tokio::join!(
        post(
            &gw,
            "/v1/chat/completions",
            Some(&key),
            chat_body("slow", "one")
        ),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            chat(&gw, &key, "slow", "two").await
        }
    );
    assert_eq!(a.status(), 200);
    let v = error_body(b, 429).await;
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("in flight")),
        "{v}"
    );
    // The refused one took nothing from the quota: two more fit, then the quota is used up.
    for _ in 0..2 {
        assert_eq!(chat(&gw, &key, "o-ok", "x").await.status(), 200);
    }
    let resp = chat(&gw, &key, "o-ok", "x").await;
    assert!(header(&resp, "retry-after").is_some());
    let v = error_body(resp, 429).await;
    let m = v["error"]["message"].as_str().expect("message");
    assert!(
        m.contains(&format!("daily request quota of key:{id}")) && m.contains("3 of 3"),
        "{m}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn issue9_one_limit_across_two_gateways_on_redis() {
    let mock = MockProvider::start().await;
    let db = SharedDatabase::create().await;
    let prefix = unique_prefix();
    let a = replica(&models_toml(&mock), &db.url, &prefix).await;
    let b = replica(&models_toml(&mock), &db.url, &prefix).await;
    let k = create_key(
        &a,
        NewKey {
            name: "shared".into(),
            ..Default::default()
        },
    )
    .await;
    // Set on one replica through the admin API; the other applies it within a second.
    let resp = client()
        .put(format!("{}/admin/limits/key:{}", a.url, k.row.id))
        .bearer_auth(MASTER)
        .json(&serde_json::json!({"rpm": 10}))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut calls = Vec::new();
    for i in 0..30 {
        let gw = if i % 2 == 0 { &a } else { &b };
        calls.push(post(
            gw,
            "/v1/chat/completions",
            Some(&k.key),
            chat_body("o-ok", "hi"),
        ));
    }
    let answers = futures_util::future::join_all(calls).await;
    let ok = answers.iter().filter(|r| r.status() == 200).count();
    let limited = answers.iter().filter(|r| r.status() == 429).count();
    assert_eq!((ok, limited), (10, 20), "ONE limit of 10 for both replicas");
    a.stop().await;
    b.stop().await;
    db.drop().await;
}

async fn queued(gw: &TestGateway, priority: &str, started: Instant) -> (String, Duration) {
    let resp = post_as_master(
        gw,
        "/v1/chat/completions",
        &[("x-llmrr-priority", priority)],
        chat_body("one-slot", priority),
    )
    .await;
    assert_eq!(resp.status(), 200, "{priority}");
    (priority.to_owned(), started.elapsed())
}

#[tokio::test]
async fn issue9_priority_order_and_deadlines_under_saturation() {
    let (gw, _mock) = start_routed(
        "[[models]]\nname = \"one-slot\"\nprovider = \"openai\"\nbase_url = \"{mock}\"\n\
         upstream_model = \"mock-slow-300\"\ninput_cost_per_mtok = 1\noutput_cost_per_mtok = 1\n\
         max_concurrent = 1\nmax_queue = 8\n",
    )
    .await;
    let t0 = Instant::now();
    let first = queued(&gw, "normal", t0);
    let later = async {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let low = queued(&gw, "low", t0);
        let normal = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            queued(&gw, "normal", t0).await
        };
        let critical = async {
            tokio::time::sleep(Duration::from_millis(40)).await;
            queued(&gw, "critical", t0).await
        };
        tokio::join!(low, normal, critical)
    };
    let (_, (low, normal, critical)) = tokio::join!(first, later);
    let mut order = [low, normal, critical];
    order.sort_by_key(|(_, at)| *at);
    let names: Vec<_> = order.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["critical", "normal", "low"]);
    // Busy again: a request whose deadline is shorter than the wait is refused at once.
    let busy = queued(&gw, "normal", Instant::now());
    let hurried = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let asked = Instant::now();
        let resp = post_as_master(
            &gw,
            "/v1/chat/completions",
            &[("x-llmrr-deadline-ms", "100")],
            chat_body("one-slot", "now"),
        )
        .await;
        (resp, asked.elapsed())
    };
    let (_, (resp, took)) = tokio::join!(busy, hurried);
    assert!(
        took < Duration::from_millis(90),
        "refused at once, not after waiting: {took:?}"
    );
    assert!(header(&resp, "retry-after").is_some());
    let v = error_body(resp, 503).await;
    assert_eq!(v["error"]["code"], "deadline_unreachable");
    let queues = get_json(&gw, "/admin/queues").await;
    let m = &queues["models"][0];
    assert_eq!(
        (m["model"].as_str(), m["running"].as_u64()),
        (Some("one-slot"), Some(0))
    );
    assert!(m["shed"]["normal"].as_u64() >= Some(1), "{queues}");
    // A bad priority is the client's error.
    let resp = post_as_master(
        &gw,
        "/v1/chat/completions",
        &[("x-llmrr-priority", "urgent")],
        chat_body("o-ok", "x"),
    )
    .await;
    error_body(resp, 400).await;
    gw.stop().await;
}

#[tokio::test]
async fn issue9_the_global_cap_sheds_fast_and_admin_stays_reachable() {
    let (gw, _mock) = start_routed(
        "[limits]\nmax_in_flight = 2\n\
         [[models]]\nname = \"slow\"\nprovider = \"openai\"\nbase_url = \"{mock}\"\n\
         upstream_model = \"mock-slow-400\"\ninput_cost_per_mtok = 1\noutput_cost_per_mtok = 1\n",
    )
    .await;
    let held = async {
        tokio::join!(
            post(
                &gw,
                "/v1/chat/completions",
                Some(MASTER),
                chat_body("slow", "a")
            ),
            post(
                &gw,
                "/v1/chat/completions",
                Some(MASTER),
                chat_body("slow", "b")
            )
        )
    };
    let shed = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let asked = Instant::now();
        let resp = chat(&gw, MASTER, "o-ok", "c").await;
        let took = asked.elapsed();
        let queues = get_json(&gw, "/admin/queues").await;
        (resp, took, queues)
    };
    let ((a, b), (resp, took, queues)) = tokio::join!(held, shed);
    assert_eq!(
        (a.status().as_u16(), b.status().as_u16()),
        (200, 200),
        "admitted requests are served"
    );
    assert!(took < Duration::from_millis(100), "{took:?}");
    assert_eq!(header(&resp, "retry-after"), Some("1"));
    let v = error_body(resp, 503).await;
    assert_eq!(v["error"]["code"], "overloaded");
    assert_eq!(queues["global"]["in_flight"], 2, "{queues}");
    // Room again once they are done.
    let resp = chat(&gw, MASTER, "o-ok", "d").await;
    assert_eq!(resp.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn issue9_key_rotation_grace_expiry_and_last_use() {
    let (gw, _mock) = start().await;
    let k = create_key(
        &gw,
        NewKey {
            name: "rotating".into(),
            ..Default::default()
        },
    )
    .await;
    let call = |key: String| {
        let gw = &gw;
        async move { chat(gw, &key, "o-ok", "hi").await.status().as_u16() }
    };
    assert_eq!(call(k.key.clone()).await, 200);
    let rotated: Value = client()
        .post(format!("{}/admin/keys/{}/rotate", gw.url, k.row.id))
        .bearer_auth(MASTER)
        .json(&serde_json::json!({"grace_secs": 1}))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let new = rotated["key"].as_str().expect("a new secret").to_owned();
    assert_ne!(new, k.key);
    // Both work during the grace period; after it, only the new one.
    assert_eq!(
        (call(k.key.clone()).await, call(new.clone()).await),
        (200, 200)
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        (call(k.key.clone()).await, call(new.clone()).await),
        (401, 200)
    );
    // A key that expires.
    let short = create_key(
        &gw,
        NewKey {
            name: "short".into(),
            expires_in_secs: Some(1),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(call(short.key.clone()).await, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = chat(&gw, &short.key, "o-ok", "hi").await;
    let v = error_body(resp, 401).await;
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{v}"
    );
    // Last use is recorded (within the watch's poll).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let keys = get_json(&gw, "/admin/keys").await;
    let row = keys["data"]
        .as_array()
        .and_then(|d| d.iter().find(|r| r["id"] == k.row.id.as_str()))
        .expect("the key");
    assert!(row["last_used_at_ms"].as_i64().is_some(), "{row}");
    assert!(row.get("key_hash").is_none());
    gw.stop().await;
}

const GUARDED: &str = "[[routes]]\nname = \"guarded\"\nmodels = [\"o-ok\"]\n\
    [routes.guardrails]\nmask = [\"email\", \"card\"]\nmask_on = \"input\"\n\
    [[routes.guardrails.rules]]\nname = \"codename\"\npattern = \"(?i)project falcon\"\naction = \"deny\"\non = \"input\"\n\
    [[routes.guardrails.rules]]\nname = \"plan\"\npattern = \"(?i)secret plan [a-z]+\"\naction = \"redact\"\non = \"output\"\nreplacement = \"[PLAN]\"\n\
    [[routes.guardrails.rules]]\nname = \"leak\"\npattern = \"internal-only\"\naction = \"deny\"\non = \"output\"\n";

#[tokio::test]
async fn issue9_guardrails_on_streamed_and_plain_answers() {
    let (gw, mock) = start_routed(GUARDED).await;
    // Input: masked before the upstream sees it.
    let resp = chat(
        &gw,
        MASTER,
        "guarded",
        "mail bob@example.com card 4111 1111 1111 1111",
    )
    .await;
    let v: Value = resp.json().await.expect("json");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "echo: mail [EMAIL] card [CARD]"
    );
    let sent = mock
        .requests()
        .last()
        .map(|r| r.body.to_string())
        .unwrap_or_default();
    assert!(
        !sent.contains("bob@example.com") && !sent.contains("4111"),
        "{sent}"
    );
    // Input deny; "drop table" is fine (nothing blocked unless configured).
    let v = error_body(
        chat(&gw, MASTER, "guarded", "about Project Falcon").await,
        400,
    )
    .await;
    assert_eq!(v["error"]["code"], "guardrail_denied");
    let ok = chat(&gw, MASTER, "guarded", "drop table users").await;
    assert_eq!(ok.status(), 200);
    // Output redaction, plain and streamed (the mock streams one word a chunk, so the match
    // spans three chunks).
    let text = "the secret plan alpha is ready";
    let v: Value = chat(&gw, MASTER, "guarded", text)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "echo: the [PLAN] is ready"
    );
    let mut body = chat_body("guarded", text);
    body["stream"] = true.into();
    let data = sse_data(post(&gw, "/v1/chat/completions", Some(MASTER), body).await).await;
    assert_eq!(streamed_text(&data), "echo: the [PLAN] is ready");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    // Output deny: withheld (plain: 400; streamed: an error event, the match never sent).
    let leak = "this is internal-only stuff";
    error_body(chat(&gw, MASTER, "guarded", leak).await, 400).await;
    let mut body = chat_body("guarded", leak);
    body["stream"] = true.into();
    let data = sse_data(post(&gw, "/v1/chat/completions", Some(MASTER), body).await).await;
    assert!(!streamed_text(&data).contains("internal"), "{data:?}");
    assert!(
        data.last().is_some_and(|d| d.contains("guardrail_denied")),
        "{data:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn issue9_a_model_at_its_account_limit_is_skipped_and_the_route_says_so() {
    let (gw, mock) = start_routed(
        "[[models]]\nname = \"capped\"\nprovider = \"openai\"\nbase_url = \"{mock}\"\n\
         upstream_model = \"mock-capped\"\ninput_cost_per_mtok = 1\noutput_cost_per_mtok = 1\n\
         quality = 0.99\nrpm = 1\n\
         [[routes]]\nname = \"r\"\nstrategy = \"quality-first\"\nmodels = [\"capped\", \"o-ok\"]\n",
    )
    .await;
    let first = chat(&gw, MASTER, "r", "a").await;
    assert_eq!(header(&first, "x-llmrr-model"), Some("capped"));
    let second = chat(&gw, MASTER, "r", "b").await;
    assert_eq!(second.status(), 200);
    assert_eq!(header(&second, "x-llmrr-model"), Some("o-ok"));
    let route = header(&second, "x-llmrr-route").unwrap_or_default();
    assert!(
        route.contains("skipped: capped: at its configured requests per minute (1)"),
        "{route}"
    );
    // The upstream was not asked again (no 429 collected from it): one call for `capped`.
    let calls = mock
        .requests()
        .iter()
        .filter(|r| r.body["model"] == "mock-capped")
        .count();
    assert_eq!(calls, 1);
    gw.stop().await;
}

#[tokio::test]
async fn issue9_a_route_falls_back_when_the_queue_wait_is_above_its_latency_constraint() {
    let (gw, _mock) = start_routed(
        "[[models]]\nname = \"one-slot\"\nprovider = \"openai\"\nbase_url = \"{mock}\"\n\
         upstream_model = \"mock-slow-120\"\ninput_cost_per_mtok = 1\noutput_cost_per_mtok = 1\n\
         quality = 0.99\nmax_concurrent = 1\n\
         [[routes]]\nname = \"fast\"\nstrategy = \"quality-first\"\nmodels = [\"one-slot\", \"o-ok\"]\n\
         max_latency_ms = 250\n",
    )
    .await;
    // Learn the slot's hold time (120 ms: within the route's 250 ms).
    let warm = chat(&gw, MASTER, "one-slot", "w").await;
    assert_eq!(warm.status(), 200);
    let busy = futures_util::future::join_all((0..3).map(|i| {
        post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            chat_body("one-slot", &i.to_string()),
        )
    }));
    let routed = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        chat(&gw, MASTER, "fast", "now").await
    };
    let (done, resp) = tokio::join!(busy, routed);
    assert!(done.iter().all(|r| r.status() == 200));
    assert_eq!(header(&resp, "x-llmrr-model"), Some("o-ok"));
    let route = header(&resp, "x-llmrr-route").unwrap_or_default();
    assert!(route.contains("above the latency constraint"), "{route}");
    gw.stop().await;
}

#[tokio::test]
async fn issue9_with_redis_down_limits_are_enforced_per_replica() {
    let shared = format!(
        "[shared]\nredis_url = \"redis://127.0.0.1:1\"\nkey_prefix = \"{}\"\n",
        unique_prefix()
    );
    let (gw, _mock) = start_with(&shared, ENV).await;
    let (key, _) = limited_key(
        &gw,
        LimitSet {
            rpm: Some(2),
            ..Default::default()
        },
    )
    .await;
    for _ in 0..2 {
        let resp = chat(&gw, &key, "o-ok", "x").await;
        assert_eq!(resp.status(), 200, "served while Redis is down");
    }
    let resp = chat(&gw, &key, "o-ok", "x").await;
    error_body(resp, 429).await;
    let metrics = metrics_text(&gw).await;
    assert!(metrics.contains("llmrr_limits_degraded 1"), "{metrics}");
    gw.stop().await;
}

#[tokio::test]
async fn issue9_limit_rules_are_edited_live_and_bad_ones_refused() {
    let (gw, _mock) = start().await;
    let put = |scope: &str, body: Value| {
        client()
            .put(format!("{}/admin/limits/{scope}", gw.url))
            .bearer_auth(MASTER)
            .json(&body)
            .send()
    };
    let k = create_key(
        &gw,
        NewKey {
            name: "edited".into(),
            ..Default::default()
        },
    )
    .await;
    let scope = format!("key:{}", k.row.id);
    assert_eq!(
        put(&scope, serde_json::json!({"rpm": 1}))
            .await
            .expect("answers")
            .status(),
        200
    );
    let first = chat(&gw, &k.key, "o-ok", "x").await;
    assert_eq!(header(&first, "x-ratelimit-limit-requests"), Some("1"));
    // Edited at once (same millisecond or not): the new limit applies to the next request.
    assert_eq!(
        put(&scope, serde_json::json!({"rpm": 1000}))
            .await
            .expect("answers")
            .status(),
        200
    );
    let second = chat(&gw, &k.key, "o-ok", "x").await;
    assert_eq!(second.status(), 200);
    assert_eq!(header(&second, "x-ratelimit-limit-requests"), Some("1000"));
    // Bad rules: a clear 400 in the API's envelope.
    for (scope, body) in [
        ("key:x", serde_json::json!({"rpm": 0})),
        ("nobody", serde_json::json!({"rpm": 5})),
        ("key:x", serde_json::json!({"rpn": 5})),
        (
            "key:x",
            serde_json::json!({"priority": "high", "max_priority": "low"}),
        ),
    ] {
        error_body(put(scope, body).await.expect("answers"), 400).await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn issue9_a_key_model_limit_holds_through_a_route_too() {
    let (gw, _mock) = start_routed(
        "[[models]]\nname = \"strong\"\nprovider = \"openai\"\nbase_url = \"{mock}\"\n\
         upstream_model = \"mock-ok\"\ninput_cost_per_mtok = 1\noutput_cost_per_mtok = 1\n\
         quality = 0.99\n\
         [[routes]]\nname = \"r\"\nstrategy = \"quality-first\"\nmodels = [\"strong\", \"o-ok\"]\n",
    )
    .await;
    let mut limits = LimitSet::default();
    limits.models.insert(
        "strong".into(),
        LimitSet {
            rpm: Some(1),
            ..Default::default()
        },
    );
    let (key, id) = limited_key(&gw, limits).await;
    let first = chat(&gw, &key, "r", "a").await;
    assert_eq!(header(&first, "x-llmrr-model"), Some("strong"));
    // Through the route: `strong` is at this key's limit for it, the route moves on.
    let second = chat(&gw, &key, "r", "b").await;
    assert_eq!(header(&second, "x-llmrr-model"), Some("o-ok"));
    let route = header(&second, "x-llmrr-route").unwrap_or_default();
    assert!(route.contains(&format!("key:{id}|model:strong")), "{route}");
    // Naming it directly: the same counter, a 429.
    let direct = chat(&gw, &key, "strong", "c").await;
    error_body(direct, 429).await;
    gw.stop().await;
}

#[tokio::test]
async fn issue9_a_tier_limits_each_of_its_keys_on_its_own() {
    let (gw, _mock) = start_with(
        "[tiers]\nfree = [\"*\"]\n[limits.tiers.free]\nrpm = 1\n",
        ENV,
    )
    .await;
    let key = |name: &str| NewKey {
        name: name.into(),
        tier: Some("free".into()),
        ..Default::default()
    };
    let a = create_key(&gw, key("a")).await.key;
    let b = create_key(&gw, key("b")).await.key;
    let call = |k: String| {
        let gw = &gw;
        async move { chat(gw, &k, "o-ok", "x").await.status().as_u16() }
    };
    assert_eq!(call(a.clone()).await, 200);
    assert_eq!(call(a).await, 429);
    assert_eq!(
        call(b).await,
        200,
        "another key of the tier has its own minute"
    );
    gw.stop().await;
}

#[tokio::test]
async fn issue9_a_daily_quota_starts_again_the_next_day() {
    let (gw, _mock) = start().await;
    let (key, _) = limited_key(
        &gw,
        LimitSet {
            requests_per_day: Some(1),
            tokens_per_month: Some(1_000_000),
            ..Default::default()
        },
    )
    .await;
    let call = || {
        post(
            &gw,
            "/v1/chat/completions",
            Some(&key),
            chat_body("o-ok", "x"),
        )
    };
    assert_eq!(call().await.status(), 200);
    let refused = call().await;
    let retry: u64 = header(&refused, "retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After: the end of the day");
    assert!((1..=86_400).contains(&retry), "{retry}");
    // The money clock (periods are days of `[money] timezone`) moves to tomorrow.
    let money = gw.state.gateway.money();
    let tomorrow = money.now().as_millisecond() + 86_400_000;
    money.set_clock(jiff::Timestamp::from_millisecond(tomorrow).expect("time"));
    assert_eq!(call().await.status(), 200, "a new day, a new quota");
    assert_eq!(call().await.status(), 429);
    gw.stop().await;
}
