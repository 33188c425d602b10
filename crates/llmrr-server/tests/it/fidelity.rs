//! Issue 16: routing errors that explain themselves, fallbacks that always fall back, upstream
//! failures told as the gateway's, request ids carried through, CORS.

use super::*;
use serde_json::json;

/// Extra models on the mock, with the settings a test needs.
fn model(name: &str, mode: &str, extra: &str) -> String {
    format!(
        "[[models]]\nname = \"{name}\"\nprovider = \"openai\"\nbase_url = \"{{mock}}\"\n\
         api_key = \"env:UPSTREAM_KEY\"\nupstream_model = \"mock-{mode}\"\n\
         input_cost_per_mtok = 1\noutput_cost_per_mtok = 1\ntimeout_secs = 1.5\n{extra}\n\n"
    )
}

const FAST_RETRIES: &str = "[routing]\nretry_max_attempts = 1\nbreaker_consecutive_failures = 2\n\
                            breaker_cooldown_secs = 600\n\n";

#[tokio::test]
async fn issue16_no_candidate_lists_its_reasons_and_says_what_clients_key_on() {
    let extra = format!(
        "{}{}[[routes]]\nname = \"small\"\nstrategy = \"balanced\"\nmodels = [\"tiny\", \"tiny2\"]\n",
        model("tiny", "ok", "context_window = 20\ncapabilities = [\"vision\"]"),
        model("tiny2", "ok", "context_window = 30\ncapabilities = [\"vision\"]"),
    );
    let (gw, mock) = start_routed(&extra).await;
    let long = "word ".repeat(400);
    let v = error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            chat_body("small", &long),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
    let message = v["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("tiny: context window 20") && message.contains("tiny2: context window 30"),
        "every reason, without `explain`: {message}"
    );
    let mut body = chat_body("small", "hi");
    body["tools"] = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
    let v = error_body(
        post(&gw, "/v1/chat/completions", Some(MASTER), body).await,
        400,
    )
    .await;
    assert_eq!(
        (&v["error"]["code"], &v["error"]["param"]),
        (&json!("unsupported_parameter"), &json!("tools")),
        "{v}"
    );
    assert!(mock.requests().is_empty(), "nothing was sent upstream");
    gw.stop().await;
}

#[tokio::test]
async fn issue16_a_dead_primary_falls_through_to_the_fallbacks() {
    let extra = format!(
        "{FAST_RETRIES}[[routes]]\nname = \"auto\"\nstrategy = \"balanced\"\nmodels = [\"o-500\"]\n\
         fallbacks = [\"o-ok\"]\n"
    );
    let (gw, _mock) = start_routed(&extra).await;
    for i in 0..12 {
        let resp = post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            chat_body("auto", "hi"),
        )
        .await;
        assert_eq!(resp.status(), 200, "request {i}: the fallback answers");
        assert_eq!(resp.headers()["x-llmrr-model"], "o-ok");
        let route = resp.headers()["x-llmrr-route"].to_str().expect("ascii");
        assert!(
            route.contains("model=o-ok") && route.contains("fallback"),
            "the header names the model that answered: {route}"
        );
    }
    // A model inside its Retry-After window falls through to per-request fallbacks too.
    let mut body = chat_body("o-429", "hi");
    body["llmrr"] = json!({"fallbacks": ["o-ok"]});
    for _ in 0..3 {
        let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body.clone()).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-llmrr-model"], "o-ok");
    }
    gw.stop().await;
}

#[tokio::test]
async fn issue16_every_attempt_a_client_error_is_a_4xx_and_breakers_cap_retry_after() {
    let extra = format!(
        "{FAST_RETRIES}{}{}[[routes]]\nname = \"bad\"\nstrategy = \"balanced\"\n\
         models = [\"bad1\", \"bad2\"]\n\n[[routes]]\nname = \"dead\"\nstrategy = \"balanced\"\n\
         models = [\"o-500\"]\n",
        model("bad1", "badreq", ""),
        model("bad2", "badreq", ""),
    );
    let (gw, _mock) = start_routed(&extra).await;
    let v = error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            chat_body("bad", "hi"),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(v["error"]["code"], "all_candidates_failed", "{v}");
    // Open the breaker (2 failures), then: 503 with a short Retry-After, not the cooldown.
    for _ in 0..2 {
        post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            chat_body("dead", "hi"),
        )
        .await;
    }
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("dead", "hi"),
    )
    .await;
    let after: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=5).contains(&after), "{after}");
    let v = error_body(resp, 503).await;
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("o-500: circuit open")));
    gw.stop().await;
}

#[tokio::test]
async fn issue16_upstream_auth_failures_and_unreachable_upstreams_are_told_as_the_gateways() {
    let extra = "[[models]]\nname = \"nowhere\"\nprovider = \"openai\"\n\
                 base_url = \"http://127.0.0.1:1/v1\"\ninput_cost_per_mtok = 1\n\
                 output_cost_per_mtok = 1\n";
    let (gw, _mock) = start_routed(extra).await;
    let v = error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            chat_body("o-401", "hi"),
        )
        .await,
        502,
    )
    .await;
    assert_eq!(v["error"]["code"], "upstream_auth_failed", "{v}");
    assert_eq!(v["error"]["type"], "upstream_error");
    let message = v["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("openai provider refused the gateway's credentials"),
        "{message}"
    );

    let v = error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            chat_body("nowhere", "hi"),
        )
        .await,
        502,
    )
    .await;
    let text = v.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("http://"),
        "{text}"
    );
    assert!(text.contains("connection refused"), "{text}");
    gw.stop().await;
}

#[tokio::test]
async fn issue16_request_ids_go_upstream_and_come_back() {
    let (gw, mock) = start().await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("o-ok", "hi"),
    )
    .await;
    let ours = resp.headers()["x-llmrr-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(
        mock.last_request().headers["x-request-id"],
        ours,
        "sent upstream"
    );
    assert_eq!(
        resp.headers()["x-llmrr-upstream-request-id"],
        "req_mock_upstream"
    );
    assert_eq!(
        resp.headers()["x-request-id"],
        "req_mock_upstream",
        "what SDKs read"
    );
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "99");
    // A client's own id is continued.
    let resp = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(MASTER)
        .header("x-request-id", "client-trace-42")
        .json(&chat_body("o-ok", "hi"))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.headers()["x-request-id"], "client-trace-42");
    // Errors carry one too, never empty.
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("nope", "hi"),
    )
    .await;
    assert!(resp.headers()["x-request-id"]
        .to_str()
        .is_ok_and(|v| v.starts_with("req_")));
    gw.stop().await;
}

#[tokio::test]
async fn issue16_cors_preflights_are_answered_without_a_key_for_allowed_origins() {
    let (gw, _mock) = start_with(
        "[server.cors]\nallowed_origins = [\"https://app.example\"]\n",
        ENV,
    )
    .await;
    let preflight = |origin: &'static str| {
        client()
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/v1/chat/completions", gw.url),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let ok = preflight("https://app.example").await.expect("answers");
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let other = preflight("https://evil.example").await.expect("answers");
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    let resp = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(MASTER)
        .header("origin", "https://app.example")
        .json(&chat_body("o-ok", "hi"))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ascii");
    assert!(exposed.contains("x-llmrr-cost-usd"), "{exposed}");
    gw.stop().await;
}

#[tokio::test]
async fn issue16_anthropic_models_answer_structured_output_and_reasoning() {
    let extra = "[[routes]]\nname = \"mixed\"\nstrategy = \"quality-first\"\nmodels = [\"a-ok\", \"o-ok\"]\n";
    let (gw, mock) = start_routed(extra).await;
    let schema = json!({"type": "object", "properties": {"echo": {"type": "string"}}});
    let mut body = chat_body("a-ok", "hi");
    body["response_format"] =
        json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}});
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    let message = &v["choices"][0]["message"];
    let parsed: Value =
        serde_json::from_str(message["content"].as_str().expect("content")).expect("JSON content");
    assert_eq!(parsed, json!({"echo": "echo: hi"}));
    assert!(message.get("tool_calls").is_none(), "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let sent = mock.last_request().body;
    assert_eq!(sent["tools"][0]["input_schema"], schema);
    assert_eq!(sent["tool_choice"]["name"], sent["tools"][0]["name"]);

    // Streamed, json_object: the content streams in and parses.
    let mut body = chat_body("a-ok", "streamed");
    body["response_format"] = json!({"type": "json_object"});
    body["stream"] = json!(true);
    let data = sse_data(post(&gw, "/v1/chat/completions", Some(MASTER), body).await).await;
    let text = streamed_text(&data);
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("JSON"),
        json!({"echo": "echo: streamed"})
    );

    // reasoning_effort: extended thinking, returned as reasoning_content.
    let mut body = chat_body("a-ok", "think");
    body["reasoning_effort"] = json!("low");
    let v: Value = post(&gw, "/v1/chat/completions", Some(MASTER), body)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"], "thinking it over",
        "{v}"
    );
    assert_eq!(mock.last_request().body["thinking"]["budget_tokens"], 1024);

    // Refused, not dropped or clamped.
    let mut body = chat_body("a-ok", "hi");
    body["temperature"] = json!(1.5);
    let v = error_body(
        post(&gw, "/v1/chat/completions", Some(MASTER), body).await,
        400,
    )
    .await;
    assert_eq!(v["error"]["param"], "temperature", "{v}");
    // A system-only conversation is answered.
    let body = json!({"model": "a-ok", "messages": [{"role": "system", "content": "say hi"}]});
    assert_eq!(
        post(&gw, "/v1/chat/completions", Some(MASTER), body)
            .await
            .status(),
        200
    );

    // A route skips the Anthropic model for what it cannot honour: no attempt is wasted.
    let before = mock.requests().len();
    let mut body = chat_body("mixed", "hi");
    body["seed"] = json!(7);
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-llmrr-model"], "o-ok");
    assert!(!resp.headers().contains_key("x-llmrr-attempts"));
    assert_eq!(mock.requests().len(), before + 1);
    gw.stop().await;
}
