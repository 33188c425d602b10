//! Issue 11: a Responses client in front of a model whose server speaks the Responses API
//! (`responses_api = true`): the client's own body goes to the upstream's `/responses` (the
//! stored conversation in its `input`, `store: false`), the upstream's response or events come
//! back as the client's Responses answer, with cost, log, fallback and errors as for chat.

use super::responses::{output_text, response_events};
use super::*;
use serde_json::json;

/// `r-<mode>`: the mock in `mode`, reached through its Responses API.
fn responses_models(mock: &MockProvider) -> String {
    let mut t = String::new();
    for mode in [
        "ok",
        "tool",
        "think",
        "length",
        "failed",
        "cut",
        "streamerror",
        "500",
    ] {
        t.push_str(&format!(
            "[[models]]\nname = \"r-{mode}\"\nprovider = \"openai\"\nbase_url = \"{url}\"\n\
             api_key = \"env:UPSTREAM_KEY\"\nupstream_model = \"mock-{mode}\"\n\
             responses_api = true\ninput_cost_per_mtok = 2\noutput_cost_per_mtok = 8\n\
             timeout_secs = 1.5\n\n",
            url = mock.base_url
        ));
    }
    t
}

async fn start_responses(extra: &str) -> (TestGateway, MockProvider) {
    let mock = MockProvider::start().await;
    let toml = format!(
        "{extra}\n{}\n{}",
        responses_models(&mock),
        models_toml(&mock)
    );
    (
        TestGateway::start(&toml, ENV, llmrr_testkit::harness::StoreChoice::Sqlite).await,
        mock,
    )
}

async fn respond(gw: &TestGateway, body: Value) -> reqwest::Response {
    super::responses::respond(gw, MASTER, body).await
}

fn items_of(r: &Value, kind: &str) -> Vec<Value> {
    r["output"]
        .as_array()
        .expect("output")
        .iter()
        .filter(|i| i["type"] == kind)
        .cloned()
        .collect()
}

#[tokio::test]
async fn issue11_a_responses_upstream_is_sent_the_clients_own_body() {
    let (gw, mock) = start_responses("").await;
    let body = json!({"model": "r-ok", "instructions": "Be brief.", "input": "hello there",
        "max_output_tokens": 50, "metadata": {"app": "t"}, "include": ["reasoning.encrypted_content"],
        "reasoning": {"effort": "low", "summary": "auto"}, "text": {"verbosity": "low"},
        "truncation": "auto", "llmrr": {"explain": true}});
    let resp = respond(&gw, body.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-llmrr-provider"], "openai");
    let cost = resp.headers()["x-llmrr-cost-usd"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let r: Value = resp.json().await.expect("json");
    assert_eq!(output_text(&r), "echo: hello there");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["store"], true, "llmrr stores it");
    assert!(r["id"].as_str().expect("id").starts_with("resp_"));
    assert_ne!(r["id"], "resp_mock", "the id is llmrr's");
    let (input, output) = (
        r["usage"]["input_tokens"].as_u64().expect("in"),
        r["usage"]["output_tokens"].as_u64().expect("out"),
    );
    assert_eq!((input, output), (4, 3), "the upstream's own counts");
    let want = (rust_decimal::Decimal::from(input * 2) + rust_decimal::Decimal::from(output * 8))
        / rust_decimal::Decimal::from(1_000_000);
    assert_eq!(cost, want.normalize().to_string());

    let sent = mock.last_request();
    assert_eq!(sent.path, "/v1/responses");
    let mut want = body.clone();
    let map = want.as_object_mut().expect("object");
    map.remove("llmrr");
    map.insert("model".into(), json!("mock-ok"));
    map.insert("stream".into(), json!(false));
    map.insert("store".into(), json!(false));
    assert_eq!(sent.body, want, "the client's body, as written");

    // Streamed: the upstream's events, read back and written again as the client's.
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let ev = response_events(respond(&gw, streamed).await).await;
    assert_eq!(mock.last_request().body["stream"], true);
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ]
    );
    assert_eq!(names.last(), Some(&"response.completed"));
    let deltas: String = ev
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().expect("delta").to_owned())
        .collect();
    assert_eq!(deltas, "echo: hello there");
    let done = &ev.last().expect("events").1["response"];
    assert_eq!(done["usage"]["input_tokens"], 4);
    assert_eq!(done["usage"]["output_tokens"], 3);

    // A chat client to the same model is still answered through chat completions.
    let chat = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("r-ok", "hi"),
    )
    .await;
    assert_eq!(chat.status(), 200);
    assert_eq!(mock.last_request().path, "/v1/chat/completions");

    gw.flush_log().await;
    let rows = rows(&gw).await;
    let responses: Vec<_> = rows.iter().filter(|r| r.endpoint == "responses").collect();
    assert_eq!(responses.len(), 2, "{rows:?}");
    assert!(responses
        .iter()
        .all(|r| r.status == 200 && r.prompt_tokens == 4 && r.completion_tokens == 3));
    gw.stop().await;
}

#[tokio::test]
async fn issue11_tool_calls_and_reasoning_round_trip_through_a_responses_upstream() {
    let (gw, mock) = start_responses("").await;
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let r: Value = respond(
        &gw,
        json!({"model": "r-tool", "input": "weather in Paris?", "tools": tools}),
    )
    .await
    .json()
    .await
    .expect("json");
    let call = items_of(&r, "function_call").pop().expect("a call");
    assert_eq!(call["call_id"], "call_mock");
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["arguments"], "{\"city\":\"Paris\"}");
    // The function tool went as written: no `strict` added, none taken away.
    assert_eq!(mock.last_request().body["tools"], tools);

    // The next turn: llmrr's stored conversation goes before the new input, as items.
    let next = respond(
        &gw,
        json!({"model": "r-ok", "tools": tools, "previous_response_id": r["id"],
        "input": [{"type": "function_call_output", "call_id": "call_mock", "output": "18C"}]}),
    )
    .await;
    assert_eq!(next.status(), 200);
    let sent = mock.last_request().body;
    assert!(sent.get("previous_response_id").is_none(), "{sent}");
    assert_eq!(
        sent["input"],
        json!([
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather in Paris?"}]},
            {"type": "function_call", "call_id": "call_mock", "name": "get_weather",
             "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_mock", "output": "18C"}
        ])
    );

    // Streamed calls: the arguments arrive as deltas and the item is whole at the end.
    let ev = response_events(
        respond(
            &gw,
            json!({"model": "r-tool", "input": "weather?", "tools": tools, "stream": true}),
        )
        .await,
    )
    .await;
    let args: String = ev
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .map(|(_, d)| d["delta"].as_str().expect("delta").to_owned())
        .collect();
    assert_eq!(args, "{\"city\":\"Paris\"}");
    let done = &ev.last().expect("events").1["response"];
    assert_eq!(items_of(done, "function_call")[0]["call_id"], "call_mock");

    // Reasoning: the summary comes back as a reasoning item, its tokens in the usage.
    for stream in [false, true] {
        let resp = respond(
            &gw,
            json!({"model": "r-think", "input": "why?", "stream": stream,
                    "reasoning": {"effort": "high", "summary": "auto"}}),
        )
        .await;
        let r = if stream {
            response_events(resp).await.pop().expect("events").1["response"].clone()
        } else {
            resp.json().await.expect("json")
        };
        let summary = &items_of(&r, "reasoning")[0]["summary"][0];
        assert_eq!(summary["text"], "thinking it over", "stream {stream}: {r}");
        assert_eq!(output_text(&r), "echo: why?");
        assert_eq!(
            r["usage"]["output_tokens_details"]["reasoning_tokens"], 3,
            "{r}"
        );
    }

    // A client that keeps the conversation itself sends llmrr's output back as input: its
    // reasoning summary is skipped and no id of llmrr's goes upstream.
    let r: Value = respond(
        &gw,
        json!({"model": "r-think", "input": "why?", "store": false}),
    )
    .await
    .json()
    .await
    .expect("json");
    let mut input = vec![json!({"role": "user", "content": "why?"})];
    input.extend(r["output"].as_array().expect("output").iter().cloned());
    assert!(input.iter().any(|i| i["type"] == "reasoning"));
    input.push(json!({"role": "user", "content": "and then?"}));
    let next = respond(
        &gw,
        json!({"model": "r-ok", "input": input, "store": false}),
    )
    .await;
    assert_eq!(next.status(), 200);
    let sent = mock.last_request().body;
    let items = sent["input"].as_array().expect("items");
    assert_eq!(items.len(), 3, "{sent}");
    assert!(
        items
            .iter()
            .all(|i| i["type"] != "reasoning" && i.get("id").is_none()),
        "{sent}"
    );
    assert_eq!(items[1]["content"][0]["text"], "echo: why?");
    gw.stop().await;
}

#[tokio::test]
async fn issue11_a_responses_upstream_fails_falls_back_and_ends_like_chat() {
    let (gw, mock) = start_responses(
        "[[routes]]\nname = \"chain\"\nstrategy = \"capability-match\"\nmodels = [\"r-500\", \"o-ok\"]\n",
    )
    .await;
    // The Responses upstream fails: the route's next model answers through chat.
    let resp = respond(&gw, json!({"model": "chain", "input": "hello"})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-llmrr-model"], "o-ok");
    let r: Value = resp.json().await.expect("json");
    assert_eq!(output_text(&r), "echo: hello");
    // The failing model retried (as any 500 is), then the next one through chat.
    let paths: Vec<String> = mock.requests().into_iter().map(|r| r.path).collect();
    let (last, tried) = paths.split_last().expect("calls");
    assert_eq!(last, "/v1/chat/completions");
    assert!(
        !tried.is_empty() && tried.iter().all(|p| p == "/v1/responses"),
        "{paths:?}"
    );

    // A `failed` response is the upstream's error (a `server_error`: 500, as a chat
    // upstream's 500 is), in OpenAI's envelope.
    let v = error_body(
        respond(&gw, json!({"model": "r-failed", "input": "x"})).await,
        500,
    )
    .await;
    assert_eq!(v["error"]["code"], "server_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("message")
            .contains("The model failed to answer"),
        "{v}"
    );
    // Streamed and failed before its first token: the same error (another model could
    // still have answered).
    let v = error_body(
        respond(
            &gw,
            json!({"model": "r-failed", "input": "x", "stream": true}),
        )
        .await,
        500,
    )
    .await;
    assert_eq!(v["error"]["code"], "server_error");
    // An error event, or a stream cut, after the first token: the dialect's failure events,
    // never `response.completed`.
    for model in ["r-streamerror", "r-cut"] {
        let ev = response_events(
            respond(
                &gw,
                json!({"model": model, "input": "one two three four", "stream": true}),
            )
            .await,
        )
        .await;
        let n = ev.len();
        assert_eq!(ev[n - 2].0, "response.failed", "{model}: {ev:?}");
        assert_eq!(ev[n - 1].0, "error", "{model}");
        assert!(ev.iter().all(|(n, _)| n != "response.completed"), "{model}");
    }
    // Stopped at `max_output_tokens`: incomplete, as the upstream said.
    for stream in [false, true] {
        let resp = respond(
            &gw,
            json!({"model": "r-length", "input": "go on", "max_output_tokens": 2, "stream": stream}),
        )
        .await;
        let r = if stream {
            response_events(resp).await.pop().expect("events").1["response"].clone()
        } else {
            resp.json().await.expect("json")
        };
        assert_eq!(r["status"], "incomplete", "{r}");
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    }
    gw.stop().await;
}

#[tokio::test]
async fn issue11_a_redacting_guardrail_keeps_the_clients_body_from_the_upstream() {
    let (gw, mock) = start_responses(
        "[[routes]]\nname = \"guarded\"\nstrategy = \"capability-match\"\nmodels = [\"r-ok\"]\n\
         [routes.guardrails]\nmask = [\"email\"]\nmask_on = \"input\"\n",
    )
    .await;
    let resp = respond(
        &gw,
        json!({"model": "guarded", "input": "mail me at jane@example.com"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let sent = mock.last_request();
    // The masked translation went to chat completions instead of the client's body.
    assert_eq!(sent.path, "/v1/chat/completions");
    let text = sent.body.to_string();
    assert!(
        !text.contains("jane@example.com") && text.contains("[EMAIL]"),
        "{text}"
    );
    gw.stop().await;
}

/// The cache key covers what a Responses upstream is sent (not what never shapes an answer).
#[tokio::test]
async fn issue11_the_cache_key_covers_the_responses_body() {
    let (gw, mock) = start_responses("[cache]\nmode = \"exact\"\n").await;
    let cache = |r: &reqwest::Response| {
        r.headers()["x-llmrr-cache"]
            .to_str()
            .unwrap_or("")
            .to_owned()
    };
    let body = json!({"model": "r-ok", "input": "cache me", "temperature": 0,
        "reasoning": {"summary": "auto"}});
    let first = respond(&gw, body.clone()).await;
    assert_eq!(cache(&first), "miss");
    let r: Value = first.json().await.expect("json");
    let mut other_metadata = body.clone();
    other_metadata["metadata"] = json!({"run": "2"});
    other_metadata["store"] = json!(false);
    let again = respond(&gw, other_metadata).await;
    assert_eq!(cache(&again), "hit");
    let hit: Value = again.json().await.expect("json");
    assert_eq!(output_text(&hit), output_text(&r));
    assert_ne!(hit["id"], r["id"], "each answer is its own response");
    let calls = mock.requests().len();
    let mut other_summary = body;
    other_summary["reasoning"]["summary"] = json!("detailed");
    let third = respond(&gw, other_summary).await;
    assert_eq!(cache(&third), "miss");
    assert_eq!(mock.requests().len(), calls + 1);
    gw.stop().await;
}

#[test]
fn issue11_responses_api_is_a_setting_of_openai_compatible_models() {
    let err = |toml: &str| {
        config_of(toml)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(
        err("[[models]]\nname = \"a\"\nprovider = \"anthropic\"\nresponses_api = true\n")
            .contains("responses_api")
    );
    assert!(
        err("[[models]]\nname = \"l\"\nprovider = \"local\"\npath = \"/x.gguf\"\nresponses_api = true\n")
            .contains("responses_api")
    );
    let spec = |toml: &str| {
        config_of(toml)
            .expect("loads")
            .models
            .into_iter()
            .next()
            .expect("a model")
    };
    assert!(spec("[[models]]\nname = \"o\"\nprovider = \"openai\"\n").responses_api);
    assert!(
        !spec("[[models]]\nname = \"v\"\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:8000/v1\"\n")
            .responses_api
    );
}
