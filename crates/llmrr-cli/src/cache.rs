//! `llmrr cache stats|purge|warm`: the response cache of a running server (its L1 lives in the
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
        CacheCommand::Warm {
            max_cost,
            top,
            since_hours,
            dry_run,
            ..
        } => client.post(format!("{url}/warm")).json(&serde_json::json!({
            "max_cost_usd": max_cost,
            "top": top,
            "since_hours": since_hours,
            "dry_run": dry_run,
        })),
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
        CacheCommand::Warm { json: false, .. } => print_warm(&body),
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

fn print_warm(body: &serde_json::Value) {
    let n = |k: &str| body[k].as_u64().unwrap_or(0);
    let verb = if body["dry_run"] == true {
        "would warm"
    } else {
        "warmed"
    };
    println!(
        "{verb} {} of {} (already cached {}, over the cost cap {}, unpriced {}, key gone {}, \
         not cacheable {}, key changed {}, failed {}); spent ${}, estimated ${}",
        n("warmed"),
        n("considered"),
        n("already_cached"),
        n("over_cost_cap"),
        n("unpriced"),
        n("key_gone"),
        n("not_cacheable"),
        n("key_changed"),
        n("failed"),
        body["spent_usd"].as_str().unwrap_or("0"),
        body["estimated_usd"].as_str().unwrap_or("0"),
    );
    println!(
        "{:<16} {:<11} {:<24} {:>6} {:>12}  OUTCOME",
        "KEY", "ENDPOINT", "MODEL", "ASKED", "EST. USD"
    );
    for r in body["requests"].as_array().into_iter().flatten() {
        let text = |k: &str| r[k].as_str().unwrap_or("").to_owned();
        let mut outcome = text("outcome");
        if let Some(e) = r["error"].as_str() {
            outcome = format!("{outcome}: {e}");
        }
        println!(
            "{:<16} {:<11} {:<24} {:>6} {:>12}  {outcome}",
            text("cache_key"),
            text("endpoint") + if r["stream"] == true { "+sse" } else { "" },
            text("model"),
            r["asked"],
            text("estimated_usd"),
        );
    }
}
