//! Local models: real llama.cpp on synthetic GGUF files written by the test, through the
//! real server. Greedy decoding (temperature 0) makes every answer reproducible; a logit bias
//! against the end tokens makes lengths exact.

use crate::{
    chat_body, error_body, get_json, metrics_text, post, sse_data, streamed_text, ENV, MASTER,
};
use llmrr_testkit::gguf::{estimated_bytes, tiny_model};
use llmrr_testkit::harness::StoreChoice;
use llmrr_testkit::TestGateway;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// `<|endoftext|>` and `<|im_end|>` of the synthetic vocabulary.
pub(crate) fn no_end() -> Value {
    json!({"256": -100, "258": -100})
}

pub(crate) fn local_toml(name: &str, path: &Path, extra: &str) -> String {
    format!(
        "[[models]]\nname = \"{name}\"\nprovider = \"local\"\npath = \"{}\"\n\
         input_cost_per_mtok = 0\noutput_cost_per_mtok = 0.5\nthreads = 1\n{extra}\n",
        path.display()
    )
}

pub(crate) async fn start(toml: &str) -> TestGateway {
    TestGateway::start(toml, ENV, StoreChoice::Sqlite).await
}

pub(crate) fn greedy(model: &str, text: &str, max_tokens: u32) -> Value {
    let mut b = chat_body(model, text);
    b["temperature"] = json!(0);
    b["max_tokens"] = json!(max_tokens);
    b["logit_bias"] = no_end();
    b
}

pub(crate) async fn answer(gw: &TestGateway, body: Value) -> Value {
    let resp = post(gw, "/v1/chat/completions", Some(MASTER), body).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

pub(crate) fn content(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_owned()
}

async fn local_status(gw: &TestGateway, model: &str) -> Value {
    let all = get_json(gw, "/admin/models").await;
    all["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["model"] == model)
        .expect("the model")["local"]
        .clone()
}

/// Polls until `check` holds on the model's status (at most `within`).
async fn wait_status(
    gw: &TestGateway,
    model: &str,
    within: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let s = local_status(gw, model).await;
        if check(&s) || start.elapsed() > within {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn chat_stream_and_completions_with_exact_usage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "tiny");
    let gw = start(&local_toml("tiny", &path, "")).await;

    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        greedy("tiny", "Hello there", 12),
    )
    .await;
    assert_eq!(resp.status(), 200);
    // Priced per token: prompt free, 12 output tokens at 0.5 USD per million.
    let cost: f64 = resp.headers()["x-llmrr-cost-usd"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a number");
    assert!((cost - 0.000006).abs() < 1e-12, "{cost}");
    let v: Value = resp.json().await.expect("json");
    let text = content(&v);
    assert!(!text.is_empty());
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 12);
    let prompt_tokens = v["usage"]["prompt_tokens"].as_u64().expect("prompt tokens");
    // ChatML around "Hello there": more than the two words' tokens.
    assert!(prompt_tokens > 4, "{v}");
    assert_eq!(v["usage"]["total_tokens"], prompt_tokens + 12);

    // The same request streamed gives the same text, and usage when asked for.
    let mut body = greedy("tiny", "Hello there", 12);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    assert_eq!(resp.status(), 200);
    let data = sse_data(resp).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&data), text);
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).expect("usage chunk");
    assert_eq!(usage["usage"]["completion_tokens"], 12);
    assert_eq!(usage["usage"]["prompt_tokens"], prompt_tokens);

    // Raw prompts on /v1/completions, with sampling settings among the extra fields.
    let resp = post(
        &gw,
        "/v1/completions",
        Some(MASTER),
        json!({"model": "tiny", "prompt": "once upon a time", "max_tokens": 5,
               "temperature": 0, "logit_bias": no_end(), "top_k": 1}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert!(v["choices"][0]["text"].is_string());

    // Sampling with a seed is reproducible.
    let mut seeded = chat_body("tiny", "Hello there");
    seeded["seed"] = json!(1234);
    seeded["max_tokens"] = json!(10);
    seeded["logit_bias"] = no_end();
    let a = content(&answer(&gw, seeded.clone()).await);
    let b = content(&answer(&gw, seeded).await);
    assert_eq!(a, b);

    // JSON mode: the output is constrained to a JSON object (possibly cut by max_tokens).
    let mut j = greedy("tiny", "Give me JSON", 40);
    j["response_format"] = json!({"type": "json_object"});
    let out = content(&answer(&gw, j).await);
    assert!(out.trim_start().starts_with('{'), "{out:?}");

    let status = local_status(&gw, "tiny").await;
    assert_eq!(status["state"], "loaded");
    assert_eq!(status["loads"], 1);
    assert!(status["last_load_ms"].as_u64().is_some());
}

#[tokio::test]
async fn stop_strings_are_never_emitted_and_max_tokens_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "tiny");
    let gw = start(&local_toml("tiny", &path, "")).await;
    let full = content(&answer(&gw, greedy("tiny", "stop test", 24)).await);
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() >= 8, "{full:?}");
    // A stop string from the middle of the answer.
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
    let cut = &full[..full.find(&stop).expect("occurs")];
    for stream in [false, true] {
        let mut body = greedy("tiny", "stop test", 24);
        body["stop"] = json!([stop, "never-appears"]);
        body["stream"] = json!(stream);
        let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
        assert_eq!(resp.status(), 200);
        if stream {
            let data = sse_data(resp).await;
            assert_eq!(streamed_text(&data), cut, "stop {stop:?}");
            assert!(data
                .iter()
                .any(|d| d.contains("\"finish_reason\":\"stop\"")));
        } else {
            let v: Value = resp.json().await.expect("json");
            assert_eq!(content(&v), cut, "stop {stop:?}");
            assert_eq!(v["choices"][0]["finish_reason"], "stop");
        }
    }
}

#[tokio::test]
async fn concurrent_sequences_in_one_batch_match_their_solo_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "tiny");
    // A small prefill chunk: the long prompt is read over several steps while others decode.
    let gw = start(&local_toml(
        "tiny",
        &path,
        "parallel = 4\nprefill_chunk = 16",
    ))
    .await;
    let long_prompt = "the quick brown fox jumps over the lazy dog ".repeat(12);
    let cases: Vec<(String, u32)> = vec![
        ("alpha".into(), 6),
        ("a rather different prompt".into(), 20),
        (long_prompt, 9),
        ("zebra".into(), 33),
    ];
    let mut solo = Vec::new();
    for (p, n) in &cases {
        solo.push(content(&answer(&gw, greedy("tiny", p, *n)).await));
    }
    // All at once, streamed, several rounds.
    for _ in 0..3 {
        let runs = cases.iter().map(|(p, n)| {
            let mut body = greedy("tiny", p, *n);
            body["stream"] = json!(true);
            let gw = &gw;
            async move {
                let resp = post(gw, "/v1/chat/completions", Some(MASTER), body).await;
                streamed_text(&sse_data(resp).await)
            }
        });
        let together = futures_util::future::join_all(runs).await;
        assert_eq!(together, solo);
    }
    let m = metrics_text(&gw).await;
    assert!(m.contains("llmrr_local_generated_tokens_total"), "{m}");
}

#[tokio::test]
async fn a_client_that_hangs_up_frees_its_sequence_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "tiny");
    let gw = start(&local_toml(
        "hangup",
        &path,
        "parallel = 1\ncontext_size = 32768",
    ))
    .await;
    let mut body = greedy("hangup", "go on forever", 32_000);
    body["stream"] = json!(true);
    let mut resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    assert_eq!(resp.status(), 200);
    // Wait for generated text, then hang up.
    let mut seen = 0;
    while seen < 200 {
        seen += resp.chunk().await.expect("chunk").expect("more").len();
    }
    let busy = local_status(&gw, "hangup").await;
    assert_eq!(busy["in_flight"], 1);
    drop(resp);
    // The model thread drops the sequence (not just the gateway the stream): the cancel
    // counter moves, and the running batch is empty, long before 32,000 tokens could be made.
    let hung_up = Instant::now();
    let metric = |m: &str, name: &str| -> Option<f64> {
        m.lines()
            .find(|l| l.starts_with(name) && l.contains("model=\"hangup\""))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    loop {
        let m = metrics_text(&gw).await;
        if metric(&m, "llmrr_local_cancelled_total") == Some(1.0)
            && metric(&m, "llmrr_local_active_sequences") == Some(0.0)
        {
            break;
        }
        assert!(
            hung_up.elapsed() < Duration::from_secs(5),
            "not cancelled:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let m = metrics_text(&gw).await;
    assert_eq!(
        metric(&m, "llmrr_local_generated_tokens_total").unwrap_or(0.0),
        0.0,
        "nothing finished"
    );
    // The only slot is free: a new request is served.
    let v = answer(&gw, greedy("hangup", "next", 3)).await;
    assert_eq!(v["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn idle_models_unload_and_reload_on_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "tiny");
    let gw = start(&local_toml("tiny", &path, "keep_alive_secs = 0.3")).await;
    assert_eq!(local_status(&gw, "tiny").await["state"], "unloaded");
    answer(&gw, greedy("tiny", "hi", 2)).await;
    // The load was measured (the resident memory it added, after a warm-up token); a tiny
    // model's measurement is within the noise, so the estimate is what the budget counts.
    let s = local_status(&gw, "tiny").await;
    assert!(s["memory_measured_bytes"].is_u64(), "{s}");
    assert_eq!(
        s["memory_budgeted_bytes"], s["memory_estimate_total_bytes"],
        "{s}"
    );
    let s = wait_status(&gw, "tiny", Duration::from_secs(5), |s| {
        s["state"] == "unloaded"
    })
    .await;
    assert_eq!(s["state"], "unloaded", "{s}");
    // Three requests at once on the unloaded model: they share one load.
    let calls = (0..3).map(|_| answer(&gw, greedy("tiny", "hi", 2)));
    futures_util::future::join_all(calls).await;
    assert_eq!(local_status(&gw, "tiny").await["loads"], 2);
}

#[tokio::test]
async fn a_small_budget_evicts_the_least_recently_used_and_keeps_pinned_and_busy_models() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = "context_size = 1024\nparallel = 2";
    let mut toml = String::new();
    for name in ["pinned", "b", "c"] {
        let path = tiny_model(dir.path(), name);
        let pin = if name == "pinned" {
            "\npinned = true"
        } else {
            ""
        };
        toml.push_str(&local_toml(name, &path, &format!("{settings}{pin}")));
    }
    let each = estimated_bytes(&dir.path().join("b.gguf"), 1024, 2, 512);
    // Room for two models, not three.
    let budget_mb = (each * 5 / 2) >> 20;
    let gw = start(&format!("[local]\nmemory_budget_mb = {budget_mb}\n{toml}")).await;
    // The pinned model loads at start.
    let p = wait_status(&gw, "pinned", Duration::from_secs(10), |s| {
        s["state"] == "loaded"
    })
    .await;
    assert_eq!(p["state"], "loaded");

    answer(&gw, greedy("b", "hi", 2)).await;
    // c needs room: b (idle, least recently used, unpinned) goes; pinned stays.
    answer(&gw, greedy("c", "hi", 2)).await;
    assert_eq!(local_status(&gw, "b").await["state"], "unloaded");
    assert_eq!(local_status(&gw, "pinned").await["state"], "loaded");
    assert_eq!(local_status(&gw, "c").await["state"], "loaded");

    // While c is busy, b cannot evict it: a clear 503.
    let mut body = greedy("c", "busy", 900);
    body["stream"] = json!(true);
    let mut long = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    assert!(long.chunk().await.expect("chunk").is_some());
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        greedy("b", "hi", 2),
    )
    .await;
    let e = error_body(resp, 503).await;
    let msg = e["error"]["message"].as_str().expect("message");
    assert!(
        msg.contains("not enough memory") && msg.contains("in use"),
        "{msg}"
    );
    drop(long);
    // Once c is idle again, b evicts it.
    wait_status(&gw, "c", Duration::from_secs(5), |s| s["in_flight"] == 0).await;
    answer(&gw, greedy("b", "hi", 2)).await;
    assert_eq!(local_status(&gw, "c").await["state"], "unloaded");
    assert_eq!(local_status(&gw, "pinned").await["state"], "loaded");
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "tiny");
    let gw = start(&local_toml("tiny", &path, "context_size = 300")).await;
    // Punctuation has no merges: one token per character, four times the router's estimate
    // (which passes it), over the context once tokenized.
    let long = "!@#$".repeat(100);
    let e = error_body(
        post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            greedy("tiny", &long, 2),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(e["error"]["code"], "context_length_exceeded");
    let mut b = greedy("tiny", "hi", 2);
    b["logit_bias"] = json!({"99999": 1});
    let e = error_body(
        post(&gw, "/v1/chat/completions", Some(MASTER), b).await,
        400,
    )
    .await;
    assert!(e["error"]["message"]
        .as_str()
        .expect("m")
        .contains("logit_bias"));
    let mut b = greedy("tiny", "hi", 2);
    b["n"] = json!(2);
    error_body(
        post(&gw, "/v1/chat/completions", Some(MASTER), b).await,
        400,
    )
    .await;
    // A model without pooling does not embed.
    let e = error_body(
        post(
            &gw,
            "/v1/embeddings",
            Some(MASTER),
            json!({"model": "tiny", "input": "x"}),
        )
        .await,
        400,
    )
    .await;
    assert!(
        e["error"]["message"]
            .as_str()
            .expect("m")
            .contains("pooling"),
        "{e}"
    );
}

#[tokio::test]
async fn embeddings_from_a_pooling_model_are_normalised_and_batched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "emb");
    let gw = start(&local_toml(
        "emb",
        &path,
        "pooling = \"mean\"\ncontext_size = 256",
    ))
    .await;
    let resp = post(
        &gw,
        "/v1/embeddings",
        Some(MASTER),
        json!({"model": "emb", "input": ["hello world", "something else", "hello world"]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    let vecs = embed_vectors(&v);
    assert_eq!(vecs.len(), 3);
    assert_eq!(vecs[0].len(), 64);
    for e in &vecs {
        let norm: f64 = e.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    // Same input, same vector, whatever shares the batch; different input, different vector.
    let same = vecs[0]
        .iter()
        .zip(&vecs[2])
        .all(|(a, b)| (a - b).abs() < 1e-5);
    assert!(same);
    assert!(vecs[0] != vecs[1]);
    assert!(v["usage"]["prompt_tokens"].as_u64().expect("usage") > 0);
    // base64, as the OpenAI SDKs ask by default.
    let resp = post(
        &gw,
        "/v1/embeddings",
        Some(MASTER),
        json!({"model": "emb", "input": "hello world", "encoding_format": "base64"}),
    )
    .await;
    let v: Value = resp.json().await.expect("json");
    assert!(v["data"][0]["embedding"].is_string());
}

#[tokio::test]
async fn local_prices_are_explicit_and_may_be_per_compute_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "tiny");
    let unpriced = format!(
        "[[models]]\nname = \"tiny\"\nprovider = \"local\"\npath = \"{}\"\n",
        path.display()
    );
    let err = crate::config_of(&unpriced).expect_err("refused");
    assert!(
        err.to_string().contains("models[0].input_cost_per_mtok"),
        "{err}"
    );

    let toml = format!("{unpriced}cost_per_compute_second = 1\nthreads = 1\n");
    let gw = start(&toml).await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        greedy("tiny", "hi", 8),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let cost: f64 = resp.headers()["x-llmrr-cost-usd"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a number");
    // 1 USD per second of compute: the cost is the compute time in seconds, above zero and
    // a few milliseconds for the tiny model.
    assert!(cost > 0.0 && cost < 5.0, "cost {cost}");
}

fn embed_vectors(v: &Value) -> Vec<Vec<f64>> {
    v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|d| serde_json::from_value(d["embedding"].clone()).expect("floats"))
        .collect()
}

#[tokio::test]
async fn issue16_an_embedding_does_not_depend_on_its_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "emb");
    let gw = start(&local_toml(
        "emb",
        &path,
        "pooling = \"mean\"\ncontext_size = 256",
    ))
    .await;
    let inputs: Vec<String> = (0..8)
        .map(|i| "a longer input with more words ".repeat(i % 3 + 1) + &format!("number {i}"))
        .collect();
    let embed = |input: Value| {
        let gw = &gw;
        async move {
            let resp = post(
                gw,
                "/v1/embeddings",
                Some(MASTER),
                json!({"model": "emb", "input": input}),
            )
            .await;
            assert_eq!(resp.status(), 200);
            embed_vectors(&resp.json().await.expect("json"))
        }
    };
    let mut alone = Vec::new();
    for input in &inputs {
        alone.push(embed(json!(input)).await.remove(0));
    }
    for size in [2, 3, 8] {
        for chunk in inputs.chunks(size).zip(alone.chunks(size)) {
            let (batch, expected) = chunk;
            let got = embed(json!(batch)).await;
            for (g, e) in got.iter().zip(expected) {
                let cosine: f64 = g.iter().zip(e).map(|(a, b)| a * b).sum();
                assert!(
                    g.iter().zip(e).all(|(a, b)| (a - b).abs() < 1e-4),
                    "batch of {size}: cosine {cosine}"
                );
            }
        }
    }
    // `dimensions` is refused rather than ignored.
    let resp = post(
        &gw,
        "/v1/embeddings",
        Some(MASTER),
        json!({"model": "emb", "input": "hi", "dimensions": 16}),
    )
    .await;
    let v = error_body(resp, 400).await;
    assert_eq!(v["error"]["code"], "unsupported_parameter", "{v}");
}

#[tokio::test]
async fn issue16_logprobs_on_a_local_model_is_refused_not_answered_null() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "tiny");
    let gw = start(&local_toml("tiny", &path, "")).await;
    for extra in [
        json!({"logprobs": true}),
        json!({"top_logprobs": 3, "logprobs": true}),
    ] {
        let mut body = chat_body("tiny", "hi");
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let v = error_body(
            post(&gw, "/v1/chat/completions", Some(MASTER), body).await,
            400,
        )
        .await;
        assert_eq!(v["error"]["code"], "unsupported_parameter", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("logprobs")),
            "{v}"
        );
    }
    // A field the engine would not read is refused too; OpenAI-platform fields are not.
    let mut body = chat_body("tiny", "hi");
    body["reasoning_effort"] = json!("high");
    let v = error_body(
        post(&gw, "/v1/chat/completions", Some(MASTER), body).await,
        400,
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("reasoning_effort")),
        "{v}"
    );
    let mut body = chat_body("tiny", "hi");
    body["logprobs"] = json!(false);
    body["store"] = json!(false);
    body["max_tokens"] = json!(2);
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    assert_eq!(resp.status(), 200, "`logprobs: false` asks for nothing");
}

/// Issue 11: an Anthropic client reaches a local model: the same greedy answer as a chat
/// client gets, plain and streamed, with its exact usage and stop reason.
#[tokio::test]
async fn issue11_a_messages_client_reaches_a_local_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "tiny");
    let gw = start(&local_toml("tiny", &path, "")).await;
    let mut chat = chat_body("tiny", "Hello there");
    chat["temperature"] = json!(0);
    chat["max_tokens"] = json!(8);
    let want = answer(&gw, chat).await;

    let body = json!({"model": "tiny", "max_tokens": 8, "temperature": 0,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}]});
    let resp = crate::messages::messages(&gw, MASTER, body.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-llmrr-provider"], "local");
    let m: Value = resp.json().await.expect("json");
    let text: String = m["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect();
    assert_eq!(text, content(&want));
    assert_eq!(
        m["usage"]["output_tokens"],
        want["usage"]["completion_tokens"]
    );
    // The same prompt again: its KV was reused (prefix reuse), which Anthropic's usage says
    // as cache reads beside the input.
    let read = m["usage"]["cache_read_input_tokens"].as_u64().unwrap_or(0);
    assert_eq!(
        m["usage"]["input_tokens"].as_u64().expect("input") + read,
        want["usage"]["prompt_tokens"].as_u64().expect("prompt")
    );
    assert!(read > 0, "{m}");
    let stop = match want["choices"][0]["finish_reason"].as_str() {
        Some("length") => "max_tokens",
        _ => "end_turn",
    };
    assert_eq!(m["stop_reason"], stop);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let resp = crate::messages::messages(&gw, MASTER, streamed.clone()).await;
    let data = sse_data(resp).await;
    let events: Vec<Value> = data
        .iter()
        .map(|d| serde_json::from_str(d).expect("json"))
        .collect();
    let text: String = events
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, content(&want));
    let delta = &events[events.len() - 2];
    assert_eq!(delta["type"], "message_delta");
    assert_eq!(delta["delta"]["stop_reason"], stop);
    assert_eq!(
        delta["usage"]["output_tokens"],
        want["usage"]["completion_tokens"]
    );
    assert_eq!(events.last().expect("events")["type"], "message_stop");
    gw.stop().await;
}

/// Issue 11: a Responses-API client reaches a local model: the same greedy answer and usage
/// as a chat client gets.
#[tokio::test]
async fn issue11_a_responses_client_reaches_a_local_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "tiny");
    let gw = start(&local_toml("tiny", &path, "")).await;
    let mut chat = chat_body("tiny", "Hello there");
    chat["temperature"] = json!(0);
    chat["max_tokens"] = json!(8);
    let want = answer(&gw, chat).await;

    let resp = post(
        &gw,
        "/v1/responses",
        Some(MASTER),
        json!({"model": "tiny", "input": "Hello there", "temperature": 0, "max_output_tokens": 8}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-llmrr-provider"], "local");
    let r: Value = resp.json().await.expect("json");
    let text: String = r["output"]
        .as_array()
        .expect("output")
        .iter()
        .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, content(&want));
    assert_eq!(
        r["usage"]["output_tokens"],
        want["usage"]["completion_tokens"]
    );
    assert_eq!(r["usage"]["input_tokens"], want["usage"]["prompt_tokens"]);
    let status = match want["choices"][0]["finish_reason"].as_str() {
        Some("length") => "incomplete",
        _ => "completed",
    };
    assert_eq!(r["status"], status);
    gw.stop().await;
}

#[tokio::test]
async fn json_schema_constrains_a_local_models_answer_to_the_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "tiny");
    let gw = start(&local_toml("tiny", &path, "")).await;
    let schema = json!({
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "color": {"enum": ["red", "green", "blue"]},
            "n": {"type": "integer"},
            "none": {"type": "null"}
        },
        "required": ["ok", "color", "n", "none"],
        "additionalProperties": false
    });
    for (seed, stream) in [(1, false), (2, false), (3, true)] {
        let mut body = chat_body("tiny", "Give me JSON");
        body["temperature"] = json!(1.0);
        body["seed"] = json!(seed);
        body["max_tokens"] = json!(120);
        body["logit_bias"] = no_end();
        body["stream"] = json!(stream);
        body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "s", "schema": schema, "strict": true}});
        let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
        assert_eq!(resp.status(), 200);
        let text = if stream {
            streamed_text(&sse_data(resp).await)
        } else {
            content(&resp.json().await.expect("json"))
        };
        // The tiny model's weights are random: only the grammar makes this parse.
        let v: Value =
            serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let o = v.as_object().expect("an object");
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["color", "n", "none", "ok"], "{v}");
        assert!(
            o["ok"].is_boolean() && o["n"].is_i64() && o["none"].is_null(),
            "{v}"
        );
        assert!(["red", "green", "blue"].contains(&o["color"].as_str().expect("color")));
    }
    // Every shape the compiler makes is one llama.cpp takes: optional chains, a map, counted
    // arrays, string lengths, recursion through a reference (the answer may be cut by
    // max_tokens: only the start is checked).
    let rich = json!({
        "type": "object",
        "properties": {
            "a": {"type": "boolean"}, "b": {"type": "integer"}, "c": {"type": "null"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 3},
                     "minItems": 1, "maxItems": 2},
            "scores": {"type": "object", "additionalProperties": {"type": "number"}},
            "tree": {"$ref": "#/$defs/node"}
        },
        "$defs": {"node": {"type": "object", "properties": {
            "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}}}}
    });
    let mut body = greedy("tiny", "rich", 60);
    body["response_format"] =
        json!({"type": "json_schema", "json_schema": {"name": "s", "schema": rich}});
    let out = content(&answer(&gw, body).await);
    assert!(out.trim_start().starts_with('{'), "{out:?}");
    // A keyword a grammar cannot hold is refused by name, not ignored.
    let mut body = chat_body("tiny", "x");
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "s",
        "schema": {"type": "string", "pattern": "^[a-z]+$"}}});
    let e = error_body(
        post(&gw, "/v1/chat/completions", Some(MASTER), body).await,
        400,
    )
    .await;
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("pattern")),
        "{e}"
    );
}

#[tokio::test]
async fn a_quantized_kv_cache_answers_and_is_budgeted_smaller() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Heads of 32 dimensions: a quantized cache stores them in 32-element blocks.
    let path = dir.path().join("wide.gguf");
    let spec = llmrr_testkit::gguf::SynthSpec {
        n_embd: 128,
        n_head: 4,
        n_head_kv: 2,
        ..llmrr_testkit::gguf::SynthSpec::tiny()
    };
    llmrr_testkit::gguf::synthesize(&spec, &path).expect("a model");
    let toml = format!(
        "{}{}",
        local_toml("f16", &path, "context_size = 1024"),
        local_toml("q8", &path, "context_size = 1024\nkv_type = \"q8_0\"")
    );
    let gw = start(&toml).await;
    for model in ["f16", "q8"] {
        let resp = post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            greedy(model, "hello", 8),
        )
        .await;
        let status = resp.status();
        let v: Value = resp.json().await.expect("json");
        assert_eq!(status, 200, "{model}: {v}");
        assert!(!content(&v).is_empty(), "{model}");
    }
    let kv = |s: &Value| {
        s["memory_estimate_bytes"]["kv_cache"]
            .as_u64()
            .expect("kv bytes")
    };
    let (f16, q8) = (
        kv(&local_status(&gw, "f16").await),
        kv(&local_status(&gw, "q8").await),
    );
    // q8_0: 34 bytes a 32-element block, against 2 bytes an element.
    assert_eq!(q8, (f16 as f64 * 34.0 / 64.0).ceil() as u64, "{f16} {q8}");
    // A model whose heads do not fill 32-element blocks is refused at start, saying why.
    let narrow = tiny_model(dir.path(), "narrow");
    let toml = local_toml("narrow", &narrow, "kv_type = \"q8_0\"");
    let config = crate::config_of(&toml).expect("a valid config");
    let err = llmrr_server::AppState::build(&config)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("multiple of 32"), "{err}");
    // A type llama.cpp has no KV cache for is refused at load, by name.
    let bad = local_toml("bad", &path, "kv_type = \"q3\"");
    let err = crate::config_of(&bad).expect_err("refused");
    assert!(err.to_string().contains("kv_type"), "{err}");
}

#[tokio::test]
async fn the_next_turn_of_a_chat_reuses_the_kv_of_the_last_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "tiny");
    // One slot: every turn lands where the last one left its KV.
    let gw = start(&local_toml(
        "tiny",
        &path,
        "parallel = 1\ncontext_size = 2048",
    ))
    .await;
    let history = "tell me about the long history of the tiny model and its many words ".repeat(12);
    let first = answer(&gw, greedy("tiny", &history, 8)).await;
    let reply = content(&first);
    assert_eq!(
        first["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0),
        0
    );
    // Turn 2: the same history, the answer, a new question.
    let mut turn = greedy("tiny", &history, 8);
    turn["messages"] = json!([
        {"role": "user", "content": history},
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "and then?"}
    ]);
    let second = answer(&gw, turn.clone()).await;
    let prompt = second["usage"]["prompt_tokens"]
        .as_u64()
        .expect("prompt tokens");
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .expect("cached tokens reported");
    // At least the whole first prompt was reused; the new turn was read.
    let first_prompt = first["usage"]["prompt_tokens"].as_u64().expect("tokens");
    assert!(
        cached >= first_prompt - 2 && cached < prompt,
        "{cached} of {prompt} (first {first_prompt})"
    );
    // Reused or not, the answer is the model's answer: a fresh model server says the same.
    let fresh = start(&local_toml(
        "tiny",
        &path,
        "parallel = 1\ncontext_size = 2048",
    ))
    .await;
    let again = answer(&fresh, turn).await;
    assert_eq!(content(&again), content(&second));
    assert_eq!(
        again["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0),
        0
    );
}

#[tokio::test]
async fn kept_prefixes_stay_within_their_share_of_the_cache_least_recent_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "tiny");
    // Without the prompt cache, which would keep the dropped prefix in memory (tested below).
    let settings = "parallel = 2\ncontext_size = 300\nprompt_cache_mb = 0";
    let toml = format!(
        "{}{}",
        local_toml("whole", &path, settings),
        local_toml(
            "half",
            &path,
            &format!("{settings}\nprefix_cache_share = 0.5")
        )
    );
    let gw = start(&toml).await;
    // Token ids: no BOS, and the two prompts share nothing, so each takes its own slot.
    let prompt = |t: u32| json!({"prompt": vec![t; 200], "max_tokens": 2, "temperature": 0});
    let cached = |v: &Value| {
        v["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0)
    };
    for (model, share_left) in [("whole", true), ("half", false)] {
        let run = |t: u32| {
            let mut b = prompt(t);
            b["model"] = json!(model);
            let gw = &gw;
            async move {
                let resp = post(gw, "/v1/completions", Some(MASTER), b).await;
                assert_eq!(resp.status(), 200);
                resp.json::<Value>().await.expect("json")
            }
        };
        run(33).await;
        run(34).await;
        // Two kept prompts of 200 tokens: within the whole cache (600 cells), past half of it
        // (300), where the least recently kept (the first) was dropped.
        let again = run(33).await;
        if share_left {
            assert!(cached(&again) >= 190, "{model}: {again}");
        } else {
            assert_eq!(cached(&again), 0, "{model}: {again}");
        }
    }
    // The share is checked.
    let bad = crate::config_of(&local_toml("x", &path, "prefix_cache_share = 1.5"))
        .expect_err("refused")
        .to_string();
    assert!(bad.contains("prefix_cache_share"), "{bad}");
}

#[tokio::test]
async fn a_prompt_whose_slot_was_taken_comes_back_from_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "tiny");
    // One slot: every request takes the last one's place.
    let settings = "parallel = 1\ncontext_size = 512";
    let toml = format!(
        "{}{}",
        local_toml("mem", &path, settings),
        local_toml("nomem", &path, &format!("{settings}\nprompt_cache_mb = 0"))
    );
    let gw = start(&toml).await;
    let ask = |model: &'static str, t: u32| {
        let gw = &gw;
        async move {
            let b = json!({"model": model, "prompt": vec![t; 200], "max_tokens": 8,
                "temperature": 0, "logit_bias": no_end()});
            let resp = post(gw, "/v1/completions", Some(MASTER), b).await;
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.expect("json")
        }
    };
    let cached = |v: &Value| {
        v["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0)
    };
    let mut answers = Vec::new();
    for model in ["mem", "nomem"] {
        ask(model, 33).await;
        // Another prompt takes the slot: the first one's KV is copied to memory (or lost).
        ask(model, 34).await;
        let again = ask(model, 33).await;
        if model == "mem" {
            assert!(cached(&again) >= 190, "{model}: {again}");
        } else {
            assert_eq!(cached(&again), 0, "{model}: {again}");
        }
        answers.push(again["choices"][0]["text"].clone());
    }
    // The restored KV answers exactly as a fresh prefill does.
    assert_eq!(answers[0], answers[1]);
    let m = metrics_text(&gw).await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("llmrr_local_prompt_cache_bytes{model=\"mem\"}")),
        "{m}"
    );
}

#[tokio::test]
async fn a_full_prompt_cache_keeps_the_prompt_coming_back_and_drops_the_least_recent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tiny_model(dir.path(), "tiny");
    // One slot; 1 MiB of prompt cache holds one 2,100-token prompt of this model (about
    // 540 KB of KV), not two.
    let gw = start(&local_toml(
        "tiny",
        &path,
        "parallel = 1\ncontext_size = 4096\nprompt_cache_mb = 1",
    ))
    .await;
    let ask = |t: u32| {
        let gw = &gw;
        async move {
            let b = json!({"model": "tiny", "prompt": vec![t; 2100], "max_tokens": 2,
                "temperature": 0});
            let resp = post(gw, "/v1/completions", Some(MASTER), b).await;
            assert_eq!(resp.status(), 200);
            let v: Value = resp.json().await.expect("json");
            v["usage"]["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0)
        }
    };
    ask(33).await; // A in the slot
    ask(34).await; // B in the slot, A in memory
    ask(35).await; // C in the slot, B in memory (A pushed out)
                   // B comes back: taken from memory before C is stored in its place (C would push it out).
    assert!(ask(34).await >= 2090);
    // A was pushed out: read afresh.
    assert_eq!(ask(33).await, 0);
    // B was stored again when A took its slot, pushing C out.
    assert!(ask(34).await >= 2090);
    assert_eq!(ask(35).await, 0);
}
