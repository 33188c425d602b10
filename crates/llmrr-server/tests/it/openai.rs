//! OpenAI wire conformance through the gateway, to an OpenAI-compatible upstream.

use super::*;
use serde_json::json;

#[tokio::test]
async fn chat_passes_every_parameter_through_and_answers_with_headers() {
    let (gw, mock) = start().await;
    let body = json!({
        "model": "o-ok",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]}
        ],
        "temperature": 0.3, "top_p": 0.9, "max_tokens": 20, "max_completion_tokens": 20,
        "stop": ["\n\n"], "n": 1, "seed": 7, "presence_penalty": 0.1, "frequency_penalty": 0.2,
        "logit_bias": {"50256": -100.0}, "user": "end-user-1",
        "response_format": {"type": "json_object"},
        "logprobs": true, "top_logprobs": 2, "custom_server_param": {"x": 1},
        "llmrr": {"explain": true}
    });
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body.clone()).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["x-llmrr-model"], "o-ok");
    assert_eq!(h["x-llmrr-provider"], "openai");
    assert!(h["x-llmrr-request-id"]
        .to_str()
        .expect("ascii")
        .starts_with("req_"));
    let overhead: f64 = h["x-llmrr-overhead-ms"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a number");
    assert!(overhead >= 0.0);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hello there");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 3);

    let sent = mock.last_request();
    assert_eq!(sent.headers["authorization"], "Bearer sk-upstream-secret");
    let mut want = body.as_object().expect("object").clone();
    want.remove("llmrr");
    want.insert("model".into(), json!("mock-ok"));
    assert_eq!(
        sent.body,
        Value::Object(want),
        "forwarded unchanged but for the model"
    );
    gw.stop().await;
}

#[tokio::test]
async fn stream_with_and_without_usage() {
    let (gw, mock) = start().await;
    let mut body = chat_body("o-ok", "one two three");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-llmrr-model"], "o-ok");
    let data = sse_data(resp).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&data), "echo: one two three");
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).expect("usage chunk");
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 3);
    assert_eq!(usage["usage"]["completion_tokens"], 4);

    body.as_object_mut()
        .expect("object")
        .remove("stream_options");
    let data = sse_data(post(&gw, "/v1/chat/completions", Some(MASTER), body).await).await;
    assert_eq!(streamed_text(&data), "echo: one two three");
    assert!(
        data.iter().all(|d| !d.contains("\"usage\"")),
        "no usage chunk unless asked: {data:?}"
    );
    // The gateway still asked the upstream for usage, to account for the cost.
    assert_eq!(
        mock.last_request().body["stream_options"]["include_usage"],
        true
    );
    gw.stop().await;
}

#[tokio::test]
async fn tool_calls_streamed_and_not() {
    let (gw, _mock) = start().await;
    let mut body = chat_body("o-tool", "weather in Paris?");
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    body["tool_choice"] = json!("auto");
    let v: Value = post(&gw, "/v1/chat/completions", Some(MASTER), body.clone())
        .await
        .json()
        .await
        .expect("json");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

    body["stream"] = json!(true);
    let data = sse_data(post(&gw, "/v1/chat/completions", Some(MASTER), body).await).await;
    let args: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(args, "{\"city\":\"Paris\"}");

    // A tool result sent back is forwarded as the client wrote it.
    let follow_up = json!({"model": "o-ok", "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"}
    ]});
    assert_eq!(
        post(&gw, "/v1/chat/completions", Some(MASTER), follow_up)
            .await
            .status(),
        200
    );
    gw.stop().await;
}

#[tokio::test]
async fn completions_embeddings_and_models() {
    let (gw, _mock) = start().await;
    let v: Value = post(
        &gw,
        "/v1/completions",
        Some(MASTER),
        json!({"model": "o-ok", "prompt": "say hi"}),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(v["choices"][0]["text"], "echo: say hi");
    let data = sse_data(
        post(
            &gw,
            "/v1/completions",
            Some(MASTER),
            json!({"model": "o-ok", "prompt": "a b", "stream": true}),
        )
        .await,
    )
    .await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert!(data.len() >= 3);

    let v: Value = post(
        &gw,
        "/v1/embeddings",
        Some(MASTER),
        json!({"model": "o-ok", "input": ["a", "b c"]}),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["usage"]["prompt_tokens"], 3);

    let list: Value = get_json(&gw, "/v1/models").await;
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&"o-ok") && ids.contains(&"a-ok"));
    let one: Value = client()
        .get(format!("{}/v1/models/a-ok", gw.url))
        .bearer_auth(MASTER)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(one["owned_by"], "anthropic");
    let missing = client()
        .get(format!("{}/v1/models/nope", gw.url))
        .bearer_auth(MASTER)
        .send()
        .await
        .expect("answers");
    assert_eq!(
        error_body(missing, 404).await["error"]["code"],
        "model_not_found"
    );
    gw.stop().await;
}

#[tokio::test]
async fn health_is_public_metrics_are_not() {
    let (gw, _mock) = start().await;
    for path in ["/health/live", "/health/ready"] {
        assert_eq!(
            client()
                .get(format!("{}{path}", gw.url))
                .send()
                .await
                .expect("answers")
                .status(),
            200
        );
    }
    let resp = client()
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .expect("answers");
    error_body(resp, 401).await;
    post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("o-ok", "count me"),
    )
    .await;
    let text = metrics_text(&gw).await;
    for name in [
        "llmrr_requests_total",
        "llmrr_request_duration_seconds_bucket",
        "llmrr_gateway_overhead_seconds_bucket",
        "llmrr_upstream_duration_seconds_bucket",
        "llmrr_input_tokens_total",
        "llmrr_output_tokens_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert!(text.contains("model=\"o-ok\""));
    gw.stop().await;
}
