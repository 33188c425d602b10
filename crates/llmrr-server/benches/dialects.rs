//! The cost of speaking each API, per stream chunk and per request, side by side in one run:
//! a chat chunk framed as OpenAI SSE (bytes passed through), as Anthropic events and as
//! Responses events (the chunk read into typed events, then written); and a 20 KB Messages
//! request read and translated to the gateway's chat request (the client's own body kept),
//! beside the same conversation parsed as a chat request.

#![expect(
    clippy::expect_used,
    reason = "a bench whose setup fails must stop loudly"
)]

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use llmrr_core::answer::StreamItem;
use llmrr_server::dialect::{anthropic, ollama, openai, responses};
use serde_json::{json, Value};

fn text_chunk() -> Bytes {
    Bytes::from(
        json!({"id": "chatcmpl-abc123", "object": "chat.completion.chunk", "created": 1_700_000_000,
               "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0ba0d124f1",
               "choices": [{"index": 0, "delta": {"content": " the quick brown"},
                            "logprobs": null, "finish_reason": null}]})
        .to_string(),
    )
}

/// A coding agent's request: a long system prompt, tools and a few turns (about 20 KB).
fn messages_body() -> Value {
    let long = "You are a careful assistant. ".repeat(300);
    let tools: Vec<Value> = (0..8)
        .map(|i| {
            json!({"name": format!("tool_{i}"), "description": "Does a thing with a path.",
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}},
                             "required": ["path"]}})
        })
        .collect();
    let mut messages = Vec::new();
    for i in 0..10 {
        let ask = "read the file and explain it. ".repeat(20);
        messages.push(json!({"role": "user", "content": format!("Step {i}: {ask}")}));
        messages.push(json!({"role": "assistant", "content": [
            {"type": "text", "text": "Reading it."},
            {"type": "tool_use", "id": format!("toolu_{i}"), "name": "tool_1",
             "input": {"path": "src/main.rs"}}]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": format!("toolu_{i}"), "content": "fn main() {}"}]}));
    }
    messages.push(json!({"role": "user", "content": "Now summarize."}));
    json!({"model": "claude", "max_tokens": 4096, "stream": true,
           "system": [{"type": "text", "text": long, "cache_control": {"type": "ephemeral"}}],
           "tools": tools, "messages": messages})
}

fn bench(c: &mut Criterion) {
    let chunk = text_chunk();
    let mut g = c.benchmark_group("stream chunk");
    g.bench_function("openai sse (pass-through)", |b| {
        b.iter(|| openai::frame(StreamItem::Chunk(black_box(chunk.clone()))))
    });
    let mut writer = anthropic::EventWriter::new("claude");
    writer.write(StreamItem::Chunk(chunk.clone()));
    g.bench_function("anthropic events", |b| {
        b.iter(|| writer.write(StreamItem::Chunk(black_box(chunk.clone()))))
    });
    let req: responses::ResponsesRequest =
        serde_json::from_value(json!({"model": "m", "input": "x"})).expect("a request");
    let mut writer =
        responses::EventWriter::new(responses::Echo::of(&req, "resp_1".into(), 1, true));
    writer.write(StreamItem::Chunk(chunk.clone()));
    g.bench_function("responses events", |b| {
        b.iter(|| writer.write(StreamItem::Chunk(black_box(chunk.clone()))))
    });
    let mut lines = ollama::response::LineWriter::new(
        ollama::response::Shape::Chat,
        "m",
        std::time::Instant::now(),
    );
    g.bench_function("ollama ndjson lines", |b| {
        b.iter(|| lines.write(StreamItem::Chunk(black_box(chunk.clone()))))
    });
    g.finish();

    let body = messages_body();
    let bytes = serde_json::to_vec(&body).expect("json");
    eprintln!("messages request: {} bytes", bytes.len());
    // The same conversation as an OpenAI client sends it: what the chat route parses.
    let native: Value = serde_json::from_slice(&bytes).expect("json");
    let req = serde::Deserialize::deserialize(&native).expect("a request");
    let chat = anthropic::to_chat(req, None).expect("translates");
    let chat_bytes = serde_json::to_vec(&chat.outbound(&chat.model, None)).expect("json");
    eprintln!("the same as a chat request: {} bytes", chat_bytes.len());
    c.bench_function("chat request (parse)", |b| {
        b.iter(|| {
            serde_json::from_slice::<llmrr_types::openai::ChatCompletionRequest>(black_box(
                &chat_bytes,
            ))
            .expect("a request")
        })
    });
    c.bench_function("messages request (parse + translate)", |b| {
        b.iter(|| {
            // As the route does: the body read once, typed from it by reference, then kept.
            let native: Value = serde_json::from_slice(black_box(&bytes)).expect("json");
            let req = serde::Deserialize::deserialize(&native).expect("a request");
            anthropic::to_chat(req, Some(native)).expect("translates")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
