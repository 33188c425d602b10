//! Bounded overload on loopback: a model with `SLOTS` parallel calls of `UPSTREAM_MS` each (the
//! testkit's mock, over real HTTP) behind the real gateway; an open-loop load at half its
//! capacity (unloaded), then at `FACTOR` times its capacity for `SECS` seconds. Prints the
//! p50/p99 latency of admitted requests in both phases, how fast the rest were shed, RSS over
//! time, and whether every admitted request has its request-log row.
//!
//! `cargo run --release -p llmrr-server --example overload` (env: SECS=60 FACTOR=4 SLOTS=8
//! UPSTREAM_MS=50 QUEUE=4 DEADLINE_MS=25).

#![expect(
    clippy::expect_used,
    reason = "a benchmark whose setup fails stops loudly"
)]

use llmrr_testkit::harness::StoreChoice;
use llmrr_testkit::{MockProvider, TestGateway};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[derive(Default)]
struct Outcomes {
    ok: Vec<f64>,
    shed: Vec<f64>,
    other: usize,
}

/// Open-loop load: `rate` requests a second for `secs`, each on its own task.
async fn load(gw: &TestGateway, rate: u64, secs: u64, deadline_ms: u64) -> Outcomes {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .build()
        .expect("client");
    let out = Arc::new(Mutex::new(Outcomes::default()));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + Duration::from_secs(secs);
    // Finished tasks are reaped as the load runs: a kept handle would keep each task's memory.
    let mut tasks = tokio::task::JoinSet::new();
    let url = format!("{}/v1/chat/completions", gw.url);
    while Instant::now() < end {
        tick.tick().await;
        let (client, out, url) = (client.clone(), out.clone(), url.clone());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let started = Instant::now();
            let resp = client
                .post(&url)
                .header("x-llmrr-deadline-ms", deadline_ms.to_string())
                .json(&serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await;
            let status = match resp {
                Ok(r) => {
                    let s = r.status().as_u16();
                    let _ = r.bytes().await;
                    s
                }
                Err(_) => 0,
            };
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            let mut o = out.lock().expect("lock");
            match status {
                200 => o.ok.push(ms),
                429 | 503 => o.shed.push(ms),
                _ => o.other += 1,
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Arc::try_unwrap(out)
        .map(|m| m.into_inner().expect("lock"))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let secs = env("SECS", 60);
    let factor = env("FACTOR", 4);
    let slots = env("SLOTS", 8);
    let upstream_ms = env("UPSTREAM_MS", 50);
    let queue = env("QUEUE", 4);
    let deadline_ms = env("DEADLINE_MS", 25);
    let capacity = slots * 1000 / upstream_ms;
    let mock = MockProvider::start().await;
    mock.stop_recording();
    let toml = format!(
        "[store]\nlog_queue_capacity = 1000000\n\
         [[models]]\nname = \"m\"\nprovider = \"openai\"\nbase_url = \"{}\"\n\
         upstream_model = \"mock-slow-{upstream_ms}\"\ninput_cost_per_mtok = 1\noutput_cost_per_mtok = 1\n\
         max_concurrent = {slots}\nmax_queue = {queue}\n",
        mock.base_url
    );
    let gw = TestGateway::start(&toml, &[], StoreChoice::Sqlite).await;
    println!(
        "upstream: {slots} slots x {upstream_ms} ms = {capacity} req/s; queue {queue}; \
         deadline {deadline_ms} ms"
    );
    // Warm up the slot-hold estimate and the connection pools.
    let warm = load(&gw, capacity / 2, 2, deadline_ms).await;
    let mut calm = load(&gw, capacity / 2, 10, deadline_ms).await;
    let calm_p50 = pct(&mut calm.ok, 0.5);
    let calm_p99 = pct(&mut calm.ok, 0.99);
    println!(
        "unloaded ({} req/s, 10 s): {} ok, p50 {calm_p50:.1} ms, p99 {calm_p99:.1} ms",
        capacity / 2,
        calm.ok.len()
    );
    let rss_before = rss_mib();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                samples.lock().expect("lock").push(rss_mib());
            }
        })
    };
    let rows_before = gw
        .state
        .gateway
        .store()
        .recent_requests(10_000_000)
        .await
        .expect("rows")
        .len();
    let mut over = load(&gw, capacity * factor, secs, deadline_ms).await;
    sampler.abort();
    let admitted = over.ok.len();
    let (p50, p99) = (pct(&mut over.ok, 0.5), pct(&mut over.ok, 0.99));
    let late = over.shed.iter().filter(|ms| **ms >= 5.0).count();
    let (s50, s99) = (pct(&mut over.shed, 0.5), pct(&mut over.shed, 0.99));
    println!(
        "overload ({} req/s = {factor}x, {secs} s): {admitted} admitted, p50 {p50:.1} ms, \
         p99 {p99:.1} ms ({:.2}x the unloaded p99); {} shed, p50 {s50:.2} ms, p99 {s99:.2} ms \
         ({late} took 5 ms or more); {} other",
        capacity * factor,
        p99 / calm_p99,
        over.shed.len(),
        over.other
    );
    let rss = samples.lock().expect("lock").clone();
    let max = rss.iter().copied().fold(0.0, f64::max);
    println!(
        "RSS: {rss_before:.1} MiB before, {max:.1} MiB peak, {:.1} MiB at the end (1 s samples: {})",
        rss.last().copied().unwrap_or(0.0),
        rss.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(" ")
    );
    gw.flush_log().await;
    let rows = gw
        .state
        .gateway
        .store()
        .recent_requests(10_000_000)
        .await
        .expect("rows");
    let logged_ok = rows.iter().filter(|r| r.status == 200).count();
    let new_rows = rows.len() - rows_before;
    println!(
        "request log: {new_rows} new rows for {} overload requests; {logged_ok} rows with \
         status 200 for {} answered 200 in all phases",
        admitted + over.shed.len() + over.other,
        warm.ok.len() + calm.ok.len() + admitted
    );
    gw.stop().await;
}
