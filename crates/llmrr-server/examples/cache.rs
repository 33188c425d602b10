//! The response cache, measured on loopback (the testkit's mock as a static upstream):
//!
//! 1. c=1 latency over HTTP: straight to the upstream (no hop at all: the floor under any
//!    proxy, nginx included), through the gateway with the cache bypassed (a proxy hop), and an
//!    L1 hit through the gateway;
//! 2. a Zipf(1.0) replay of `REQUESTS` prompts over `DISTINCT` distinct ones: the hit rate
//!    against the most its sequence allows (every repeat a hit);
//! 3. the L3 (Redis) lookup of an entry not in L1, p50/p99.
//!
//! `cargo run --release -p llmrr-server --example cache` (env: N=2000 REQUESTS=10000
//! DISTINCT=1000; Redis at LLMRR_TEST_REDIS_URL or 127.0.0.1:6379).

#![expect(
    clippy::expect_used,
    reason = "a benchmark whose setup fails stops loudly"
)]

use llmrr_core::cache::{Body, CacheKey, Entry, Meta, ResponseCache};
use llmrr_core::config::cache::CacheConfig;
use llmrr_core::shared::SharedState;
use llmrr_testkit::harness::{redis_url, unique_prefix, StoreChoice};
use llmrr_testkit::{MockProvider, TestGateway};
use std::sync::Arc;
use std::time::Instant;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn body(text: &str) -> serde_json::Value {
    serde_json::json!({"model": "m", "temperature": 0,
        "messages": [{"role": "user", "content": text}]})
}

/// `n` sequential requests to `url`; latencies in ms.
async fn c1(
    client: &reqwest::Client,
    url: &str,
    n: u64,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let started = Instant::now();
        let mut req = client.post(url).json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("an answer");
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await;
        out.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    out
}

/// Zipf(1.0) ranks in [0, n) from uniform draws.
fn zipf(n: usize, draws: usize, seed: u64) -> Vec<usize> {
    let weights: Vec<f64> = (1..=n).map(|k| 1.0 / k as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(n);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let mut state = seed;
    (0..draws)
        .map(|_| {
            // xorshift64*: reproducible without a dependency.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let u = (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
            cdf.partition_point(|c| *c < u).min(n - 1)
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let n = env("N", 2000);
    let mock = MockProvider::start().await;
    mock.stop_recording();
    let toml = format!(
        "[cache]\nmode = \"exact\"\n[[models]]\nname = \"m\"\nprovider = \"openai\"\n\
         base_url = \"{}\"\napi_key = \"env:K\"\nupstream_model = \"mock-ok\"\n\
         input_cost_per_mtok = 1\noutput_cost_per_mtok = 2\n",
        mock.base_url
    );
    let gw = TestGateway::start(&toml, &[("K", "sk-x")], StoreChoice::Sqlite).await;
    let client = reqwest::Client::new();
    let gateway = format!("{}/v1/chat/completions", gw.url);
    let upstream = format!("{}/chat/completions", mock.base_url.trim_end_matches('/'));
    let hot = body("the same question");
    // Warm up connections and fill the entry.
    c1(&client, &gateway, 200, &[], &hot).await;
    c1(&client, &upstream, 200, &[], &hot).await;
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let mut direct = c1(&client, &upstream, n, &[], &hot).await;
        let bypass_headers = [("cache-control", "no-cache, no-store")];
        let mut hop = c1(&client, &gateway, n, &bypass_headers, &hot).await;
        let mut hit = c1(&client, &gateway, n, &[], &hot).await;
        rounds.push((
            pct(&mut direct, 0.5),
            pct(&mut hop, 0.5),
            pct(&mut hit, 0.5),
            pct(&mut direct, 0.99),
            pct(&mut hop, 0.99),
            pct(&mut hit, 0.99),
        ));
    }
    println!("c=1 over HTTP, {n} requests each, 3 interleaved rounds (ms):");
    println!("round  direct-p50  hop-p50  L1hit-p50 | direct-p99  hop-p99  L1hit-p99  hit/direct");
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "{i:>5}  {:>10.3}  {:>7.3}  {:>9.3} | {:>10.3}  {:>7.3}  {:>9.3}  {:>10.2}",
            r.0,
            r.1,
            r.2,
            r.3,
            r.4,
            r.5,
            r.2 / r.0
        );
    }

    let requests = env("REQUESTS", 10_000) as usize;
    let distinct = env("DISTINCT", 1000) as usize;
    let sequence = zipf(distinct, requests, 0x9e37_79b9_7f4a_7c15);
    let mut seen = std::collections::HashSet::new();
    let allowed = sequence.iter().filter(|r| !seen.insert(**r)).count();
    let mut hits = 0;
    let started = Instant::now();
    for rank in &sequence {
        let resp = client
            .post(&gateway)
            .json(&body(&format!("prompt number {rank}")))
            .send()
            .await
            .expect("an answer");
        if resp
            .headers()
            .get("x-llmrr-cache")
            .and_then(|v| v.to_str().ok())
            == Some("hit")
        {
            hits += 1;
        }
        let _ = resp.bytes().await;
    }
    println!(
        "Zipf(1.0) replay: {requests} requests over {distinct} prompts ({} seen): hit rate \
         {:.2}% of the {:.2}% its sequence allows, {:.0} req/s at c=1",
        seen.len(),
        hits as f64 * 100.0 / requests as f64,
        allowed as f64 * 100.0 / requests as f64,
        requests as f64 / started.elapsed().as_secs_f64()
    );
    gw.stop().await;

    let shared = SharedState::redis(&redis_url(), &unique_prefix())
        .await
        .expect("Redis");
    let writer = ResponseCache::start(&CacheConfig::default(), Some(&shared), false)
        .await
        .expect("cache");
    let reader = ResponseCache::start(&CacheConfig::default(), Some(&shared), false)
        .await
        .expect("cache");
    let answer = bytes::Bytes::from(vec![b'x'; 1500]);
    let keys: Vec<CacheKey> = (0..n)
        .map(|i| CacheKey::from_bytes(*blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect();
    for k in &keys {
        let entry = Entry {
            meta: Meta {
                model: "m".into(),
                provider: "openai".into(),
                usage: Default::default(),
                cost_pusd: 1_000_000,
                priced: true,
                created_ms: 0,
                expires_ms: writer.now_ms() + 600_000,
                namespace: "bench".into(),
                name: "m".into(),
                key_id: None,
            },
            body: Body::Json(answer.clone()),
        };
        writer.store(*k, Arc::new(entry)).await;
    }
    let mut l3 = Vec::with_capacity(keys.len());
    for k in &keys {
        let started = Instant::now();
        let (_, tier) = reader.lookup(k, "bench", "m").await.expect("a hit");
        l3.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(tier, llmrr_core::cache::Tier::L3);
    }
    println!(
        "L3 (Redis) lookup of a 1.5 KB answer not in L1: p50 {:.3} ms, p99 {:.3} ms ({n} keys)",
        pct(&mut l3, 0.5),
        pct(&mut l3, 0.99)
    );
    // Leave nothing in Redis (a purge is recorded in a store: a throwaway one).
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store =
        llmrr_core::store::Store::connect(&format!("sqlite://{}/s.db", dir.path().display()))
            .await
            .expect("a store");
    let _ = writer
        .purge(&store, &llmrr_core::cache::Purge::default())
        .await;
}
