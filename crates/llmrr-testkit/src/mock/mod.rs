//! A mock upstream. Behaviour is picked from the requested model name, `mock-<mode>`:
//!
//! | mode | what it does |
//! |---|---|
//! | `ok` (or anything unknown) | answers `echo: <last user text>`; streams one word a chunk |
//! | `tool` | answers with a `get_weather` tool call |
//! | `slow-<ms>` | waits before answering |
//! | `drip-<ms>` | streams with a pause before every chunk |
//! | `stall` | streams the role chunk (no token), then nothing until the client leaves |
//! | `cut` | streams two chunks and ends without `[DONE]` / `message_stop` |
//! | `streamerror` | streams two chunks, then an error event |
//! | `garbage` | 200 with a body that is not JSON (or SSE of non-JSON) |
//! | `429` | rate limited, with `Retry-After: 7` |
//! | `500`, `400`, `401`, `529` | that status, with the provider's error body (`400`: context length) |
//! | `policy` | 400 refused by the content policy |
//! | (Anthropic) | a forced `tool_choice` is answered with that tool, input `{"echo": …}`; `thinking` adds a thinking block |
//! | `badreq` | 400 for an invalid parameter (a client error no other model can fix) |
//! | `echokey` | 401 whose message echoes the API key it was sent (as some servers do) |
//! | `huge` | 200 with a JSON body of 65 MiB (non-streamed) |
//! | `longline` | a stream whose first line never ends (9 MiB without a newline, then stalls) |
//! | `wide-<n>` | streams `n` chunks of 16 KiB of text each, each event written whole, with a 0.5 s pause after the first |
//!
//! `/v1/responses` speaks OpenAI's Responses API in these modes (see `responses`).
//!
//! Streams are written in small odd-sized pieces so that events arrive split mid-line.
//! Every request is recorded (path, headers, JSON body) for assertions.

mod responses;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    /// Benchmarks: keep nothing (memory stays flat under any load).
    unrecorded: std::sync::atomic::AtomicBool,
}

pub struct MockProvider {
    /// `http://127.0.0.1:PORT/v1`
    pub base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockProvider {
    pub async fn start() -> MockProvider {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/chat/completions", post(openai_chat))
            .route("/v1/completions", post(openai_completions))
            .route("/v1/embeddings", post(openai_embeddings))
            .route(
                "/v1/models",
                get(|| async { Json(json!({"object": "list", "data": []})) }),
            )
            .route("/v1/responses", post(responses::responses))
            .route("/v1/messages", post(anthropic_messages))
            .route("/v1/messages/count_tokens", post(anthropic_count_tokens))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the mock to a free loopback port");
        let addr = listener.local_addr().expect("mock address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockProvider {
            base_url: format!("http://{addr}/v1"),
            shared,
            task,
        }
    }

    /// Stop recording requests (for benchmarks that measure memory).
    pub fn stop_recording(&self) {
        self.shared
            .unrecorded
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("mock lock").clone()
    }

    pub fn last_request(&self) -> Recorded {
        self.requests().pop().expect("the mock received a request")
    }
}

fn record(shared: &Shared, path: &str, headers: &HeaderMap, body: &Value) {
    if shared.unrecorded.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    shared.requests.lock().expect("mock lock").push(Recorded {
        path: path.to_owned(),
        headers,
        body: body.clone(),
    });
}

fn mode(body: &Value) -> String {
    let model = body["model"].as_str().unwrap_or("");
    model.rsplit("mock-").next().unwrap_or("ok").to_owned()
}

fn millis(mode: &str, prefix: &str) -> Option<u64> {
    mode.strip_prefix(prefix)?.parse().ok()
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The text of every message (OpenAI or Anthropic shapes), for token counts.
fn all_text(messages: &Value) -> String {
    let mut out = String::new();
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push(' ');
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(o) => {
                for k in ["content", "text"] {
                    if let Some(c) = o.get(k) {
                        walk(c, out);
                    }
                }
            }
            _ => {}
        }
    }
    walk(messages, &mut out);
    out
}

fn last_user_text(messages: &Value) -> String {
    messages
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| all_text(&m["content"]).trim().to_owned())
        .unwrap_or_default()
}

/// Pieces of `text` of 1..=13 bytes: events arrive split anywhere.
fn pieces(text: String) -> Vec<Bytes> {
    let bytes = Bytes::from(text);
    let mut out = Vec::new();
    let mut i = 0;
    let mut size = 1;
    while i < bytes.len() {
        let end = (i + size).min(bytes.len());
        out.push(bytes.slice(i..end));
        i = end;
        size = size % 13 + 4;
    }
    out
}

enum Ending {
    /// The stream is complete as written.
    Complete,
    /// Nothing more, but the connection stays open until the client leaves.
    Stall,
}

/// A streamed body of `events`, each already framed, with `pause` before each event.
fn sse_body(events: Vec<String>, pause: Duration, ending: Ending) -> Response {
    let stream = futures_util::stream::iter(events).then(move |ev| async move {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        futures_util::stream::iter(pieces(ev).into_iter().map(Ok::<_, std::io::Error>))
    });
    let stream = stream.flatten();
    let body = match ending {
        Ending::Complete => Body::from_stream(stream),
        Ending::Stall => Body::from_stream(stream.chain(futures_util::stream::pending())),
    };
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(body)
        .expect("a valid response")
}

fn openai_error(
    status: u16,
    message: &str,
    kind: &str,
    code: Option<&str>,
    param: Option<&str>,
) -> Response {
    let mut r = (
        StatusCode::from_u16(status).expect("status"),
        Json(json!({"error": {"message": message, "type": kind, "param": param, "code": code}})),
    )
        .into_response();
    if status == 429 {
        r.headers_mut()
            .insert("retry-after", "7".parse().expect("header"));
    }
    r
}

/// Faults that test the gateway's own defences: an upstream that echoes our key, answers
/// without end, or never ends a line.
fn oversized_or_echo(mode: &str, headers: &HeaderMap) -> Option<Response> {
    const MIB: usize = 1024 * 1024;
    match mode {
        "echokey" => {
            let sent = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .trim_start_matches("Bearer ")
                .to_owned();
            Some(openai_error(
                401,
                &format!("Incorrect API key provided: {sent}"),
                "invalid_request_error",
                Some("invalid_api_key"),
                None,
            ))
        }
        "huge" => {
            let head =
                futures_util::stream::once(async { Ok(Bytes::from_static(b"{\"pad\": \"")) });
            let pad = futures_util::stream::iter(
                (0..65).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; MIB]))),
            );
            let tail = futures_util::stream::once(async { Ok(Bytes::from_static(b"\"}")) });
            Some(
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from_stream(head.chain(pad).chain(tail)))
                    .expect("a valid response"),
            )
        }
        "longline" => {
            let head = futures_util::stream::once(async { Ok(Bytes::from_static(b"data: {")) });
            let pad = futures_util::stream::iter(
                (0..9).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; MIB]))),
            );
            Some(
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(
                        head.chain(pad).chain(futures_util::stream::pending()),
                    ))
                    .expect("a valid response"),
            )
        }
        _ => None,
    }
}

/// The fault modes shared by every OpenAI endpoint; `None` when the call should succeed.
async fn openai_fault(mode: &str) -> Option<Response> {
    if let Some(ms) = millis(mode, "slow-") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    match mode {
        "429" => Some(openai_error(
            429,
            "Rate limit reached for mock in requests per min",
            "requests",
            Some("rate_limit_exceeded"),
            None,
        )),
        "500" => Some(openai_error(
            500,
            "The server had an error while processing your request",
            "server_error",
            None,
            None,
        )),
        "400" => Some(openai_error(
            400,
            "This model's maximum context length is 10 tokens",
            "invalid_request_error",
            Some("context_length_exceeded"),
            Some("messages"),
        )),
        "401" => Some(openai_error(
            401,
            "Incorrect API key provided",
            "invalid_request_error",
            Some("invalid_api_key"),
            None,
        )),
        "badreq" => Some(openai_error(
            400,
            "Invalid value for 'temperature': must be at most 2",
            "invalid_request_error",
            Some("invalid_value"),
            Some("temperature"),
        )),
        "policy" => Some(openai_error(
            400,
            "Your request was rejected as a result of our safety system",
            "invalid_request_error",
            Some("content_policy_violation"),
            None,
        )),
        "garbage" => Some((StatusCode::OK, "<html>this is not json").into_response()),
        _ => None,
    }
}

/// What a plain (non-streamed) answer says in each mode: `empty`, a refusal (`refuse`), a
/// JSON object (`json`), else the echo.
fn answer_text(mode: &str, reply: &str) -> String {
    match mode {
        "empty" => String::new(),
        "refuse" => "I'm sorry, but I can't help with that.".into(),
        "json" => "{\"city\": \"Paris\"}".into(),
        _ => reply.to_owned(),
    }
}

/// `logprobs.content`, when the request asks for logprobs: each word at -0.05, or at -2.5 in
/// mode `unsure`.
fn logprobs(body: &Value, mode: &str, reply: &str) -> Value {
    if body["logprobs"] != true {
        return Value::Null;
    }
    let lp = if mode == "unsure" { -2.5 } else { -0.05 };
    let tokens: Vec<Value> = reply
        .split_whitespace()
        .map(|w| json!({"token": w, "logprob": lp, "bytes": null, "top_logprobs": []}))
        .collect();
    json!({"content": tokens, "refusal": null})
}

async fn openai_chat(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record(&shared, "/v1/chat/completions", &headers, &body);
    let mode = mode(&body);
    let stream = body["stream"] == true;
    if let Some(r) = oversized_or_echo(&mode, &headers) {
        return r;
    }
    if !(stream && mode == "garbage") {
        if let Some(r) = openai_fault(&mode).await {
            return r;
        }
    }
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let reply = format!("echo: {}", last_user_text(&body["messages"]));
    let prompt_tokens = words(&all_text(&body["messages"]));
    let tool = mode == "tool";
    let completion_tokens = if tool { 5 } else { words(&reply) };
    let mut usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                       "total_tokens": prompt_tokens + completion_tokens});
    if mode == "cached" {
        // Half the prompt from the provider's cache; one output token spent reasoning.
        usage["prompt_tokens_details"] = json!({"cached_tokens": prompt_tokens / 2});
        usage["completion_tokens_details"] = json!({"reasoning_tokens": 1});
    }
    if !stream {
        let message = if tool {
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_mock", "type": "function",
                   "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]})
        } else {
            json!({"role": "assistant", "content": answer_text(&mode, &reply), "refusal": null})
        };
        let finish = match mode.as_str() {
            _ if tool => "tool_calls",
            "length" => "length",
            _ => "stop",
        };
        let mut answer = Json(json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 1_700_000_000, "model": model,
            "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "message": message, "logprobs": logprobs(&body, &mode, &reply),
                         "finish_reason": finish}],
            "usage": usage,
        }))
        .into_response();
        // As OpenAI does: its own request id and the account's rate-limit state.
        let h = answer.headers_mut();
        h.insert("x-request-id", "req_mock_upstream".parse().expect("header"));
        h.insert(
            "x-ratelimit-remaining-requests",
            "99".parse().expect("header"),
        );
        h.insert("x-ratelimit-limit-requests", "100".parse().expect("header"));
        return answer;
    }
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
            "created": 1_700_000_000, "model": model, "choices": [{"index": 0, "delta": delta,
            "logprobs": null, "finish_reason": finish}]})
        )
    };
    if let Some(n) = millis(&mode, "wide-") {
        // Many large events, each in one write: megabytes quickly.
        let text = "x".repeat(16 * 1024);
        let events: Vec<Bytes> = (0..n)
            .map(|_| chunk(json!({"content": text}), Value::Null))
            .chain([chunk(json!({}), json!("stop")), "data: [DONE]\n\n".into()])
            .map(Bytes::from)
            .collect();
        let stream =
            futures_util::stream::iter(events.into_iter().enumerate()).then(|(i, e)| async move {
                if i == 1 {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Ok::<_, std::io::Error>(e)
            });
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(stream))
            .expect("a valid response");
    }
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if mode == "garbage" {
        events.push("data: {not json at all\n\n".into());
        return sse_body(events, Duration::ZERO, Ending::Complete);
    }
    if tool {
        events.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_mock", "type": "function",
            "function": {"name": "get_weather", "arguments": ""}}]}),
            Value::Null,
        ));
        for part in ["{\"city\":", "\"Paris\"}"] {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                Value::Null,
            ));
        }
    } else {
        for (i, w) in reply.split_whitespace().enumerate() {
            let text = if i == 0 {
                w.to_owned()
            } else {
                format!(" {w}")
            };
            events.push(chunk(json!({"content": text}), Value::Null));
        }
    }
    match mode.as_str() {
        "cut" => {
            events.truncate(3);
            return sse_body(events, Duration::ZERO, Ending::Complete);
        }
        "streamerror" => {
            events.truncate(3);
            events.push(format!("data: {}\n\n", json!({"error": {"message": "upstream exploded mid-stream", "type": "server_error", "code": null}})));
            return sse_body(events, Duration::ZERO, Ending::Complete);
        }
        "stall" => {
            events.truncate(1);
            return sse_body(events, Duration::ZERO, Ending::Stall);
        }
        _ => {}
    }
    events.push(chunk(
        json!({}),
        json!(if tool { "tool_calls" } else { "stop" }),
    ));
    if body["stream_options"]["include_usage"] == true {
        events.push(format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
            "created": 1_700_000_000, "model": model, "choices": [], "usage": usage})
        ));
    }
    events.push("data: [DONE]\n\n".into());
    let pause = Duration::from_millis(millis(&mode, "drip-").unwrap_or(0));
    sse_body(events, pause, Ending::Complete)
}

async fn openai_completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record(&shared, "/v1/completions", &headers, &body);
    let mode = mode(&body);
    if let Some(r) = openai_fault(&mode).await {
        return r;
    }
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let prompt = all_text(&body["prompt"]);
    let text = format!("echo: {}", prompt.trim());
    let usage = json!({"prompt_tokens": words(&prompt), "completion_tokens": words(&text),
                       "total_tokens": words(&prompt) + words(&text)});
    if body["stream"] != true {
        return Json(json!({"id": "cmpl-mock", "object": "text_completion", "created": 1_700_000_000,
            "model": model, "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
            "usage": usage})).into_response();
    }
    let mut events: Vec<String> = text
        .split_whitespace()
        .map(|w| format!("data: {}\n\n", json!({"id": "cmpl-mock", "object": "text_completion",
            "created": 1_700_000_000, "model": model, "choices": [{"index": 0, "text": format!("{w} "),
            "logprobs": null, "finish_reason": null}]})))
        .collect();
    if body["stream_options"]["include_usage"] == true {
        events.push(format!(
            "data: {}\n\n",
            json!({"id": "cmpl-mock", "object": "text_completion",
            "created": 1_700_000_000, "model": model, "choices": [], "usage": usage})
        ));
    }
    events.push("data: [DONE]\n\n".into());
    sse_body(events, Duration::ZERO, Ending::Complete)
}

/// `vec[0.1,0.9]` inside a text: that vector.
fn controlled_vector(text: &str) -> Option<Vec<f64>> {
    let start = text.find("vec[")? + 4;
    let end = start + text[start..].find(']')?;
    text[start..end]
        .split(',')
        .map(|x| x.trim().parse::<f64>().ok())
        .collect()
}

async fn openai_embeddings(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record(&shared, "/v1/embeddings", &headers, &body);
    if let Some(r) = openai_fault(&mode(&body)).await {
        return r;
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::Array(items) => items.iter().map(|i| i.to_string()).collect(),
        other => vec![other.to_string()],
    };
    let tokens: u64 = inputs.iter().map(|i| words(i)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            // A text holding `vec[a,b,…]` gets exactly that vector (tests of similarity).
            if let Some(v) = controlled_vector(text) {
                return json!({"object": "embedding", "index": i, "embedding": v});
            }
            // Deterministic: the same text always gets the same vector.
            let seed = text
                .bytes()
                .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            let v: Vec<f64> = (0..8)
                .map(|k| f64::from((seed >> k) & 0xff) / 255.0)
                .collect();
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    Json(
        json!({"object": "list", "data": data, "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
    .into_response()
}

fn anthropic_error(status: u16, kind: &str, message: &str) -> Response {
    let mut r = (
        StatusCode::from_u16(status).expect("status"),
        Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
    )
        .into_response();
    if status == 429 {
        r.headers_mut()
            .insert("retry-after", "7".parse().expect("header"));
    }
    r
}

/// Anthropic's token count: words of the messages and the system prompt, plus 100 for the
/// tools when there are any (so a test can tell it from llmrr's estimate); it refuses the
/// fields Anthropic's endpoint refuses (`max_tokens`, `stream`).
async fn anthropic_count_tokens(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record(&shared, "/v1/messages/count_tokens", &headers, &body);
    if !headers.contains_key("x-api-key") {
        return anthropic_error(401, "authentication_error", "x-api-key header is required");
    }
    if let Some(extra) = ["max_tokens", "stream", "metadata"]
        .iter()
        .find(|k| body.get(**k).is_some())
    {
        return anthropic_error(
            400,
            "invalid_request_error",
            &format!("{extra}: Extra inputs are not permitted"),
        );
    }
    if mode(&body) == "500" {
        return anthropic_error(500, "api_error", "Internal server error");
    }
    let tools = if body["tools"].as_array().is_some_and(|t| !t.is_empty()) {
        100
    } else {
        0
    };
    let n = words(&all_text(&body["messages"])) + words(&all_text(&body["system"])) + tools;
    Json(json!({"input_tokens": n})).into_response()
}

async fn anthropic_messages(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record(&shared, "/v1/messages", &headers, &body);
    if !headers.contains_key("x-api-key") {
        return anthropic_error(401, "authentication_error", "x-api-key header is required");
    }
    if !headers.contains_key("anthropic-version") {
        return anthropic_error(
            400,
            "invalid_request_error",
            "anthropic-version header is required",
        );
    }
    if body["max_tokens"].as_u64().is_none() {
        return anthropic_error(400, "invalid_request_error", "max_tokens: Field required");
    }
    let mode = mode(&body);
    if let Some(ms) = millis(&mode, "slow-") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    match mode.as_str() {
        "429" => {
            return anthropic_error(
                429,
                "rate_limit_error",
                "Number of requests has exceeded your rate limit",
            )
        }
        "529" => return anthropic_error(529, "overloaded_error", "Overloaded"),
        "500" => return anthropic_error(500, "api_error", "Internal server error"),
        "400" => {
            return anthropic_error(
                400,
                "invalid_request_error",
                "prompt is too long: 300000 tokens > 200000 maximum",
            )
        }
        _ => {}
    }
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let reply = format!("echo: {}", last_user_text(&body["messages"]));
    let input_tokens = words(&all_text(&body["messages"])) + words(&all_text(&body["system"]));
    let tool = mode == "tool";
    let output_tokens = words(&reply) + if tool { 5 } else { 0 };
    // A forced tool (`tool_choice: {"type": "tool"}`) is answered with that tool alone, its
    // input echoing the user; extended thinking (`thinking`) adds a thinking block first.
    let forced = (!tool && body["tool_choice"]["type"] == "tool").then(|| {
        body["tool_choice"]["name"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    });
    let thinking = body["thinking"]["type"] == "enabled";
    let stop_reason = if tool || forced.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    if let (Some(name), true) = (&forced, body["stream"] == true) {
        let input = json!({"echo": reply}).to_string();
        let (head, tail) = input.split_at(input.len() / 2);
        let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        let mut events = vec![ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_mock",
            "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
        )];
        if thinking {
            events.push(ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "thinking", "thinking": ""}}),
            ));
            events.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "thinking it over"}}),
            ));
            events.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "signature_delta", "signature": "sig"}}),
            ));
            events.push(ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ));
        }
        let index = u32::from(thinking);
        events.push(ev("content_block_start", json!({"type": "content_block_start", "index": index,
            "content_block": {"type": "tool_use", "id": "toolu_forced", "name": name, "input": {}}})));
        for part in [head, tail] {
            events.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": part}}),
            ));
        }
        events.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        events.push(ev("message_delta", json!({"type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": output_tokens}})));
        events.push(ev("message_stop", json!({"type": "message_stop"})));
        return sse_body(events, Duration::ZERO, Ending::Complete);
    }
    if body["stream"] != true {
        let mut content = Vec::new();
        if thinking {
            content.push(
                json!({"type": "thinking", "thinking": "thinking it over", "signature": "sig"}),
            );
        }
        match &forced {
            Some(name) => content.push(
                json!({"type": "tool_use", "id": "toolu_forced", "name": name,
                "input": {"echo": reply}}),
            ),
            None => content.push(json!({"type": "text", "text": reply})),
        }
        if tool {
            content.push(json!({"type": "tool_use", "id": "toolu_mock", "name": "get_weather", "input": {"city": "Paris"}}));
        }
        return Json(
            json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": null,
            "usage": if mode == "cached" {
                // 100 tokens read from the prompt cache, 50 written to it (20 of them for an
                // hour).
                json!({"input_tokens": input_tokens, "output_tokens": output_tokens,
                       "cache_read_input_tokens": 100, "cache_creation_input_tokens": 50,
                       "cache_creation": {"ephemeral_5m_input_tokens": 30,
                                          "ephemeral_1h_input_tokens": 20}})
            } else {
                json!({"input_tokens": input_tokens, "output_tokens": output_tokens})
            }}),
        )
        .into_response();
    }
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
        ),
        ev("ping", json!({"type": "ping"})),
    ];
    // Extended thinking streams its block first, with its signature last.
    let text_index = u32::from(thinking);
    if thinking {
        for (name, data) in [
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "thinking it over"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "signature_delta", "signature": "sig"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
        ] {
            events.push(ev(name, data));
        }
    }
    events.push(ev(
        "content_block_start",
        json!({"type": "content_block_start", "index": text_index, "content_block": {"type": "text", "text": ""}}),
    ));
    for (i, w) in reply.split_whitespace().enumerate() {
        let text = if i == 0 {
            w.to_owned()
        } else {
            format!(" {w}")
        };
        events.push(ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": text_index,
            "delta": {"type": "text_delta", "text": text}}),
        ));
    }
    events.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": text_index}),
    ));
    match mode.as_str() {
        "cut" => {
            events.truncate(4);
            return sse_body(events, Duration::ZERO, Ending::Complete);
        }
        "streamerror" => {
            events.truncate(4);
            events.push(ev("error", json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})));
            return sse_body(events, Duration::ZERO, Ending::Complete);
        }
        "garbage" => {
            events.truncate(2);
            events.push("event: content_block_delta\ndata: {broken\n\n".into());
            return sse_body(events, Duration::ZERO, Ending::Complete);
        }
        _ => {}
    }
    if tool {
        let index = text_index + 1;
        events.push(ev("content_block_start", json!({"type": "content_block_start", "index": index,
            "content_block": {"type": "tool_use", "id": "toolu_mock", "name": "get_weather", "input": {}}})));
        for part in ["{\"city\": ", "\"Paris\"}"] {
            events.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": part}}),
            ));
        }
        events.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push(ev("message_delta", json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": output_tokens}})));
    events.push(ev("message_stop", json!({"type": "message_stop"})));
    let pause = Duration::from_millis(millis(&mode, "drip-").unwrap_or(0));
    sse_body(events, pause, Ending::Complete)
}
