//! Tool calling on local models: the synthetic model's chat template renders tools in the
//! Hermes syntax, a grammar makes its calls valid for each function's schema, and the answer
//! comes back as OpenAI `tool_calls`, streamed as tool-call deltas. The weights are random:
//! only the grammar makes the calls parse.

use crate::local::{answer, greedy, local_toml, start};
use crate::{chat_body, error_body, get_json, post, sse_data, MASTER};
use llmrr_testkit::gguf::{tiny_model, tiny_model_without_template};
use serde_json::{json, Value};

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string", "maxLength": 12},
                "unit": {"enum": ["c", "f"]},
                "days": {"type": "integer"}},
            "required": ["city", "unit", "days"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "now"}}
    ])
}

/// Checks a call against [`tools`]' schemas; returns its name.
fn check_call(call: &Value) -> String {
    assert!(
        call["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("call_")),
        "{call}"
    );
    assert_eq!(call["type"], "function", "{call}");
    let name = call["function"]["name"]
        .as_str()
        .expect("a name")
        .to_owned();
    let text = call["function"]["arguments"].as_str().expect("arguments");
    let args: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let o = args.as_object().expect("an object");
    match name.as_str() {
        "get_weather" => {
            let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["city", "days", "unit"], "{args}");
            // llama.cpp's grammar reads a cut UTF-8 sequence followed by ASCII as one
            // character, which decodes to U+FFFD and the ASCII: only random weights write
            // such bytes, so the length is checked on the rest.
            assert!(
                o["city"]
                    .as_str()
                    .is_some_and(|c| c.chars().filter(|c| *c != '\u{fffd}').count() <= 12),
                "{args}"
            );
            assert!(o["unit"] == "c" || o["unit"] == "f", "{args}");
            assert!(o["days"].is_i64(), "{args}");
        }
        "now" => assert!(o.is_empty(), "{args}"),
        other => panic!("a call of `{other}`, which was not offered"),
    }
    name
}

/// A 400 for `body` whose message names `needle`; the error body.
async fn refused(gw: &llmrr_testkit::TestGateway, body: Value, needle: &str) -> Value {
    let e = error_body(
        post(gw, "/v1/chat/completions", Some(MASTER), body).await,
        400,
    )
    .await;
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(needle)),
        "{e}"
    );
    e
}

fn with_tools(text: &str, choice: Value, seed: u64) -> Value {
    let mut b = chat_body("tiny", text);
    b["temperature"] = json!(1.0);
    b["seed"] = json!(seed);
    b["max_tokens"] = json!(400);
    b["tools"] = tools();
    b["tool_choice"] = choice;
    b
}

#[tokio::test]
async fn a_local_model_calls_tools_with_arguments_valid_for_their_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "tiny");
    let gw = start(&local_toml("tiny", &path, "")).await;

    // Its template renders tools: routing knows it can call them.
    let models = get_json(&gw, "/admin/models").await;
    assert_eq!(
        models["models"][0]["capabilities"]["tools"], true,
        "{models}"
    );

    // `required`, one call at a time: exactly one valid call, and nothing else.
    let mut names = std::collections::HashSet::new();
    for seed in 1..=4 {
        let mut b = with_tools("Weather in Oslo?", json!("required"), seed);
        b["parallel_tool_calls"] = json!(false);
        let v = answer(&gw, b).await;
        let choice = &v["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
        assert!(choice["message"]["content"].is_null(), "{v}");
        let calls = choice["message"]["tool_calls"].as_array().expect("calls");
        assert_eq!(calls.len(), 1, "{v}");
        names.insert(check_call(&calls[0]));
    }
    assert!(!names.is_empty());

    // Parallel calls (the default): every complete call is valid; a call the token limit cut
    // short comes back as text, never as a broken call.
    let v = answer(&gw, with_tools("Weather?", json!("required"), 9)).await;
    let choice = &v["choices"][0];
    let calls = choice["message"]["tool_calls"].as_array().expect("calls");
    assert!(!calls.is_empty(), "{v}");
    calls.iter().for_each(|c| {
        check_call(c);
    });
    match choice["finish_reason"].as_str() {
        Some("tool_calls") => assert!(choice["message"]["content"].is_null(), "{v}"),
        Some("length") => assert!(choice["message"]["content"]
            .as_str()
            .is_some_and(|t| t.contains("<tool_call>"))),
        other => panic!("finish_reason {other:?}"),
    }

    // A named function is the one called, streamed as OpenAI tool-call deltas.
    let mut b = with_tools(
        "Weather?",
        json!({"type": "function", "function": {"name": "get_weather"}}),
        5,
    );
    b["stream"] = json!(true);
    b["stream_options"] = json!({"include_usage": true});
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), b).await;
    assert_eq!(resp.status(), 200);
    let frames = sse_data(resp).await;
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = frames
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("json chunk"))
        .collect();
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(deltas.len(), 1, "one call, whole: {frames:?}");
    assert_eq!(deltas[0][0]["index"], 0);
    assert_eq!(check_call(&deltas[0][0]), "get_weather");
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("tool_calls")], "{frames:?}");
    let streamed_content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed_content, "", "a forced call has no content");
    let usage = &chunks.last().expect("usage chunk")["usage"];
    assert!(
        usage["completion_tokens"].as_u64().is_some_and(|n| n > 0),
        "{usage}"
    );

    // The conversation goes on: the call and its result are rendered by the template (the
    // prompt grows by them), and the model may call again.
    let round = json!([
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\", \"unit\": \"c\", \"days\": 1}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}
    ]);
    let mut b = with_tools("", json!("required"), 3);
    b["messages"] = round;
    b["parallel_tool_calls"] = json!(false);
    let second = answer(&gw, b).await;
    check_call(&second["choices"][0]["message"]["tool_calls"][0]);
    let first = answer(&gw, with_tools("Weather in Oslo?", json!("required"), 3)).await;
    let tokens = |v: &Value| v["usage"]["prompt_tokens"].as_u64().expect("usage");
    assert!(tokens(&second) > tokens(&first) + 20, "{second} vs {first}");
    // An Anthropic client gets the call as a `tool_use` block.
    let body = json!({"model": "tiny", "max_tokens": 400, "temperature": 1, "top_k": 40,
        "tools": [{"name": "get_weather", "input_schema": tools()[0]["function"]["parameters"]}],
        "tool_choice": {"type": "any"},
        "messages": [{"role": "user", "content": "Weather in Oslo?"}]});
    let resp = crate::messages::messages(&gw, MASTER, body.clone()).await;
    assert_eq!(resp.status(), 200);
    let m: Value = resp.json().await.expect("json");
    assert_eq!(m["stop_reason"], "tool_use", "{m}");
    let block = m["content"]
        .as_array()
        .expect("content")
        .iter()
        .find(|b| b["type"] == "tool_use")
        .expect("a tool_use block");
    let as_openai = json!({"id": "call_x", "type": "function", "function": {
        "name": block["name"], "arguments": block["input"].to_string()}});
    assert_eq!(check_call(&as_openai), "get_weather");
}

#[tokio::test]
async fn auto_and_none_and_what_cannot_be_honoured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiny = tiny_model(dir.path(), "tiny");
    let bare = tiny_model_without_template(dir.path(), "bare");
    let toml = format!(
        "{}{}[[routes]]\nname = \"local\"\nstrategy = \"capability-match\"\nmodels = [\"bare\", \"tiny\"]\n",
        local_toml("tiny", &tiny, ""),
        local_toml("bare", &bare, "")
    );
    let gw = start(&toml).await;
    let tokens = |v: &Value| v["usage"]["prompt_tokens"].as_u64().expect("usage");
    let plain = answer(&gw, greedy("tiny", "Hello there", 6)).await;

    // `auto`: the tools are in the prompt; the model answers in text or calls validly.
    let mut b = greedy("tiny", "Hello there", 6);
    b["tools"] = tools();
    let auto = answer(&gw, b).await;
    assert!(tokens(&auto) > tokens(&plain) + 50, "{auto}");
    let msg = &auto["choices"][0]["message"];
    match msg["tool_calls"].as_array() {
        Some(calls) => calls.iter().for_each(|c| {
            check_call(c);
        }),
        None => assert!(msg["content"].is_string(), "{auto}"),
    }

    // `none`: the model answers as without tools.
    let mut b = greedy("tiny", "Hello there", 6);
    b["tools"] = tools();
    b["tool_choice"] = json!("none");
    let none = answer(&gw, b).await;
    assert_eq!(tokens(&none), tokens(&plain));
    assert_eq!(
        none["choices"][0]["message"]["content"],
        plain["choices"][0]["message"]["content"]
    );

    // What a request cannot have: clear 400s, with the parameter named.
    let mut b = with_tools(
        "x",
        json!({"type": "function", "function": {"name": "nope"}}),
        1,
    );
    let e = refused(&gw, b.clone(), "nope").await;
    assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
    b["tool_choice"] = json!("auto");
    b["tools"][0]["function"]["parameters"]["properties"]["city"]["pattern"] = json!("^[A-Z]");
    let e = refused(&gw, b, "pattern").await;
    assert_eq!(e["error"]["code"], "unsupported_parameter", "{e}");
    let mut b = with_tools("x", json!("auto"), 1);
    b["response_format"] = json!({"type": "json_object"});
    refused(&gw, b, "response_format").await;

    // A model whose template renders no tools is not offered them, and says why.
    let models = get_json(&gw, "/admin/models").await;
    let bare_caps = models["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["model"] == "bare")
        .expect("bare")["capabilities"]
        .clone();
    assert_eq!(bare_caps["tools"], false, "{bare_caps}");
    let mut b = with_tools("x", json!("auto"), 1);
    b["model"] = json!("bare");
    refused(&gw, b, "tool").await;

    // Routing sends a tool request to the local model that can call tools, and a request
    // whose tool a grammar cannot hold to none.
    let mut b = with_tools("Weather?", json!("required"), 2);
    b["model"] = json!("local");
    b["parallel_tool_calls"] = json!(false);
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), b.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-llmrr-model"], "tiny");
    let v: Value = resp.json().await.expect("json");
    check_call(&v["choices"][0]["message"]["tool_calls"][0]);
    b["tools"][0]["function"]["parameters"]["properties"]["city"]["format"] = json!("email");
    let e = refused(&gw, b, "tools").await;
    assert_eq!(e["error"]["code"], "unsupported_parameter", "{e}");
    assert_eq!(e["error"]["param"], "tools", "{e}");

    // Tools with `tool_choice: "none"` are not in play: `response_format` is served (and
    // routing agrees).
    let mut b = with_tools("x", json!("none"), 1);
    b["model"] = json!("local");
    b["max_tokens"] = json!(20);
    b["response_format"] = json!({"type": "json_object"});
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), b).await;
    assert_eq!(resp.status(), 200);

    // `required` or a named function with no tools: refused, as OpenAI does.
    let mut b = greedy("tiny", "x", 2);
    b["tool_choice"] = json!("required");
    refused(&gw, b, "tool_choice").await;
}
