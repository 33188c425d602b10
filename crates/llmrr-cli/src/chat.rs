//! `llmrr chat` and `llmrr models`: against a running server (`--url`), or in-process
//! through the same `Gateway` the server uses.

use crate::cli::{ChatArgs, Global, RemoteArgs, RouteArgs};
use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use llmrr_core::auth::KeyContext;
use llmrr_core::provider::sse::SseParser;
use llmrr_core::RequestContext;
use llmrr_types::openai::{ChatCompletionRequest, ChatMessage, Role, StreamOptions};
use serde_json::Value;
use std::io::Write;
use std::sync::Arc;

fn request(args: &ChatArgs, model: String) -> ChatCompletionRequest {
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(ChatMessage::new(Role::System, system));
    }
    messages.push(ChatMessage::new(Role::User, &args.prompt));
    ChatCompletionRequest {
        model,
        messages,
        stream: args.stream.then_some(true),
        stream_options: args.stream.then(|| StreamOptions {
            include_usage: Some(true),
            extra: Default::default(),
        }),
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        ..Default::default()
    }
}

/// The in-process caller has the master key's rights.
fn local_context() -> RequestContext {
    RequestContext::new(Arc::new(KeyContext {
        is_master: true,
        key_name: Some("cli".into()),
        ..Default::default()
    }))
}

pub async fn run(global: &Global, args: &ChatArgs) -> Result<()> {
    match &args.remote.url {
        Some(url) => remote_chat(url, args).await,
        None => local_chat(global, args).await,
    }
}

async fn local_chat(global: &Global, args: &ChatArgs) -> Result<()> {
    let config = global.load()?;
    let model = match &args.model {
        Some(m) => m.clone(),
        None => config
            .models
            .first()
            .map(|m| m.name.to_string())
            .ok_or_else(|| anyhow!("no models configured: pass --config or set OPENAI_API_KEY"))?,
    };
    let gateway = llmrr_server::start_gateway(&config).await?;
    let req = request(args, model);
    let result = if args.stream {
        match gateway.chat_stream(local_context(), req).await {
            Ok(mut answer) => {
                let mut printer = Printer::default();
                while let Some(item) = answer.frames.recv().await {
                    printer.feed(&llmrr_server::dialect::openai::frame(item))?;
                }
                printer.finish()
            }
            Err(e) => Err(e.into()),
        }
    } else {
        match gateway.chat(local_context(), req).await {
            Ok(answer) => print_completion(&serde_json::from_slice(&answer.body)?),
            Err(e) => Err(e.into()),
        }
    };
    gateway.shutdown(std::time::Duration::from_secs(5)).await;
    result
}

async fn remote_chat(url: &str, args: &ChatArgs) -> Result<()> {
    let model = args
        .model
        .clone()
        .ok_or_else(|| anyhow!("with --url, name the model with -m"))?;
    let req = request(args, model);
    let body = serde_json::to_vec(&req.outbound(&req.model, None))?;
    let resp = client_post(url, "/v1/chat/completions", &args.remote, body).await?;
    if !args.stream {
        return print_completion(&resp.json().await?);
    }
    let mut printer = Printer::default();
    let mut bytes = resp.bytes_stream();
    while let Some(chunk) = bytes.next().await {
        printer.feed(&chunk.context("the stream broke")?)?;
    }
    printer.finish()
}

async fn client_post(
    url: &str,
    path: &str,
    remote: &RemoteArgs,
    body: Vec<u8>,
) -> Result<reqwest::Response> {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", server_root(url)))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = &remote.api_key {
        req = req.bearer_auth(key);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if !resp.status().is_success() {
        bail!(http_error(resp).await);
    }
    Ok(resp)
}

/// `--url` as given (`http://host:8080`, with or without a trailing `/` or `/v1`), reduced to
/// the server's root: the CLI appends the API paths itself.
pub fn server_root(url: &str) -> &str {
    let url = url.trim_end_matches('/');
    url.strip_suffix("/v1").unwrap_or(url)
}

/// An HTTP error as a person reads it: the status and the error envelope's message (the raw
/// body only when it is not one).
pub async fn http_error(resp: reqwest::Response) -> String {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned));
    match message {
        Some(m) => format!("{status}: {m}"),
        None => format!("{status}: {}", text.trim()),
    }
}

fn print_completion(body: &Value) -> Result<()> {
    let message = &body["choices"][0]["message"];
    if let Some(text) = message["content"].as_str() {
        println!("{text}");
    }
    if let Some(calls) = message["tool_calls"].as_array() {
        for c in calls {
            println!(
                "[tool call] {}({})",
                c["function"]["name"], c["function"]["arguments"]
            );
        }
    }
    print_usage(&body["usage"]);
    Ok(())
}

fn print_usage(usage: &Value) {
    if let (Some(p), Some(c)) = (
        usage["prompt_tokens"].as_u64(),
        usage["completion_tokens"].as_u64(),
    ) {
        eprintln!("[{p} prompt + {c} completion tokens]");
    }
}

/// Prints deltas of an SSE stream as they come.
#[derive(Default)]
struct Printer {
    parser: SseParser,
    done: bool,
}

impl Printer {
    fn feed(&mut self, bytes: &[u8]) -> Result<()> {
        let mut events = Vec::new();
        self.parser.push(bytes, &mut events);
        let mut out = std::io::stdout().lock();
        for ev in events {
            if ev.data == "[DONE]" {
                self.done = true;
                continue;
            }
            let v: Value = serde_json::from_str(&ev.data)?;
            if let Some(err) = v.get("error") {
                bail!(
                    "the stream failed: {}",
                    err["message"].as_str().unwrap_or("unknown error")
                );
            }
            if let Some(text) = v["choices"][0]["delta"]["content"].as_str() {
                write!(out, "{text}")?;
                out.flush()?;
            }
            if !v["usage"].is_null() {
                writeln!(out)?;
                print_usage(&v["usage"]);
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        if !self.done {
            bail!("the stream ended before [DONE]");
        }
        Ok(())
    }
}

pub async fn models(global: &Global, args: &RemoteArgs) -> Result<()> {
    let list: Value = match &args.url {
        Some(url) => {
            let mut req = reqwest::Client::new().get(format!("{}/v1/models", server_root(url)));
            if let Some(key) = &args.api_key {
                req = req.bearer_auth(key);
            }
            let resp = req.send().await?;
            if !resp.status().is_success() {
                bail!(http_error(resp).await);
            }
            resp.json().await?
        }
        None => {
            let config = global.load()?;
            for r in &config.routes {
                println!(
                    "{:<32} {:<10} {} over {}",
                    r.name,
                    "route",
                    r.strategy.as_str(),
                    r.models.join(", ")
                );
            }
            for m in &config.models {
                println!(
                    "{:<32} {:<10} {:<32} in ${}/Mtok  out ${}/Mtok  ctx {}",
                    m.name,
                    m.provider.as_str(),
                    m.upstream_model,
                    m.pricing.input_per_mtok,
                    m.pricing.output_per_mtok,
                    m.context_window
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "-".into())
                );
            }
            return Ok(());
        }
    };
    for m in list["data"].as_array().into_iter().flatten() {
        println!(
            "{:<32} {}",
            m["id"].as_str().unwrap_or(""),
            m["owned_by"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

pub async fn route(global: &Global, args: &RouteArgs) -> Result<()> {
    let mut llmrr = serde_json::Map::new();
    if let Some(s) = &args.strategy {
        llmrr.insert("strategy".into(), Value::String(s.clone()));
    }
    let req = ChatCompletionRequest {
        model: args.route.clone(),
        messages: vec![ChatMessage::new(Role::User, &args.prompt)],
        stream: args.stream.then_some(true),
        llmrr: (!llmrr.is_empty()).then_some(Value::Object(llmrr)),
        ..Default::default()
    };
    let decision: Value = match &args.remote.url {
        Some(url) => {
            let mut body = serde_json::to_value(req.outbound(&req.model, None))?;
            if let Some(o) = &req.llmrr {
                body["llmrr"] = o.clone();
            }
            client_post(url, "/v1/route", &args.remote, serde_json::to_vec(&body)?)
                .await?
                .json()
                .await?
        }
        None => {
            let config = global.load()?;
            let gateway = llmrr_server::start_gateway(&config).await?;
            let decision = gateway.route(&local_context().key, &req);
            gateway.shutdown(std::time::Duration::from_secs(1)).await;
            serde_json::to_value(decision?)?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&decision)?);
    } else {
        print_decision(&decision);
    }
    Ok(())
}

/// A routing decision as a person reads it: the choice, why, the order of attempts, and each
/// model's score or why it was left out.
fn print_decision(d: &Value) {
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    println!(
        "{} -> {}   (strategy {})",
        d["route"].as_str().unwrap_or("direct"),
        text(&d["model"]),
        text(&d["strategy"])
    );
    println!("reason: {}", text(&d["reason"]));
    let c = &d["complexity"];
    if let Some(score) = c["score"].as_f64() {
        let threshold = c["threshold"]
            .as_f64()
            .map(|t| format!(", threshold {t:.3}"))
            .unwrap_or_default();
        println!(
            "prompt: difficulty {score:.3}{threshold}, category {}",
            text(&c["category"])
        );
    }
    let plan: Vec<String> = d["plan"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    if !plan.is_empty() {
        println!("tries:  {}", plan.join(" -> "));
    }
    let ranking = d["ranking"].as_array().cloned().unwrap_or_default();
    if ranking.is_empty() {
        return;
    }
    println!(
        "\n{:<28} {:>8} {:>8} {:>12} {:>10}  STATE",
        "MODEL", "SCORE", "QUALITY", "EST. COST $", "LATENCY"
    );
    for m in ranking {
        let score = m["score"]
            .as_f64()
            .map_or_else(|| "-".into(), |s| format!("{s:.3}"));
        let latency = m["latency_ms"]
            .as_f64()
            .map_or_else(|| "-".into(), |l| format!("{l:.0} ms"));
        let state = match m["excluded"].as_str() {
            Some(why) => format!("excluded: {why}"),
            None => format!("breaker {}", text(&m["breaker"])),
        };
        println!(
            "{:<28} {:>8} {:>8} {:>12} {:>10}  {state}",
            text(&m["model"]),
            score,
            m["quality"]
                .as_f64()
                .map_or_else(|| "-".into(), |q| format!("{q:.2}")),
            text(&m["est_cost_usd"]),
            latency
        );
    }
}
