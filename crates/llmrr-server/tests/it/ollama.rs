//! Ollama's API through the real server: the wire shapes Ollama's clients read (recorded from
//! Ollama's documentation and its Python client's models), against the mock's remote models
//! and a real local model (keep_alive, /api/ps, load and unload).

use super::*;
use llmrr_testkit::gguf::tiny_model;
use serde_json::json;
use std::time::Duration;

async fn ollama(gw: &TestGateway, path: &str, key: Option<&str>, body: Value) -> reqwest::Response {
    post(gw, path, key, body).await
}

/// NDJSON lines of a streamed answer.
async fn lines(resp: reqwest::Response) -> Vec<Value> {
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().expect("ascii"),
        "application/x-ndjson"
    );
    let text = resp.text().await.expect("body");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok())
}

#[tokio::test]
async fn chat_and_generate_answer_in_ollamas_shapes_streamed_or_not() {
    let (gw, mock) = start().await;

    // Not streamed.
    let v: Value = ollama(
        &gw,
        "/api/chat",
        Some(MASTER),
        json!({"model": "o-ok", "stream": false,
        "messages": [{"role": "user", "content": "hello there"}],
        "options": {"temperature": 0, "num_predict": 50, "num_ctx": 8192}}),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(v["model"], "o-ok");
    assert!(is_rfc3339(&v["created_at"]), "{v}");
    assert_eq!(
        v["message"],
        json!({"role": "assistant", "content": "echo: hello there"})
    );
    assert_eq!(
        (v["done"].clone(), v["done_reason"].clone()),
        (json!(true), json!("stop"))
    );
    assert_eq!(v["prompt_eval_count"], 2);
    assert_eq!(v["eval_count"], 3);
    assert!(v["total_duration"].as_u64().is_some_and(|n| n > 0));
    let sent = &mock.last_request().body;
    assert_eq!(sent["temperature"].as_f64(), Some(0.0));
    assert_eq!(sent["max_tokens"], 50);
    assert!(sent.get("num_ctx").is_none());

    // Streamed (Ollama's default): deltas, then the last line with the counts.
    let l = lines(
        ollama(
            &gw,
            "/api/chat",
            Some(MASTER),
            json!({"model": "o-ok",
            "messages": [{"role": "user", "content": "one two"}]}),
        )
        .await,
    )
    .await;
    let text: String = l
        .iter()
        .filter(|x| x["done"] == false)
        .map(|x| x["message"]["content"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(text, "echo: one two");
    let last = l.last().expect("a last line");
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["eval_count"], 3);
    assert!(l
        .iter()
        .all(|x| x["model"] == "o-ok" && is_rfc3339(&x["created_at"])));

    // Generate: `response` instead of `message`; the system prompt goes first.
    let v: Value = ollama(
        &gw,
        "/api/generate",
        Some(MASTER),
        json!({"model": "o-ok",
        "prompt": "why is the sky blue", "system": "be brief", "stream": false}),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(v["response"], "echo: why is the sky blue");
    assert_eq!(v["done"], true);
    assert_eq!(mock.last_request().body["messages"][0]["role"], "system");
    let l = lines(
        ollama(
            &gw,
            "/api/generate",
            Some(MASTER),
            json!({"model": "o-ok", "prompt": "a b"}),
        )
        .await,
    )
    .await;
    let text: String = l
        .iter()
        .map(|x| x["response"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(text, "echo: a b");

    // The request log names the API.
    let logged = rows_once(&gw, 4).await;
    assert!(logged.iter().all(|r| r.endpoint == "ollama"), "{logged:?}");
}

#[tokio::test]
async fn tools_json_format_and_images_reach_the_model_and_tool_calls_come_back() {
    let (gw, mock) = start().await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let v: Value = ollama(
        &gw,
        "/api/chat",
        Some(MASTER),
        json!({"model": "o-tool", "stream": false,
        "messages": [{"role": "user", "content": "weather in Paris?"}], "tools": tools}),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(
        v["message"]["tool_calls"],
        json!([{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]),
        "{v}"
    );
    // Streamed: the call comes whole, before the last line.
    let l = lines(
        ollama(
            &gw,
            "/api/chat",
            Some(MASTER),
            json!({"model": "o-tool",
            "messages": [{"role": "user", "content": "weather?"}], "tools": tools}),
        )
        .await,
    )
    .await;
    let calls: Vec<&Value> = l
        .iter()
        .filter_map(|x| x["message"].get("tool_calls"))
        .collect();
    assert_eq!(
        calls,
        vec![&json!([{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}])]
    );
    // The conversation goes on with the tool's result.
    let resp = ollama(
        &gw,
        "/api/chat",
        Some(MASTER),
        json!({"model": "o-ok", "stream": false,
        "format": "json",
        "messages": [
            {"role": "user", "content": "weather?", "images": ["iVBORw0KGgoAAAANSUhEUg=="]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let sent = &mock.last_request().body;
    assert_eq!(sent["response_format"], json!({"type": "json_object"}));
    assert_eq!(
        sent["messages"][0]["content"][1]["image_url"]["url"],
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="
    );
    assert_eq!(
        sent["messages"][2]["tool_call_id"],
        sent["messages"][1]["tool_calls"][0]["id"]
    );
}

#[tokio::test]
async fn embeddings_model_listing_errors_and_keys() {
    let (gw, _mock) = start().await;
    let v: Value = ollama(
        &gw,
        "/api/embed",
        Some(MASTER),
        json!({"model": "o-ok",
        "input": ["a", "b c"]}),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(v["model"], "o-ok");
    assert_eq!(v["embeddings"].as_array().map(Vec::len), Some(2), "{v}");
    assert!(v["embeddings"][0][0].is_number());
    let v: Value = ollama(
        &gw,
        "/api/embeddings",
        Some(MASTER),
        json!({"model": "o-ok",
        "prompt": "a"}),
    )
    .await
    .json()
    .await
    .expect("json");
    assert!(v["embedding"][0].is_number(), "{v}");

    // Listing: every model and route the key may use, with Ollama's fields.
    let tags = get_json(&gw, "/api/tags").await;
    let names: Vec<&str> = tags["models"]
        .as_array()
        .expect("models")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(
        names.contains(&"o-ok") && names.contains(&"a-ok"),
        "{names:?}"
    );
    let one = &tags["models"][0];
    for field in ["name", "model", "modified_at", "size", "digest", "details"] {
        assert!(one.get(field).is_some(), "{field}: {one}");
    }
    let limited = create_key(
        &gw,
        serde_json::from_value(json!({"name": "k", "models": ["o-ok"]})).expect("a new key"),
    )
    .await
    .key;
    let tags: Value = client()
        .get(format!("{}/api/tags", gw.url))
        .bearer_auth(&limited)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(tags["models"].as_array().map(Vec::len), Some(1), "{tags}");
    let show: Value = ollama(&gw, "/api/show", Some(MASTER), json!({"model": "o-ok"}))
        .await
        .json()
        .await
        .expect("json");
    assert!(show["capabilities"]
        .as_array()
        .is_some_and(|c| c.contains(&json!("completion"))));
    let v: Value = get_json(&gw, "/api/version").await;
    assert!(v["version"].is_string());
    let v: Value = ollama(
        &gw,
        "/api/pull",
        Some(MASTER),
        json!({"model": "o-ok", "stream": false}),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(v, json!({"status": "success"}));

    // Errors are Ollama's `{"error": "…"}` with the status, before and after the handler.
    for (path, key, body, status) in [
        (
            "/api/chat",
            Some(MASTER),
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
            404,
        ),
        (
            "/api/chat",
            None,
            json!({"model": "o-ok", "messages": []}),
            401,
        ),
        (
            "/api/chat",
            Some(MASTER),
            json!({"model": "o-ok", "messages": [{"role": "alien"}]}),
            400,
        ),
        (
            "/api/chat",
            Some(MASTER),
            json!({"model": "o-ok", "keep_alive": "forever",
            "messages": [{"role": "user", "content": "x"}]}),
            400,
        ),
        (
            "/api/generate",
            Some(MASTER),
            json!({"model": "o-ok", "prompt": "x", "raw": true}),
            400,
        ),
        (
            "/api/pull",
            Some(MASTER),
            json!({"model": "llama3:8b"}),
            404,
        ),
        ("/api/show", Some(&limited), json!({"model": "a-ok"}), 403),
        ("/api/nothing", Some(MASTER), json!({}), 404),
    ] {
        let resp = ollama(&gw, path, key, body).await;
        assert_eq!(resp.status().as_u16(), status, "{path}");
        let v: Value = resp.json().await.expect("json");
        assert!(
            v["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{path}: {v}"
        );
    }
    // A failing upstream mid-stream ends the NDJSON with an error line.
    let l = lines(
        ollama(
            &gw,
            "/api/chat",
            Some(MASTER),
            json!({"model": "o-streamerror",
            "messages": [{"role": "user", "content": "x y"}]}),
        )
        .await,
    )
    .await;
    assert!(l.last().is_some_and(|x| x["error"].is_string()), "{l:?}");
}

#[tokio::test]
async fn keep_alive_loads_keeps_and_unloads_local_models() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "tiny");
    let toml = format!(
        "[[models]]\nname = \"tiny\"\nprovider = \"local\"\npath = \"{}\"\n\
         input_cost_per_mtok = 0\noutput_cost_per_mtok = 0.5\nthreads = 1\nkeep_alive_secs = 600\n\n\
         [[models]]\nname = \"remote\"\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         input_cost_per_mtok = 1\noutput_cost_per_mtok = 1\n",
        path.display()
    );
    let gw = TestGateway::start(&toml, ENV, llmrr_testkit::harness::StoreChoice::Sqlite).await;
    let ps = || async { get_json(&gw, "/api/ps").await["models"].clone() };
    assert_eq!(ps().await, json!([]));

    // An empty prompt loads the model.
    let v: Value = ollama(&gw, "/api/generate", Some(MASTER), json!({"model": "tiny"}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        (v["done"].clone(), v["done_reason"].clone()),
        (json!(true), json!("load"))
    );
    let loaded = ps().await;
    assert_eq!(loaded[0]["name"], "tiny", "{loaded}");
    assert!(loaded[0]["size"].as_u64().is_some_and(|s| s > 0));
    let expires: jiff::Timestamp = loaded[0]["expires_at"]
        .as_str()
        .expect("ts")
        .parse()
        .expect("rfc3339");
    let left = expires.duration_since(jiff::Timestamp::now()).as_secs_f64();
    assert!((500.0..=601.0).contains(&left), "{left}");

    // A request's keep_alive replaces the configured one (applied just after the answer)…
    let resp = ollama(
        &gw,
        "/api/chat",
        Some(MASTER),
        json!({"model": "tiny", "stream": false,
        "keep_alive": "2s", "options": {"num_predict": 2, "temperature": 0},
        "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let left = || async {
        let m = ps().await;
        let t: jiff::Timestamp = m[0]["expires_at"]
            .as_str()
            .expect("ts")
            .parse()
            .expect("ts");
        t.duration_since(jiff::Timestamp::now()).as_secs_f64()
    };
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while left().await > 2.1 && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(left().await <= 2.1);
    // …and the model goes when it runs out.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while ps().await != json!([]) && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ps().await, json!([]));

    // A key that may not name the model can neither load nor unload it.
    let other = create_key(
        &gw,
        serde_json::from_value(json!({"name": "k", "models": ["remote"]})).expect("a new key"),
    )
    .await
    .key;
    let resp = ollama(&gw, "/api/generate", Some(&other), json!({"model": "tiny"})).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(ps().await, json!([]));

    // /api/chat with no messages loads too; a request without keep_alive puts the configured
    // one back, as Ollama does.
    let v: Value = ollama(
        &gw,
        "/api/chat",
        Some(MASTER),
        json!({"model": "tiny", "messages": [],
        "keep_alive": "3s"}),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(
        (v["done_reason"].clone(), v["message"]["content"].clone()),
        (json!("load"), json!(""))
    );
    assert!(left().await <= 3.1);
    let resp = ollama(
        &gw,
        "/api/chat",
        Some(MASTER),
        json!({"model": "tiny", "stream": false,
        "options": {"num_predict": 1}, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while left().await < 500.0 && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(left().await > 500.0);

    // Load again, then `keep_alive: 0` with no prompt unloads at once.
    ollama(
        &gw,
        "/api/generate",
        Some(MASTER),
        json!({"model": "tiny", "keep_alive": -1}),
    )
    .await;
    assert_eq!(ps().await[0]["expires_at"], "9999-12-31T23:59:59Z");
    let v: Value = ollama(
        &gw,
        "/api/generate",
        Some(MASTER),
        json!({"model": "tiny", "keep_alive": 0}),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(v["done_reason"], "unload");
    assert_eq!(ps().await, json!([]));
}
