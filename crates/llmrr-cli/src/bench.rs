//! `llmrr bench local FILE`: the engine measured through its provider interface (what every
//! request goes through, minus HTTP): load time, prompt and decode tokens/s, TTFT, aggregate
//! tokens/s at several concurrencies, peak RSS. Prints a Markdown table.

use crate::cli::BenchLocalArgs;
use anyhow::{Context, Result};
use futures_util::StreamExt;
use llmrr_core::config::{self, ConfigSource, Env};
use llmrr_core::provider::{LocalBackend, Provider};
use llmrr_engine::{Engine, EngineBackend};
use llmrr_types::openai::CompletionRequest;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Timing {
    ttft: Duration,
    total: Duration,
    completion_tokens: u64,
}

fn request(prompt: serde_json::Value, max_tokens: u32) -> Result<CompletionRequest> {
    Ok(serde_json::from_value(json!({
        "model": "bench", "prompt": prompt, "max_tokens": max_tokens,
        "temperature": 0, "ignore_eos": true, "stream": true,
    }))?)
}

async fn run_one(p: &Arc<dyn Provider>, req: &CompletionRequest) -> Result<Timing> {
    let start = Instant::now();
    let mut stream = p.completion_stream(req).await?;
    let mut ttft = None;
    let mut completion_tokens = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if chunk.has_output && ttft.is_none() {
            ttft = Some(start.elapsed());
        }
        if let Some(u) = chunk.usage {
            completion_tokens = u.completion_tokens;
        }
    }
    let total = start.elapsed();
    Ok(Timing {
        ttft: ttft.unwrap_or(total),
        total,
        completion_tokens,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn baseline_in_child(args: &BenchLocalArgs) -> Result<llmrr_engine::baseline::Baseline> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", "local", "--baseline-only", "--threads"])
        .arg(args.threads.to_string())
        .arg("--prompt-tokens")
        .arg(args.prompt_tokens.to_string())
        .arg("--tokens")
        .arg(args.tokens.to_string())
        .arg(&args.file)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(out.status.success(), "the baseline run failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(llmrr_engine::baseline::Baseline {
        prompt_tokens_per_sec: v["prompt"].as_f64().unwrap_or(0.0),
        decode_tokens_per_sec: v["decode"].as_f64().unwrap_or(0.0),
    })
}

pub async fn local(args: &BenchLocalArgs) -> Result<()> {
    if args.baseline_only {
        let b = llmrr_engine::baseline::measure(
            &args.file,
            args.threads,
            args.prompt_tokens,
            args.tokens,
            3,
        )?;
        println!(
            "{}",
            json!({"prompt": b.prompt_tokens_per_sec, "decode": b.decode_tokens_per_sec})
        );
        return Ok(());
    }
    let max_c = args.concurrency.iter().copied().max().unwrap_or(1).max(1);
    let ctx = args.prompt_tokens + args.tokens + 64;
    let toml = format!(
        "[[models]]\nname = \"bench\"\nprovider = \"local\"\npath = {path:?}\nthreads = {t}\n\
         parallel = {max_c}\ncontext_size = {ctx}\nkeep_alive_secs = 3600\n\
         input_cost_per_mtok = 0\noutput_cost_per_mtok = 0\n",
        path = args.file.display().to_string(),
        t = args.threads,
    );
    let config = config::load(
        ConfigSource::Text {
            name: "bench",
            toml: &toml,
        },
        None,
        &Env::Map(Default::default()),
    )
    .context("bench config")?;
    // llama.cpp bare, same build, file and threads, in a child process: OpenMP thread teams
    // belong to the thread that starts them and spin after each region, so two teams in one
    // process (the baseline's and the engine's) slow each other down.
    let base = baseline_in_child(args)?;
    let engine = Engine::new(&config.local);
    let p = EngineBackend::new(engine.clone()).provider(&config.models[0])?;
    let file_mib = std::fs::metadata(&args.file)?.len() as f64 / (1u64 << 20) as f64;

    // Load (first use), then one warm-up request.
    run_one(&p, &request(json!("Hello"), 1)?).await?;
    let status = engine.status("bench");
    let load_ms = status.as_ref().and_then(|s| s.last_load_ms).unwrap_or(0);
    let est = status.map(|s| s.memory_estimate_bytes);

    // Prompt processing: a long prompt of token ids, one token out.
    let ids: Vec<u32> = (0..args.prompt_tokens).map(|i| 20 + i % 200).collect();
    let mut pp = Vec::new();
    for _ in 0..3 {
        let t = run_one(&p, &request(json!(ids), 1)?).await?;
        pp.push(args.prompt_tokens as f64 / t.total.as_secs_f64());
    }

    // TTFT for a short prompt.
    let mut ttfts = Vec::new();
    for _ in 0..10 {
        let t = run_one(&p, &request(json!("Tell me a story about"), 2)?).await?;
        ttfts.push(t.ttft.as_secs_f64() * 1000.0);
    }

    // Single-stream decode.
    let mut tg = Vec::new();
    for _ in 0..3 {
        let t = run_one(&p, &request(json!("Once upon a time"), args.tokens)?).await?;
        let decode = (t.total - t.ttft).as_secs_f64();
        tg.push(t.completion_tokens.saturating_sub(1) as f64 / decode);
    }
    let single = median(tg.clone());

    // Aggregate throughput at each concurrency.
    let mut agg = Vec::new();
    for &c in &args.concurrency {
        let c = c.max(1);
        let rounds = (args.requests / c).max(1);
        let start = Instant::now();
        let tasks = (0..c).map(|i| {
            let p = p.clone();
            let req = request(json!(format!("Stream number {i} begins")), args.tokens);
            async move {
                let req = req?;
                let mut tokens = 0;
                for _ in 0..rounds {
                    tokens += run_one(&p, &req).await?.completion_tokens;
                }
                anyhow::Ok(tokens)
            }
        });
        let total: u64 = futures_util::future::try_join_all(tasks)
            .await?
            .iter()
            .sum();
        agg.push((c, total as f64 / start.elapsed().as_secs_f64()));
    }

    println!("| metric | value |");
    println!("|---|---|");
    println!("| file | {} ({file_mib:.1} MiB) |", args.file.display());
    println!("| threads | {} |", args.threads);
    println!("| load time | {load_ms} ms |");
    println!(
        "| prompt processing ({} tokens) | {:.1} tok/s |",
        args.prompt_tokens,
        median(pp.clone())
    );
    println!(
        "| llama.cpp bare, same build: prompt / decode | {:.1} / {:.1} tok/s (engine: {:.2}x / {:.2}x) |",
        base.prompt_tokens_per_sec,
        base.decode_tokens_per_sec,
        median(pp.clone()) / base.prompt_tokens_per_sec,
        single / base.decode_tokens_per_sec
    );
    println!(
        "| TTFT, short prompt | p50 {:.1} ms, p95 {:.1} ms |",
        percentile(ttfts.clone(), 0.5),
        percentile(ttfts, 0.95)
    );
    println!(
        "| decode, single stream ({} tokens) | {single:.1} tok/s |",
        args.tokens
    );
    for (c, tps) in &agg {
        println!(
            "| aggregate at concurrency {c} | {tps:.1} tok/s ({:.2}x single) |",
            tps / single
        );
    }
    println!("| peak RSS | {:.1} MiB |", peak_rss_mib());
    if let Some(e) = est {
        println!(
            "| estimate (weights + KV + compute) | {:.1} + {:.1} + {:.1} MiB |",
            e.weights as f64 / 1048576.0,
            e.kv_cache as f64 / 1048576.0,
            e.compute as f64 / 1048576.0
        );
    }
    Ok(())
}
