//! `llmrr cache stats|purge`: the response cache of a running server (its L1 lives in the
//! server's memory, so these go through its admin API with the master key).

use crate::cli::{CacheArgs, CacheCommand, Global};
use anyhow::{bail, Context, Result};

pub async fn run(global: &Global, args: &CacheArgs) -> Result<()> {
    let base = match &args.url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => format!("http://{}", global.load()?.server.listen),
    };
    let client = reqwest::Client::new();
    let url = format!("{base}/admin/cache");
    let req = match &args.command {
        CacheCommand::Stats { .. } => client.get(&url),
        CacheCommand::Purge {
            namespace,
            route,
            key,
        } => {
            let query: Vec<(&str, &String)> =
                [("namespace", namespace), ("route", route), ("key", key)]
                    .into_iter()
                    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
                    .collect();
            client.delete(&url).query(&query)
        }
    };
    let req = match &args.master_key {
        Some(k) => req.bearer_auth(k),
        None => req,
    };
    let resp = req.send().await.with_context(|| url.clone())?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.context("the server's answer")?;
    if !status.is_success() {
        bail!("{url}: {status}: {body}");
    }
    match &args.command {
        CacheCommand::Stats { json: false } => print_stats(&body),
        _ => println!("{}", serde_json::to_string_pretty(&body)?),
    }
    Ok(())
}

fn print_stats(body: &serde_json::Value) {
    if body["enabled"] != true {
        println!("the response cache is off (no route or model has `cache`)");
        return;
    }
    let p = &body["process"];
    println!(
        "hits {}  misses {}  bypasses {}  hit rate {:.1}%  saved ${} (this process)",
        p["hits"],
        p["misses"],
        p["bypasses"],
        p["hit_rate"].as_f64().unwrap_or(0.0) * 100.0,
        p["saved_usd"].as_str().unwrap_or("0"),
    );
    println!(
        "ledger (every replica): {} hits, saved ${}",
        body["ledger"]["hits"],
        body["ledger"]["saved_usd"].as_str().unwrap_or("0")
    );
    println!(
        "{:<10} {:>8} {:>12} {:>12} {:>8} {:>8} {:>9} {:>7}",
        "TIER", "ENABLED", "ENTRIES", "BYTES", "HITS", "FILLS", "EVICTED", "ERRORS"
    );
    for t in p["tiers"].as_array().into_iter().flatten() {
        let opt = |v: &serde_json::Value| v.as_u64().map_or("-".into(), |n| n.to_string());
        println!(
            "{:<10} {:>8} {:>12} {:>12} {:>8} {:>8} {:>9} {:>7}",
            t["tier"].as_str().unwrap_or("?"),
            t["enabled"],
            opt(&t["entries"]),
            opt(&t["bytes"]),
            t["hits"],
            t["fills"],
            t["evictions"],
            t["errors"],
        );
    }
}
