//! Issue 11: Anthropic's Messages API in front of every model (OpenAI-compatible and
//! Anthropic here; local models in `local.rs`), streamed and not, tools, errors, fallbacks,
//! cost and the request log.

use super::*;
use serde_json::json;

/// `POST /v1/messages` as an Anthropic client sends it.
pub(crate) async fn messages(gw: &TestGateway, key: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .expect("the gateway answers")
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "max_tokens": 64,
           "messages": [{"role": "user", "content": text}]})
}

/// The events of an Anthropic stream: (event name, data), checking each `event:` names the
/// data's `type`.
async fn anthropic_events(resp: reqwest::Response) -> Vec<(String, Value)> {
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let bytes = resp.bytes().await.expect("a complete body");
    let mut parser = llmrr_core::provider::sse::SseParser::new();
    let mut events = Vec::new();
    parser.push(&bytes, &mut events);
    parser.finish(&mut events);
    events
        .into_iter()
        .map(|e| {
            let data: Value = serde_json::from_str(&e.data).expect("JSON data");
            let name = e.event.expect("every event is named");
            assert_eq!(data["type"], name.as_str(), "{data}");
            (name, data)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// An Anthropic error envelope with `status` and `kind`.
async fn anthropic_error(resp: reqwest::Response, status: u16, kind: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert!(resp.headers().contains_key("x-llmrr-request-id"));
    let v: Value = resp.json().await.expect("a JSON error body");
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], kind, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    v
}

#[tokio::test]
async fn issue11_a_message_to_each_provider_kind_plain_and_streamed() {
    let (gw, mock) = start().await;
    for (model, provider) in [("o-ok", "openai"), ("a-ok", "anthropic")] {
        let mut body = ask(model, "hello there");
        body["system"] = json!([{"type": "text", "text": "Be brief."}]);
        let resp = messages(&gw, MASTER, body.clone()).await;
        assert_eq!(resp.status(), 200, "{model}");
        assert_eq!(resp.headers()["x-llmrr-provider"], provider);
        assert!(resp.headers().contains_key("x-llmrr-cost-usd"));
        let m: Value = resp.json().await.expect("json");
        assert_eq!(m["type"], "message");
        assert_eq!(m["role"], "assistant");
        assert!(m["id"].as_str().unwrap().starts_with("msg_"), "{m}");
        assert_eq!(
            m["content"],
            json!([{"type": "text", "text": "echo: hello there"}])
        );
        assert_eq!(m["stop_reason"], "end_turn");
        assert_eq!(m["usage"]["output_tokens"], 3);
        assert!(m["usage"]["input_tokens"].as_u64().unwrap() > 0);
        // The system prompt reached the upstream in its own dialect.
        let sent = mock.last_request();
        match provider {
            "openai" => assert_eq!(sent.body["messages"][0]["role"], "system"),
            _ => assert_eq!(sent.body["system"][0]["text"], "Be brief."),
        }

        body["stream"] = json!(true);
        let ev = anthropic_events(messages(&gw, MASTER, body).await).await;
        let n = names(&ev);
        assert_eq!(
            &n[..3],
            ["message_start", "ping", "content_block_start"],
            "{n:?}"
        );
        assert_eq!(
            &n[n.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"]
        );
        let text: String = ev
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(text, "echo: hello there");
        let delta = &ev[ev.len() - 2].1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert_eq!(delta["usage"]["output_tokens"], 3);
        assert!(delta["usage"]["input_tokens"].as_u64().unwrap() > 0);
    }
    // Every call logged as a chat call, with its cost.
    gw.flush_log().await;
    let rows = rows(&gw).await;
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter()
            .all(|r| r.status == 200 && r.cost_usd != "0" && r.endpoint == "messages"),
        "{rows:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn issue11_tool_use_round_trips_through_each_provider_kind() {
    let (gw, mock) = start().await;
    let tools = json!([{"name": "get_weather", "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    for model in ["o-tool", "a-tool"] {
        let mut body = ask(model, "weather in Paris?");
        body["tools"] = tools.clone();
        let m: Value = messages(&gw, MASTER, body.clone())
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(m["stop_reason"], "tool_use", "{model}: {m}");
        let call = m["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "tool_use")
            .expect("a tool_use block")
            .clone();
        assert_eq!(call["name"], "get_weather");
        assert_eq!(call["input"], json!({"city": "Paris"}));

        body["stream"] = json!(true);
        let ev = anthropic_events(messages(&gw, MASTER, body).await).await;
        let start = ev
            .iter()
            .find(|(n, d)| n == "content_block_start" && d["content_block"]["type"] == "tool_use")
            .expect("a tool_use block starts");
        assert_eq!(start.1["content_block"]["name"], "get_weather");
        let index = &start.1["index"];
        let json_text: String = ev
            .iter()
            .filter(|(n, d)| n == "content_block_delta" && &d["index"] == index)
            .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&json_text).unwrap(),
            json!({"city": "Paris"})
        );
        assert_eq!(ev[ev.len() - 2].1["delta"]["stop_reason"], "tool_use");

        // The result goes back as Anthropic clients send it.
        let follow_up = json!({"model": model.replace("tool", "ok"), "max_tokens": 64, "tools": tools,
        "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": [call.clone()]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call["id"], "content": "18C and sunny"}]}
        ]});
        let resp = messages(&gw, MASTER, follow_up).await;
        assert_eq!(resp.status(), 200);
        let sent = mock.last_request().body;
        if model.starts_with("o-") {
            assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], call["id"]);
            assert_eq!(
                sent["messages"][1]["tool_calls"][0]["function"]["arguments"],
                "{\"city\":\"Paris\"}"
            );
            assert_eq!(sent["messages"][2]["role"], "tool");
            assert_eq!(sent["messages"][2]["content"], "18C and sunny");
        } else {
            assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
            assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
            assert_eq!(sent["messages"][2]["content"][0]["tool_use_id"], call["id"]);
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn issue11_thinking_and_anthropic_parameters_reach_an_anthropic_model() {
    let (gw, mock) = start().await;
    let mut body = ask("a-ok", "think first");
    body["max_tokens"] = json!(4096);
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    body["metadata"] = json!({"user_id": "user-7"});
    body["stop_sequences"] = json!(["STOP"]);
    let m: Value = messages(&gw, MASTER, body.clone())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(m["content"][0]["type"], "thinking", "{m}");
    assert_eq!(m["content"][0]["thinking"], "thinking it over");
    assert_eq!(m["content"][1]["text"], "echo: think first");
    let sent = mock.last_request().body;
    // The budget is within the client's max_tokens, as Anthropic counts it.
    assert_eq!(
        sent["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    assert_eq!(sent["max_tokens"], 4096);
    assert_eq!(sent["metadata"], json!({"user_id": "user-7"}));
    assert_eq!(sent["stop_sequences"], json!(["STOP"]));

    let mut with_k = ask("a-ok", "sample");
    with_k["top_k"] = json!(3);
    assert_eq!(messages(&gw, MASTER, with_k).await.status(), 200);
    assert_eq!(mock.last_request().body["top_k"], 3);

    // Thinking turned off (no budget), an empty metadata: accepted; an Anthropic model gets
    // them as sent, another model nothing of them.
    let mut off = ask("a-ok", "no thinking");
    off["thinking"] = json!({"type": "disabled"});
    off["metadata"] = json!({});
    assert_eq!(messages(&gw, MASTER, off.clone()).await.status(), 200);
    assert_eq!(
        mock.last_request().body["thinking"],
        json!({"type": "disabled"})
    );
    off["model"] = json!("o-ok");
    assert_eq!(messages(&gw, MASTER, off).await.status(), 200);
    let sent = mock.last_request().body;
    assert!(
        sent.get("thinking").is_none() && sent.get("metadata").is_none(),
        "{sent}"
    );

    body["stream"] = json!(true);
    let ev = anthropic_events(messages(&gw, MASTER, body).await).await;
    assert_eq!(ev[2].1["content_block"]["type"], "thinking");
    assert_eq!(ev[3].1["delta"]["type"], "thinking_delta");
    gw.stop().await;
}

#[tokio::test]
async fn issue11_errors_come_in_anthropics_envelope() {
    let (gw, _mock) = start().await;
    // No max_tokens.
    let resp = messages(
        &gw,
        MASTER,
        json!({"model": "o-ok", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let v = anthropic_error(resp, 400, "invalid_request_error").await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens"),
        "{v}"
    );
    // A bad key, by x-api-key.
    anthropic_error(
        messages(&gw, "sk-wrong", ask("o-ok", "hi")).await,
        401,
        "authentication_error",
    )
    .await;
    // An unknown model.
    anthropic_error(
        messages(&gw, MASTER, ask("nope", "hi")).await,
        404,
        "not_found_error",
    )
    .await;
    // Malformed JSON.
    let resp = client()
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", MASTER)
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    anthropic_error(resp, 400, "invalid_request_error").await;
    // The upstream's own failure, after every retry.
    anthropic_error(
        messages(&gw, MASTER, ask("o-429", "hi")).await,
        429,
        "rate_limit_error",
    )
    .await;
    // A stream cut after its first token ends with the error event, never a clean end.
    let mut cut = ask("o-cut", "one two three four");
    cut["stream"] = json!(true);
    let ev = anthropic_events(messages(&gw, MASTER, cut).await).await;
    assert_eq!(ev.first().unwrap().0, "message_start");
    assert_eq!(ev.last().unwrap().0, "error", "{:?}", names(&ev));
    assert!(!names(&ev).contains(&"message_stop"));
    // Unknown paths and methods under /v1/messages answer in Anthropic's envelope too.
    let resp = client()
        .get(format!("{}/v1/messages", gw.url))
        .header("x-api-key", MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.json::<Value>().await.unwrap()["type"], "error");
    let resp = client()
        .post(format!("{}/v1/messages/batches", gw.url))
        .header("x-api-key", MASTER)
        .json(&ask("o-ok", "hi"))
        .send()
        .await
        .unwrap();
    anthropic_error(resp, 404, "not_found_error").await;
    // A block llmrr does not know is named, with its place.
    let resp = messages(
        &gw,
        MASTER,
        json!({"model": "o-ok", "max_tokens": 5, "messages": [{"role": "user",
            "content": [{"type": "search_result", "source": "x"}]}]}),
    )
    .await;
    let v = anthropic_error(resp, 400, "invalid_request_error").await;
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("search_result") && m.contains("messages[0].content[0]"),
        "{m}"
    );
    // The OpenAI routes keep OpenAI's envelope.
    error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some("sk-wrong"),
            chat_body("o-ok", "x"),
        )
        .await,
        401,
    )
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn issue11_a_route_falls_back_for_a_messages_client() {
    let (gw, _mock) = start_routed(
        "[[routes]]\nname = \"chain\"\nstrategy = \"capability-match\"\nmodels = [\"o-500\", \"a-ok\"]\n",
    )
    .await;
    let resp = messages(&gw, MASTER, ask("chain", "hello")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-llmrr-model"], "a-ok");
    assert!(resp.headers()["x-llmrr-route"]
        .to_str()
        .unwrap()
        .contains("chain"));
    let m: Value = resp.json().await.unwrap();
    assert_eq!(m["content"][0]["text"], "echo: hello");
    // `explain` keeps the decision beside the message.
    let mut explained = ask("chain", "hello");
    explained["llmrr"] = json!({"explain": true});
    let m: Value = messages(&gw, MASTER, explained).await.json().await.unwrap();
    assert_eq!(m["type"], "message");
    assert!(m["llmrr"].is_object(), "{m}");
    gw.stop().await;
}

#[tokio::test]
async fn issue11_count_tokens() {
    let (gw, mock) = start().await;
    let count = |body: Value| {
        let gw = &gw;
        async move {
            client()
                .post(format!("{}/v1/messages/count_tokens", gw.url))
                .header("x-api-key", MASTER)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let body = json!({"model": "o-ok", "system": "You are terse.",
        "messages": [{"role": "user", "content": "How many tokens is this sentence, roughly?"}]});
    // An OpenAI-compatible model cannot count: llmrr's estimate (4 bytes a token).
    let resp = count(body.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-llmrr-token-count"], "estimate");
    let n = resp.json::<Value>().await.unwrap()["input_tokens"]
        .as_u64()
        .unwrap();
    assert!((10..40).contains(&n), "{n}");
    // An Anthropic model: Anthropic's own count, of the fields its endpoint takes (the mock
    // counts words, plus 100 for tools, and refuses max_tokens).
    let mut body = body;
    body["model"] = json!("a-ok");
    body["tools"] = json!([{"name": "f", "input_schema": {"type": "object"}}]);
    let resp = count(body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-llmrr-token-count"], "upstream");
    // 3 words of system + 7 of the message + 100 for the tools.
    assert_eq!(resp.json::<Value>().await.unwrap()["input_tokens"], 110);
    let sent = mock.last_request();
    assert_eq!(sent.path, "/v1/messages/count_tokens");
    assert_eq!(sent.body["model"], "mock-ok");
    // An Anthropic upstream that fails to count: the estimate, not an error.
    let resp =
        count(json!({"model": "a-500", "messages": [{"role": "user", "content": "x y"}]})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-llmrr-token-count"], "estimate");
    anthropic_error(
        count(json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]})).await,
        404,
        "not_found_error",
    )
    .await;
    gw.stop().await;
}

/// What only Anthropic understands reaches an Anthropic model as the client sent it: prompt
/// caching marks, thinking blocks with their signatures in a tool loop; and the signatures come
/// back, plain and streamed.
#[tokio::test]
async fn issue11_an_anthropic_model_gets_the_clients_own_body() {
    let (gw, mock) = start().await;
    let tools = json!([{"name": "get_weather", "input_schema": {"type": "object"},
        "cache_control": {"type": "ephemeral"}}]);
    let body = json!({"model": "a-ok", "max_tokens": 4096,
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "system": [{"type": "text", "text": "Long instructions.", "cache_control": {"type": "ephemeral"}}],
    "tools": tools,
    "messages": [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should look.", "signature": "sig-1"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C",
             "cache_control": {"type": "ephemeral"}}]}
    ]});
    let resp = messages(&gw, MASTER, body.clone()).await;
    assert_eq!(resp.status(), 200);
    let m: Value = resp.json().await.expect("json");
    let sent = mock.last_request().body;
    // As sent, but for the model.
    let mut want = body.clone();
    want["model"] = json!("mock-ok");
    assert_eq!(sent, want);
    // The answer's thinking keeps its signature.
    assert_eq!(
        m["content"][0],
        json!({"type": "thinking", "thinking": "thinking it over", "signature": "sig"})
    );

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let ev = anthropic_events(messages(&gw, MASTER, streamed).await).await;
    assert_eq!(mock.last_request().body["system"], body["system"]);
    let signature: Vec<&Value> = ev
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "signature_delta")
        .map(|(_, d)| &d["delta"]["signature"])
        .collect();
    assert_eq!(signature, [&json!("sig")]);

    // An OpenAI client's chat request to the same model is still translated.
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("a-ok", "hi"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    // (the translation's content blocks, where the chat body had a string)
    assert_eq!(
        mock.last_request().body["messages"][0]["content"],
        json!([{"type": "text", "text": "hi"}])
    );
    gw.stop().await;
}

/// Input guardrails change the request: the client's own body, which would carry the text
/// unmasked, is not sent; the masked translation is.
#[tokio::test]
async fn issue11_input_guardrails_stop_the_clients_own_body() {
    let (gw, mock) = start_routed(
        "[[routes]]\nname = \"guarded\"\nstrategy = \"capability-match\"\nmodels = [\"a-ok\"]\n\
         [routes.guardrails]\nmask = [\"email\"]\nmask_on = \"input\"\n",
    )
    .await;
    let mut body = ask("guarded", "mail bob@example.com");
    body["system"] = json!([{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]);
    let resp = messages(&gw, MASTER, body).await;
    assert_eq!(resp.status(), 200);
    let sent = mock.last_request().body.to_string();
    assert!(!sent.contains("bob@example.com"), "{sent}");
    assert!(sent.contains("[EMAIL]"), "{sent}");
    gw.stop().await;
}

/// The cache key covers what an Anthropic model is actually sent: two requests that translate
/// alike but differ in the client's own body are two entries.
#[tokio::test]
async fn issue11_the_cache_key_covers_the_clients_own_body() {
    let (gw, mock) = start_with("[cache]\nmode = \"exact\"\n", ENV).await;
    let mut body = ask("a-ok", "cache me");
    body["temperature"] = json!(0);
    let cache = |r: &reqwest::Response| {
        r.headers()["x-llmrr-cache"]
            .to_str()
            .unwrap_or("")
            .to_owned()
    };
    let first = messages(&gw, MASTER, body.clone()).await;
    assert_eq!(cache(&first), "miss");
    let again = messages(&gw, MASTER, body.clone()).await;
    assert_eq!(cache(&again), "hit");
    let calls = mock.requests().len();
    // A field the translation does not carry, which shapes the answer: a new entry.
    let edits = json!({"edits": [{"type": "clear_tool_uses_20250919"}]});
    body["context_management"] = edits.clone();
    let other = messages(&gw, MASTER, body.clone()).await;
    assert_eq!(cache(&other), "miss");
    assert_eq!(mock.requests().len(), calls + 1);
    assert_eq!(mock.last_request().body["context_management"], edits);
    // One that never does (scheduling): the same entry.
    body["service_tier"] = json!("standard_only");
    assert_eq!(cache(&messages(&gw, MASTER, body).await), "hit");
    gw.stop().await;
}
