//! The mock's `POST /v1/responses`: OpenAI's Responses API, plain (a response object) and
//! streamed (the semantic events, each named in `event:` and numbered), in the modes of the
//! chat endpoint — `ok`, `tool`, `think` (a reasoning item with a summary first), `length`
//! (incomplete at `max_output_tokens`), `failed` (a `failed` response: 200, or a
//! `response.failed` event), `cut`, `streamerror` (an `error` event), `stall`, `drip-<ms>`,
//! and the faults every OpenAI endpoint has.

use super::*;

/// The text of the last user message of `input` (a string, or items).
fn last_user_input(input: &Value) -> String {
    match input {
        Value::String(s) => s.clone(),
        items => last_user_text(items),
    }
}

fn output_items(mode: &str, reply: &str) -> Vec<Value> {
    let mut items = Vec::new();
    if mode == "think" {
        items.push(json!({"type": "reasoning", "id": "rs_mock",
            "summary": [{"type": "summary_text", "text": "thinking it over"}]}));
    }
    if mode == "tool" {
        items.push(
            json!({"type": "function_call", "id": "fc_mock", "call_id": "call_mock",
            "name": "get_weather", "arguments": "{\"city\":\"Paris\"}", "status": "completed"}),
        );
    } else {
        items.push(
            json!({"type": "message", "id": "msg_mock", "status": "completed",
            "role": "assistant", "content": [{"type": "output_text",
            "text": answer_text(mode, reply), "annotations": [], "logprobs": []}]}),
        );
    }
    items
}

/// The response object, complete (`output` and `usage`) or just opened (`None`).
fn response(body: &Value, model: &str, done: Option<(&[Value], &Value)>, mode: &str) -> Value {
    let status = match (done, mode) {
        (None, _) => "in_progress",
        (_, "length") => "incomplete",
        (_, "failed") => "failed",
        _ => "completed",
    };
    let (output, usage) = done.map_or((json!([]), Value::Null), |(o, u)| (json!(o), u.clone()));
    json!({"id": "resp_mock", "object": "response", "created_at": 1_700_000_000, "status": status,
        "model": model, "output": output, "usage": usage,
        "error": if status == "failed" { json!({"code": "server_error", "message": "The model failed to answer"}) } else { Value::Null },
        "incomplete_details": if status == "incomplete" { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "instructions": body["instructions"], "store": body["store"], "parallel_tool_calls": true,
        "tools": body.get("tools").cloned().unwrap_or(json!([])), "text": {"format": {"type": "text"}}})
}

pub(super) async fn responses(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record(&shared, "/v1/responses", &headers, &body);
    let mode = mode(&body);
    if let Some(r) = oversized_or_echo(&mode, &headers) {
        return r;
    }
    if let Some(r) = openai_fault(&mode).await {
        return r;
    }
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let reply = format!("echo: {}", last_user_input(&body["input"]));
    let input_tokens =
        words(&all_text(&body["input"])) + words(body["instructions"].as_str().unwrap_or(""));
    let (output_tokens, reasoning_tokens) = match mode.as_str() {
        "tool" => (5, 0),
        "think" => (words(&reply) + 3, 3),
        _ => (words(&reply), 0),
    };
    let usage = json!({"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens});
    let items = output_items(&mode, &reply);
    let done = response(&body, &model, Some((&items, &usage)), &mode);
    if body["stream"] != true {
        return Json(done).into_response();
    }
    let mut events: Vec<Value> = vec![
        json!({"type": "response.created", "response": response(&body, &model, None, &mode)}),
        json!({"type": "response.in_progress", "response": response(&body, &model, None, &mode)}),
    ];
    if mode == "failed" {
        events.push(json!({"type": "response.failed", "response": done}));
        return sse_events(events, &mode);
    }
    for (i, item) in items.iter().enumerate() {
        let id = &item["id"];
        let mut opened = item.clone();
        opened["status"] = json!("in_progress");
        match item["type"].as_str() {
            Some("message") => opened["content"] = json!([]),
            Some("function_call") => opened["arguments"] = json!(""),
            _ => opened["summary"] = json!([]),
        }
        events
            .push(json!({"type": "response.output_item.added", "output_index": i, "item": opened}));
        match item["type"].as_str() {
            Some("message") => {
                let part =
                    json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
                events.push(json!({"type": "response.content_part.added", "item_id": id,
                    "output_index": i, "content_index": 0, "part": part}));
                let text = item["content"][0]["text"].as_str().unwrap_or("");
                for w in text.split_inclusive(' ') {
                    events.push(json!({"type": "response.output_text.delta", "item_id": id,
                        "output_index": i, "content_index": 0, "delta": w, "logprobs": []}));
                }
                events.push(json!({"type": "response.output_text.done", "item_id": id,
                    "output_index": i, "content_index": 0, "text": text, "logprobs": []}));
                events.push(json!({"type": "response.content_part.done", "item_id": id,
                    "output_index": i, "content_index": 0, "part": item["content"][0]}));
            }
            Some("function_call") => {
                for part in ["{\"city\":", "\"Paris\"}"] {
                    events.push(json!({"type": "response.function_call_arguments.delta",
                        "item_id": id, "output_index": i, "delta": part}));
                }
                events.push(json!({"type": "response.function_call_arguments.done",
                    "item_id": id, "output_index": i, "arguments": item["arguments"]}));
            }
            _ => {
                let summary = item["summary"][0]["text"].as_str().unwrap_or("");
                events.push(json!({"type": "response.reasoning_summary_part.added", "item_id": id,
                    "output_index": i, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}));
                events.push(
                    json!({"type": "response.reasoning_summary_text.delta", "item_id": id,
                    "output_index": i, "summary_index": 0, "delta": summary}),
                );
                events.push(
                    json!({"type": "response.reasoning_summary_text.done", "item_id": id,
                    "output_index": i, "summary_index": 0, "text": summary}),
                );
                events.push(
                    json!({"type": "response.reasoning_summary_part.done", "item_id": id,
                    "output_index": i, "summary_index": 0, "part": item["summary"][0]}),
                );
            }
        }
        events.push(json!({"type": "response.output_item.done", "output_index": i, "item": item}));
    }
    match mode.as_str() {
        "cut" => events.truncate(6),
        "streamerror" => {
            events.truncate(6);
            events.push(json!({"type": "error", "code": "server_error",
                "message": "upstream exploded mid-stream", "param": null}));
        }
        "stall" => events.truncate(2),
        "length" => events.push(json!({"type": "response.incomplete", "response": done})),
        _ => events.push(json!({"type": "response.completed", "response": done})),
    }
    sse_events(events, &mode)
}

/// The events framed as OpenAI frames them (`event:` the type, `sequence_number` counting up).
fn sse_events(events: Vec<Value>, mode: &str) -> Response {
    let framed = events
        .into_iter()
        .enumerate()
        .map(|(i, mut ev)| {
            ev["sequence_number"] = json!(i);
            format!(
                "event: {}\ndata: {ev}\n\n",
                ev["type"].as_str().unwrap_or("")
            )
        })
        .collect();
    let pause = Duration::from_millis(millis(mode, "drip-").unwrap_or(0));
    let ending = if mode == "stall" {
        Ending::Stall
    } else {
        Ending::Complete
    };
    sse_body(framed, pause, ending)
}
