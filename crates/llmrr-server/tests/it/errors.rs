//! Every error path: status and OpenAI envelope.

use super::*;
use serde_json::json;

async fn raw_post(gw: &TestGateway, path: &str, body: &'static str) -> reqwest::Response {
    client()
        .post(format!("{}{path}", gw.url))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("answers")
}

#[tokio::test]
async fn client_errors() {
    let (gw, mock) = start_with("[server]\nmax_body_bytes = 2048\n", ENV).await;
    let v = error_body(
        raw_post(
            &gw,
            "/v1/chat/completions",
            r#"{"model": "o-ok", "messages": [}"#,
        )
        .await,
        400,
    )
    .await;
    let m = v["error"]["message"].as_str().expect("message");
    assert!(
        m.contains("not valid JSON") && m.contains("line 1 column"),
        "{m}"
    );
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let v = error_body(
        raw_post(&gw, "/v1/chat/completions", r#"{"model": "o-ok"}"#).await,
        400,
    )
    .await;
    assert_eq!(v["error"]["param"], "messages");
    let v = error_body(raw_post(&gw, "/v1/chat/completions", r#"{"model": "o-ok", "messages": [{"role": "user", "content": "x"}], "temperature": 9}"#).await, 400).await;
    assert_eq!(v["error"]["param"], "temperature");

    let v = error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            chat_body("gpt-nope", "hi"),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(v["error"]["code"], "model_not_found");
    assert_eq!(v["error"]["param"], "model");

    let big = chat_body("o-ok", &"x".repeat(4096));
    let v = error_body(
        post(&gw, "/v1/chat/completions", Some(MASTER), big).await,
        413,
    )
    .await;
    assert_eq!(v["error"]["code"], "payload_too_large");

    error_body(
        client()
            .get(format!("{}/v2/whatever", gw.url))
            .bearer_auth(MASTER)
            .send()
            .await
            .expect("answers"),
        404,
    )
    .await;
    error_body(
        client()
            .get(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(MASTER)
            .send()
            .await
            .expect("answers"),
        405,
    )
    .await;
    assert!(
        mock.requests().is_empty(),
        "no bad request reached the upstream"
    );
    gw.stop().await;
}

#[tokio::test]
async fn missing_or_bad_keys_are_401() {
    let (gw, _mock) = start().await;
    let v = error_body(
        post(&gw, "/v1/chat/completions", None, chat_body("o-ok", "hi")).await,
        401,
    )
    .await;
    assert_eq!(v["error"]["type"], "authentication_error");
    let v = error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some("sk-wrong"),
            chat_body("o-ok", "hi"),
        )
        .await,
        401,
    )
    .await;
    assert_eq!(v["error"]["code"], "invalid_api_key");
    // Anthropic SDKs send x-api-key.
    let resp = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .header("x-api-key", MASTER)
        .json(&chat_body("o-ok", "hi"))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn upstream_errors_keep_status_type_and_message() {
    let (gw, _mock) = start().await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("o-429", "hi"),
    )
    .await;
    assert_eq!(resp.headers()["retry-after"], "7");
    assert!(resp.headers()["x-llmrr-request-id"]
        .to_str()
        .is_ok_and(|s| s.starts_with("req_")));
    let v = error_body(resp, 429).await;
    assert_eq!(
        v["error"],
        json!({"message": "Rate limit reached for mock in requests per min",
        "type": "requests", "param": null, "code": "rate_limit_exceeded"})
    );

    let v = error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            chat_body("o-500", "hi"),
        )
        .await,
        500,
    )
    .await;
    assert_eq!(v["error"]["type"], "server_error");
    let v = error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            chat_body("o-400", "hi"),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert_eq!(v["error"]["param"], "messages");
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
    // Our upstream key was refused: the gateway's failure, not the client's key (issue 16).
    assert_eq!(v["error"]["code"], "upstream_auth_failed");
    let v = error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            chat_body("o-garbage", "hi"),
        )
        .await,
        502,
    )
    .await;
    assert_eq!(v["error"]["code"], "upstream_protocol_error");
    let v = error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            chat_body("o-slow-2000", "hi"),
        )
        .await,
        504,
    )
    .await;
    assert_eq!(v["error"]["code"], "upstream_timeout");
    gw.stop().await;
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let toml = format!(
        "[[models]]\nname = \"gone\"\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\n"
    );
    let gw = TestGateway::start(&toml, ENV, StoreChoice::Sqlite).await;
    let v = error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            chat_body("gone", "hi"),
        )
        .await,
        502,
    )
    .await;
    assert_eq!(v["error"]["code"], "upstream_unreachable");
    gw.stop().await;
}

#[tokio::test]
async fn streams_that_fail_end_with_an_error_event() {
    let (gw, _mock) = start().await;
    // Before the first byte: an ordinary HTTP error.
    let mut body = chat_body("o-429", "hi");
    body["stream"] = json!(true);
    error_body(
        post(&gw, "/v1/chat/completions", Some(MASTER), body).await,
        429,
    )
    .await;

    for (model, code, text) in [
        ("o-cut", "upstream_protocol_error", "[DONE]"),
        ("o-streamerror", "", "upstream exploded mid-stream"),
    ] {
        let mut body = chat_body(model, "one two three four");
        body["stream"] = json!(true);
        let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
        assert_eq!(resp.status(), 200, "{model}: the stream had started");
        let data = sse_data(resp).await;
        assert!(
            !data.iter().any(|d| d == "[DONE]"),
            "{model}: never a clean end"
        );
        let last: Value = serde_json::from_str(data.last().expect("events")).expect("json");
        let message = last["error"]["message"].as_str().expect("an error event");
        assert!(message.contains(text), "{model}: {message}");
        if !code.is_empty() {
            assert_eq!(last["error"]["code"], code, "{model}");
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn connect_timeout_when_the_upstream_never_accepts() {
    // A listener with a backlog of one that never accepts: once its queue is full, the kernel
    // drops further SYNs, so a new connection hangs until the connect timeout.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    let _listener = socket.listen(1).expect("listen");
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let toml = format!(
        "[[models]]\nname = \"hung\"\nprovider = \"openai\"\nbase_url = \"http://{addr}/v1\"\n\
         connect_timeout_secs = 0.3\ntimeout_secs = 30\n"
    );
    let gw = TestGateway::start(&toml, ENV, StoreChoice::Sqlite).await;
    let started = std::time::Instant::now();
    let v = error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            chat_body("hung", "hi"),
        )
        .await,
        504,
    )
    .await;
    assert_eq!(v["error"]["code"], "upstream_timeout");
    // Two attempts (one retry) of ~0.3 s each, far below the 30 s total timeout.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    gw.stop().await;
}
