//! `llmrr models inspect | pull | synth`: GGUF files without a server.

use crate::cli::{Global, ModelsCommand};
use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use llmrr_engine::gguf::{synthesize, GgufInfo, MetaValue, SynthSpec, TensorType};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub async fn run(global: &Global, command: &ModelsCommand) -> Result<()> {
    match command {
        ModelsCommand::List(args) => crate::chat::models(global, args).await,
        ModelsCommand::Inspect { file, ctx } => inspect(file, *ctx),
        ModelsCommand::Synth {
            out,
            preset,
            quant,
            seed,
            no_template,
        } => synth(out, preset, quant.as_deref(), *seed, *no_template),
        ModelsCommand::Pull {
            target,
            quant,
            context,
            dry_run,
            dir,
            revision,
            hub,
            token,
        } => {
            let whole_repo = target.split('/').count() == 2;
            if !whole_repo && (quant.is_some() || context.is_some() || *dry_run) {
                bail!("--quant, --context and --dry-run choose among a repository's files: give OWNER/REPO");
            }
            let file = if whole_repo {
                let choice = crate::quant::Choice {
                    repo: target,
                    revision,
                    hub,
                    token: token.as_deref(),
                    quant: quant.as_deref(),
                    context: *context,
                };
                let chosen = crate::quant::choose(global, &choice).await?;
                if *dry_run {
                    return Ok(());
                }
                format!("{target}/{chosen}")
            } else {
                target.clone()
            };
            pull(&file, dir, revision, hub, token.as_deref())
                .await
                .map(|path| println!("{}", path.display()))
        }
    }
}

pub(crate) fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

fn inspect(file: &Path, ctx: Option<u64>) -> Result<()> {
    let info = GgufInfo::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let ctx = ctx.or(info.context_length()).unwrap_or(4096);
    let est = info.estimate_memory(ctx, 512);
    let params = info.parameters();
    println!("file            {}", file.display());
    println!("file size       {}", mib(info.file_size));
    println!("gguf version    {}", info.version);
    println!("architecture    {}", info.architecture());
    if let Some(name) = info.str("general.name") {
        println!("name            {name}");
    }
    println!("parameters      {params} ({:.1}M)", params as f64 / 1e6);
    println!("quantization    {}", info.quantization());
    println!(
        "context length  {}",
        info.context_length()
            .map_or_else(|| "unknown".into(), |c| c.to_string())
    );
    println!(
        "vocabulary      {} tokens ({})",
        info.vocab_size().unwrap_or(0),
        info.str("tokenizer.ggml.model").unwrap_or("unknown")
    );
    println!("tensors         {}", info.tensors.len());
    match info.chat_template() {
        Some(t) => println!("chat template   {}", MetaValue::Str(t.to_owned())),
        None => println!("chat template   none (chat requests are refused; use /v1/completions)"),
    }
    println!(
        "memory at ctx {ctx}: {} total = weights {} + KV cache {} + compute {}",
        mib(est.total()),
        mib(est.weights),
        mib(est.kv_cache),
        mib(est.compute)
    );
    Ok(())
}

fn synth(
    out: &Path,
    preset: &str,
    quant: Option<&str>,
    seed: u64,
    no_template: bool,
) -> Result<()> {
    let mut spec = SynthSpec::preset(preset)
        .with_context(|| format!("`{preset}` is not a preset (tiny, 270m)"))?;
    if let Some(q) = quant {
        spec.ty = TensorType::parse(q)
            .with_context(|| format!("`{q}` is not a weight type (f32, f16, q8_0, q4_0)"))?;
    }
    spec.seed = seed;
    spec.chat_template = !no_template;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let size = synthesize(&spec, out).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "wrote {} ({}, {:.1}M parameters, {:?})",
        out.display(),
        mib(size),
        spec.parameters() as f64 / 1e6,
        spec.ty
    );
    Ok(())
}

/// Downloads `owner/repo/path` into `dir`, resuming a `.part` file left by an earlier try and
/// verifying the SHA-256 the hub announces (`X-Linked-Etag` for LFS files, else `ETag`).
pub async fn pull(
    target: &str,
    dir: &Path,
    revision: &str,
    hub: &str,
    token: Option<&str>,
) -> Result<PathBuf> {
    let parts: Vec<&str> = target.splitn(3, '/').collect();
    let [owner, repo, file] = parts[..] else {
        bail!("`{target}` is not OWNER/REPO/FILE");
    };
    if file.split('/').any(|p| p == ".." || p.is_empty()) {
        bail!("`{file}` is not a plain path inside the repository");
    }
    let url = format!(
        "{}/{owner}/{repo}/resolve/{revision}/{file}",
        hub.trim_end_matches('/')
    );
    let name = file.rsplit('/').next().unwrap_or(file);
    std::fs::create_dir_all(dir)?;
    let dest = dir.join(name);
    let part = dir.join(format!("{name}.part"));
    let have = std::fs::metadata(&part).map_or(0, |m| m.len());

    let client = reqwest::Client::new();
    let mut req = client.get(&url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let resp = req.send().await.with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
        // The part file is already whole; only the check is left.
    } else if !status.is_success() {
        bail!(
            "GET {url}: {status} {}",
            resp.text().await.unwrap_or_default()
        );
    }
    let expected = ["x-linked-etag", "etag"].iter().find_map(|h| {
        let v = resp.headers().get(*h)?.to_str().ok()?;
        let v = v
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_ascii_lowercase();
        (v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())).then_some(v)
    });
    let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT;
    let start = if resumed { have } else { 0 };
    let total = resp.content_length().map(|n| n + start);
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(resumed)
        .write(true)
        .truncate(!resumed && status.is_success())
        .open(&part)?;
    if status.is_success() {
        let bar = ProgressBar::new(total.unwrap_or(0));
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(name.to_owned());
        bar.set_position(start);
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.context("the download was cut (run the same command to resume)")?;
            out.write_all(&chunk)?;
            bar.inc(chunk.len() as u64);
        }
        out.flush()?;
        bar.finish_and_clear();
    }
    drop(out);
    let got = std::fs::metadata(&part)?.len();
    if let Some(t) = total {
        if got != t {
            bail!("the download stopped at {got} of {t} bytes (run the same command to resume)");
        }
    }
    if let Some(want) = expected {
        let have = sha256_file(&part)?;
        if have != want {
            std::fs::remove_file(&part)?;
            bail!("checksum mismatch: expected sha256 {want}, got {have} (the partial file was removed)");
        }
    } else {
        eprintln!("note: the hub announced no SHA-256; the file is not verified");
    }
    std::fs::rename(&part, &dest)?;
    Ok(dest)
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}
