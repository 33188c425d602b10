//! Anthropic's Messages API behind OpenAI's shapes, both ways, streaming included.

use super::*;
use serde_json::json;

#[tokio::test]
async fn chat_is_translated_both_ways() {
    let (gw, mock) = start().await;
    let body = json!({"model": "a-ok", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello claude"}
    ], "stop": "END", "temperature": 0.5, "user": "u-9"});
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-llmrr-provider"], "anthropic");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hello claude");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // 2 words of messages + 2 of system in, 3 out.
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7})
    );

    let sent = mock.last_request();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.headers["x-api-key"], "sk-upstream-secret");
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert!(!sent.headers.contains_key("authorization"));
    assert_eq!(sent.body["model"], "mock-ok");
    assert_eq!(
        sent.body["system"],
        json!([{"type": "text", "text": "Be brief."}])
    );
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hello claude"}]}])
    );
    assert_eq!(sent.body["max_tokens"], 4096);
    assert_eq!(sent.body["stop_sequences"], json!(["END"]));
    assert_eq!(sent.body["metadata"]["user_id"], "u-9");
    gw.stop().await;
}

#[tokio::test]
async fn every_stream_event_becomes_an_openai_chunk() {
    let (gw, mock) = start().await;
    let mut body = chat_body("a-ok", "stream to me");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let data = sse_data(post(&gw, "/v1/chat/completions", Some(MASTER), body).await).await;
    assert_eq!(mock.last_request().body["stream"], true);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("json"))
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == "msg_mock"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(streamed_text(&data), "echo: stream to me");
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("stop")]);
    let last = chunks.last().expect("chunks");
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 3);
    assert_eq!(last["usage"]["completion_tokens"], 4);
    gw.stop().await;
}

#[tokio::test]
async fn tool_use_both_ways() {
    let (gw, mock) = start().await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let mut body = json!({"model": "a-tool", "tools": tools, "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "messages": [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_0", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_0", "content": "21C"},
        {"role": "user", "content": "and Paris?"}
    ]});
    let v: Value = post(&gw, "/v1/chat/completions", Some(MASTER), body.clone())
        .await
        .json()
        .await
        .expect("json");
    let sent = mock.last_request().body;
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(sent["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "tool", "name": "get_weather"})
    );
    assert_eq!(
        sent["messages"][1]["content"][0],
        json!({"type": "tool_use", "id": "toolu_0", "name": "get_weather", "input": {"city": "Rome"}})
    );
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(sent["messages"][2]["content"][0]["tool_use_id"], "toolu_0");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_mock");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

    body["stream"] = json!(true);
    let data = sse_data(post(&gw, "/v1/chat/completions", Some(MASTER), body).await).await;
    let chunks: Vec<Value> = data
        .iter()
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let start = chunks
        .iter()
        .find(|c| c["choices"][0]["delta"]["tool_calls"][0]["id"] == "toolu_mock")
        .expect("a tool call start");
    assert_eq!(
        start["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    let args: String = chunks
        .iter()
        .filter_map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).expect("JSON arguments"),
        json!({"city": "Paris"})
    );
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
    gw.stop().await;
}

#[tokio::test]
async fn anthropic_errors_keep_their_status_and_type() {
    let (gw, _mock) = start().await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("a-429", "hi"),
    )
    .await;
    assert_eq!(resp.headers()["retry-after"], "7");
    let v = error_body(resp, 429).await;
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(v["error"]["message"]
        .as_str()
        .expect("message")
        .contains("rate limit"));

    let v = error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            chat_body("a-529", "hi"),
        )
        .await,
        503,
    )
    .await;
    assert_eq!(v["error"]["type"], "overloaded_error");

    let v = error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            chat_body("a-400", "hi"),
        )
        .await,
        400,
    )
    .await;
    assert!(v["error"]["message"]
        .as_str()
        .expect("message")
        .contains("prompt is too long"));

    // Not translatable: said so, not silently dropped.
    let mut body = chat_body("a-ok", "hi");
    body["logit_bias"] = json!({"42": 5});
    let v = error_body(
        post(&gw, "/v1/chat/completions", Some(MASTER), body).await,
        400,
    )
    .await;
    assert_eq!(v["error"]["code"], "unsupported_parameter");
    let v = error_body(
        post(
            &gw,
            "/v1/embeddings",
            Some(MASTER),
            json!({"model": "a-ok", "input": "x"}),
        )
        .await,
        400,
    )
    .await;
    assert!(v["error"]["message"]
        .as_str()
        .expect("message")
        .contains("embeddings"));

    // A stream that fails after it started ends with an error event, never [DONE].
    let mut body = chat_body("a-streamerror", "hi there");
    body["stream"] = json!(true);
    let data = sse_data(post(&gw, "/v1/chat/completions", Some(MASTER), body).await).await;
    assert!(!data.iter().any(|d| d == "[DONE]"));
    let last: Value = serde_json::from_str(data.last().expect("events")).expect("json");
    assert_eq!(last["error"]["type"], "overloaded_error");

    let mut body = chat_body("a-cut", "hi there");
    body["stream"] = json!(true);
    let data = sse_data(post(&gw, "/v1/chat/completions", Some(MASTER), body).await).await;
    let last: Value = serde_json::from_str(data.last().expect("events")).expect("json");
    assert_eq!(last["error"]["code"], "upstream_protocol_error");
    assert!(last["error"]["message"]
        .as_str()
        .expect("message")
        .contains("message_stop"));
    gw.stop().await;
}
