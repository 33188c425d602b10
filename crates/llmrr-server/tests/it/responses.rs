//! Issue 11: OpenAI's Responses API in front of every model (OpenAI-compatible and
//! Anthropic here), plain and streamed, tool calls, stored responses and
//! `previous_response_id`, errors.

use super::*;
use serde_json::json;

pub(super) async fn respond(gw: &TestGateway, key: &str, body: Value) -> reqwest::Response {
    post(gw, "/v1/responses", Some(key), body).await
}

/// The events of a Responses stream: (event name, data); `event:` names the data's `type`
/// and the sequence numbers count up from 0.
pub(super) async fn response_events(resp: reqwest::Response) -> Vec<(String, Value)> {
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.expect("a complete body");
    let mut parser = llmrr_core::provider::sse::SseParser::new();
    let mut events = Vec::new();
    parser.push(&bytes, &mut events);
    parser.finish(&mut events);
    let out: Vec<(String, Value)> = events
        .into_iter()
        .map(|e| {
            let data: Value = serde_json::from_str(&e.data).expect("JSON data");
            let name = e.event.expect("every event is named");
            assert_eq!(data["type"], name.as_str(), "{data}");
            (name, data)
        })
        .collect();
    for (i, (_, d)) in out.iter().enumerate() {
        assert_eq!(d["sequence_number"], i, "{d}");
    }
    out
}

pub(super) fn output_text(r: &Value) -> String {
    r["output"]
        .as_array()
        .expect("output")
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["text"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn issue11_a_response_from_each_provider_kind_plain_and_streamed() {
    let (gw, mock) = start().await;
    for (model, provider) in [("o-ok", "openai"), ("a-ok", "anthropic")] {
        let body = json!({"model": model, "instructions": "Be brief.", "input": "hello there",
                          "max_output_tokens": 50, "metadata": {"app": "t"}});
        let resp = respond(&gw, MASTER, body.clone()).await;
        assert_eq!(resp.status(), 200, "{model}");
        assert_eq!(resp.headers()["x-llmrr-provider"], provider);
        assert!(resp.headers().contains_key("x-llmrr-cost-usd"));
        let r: Value = resp.json().await.unwrap();
        assert_eq!(r["object"], "response");
        assert!(r["id"].as_str().unwrap().starts_with("resp_"));
        assert_eq!(r["status"], "completed");
        assert_eq!(output_text(&r), "echo: hello there");
        assert_eq!(r["output"][0]["role"], "assistant");
        assert_eq!(r["usage"]["output_tokens"], 3);
        assert_eq!(r["instructions"], "Be brief.");
        assert_eq!(r["metadata"], json!({"app": "t"}));
        assert_eq!(r["store"], true);
        let sent = mock.last_request().body;
        match provider {
            "openai" => {
                assert_eq!(
                    sent["messages"][0],
                    json!({"role": "system", "content": "Be brief."})
                );
                assert_eq!(sent["max_completion_tokens"], 50);
            }
            _ => assert_eq!(sent["system"][0]["text"], "Be brief."),
        }

        let mut streamed = body;
        streamed["stream"] = json!(true);
        let ev = response_events(respond(&gw, MASTER, streamed).await).await;
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
            .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(deltas, "echo: hello there");
        let done = &ev.last().unwrap().1["response"];
        assert_eq!(output_text(done), deltas);
        assert_eq!(done["usage"]["output_tokens"], 3);
        assert!(done["usage"]["input_tokens"].as_u64().unwrap() > 0);
    }
    gw.flush_log().await;
    let rows = rows(&gw).await;
    assert_eq!(rows.len(), 4, "each call logged");
    assert!(rows.iter().all(|r| r.endpoint == "responses"), "{rows:?}");
    gw.stop().await;
}

#[tokio::test]
async fn issue11_a_function_call_round_trip_with_previous_response_id() {
    let (gw, mock) = start().await;
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    for (tool_model, ok_model) in [("o-tool", "o-ok"), ("a-tool", "a-ok")] {
        let r: Value = respond(
            &gw,
            MASTER,
            json!({"model": tool_model, "input": "weather in Paris?", "tools": tools}),
        )
        .await
        .json()
        .await
        .unwrap();
        let call = r["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "function_call")
            .expect("a function call")
            .clone();
        assert_eq!(call["name"], "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
            json!({"city": "Paris"})
        );
        // The stored answer continues with the call's output.
        let next = respond(&gw, MASTER, json!({"model": ok_model, "tools": tools,
            "previous_response_id": r["id"],
            "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "18C"}]}))
            .await;
        assert_eq!(next.status(), 200, "{tool_model}");
        let sent = mock.last_request().body;
        if ok_model.starts_with("o-") {
            let m = sent["messages"].as_array().unwrap();
            assert_eq!(
                m[0],
                json!({"role": "user", "content": "weather in Paris?"})
            );
            assert_eq!(m[1]["tool_calls"][0]["id"], call["call_id"]);
            assert_eq!(m[2]["role"], "tool");
            assert_eq!(m[2]["content"], "18C");
        } else {
            let turn = sent["messages"][1]["content"].as_array().unwrap();
            let used = turn
                .iter()
                .find(|b| b["type"] == "tool_use")
                .expect("the call, again");
            assert_eq!(used["id"], call["call_id"]);
            assert_eq!(
                sent["messages"][2]["content"][0]["tool_use_id"],
                call["call_id"]
            );
        }

        let ev = response_events(respond(&gw, MASTER,
            json!({"model": tool_model, "input": "weather in Paris?", "tools": tools, "stream": true}))
            .await)
            .await;
        let args: String = ev
            .iter()
            .filter(|(n, _)| n == "response.function_call_arguments.delta")
            .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            json!({"city": "Paris"})
        );
        let done = &ev.last().unwrap().1["response"];
        let item = done["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "function_call")
            .unwrap();
        assert_eq!(item["arguments"], args);
    }
    gw.stop().await;
}

#[tokio::test]
async fn issue11_stored_responses_are_the_keys_own_and_can_be_deleted() {
    let (gw, _mock) = start().await;
    let new = |name: &str| serde_json::from_value(json!({ "name": name })).expect("a new key");
    let key = create_key(&gw, new("a")).await.key;
    let other = create_key(&gw, new("b")).await.key;
    let r: Value = respond(&gw, &key, json!({"model": "o-ok", "input": "keep me"}))
        .await
        .json()
        .await
        .unwrap();
    let id = r["id"].as_str().unwrap();
    let url = format!("{}/v1/responses/{id}", gw.url);
    let got: Value = client()
        .get(&url)
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, r);
    // Another key sees nothing, continues nothing, deletes nothing.
    let resp = client().get(&url).bearer_auth(&other).send().await.unwrap();
    error_body(resp, 404).await;
    let resp = respond(
        &gw,
        &other,
        json!({"model": "o-ok", "input": "x", "previous_response_id": id}),
    )
    .await;
    error_body(resp, 400).await;
    let resp = client()
        .delete(&url)
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    error_body(resp, 404).await;
    // Its own key deletes it.
    let del: Value = client()
        .delete(&url)
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        del,
        json!({"id": id, "object": "response.deleted", "deleted": true})
    );
    error_body(
        client().get(&url).bearer_auth(&key).send().await.unwrap(),
        404,
    )
    .await;
    // `store: false` keeps nothing.
    let r: Value = respond(
        &gw,
        &key,
        json!({"model": "o-ok", "input": "x", "store": false}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(r["store"], false);
    let url = format!("{}/v1/responses/{}", gw.url, r["id"].as_str().unwrap());
    error_body(
        client().get(&url).bearer_auth(&key).send().await.unwrap(),
        404,
    )
    .await;
    // A streamed response is kept before its `response.completed` goes out: found at once.
    let ev = response_events(
        respond(
            &gw,
            &key,
            json!({"model": "o-ok", "input": "stream and keep", "stream": true}),
        )
        .await,
    )
    .await;
    let done = ev.last().unwrap().1["response"].clone();
    let url = format!("{}/v1/responses/{}", gw.url, done["id"].as_str().unwrap());
    let resp = client().get(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), done);
    gw.stop().await;
}

#[tokio::test]
async fn issue11_no_retention_stores_nothing() {
    let (gw, _mock) = start_with("[store]\nresponses_retention_days = 0\n", ENV).await;
    let r: Value = respond(&gw, MASTER, json!({"model": "o-ok", "input": "x"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(output_text(&r), "echo: x");
    let url = format!("{}/v1/responses/{}", gw.url, r["id"].as_str().unwrap());
    error_body(
        client().get(&url).bearer_auth(MASTER).send().await.unwrap(),
        404,
    )
    .await;
    let n = sql_count(&gw).await;
    assert_eq!(n, 0);
    gw.stop().await;
}

async fn sql_count(gw: &TestGateway) -> i64 {
    use sqlx::Row;
    let store = gw.state.gateway.store();
    let row = sqlx::query("SELECT COUNT(*) AS n FROM responses")
        .fetch_one(store.pool())
        .await
        .expect("count");
    row.try_get("n").expect("n")
}

#[tokio::test]
async fn issue11_responses_errors_and_refusals() {
    let (gw, _mock) = start().await;
    let param = |v: Value| v["error"]["param"].as_str().unwrap_or_default().to_owned();
    let v = error_body(
        respond(
            &gw,
            MASTER,
            json!({"model": "o-ok", "input": "x", "tools": [{"type": "web_search"}]}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(param(v.clone()), "tools[0].type");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("web_search"));
    let v = error_body(
        respond(
            &gw,
            MASTER,
            json!({"model": "o-ok", "input": "x", "background": true}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(param(v), "background");
    error_body(
        respond(&gw, MASTER, json!({"model": "nope", "input": "x"})).await,
        404,
    )
    .await;
    let v = error_body(
        respond(
            &gw,
            MASTER,
            json!({"model": "o-ok", "input": "x", "previous_response_id": "resp_missing"}),
        )
        .await,
        400,
    )
    .await;
    // OpenAI's own answer for a missing previous response, which clients key on.
    assert_eq!(v["error"]["code"], "previous_response_not_found");
    assert_eq!(v["error"]["param"], "previous_response_id");
    // Tool settings without tools are the Responses API's defaults: not sent to chat.
    let (gw2, mock2) = start().await;
    let r = respond(
        &gw2,
        MASTER,
        json!({"model": "o-ok", "input": "x", "parallel_tool_calls": false,
               "tool_choice": "auto", "tools": null, "top_logprobs": 0}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let sent = mock2.last_request().body;
    assert!(
        sent.get("parallel_tool_calls").is_none() && sent.get("tool_choice").is_none(),
        "{sent}"
    );
    gw2.stop().await;
    // A stream cut after its first token ends with an error event.
    let ev = response_events(
        respond(
            &gw,
            MASTER,
            json!({"model": "o-cut", "input": "one two three four", "stream": true}),
        )
        .await,
    )
    .await;
    let n = ev.len();
    assert_eq!(ev[n - 2].0, "response.failed");
    assert_eq!(ev[n - 2].1["response"]["status"], "failed");
    let (name, error) = &ev[n - 1];
    assert_eq!(name, "error");
    // Flat, and under `error` (what the SDKs raise on).
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{error}"
    );
    assert_eq!(error["error"]["message"], error["message"]);
    assert!(ev.iter().all(|(n, _)| n != "response.completed"));
    gw.stop().await;
}

/// On both stores: the chain is read back by one recursive query.
async fn a_chain_carries_the_conversation(store: llmrr_testkit::harness::StoreChoice) {
    let mock = MockProvider::start().await;
    let gw = TestGateway::start(&models_toml(&mock), ENV, store).await;
    let mut previous: Option<String> = None;
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        let mut body = json!({"model": "o-ok", "input": text, "instructions": format!("turn {i}")});
        if let Some(p) = &previous {
            body["previous_response_id"] = json!(p);
        }
        let r: Value = respond(&gw, MASTER, body)
            .await
            .json()
            .await
            .expect("as sent");
        previous = Some(r["id"].as_str().expect("as sent").to_owned());
    }
    // The third call sent its own instructions only, then every turn in order.
    let sent = mock.last_request().body;
    let said: Vec<(String, String)> = sent["messages"]
        .as_array()
        .expect("as sent")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().expect("as sent").to_owned(),
                m["content"].as_str().expect("as sent").to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("system", "turn 2"),
        ("user", "one"),
        ("assistant", "echo: one"),
        ("user", "two"),
        ("assistant", "echo: two"),
        ("user", "three"),
    ]
    .iter()
    .map(|(r, c)| (r.to_string(), c.to_string()))
    .collect();
    assert_eq!(said, want);
    gw.stop().await;
}

#[tokio::test]
async fn issue11_a_chain_of_responses_carries_the_whole_conversation_sqlite() {
    a_chain_carries_the_conversation(llmrr_testkit::harness::StoreChoice::Sqlite).await;
}

#[tokio::test]
async fn issue11_a_chain_of_responses_carries_the_whole_conversation_postgres() {
    a_chain_carries_the_conversation(llmrr_testkit::harness::StoreChoice::Postgres).await;
}

#[tokio::test]
async fn issue11_a_route_falls_back_for_a_responses_client_and_prices_the_answer() {
    let (gw, _mock) = start_routed(
        "[[routes]]\nname = \"chain\"\nstrategy = \"capability-match\"\nmodels = [\"o-500\", \"a-ok\"]\n",
    )
    .await;
    let resp = respond(&gw, MASTER, json!({"model": "chain", "input": "hello"})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-llmrr-model"], "a-ok");
    let cost = resp.headers()["x-llmrr-cost-usd"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let r: Value = resp.json().await.expect("json");
    assert_eq!(output_text(&r), "echo: hello");
    // a-ok: 3 USD in, 15 out per million; the mock counts words.
    let (input, output) = (
        r["usage"]["input_tokens"].as_u64().expect("in"),
        r["usage"]["output_tokens"].as_u64().expect("out"),
    );
    let want = (rust_decimal::Decimal::from(input * 3) + rust_decimal::Decimal::from(output * 15))
        / rust_decimal::Decimal::from(1_000_000);
    assert_eq!(cost, want.normalize().to_string());
    gw.flush_log().await;
    let rows = rows(&gw).await;
    assert!(rows
        .iter()
        .any(|r| r.model.as_deref() == Some("a-ok") && r.status == 200));
    gw.stop().await;
}

#[tokio::test]
async fn input_items_list_a_stored_responses_own_input_in_pages() {
    let (gw, _mock) = start().await;
    let new = |name: &str| serde_json::from_value(json!({ "name": name })).expect("a new key");
    let key = create_key(&gw, new("a")).await.key;
    let other = create_key(&gw, new("b")).await.key;
    let first: Value = respond(
        &gw,
        &key,
        json!({"model": "o-tool", "input": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "input_text", "text": "weather?"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]}
    ], "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]}),
    )
    .await
    .json()
    .await
    .expect("json");
    let call = first["output"]
        .as_array()
        .and_then(|o| o.iter().find(|i| i["type"] == "function_call"))
        .cloned()
        .expect("a call");
    let second: Value = respond(&gw, &key, json!({"model": "o-ok",
        "previous_response_id": first["id"],
        "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}]}))
    .await
    .json()
    .await
    .expect("json");
    let list = |id: &Value, query: &str, key: &str| {
        let url = format!(
            "{}/v1/responses/{}/input_items{query}",
            gw.url,
            id.as_str().unwrap_or("")
        );
        let key = key.to_owned();
        async move {
            client()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .expect("answers")
        }
    };
    // The first response's input, newest first by default; its own turn only.
    let v: Value = list(&first["id"], "", &key)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().expect("data");
    assert_eq!(data.len(), 2, "{v}");
    assert_eq!(data[0]["role"], "user");
    assert_eq!(
        data[0]["content"][0],
        json!({"type": "input_text", "text": "weather?"})
    );
    assert_eq!(data[0]["content"][1]["type"], "input_image");
    assert_eq!(
        (
            data[1]["role"].clone(),
            data[1]["content"][0]["text"].clone()
        ),
        (json!("system"), json!("be brief"))
    );
    assert_eq!(v["has_more"], false);
    // The second's input is the tool's output, not the chain before it.
    let v: Value = list(&second["id"], "?order=asc", &key)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["data"][0]["type"], "function_call_output");
    assert_eq!(v["data"][0]["call_id"], call["call_id"]);
    assert_eq!(v["data"][0]["output"], "sunny");
    // Pages: the same ids on every read.
    let page: Value = list(&first["id"], "?order=asc&limit=1", &key)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["has_more"], true);
    let next: Value = list(
        &first["id"],
        &format!(
            "?order=asc&limit=1&after={}",
            page["last_id"].as_str().expect("id")
        ),
        &key,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(next["data"][0]["role"], "user");
    assert_eq!(next["has_more"], false);
    // Another key, an unknown id, a bad limit.
    assert_eq!(list(&first["id"], "", &other).await.status(), 404);
    assert_eq!(list(&json!("resp_nope"), "", &key).await.status(), 404);
    assert_eq!(list(&first["id"], "?limit=0", &key).await.status(), 400);
}
