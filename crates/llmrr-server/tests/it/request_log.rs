//! The request log: one row per call, attributed, exact cost; written even when the client
//! hangs up mid-stream.

use super::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_row_per_call_with_exact_cost_and_owner() {
    let (gw, _mock) = start().await;
    let created = create_key(
        &gw,
        llmrr_core::auth::NewKey {
            name: "team-key".into(),
            user: Some("ana".into()),
            team: Some("search".into()),
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
    let request_id = resp.headers()["x-llmrr-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    // 3 prompt tokens at $0.15/M + 4 completion tokens at $0.60/M.
    assert_eq!(resp.headers()["x-llmrr-cost-usd"], "0.00000285");
    error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(&created.key),
            chat_body("o-500", "x"),
        )
        .await,
        500,
    )
    .await;
    gw.flush_log().await;

    let rows = gw
        .state
        .gateway
        .store()
        .recent_requests(10)
        .await
        .expect("rows");
    assert_eq!(rows.len(), 2);
    let ok = rows
        .iter()
        .find(|r| r.id == request_id)
        .expect("the row of the first call");
    assert_eq!(ok.key_id.as_deref(), Some(created.row.id.as_str()));
    assert_eq!(
        (ok.user_id.as_deref(), ok.team_id.as_deref()),
        (Some("ana"), Some("search"))
    );
    assert_eq!(
        (
            ok.requested_model.as_str(),
            ok.model.as_deref(),
            ok.provider.as_deref()
        ),
        ("o-ok", Some("o-ok"), Some("openai"))
    );
    assert_eq!(
        (ok.status, ok.prompt_tokens, ok.completion_tokens),
        (200, 3, 4)
    );
    assert_eq!(ok.cost_usd, "0.00000285");
    assert!(!ok.stream && !ok.usage_estimated && ok.latency_us > 0 && ok.upstream_us.is_some());
    let failed = rows
        .iter()
        .find(|r| r.id != request_id)
        .expect("the failed call");
    assert_eq!(
        (
            failed.status,
            failed.error_type.as_deref(),
            failed.cost_usd.as_str()
        ),
        (500, Some("upstream_server_error"), "0")
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_stream_whose_client_hangs_up_is_still_logged() {
    let (gw, mock) = start().await;
    let mut body = chat_body("o-drip-100", "a long answer with many words in it");
    body["stream"] = json!(true);
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    use futures_util::StreamExt;
    let first = stream.next().await.expect("a first chunk").expect("bytes");
    assert!(first.starts_with(b"data: "));
    drop(stream); // hang up mid-stream

    // Shutdown waits for the call's tracked task, which sees the client gone, then flushes.
    tokio::time::timeout(
        Duration::from_secs(10),
        gw.state.gateway.shutdown(Duration::from_secs(10)),
    )
    .await
    .expect("the stream task notices the hang-up");
    let rows = gw
        .state
        .gateway
        .store()
        .recent_requests(10)
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert!(r.stream);
    assert_eq!(
        (r.status, r.error_type.as_deref()),
        (499, Some("client_disconnected"))
    );
    assert!(r.usage_estimated, "the upstream never sent usage");
    assert!(r.prompt_tokens > 0);
    assert_eq!(mock.requests().len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_finished_stream_logs_the_upstream_usage() {
    let (gw, _mock) = start().await;
    let mut body = chat_body("a-ok", "count these words");
    body["stream"] = json!(true);
    let data = sse_data(post(&gw, "/v1/chat/completions", Some(MASTER), body).await).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    gw.flush_log().await;
    let rows = gw
        .state
        .gateway
        .store()
        .recent_requests(1)
        .await
        .expect("rows");
    let r = &rows[0];
    assert_eq!(
        (
            r.status,
            r.prompt_tokens,
            r.completion_tokens,
            r.usage_estimated
        ),
        (200, 3, 4, false)
    );
    // 3 * $3/M + 4 * $15/M
    assert_eq!(r.cost_usd, "0.000069");
    assert!(r.ttft_us.is_some_and(|t| t > 0 && t <= r.latency_us));
    gw.stop().await;
}
