//! Issue 15: slow, idle and greedy clients cannot hold the server; upstream answers and
//! requests are bounded; a stalled model fails over in time; a client that leaves cancels its
//! call; shutdown is bounded and ends open streams with an error event.

use super::*;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(gw: &TestGateway) -> TcpStream {
    TcpStream::connect(gw.url.trim_start_matches("http://"))
        .await
        .expect("connects")
}

/// Read until the server closes the connection; what it sent, and when it closed.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "still open after {limit:?}");
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

const TIMEOUTS: &str = "[server]\nheader_read_timeout_secs = 0.5\nbody_read_timeout_secs = 0.5\n";

#[tokio::test]
async fn issue15_slow_idle_and_silent_clients_are_cut() {
    let (gw, _mock) = start_with(TIMEOUTS, ENV).await;
    // A connection that never sends anything.
    let mut silent = connect(&gw).await;
    let (_, took) = read_to_close(&mut silent, Duration::from_secs(3)).await;
    assert!(took < Duration::from_secs(2), "{took:?}");

    // Headers that trickle in.
    let mut slow = connect(&gw).await;
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("write");
    let (_, took) = read_to_close(&mut slow, Duration::from_secs(3)).await;
    assert!(took < Duration::from_secs(2), "{took:?}");

    // An idle keep-alive connection after one request.
    let mut idle = connect(&gw).await;
    idle.write_all(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let (answer, took) = read_to_close(&mut idle, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // A body that never completes: 408 in the error envelope.
    let mut body = connect(&gw).await;
    body.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \
             {MASTER}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"model\""
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let (answer, _) = read_to_close(&mut body, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");

    // A declared 10 GB body is refused before it is read.
    let mut huge = connect(&gw).await;
    huge.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \
             {MASTER}\r\nContent-Type: application/json\r\nContent-Length: 10737418240\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let (answer, took) = read_to_close(&mut huge, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    gw.stop().await;
}

#[tokio::test]
async fn issue15_connections_past_the_cap_are_closed_at_once() {
    let (gw, _mock) = start_with("[server]\nmax_connections = 3\n", ENV).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&gw).await);
    }
    // Let the server accept them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = connect(&gw).await;
    let (answer, took) = read_to_close(&mut over, Duration::from_secs(2)).await;
    assert!(answer.is_empty() && took < Duration::from_secs(1));
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = client()
        .get(format!("{}/health/live", gw.url))
        .send()
        .await
        .expect("a freed slot serves again");
    assert_eq!(resp.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn issue15_oversized_upstream_answers_are_a_clear_502() {
    let (gw, _mock) = start().await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("o-huge", "hi"),
    )
    .await;
    let v = error_body(resp, 502).await;
    assert_eq!(v["error"]["code"], "upstream_protocol_error", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("larger than 64 MiB")));

    let mut body = chat_body("o-longline", "hi");
    body["stream"] = json!(true);
    let started = Instant::now();
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    let v = error_body(resp, 502).await;
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("longer than 8 MiB")),
        "{v}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    gw.stop().await;
}

#[tokio::test]
async fn issue15_oversized_requests_are_refused() {
    let (gw, _mock) = start().await;
    let messages: Vec<Value> = (0..5000)
        .map(|_| json!({"role": "user", "content": "x"}))
        .collect();
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        json!({"model": "o-ok", "messages": messages}),
    )
    .await;
    let v = error_body(resp, 400).await;
    assert_eq!(v["error"]["param"], "messages");
    let big = "x".repeat(17 * 1024 * 1024);
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("o-ok", &big),
    )
    .await;
    error_body(resp, 413).await;
    gw.stop().await;
}

/// Models with the default timeout (the request's), in front of the mock's fast model.
fn stalled_route(stream_mode: &str) -> String {
    format!(
        "[server]\nrequest_timeout_secs = 3\n\n\
         [[models]]\nname = \"stalled\"\nprovider = \"openai\"\nbase_url = \"{{mock}}\"\n\
         api_key = \"env:UPSTREAM_KEY\"\nupstream_model = \"mock-{stream_mode}\"\n\
         input_cost_per_mtok = 1\noutput_cost_per_mtok = 1\nquality = 0.99\n\n\
         [[routes]]\nname = \"auto\"\nstrategy = \"quality-first\"\nmodels = [\"stalled\", \"o-ok\"]\n"
    )
}

#[tokio::test]
async fn issue15_a_stalled_primary_fails_over_within_its_share_of_the_time() {
    let (gw, mock) = start_routed(&stalled_route("slow-60000")).await;
    let started = Instant::now();
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("auto", "hi"),
    )
    .await;
    assert_eq!(resp.status(), 200, "the fallback answered");
    assert_eq!(resp.headers()["x-llmrr-model"], "o-ok");
    assert_eq!(
        resp.headers()["x-llmrr-attempts"],
        "2",
        "the timed-out model is not retried"
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(mock.requests().len(), 2);
    gw.stop().await;

    // A stream that never sends its first token fails over the same way.
    let (gw, _mock) = start_routed(&stalled_route("stall")).await;
    let mut body = chat_body("auto", "hi there");
    body["stream"] = json!(true);
    let started = Instant::now();
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    assert_eq!(resp.headers()["x-llmrr-model"], "o-ok");
    let data = sse_data(resp).await;
    assert_eq!(streamed_text(&data), "echo: hi there");
    assert!(started.elapsed() < Duration::from_secs(3));
    gw.stop().await;
}

async fn only_row(gw: &TestGateway) -> llmrr_core::store::LogRow {
    let rows = rows_once(gw, 1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.into_iter().next().expect("a row")
}

#[tokio::test]
async fn issue15_a_client_that_hangs_up_cancels_the_upstream_call_and_is_logged_499() {
    let (gw, _mock) = start_routed(&stalled_route("slow-60000")).await;
    let hasty = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let sent = hasty
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(MASTER)
        .json(&chat_body("stalled", "hi"))
        .send()
        .await;
    assert!(sent.is_err(), "the client gave up");
    let row = only_row(&gw).await;
    assert_eq!(
        (row.status, row.error_type.as_deref()),
        (499, Some("client_disconnected"))
    );
    assert!(
        row.latency_us < 1_500_000,
        "cancelled at once: {}",
        row.latency_us
    );
    gw.stop().await;

    // The same before the first token of a stream.
    let (gw, _mock) = start_routed(&stalled_route("stall")).await;
    let mut body = chat_body("stalled", "hi");
    body["stream"] = json!(true);
    let sent = hasty
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(MASTER)
        .json(&body)
        .send()
        .await;
    assert!(sent.is_err(), "the client gave up");
    let row = only_row(&gw).await;
    assert_eq!(
        (row.status, row.error_type.as_deref(), row.stream),
        (499, Some("client_disconnected"), true)
    );
    assert!(
        row.latency_us < 1_500_000,
        "cancelled at once: {}",
        row.latency_us
    );
    gw.stop().await;
}

#[tokio::test]
async fn issue15_shutdown_is_bounded_and_ends_open_streams_with_an_error_event() {
    let extra = "[server]\nshutdown_grace_secs = 1\n\n\
         [[models]]\nname = \"dripping\"\nprovider = \"openai\"\nbase_url = \"{mock}\"\n\
         api_key = \"env:UPSTREAM_KEY\"\nupstream_model = \"mock-drip-300\"\n\
         input_cost_per_mtok = 1\noutput_cost_per_mtok = 1\ntimeout_secs = 60\n\n\
         [[models]]\nname = \"waiting\"\nprovider = \"openai\"\nbase_url = \"{mock}\"\n\
         api_key = \"env:UPSTREAM_KEY\"\nupstream_model = \"mock-slow-60000\"\n\
         input_cost_per_mtok = 1\noutput_cost_per_mtok = 1\ntimeout_secs = 60\n";
    let (gw, _mock) = start_routed(extra).await;
    let words = "one two three four five six seven eight nine ten eleven twelve";
    let mut body = chat_body("dripping", words);
    body["stream"] = json!(true);
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    assert_eq!(resp.status(), 200);
    let waiting = {
        let url = format!("{}/v1/chat/completions", gw.url);
        tokio::spawn(async move {
            client()
                .post(url)
                .bearer_auth(MASTER)
                .json(&chat_body("waiting", "hi"))
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let store = gw.state.gateway.store().clone();
    let started = Instant::now();
    let stopping = tokio::spawn(gw.stop_keeping_store());
    let data = sse_data(resp).await;
    let last = data.last().expect("events");
    assert!(
        last.contains("shutting down"),
        "an error event ends the stream: {data:?}"
    );
    assert!(!data.iter().any(|d| d == "[DONE]"));
    let waited = waiting.await.expect("task").expect("an answer");
    error_body(waited, 503).await;
    let _dir = stopping.await.expect("stopped");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let rows = store.recent_requests(10).await.expect("rows");
    assert_eq!(rows.len(), 2, "both rows written: {rows:?}");
    assert!(rows.iter().all(|r| r.status == 503), "{rows:?}");
    store.close().await;
}
