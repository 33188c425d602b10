//! `llmrr models pull OWNER/REPO`: which of a repository's GGUF files to download — the best
//! quantization whose memory estimate (the file's weights, plus the KV cache and compute
//! buffer at the context asked, read from the GGUF header) fits the local memory budget.

use crate::cli::Global;
use crate::models::mib;
use anyhow::{bail, Context, Result};
use llmrr_engine::gguf::GgufInfo;
use std::io::Write;

/// What the choice is asked.
pub struct Choice<'a> {
    pub repo: &'a str,
    pub revision: &'a str,
    pub hub: &'a str,
    pub token: Option<&'a str>,
    pub quant: Option<&'a str>,
    pub context: Option<u64>,
}

/// Quantization labels, best first. 16-bit before F32 (the same quality in practice, half the
/// memory); a file whose name carries none of these (a repacked `Q4_0_4_4`, an unusual label)
/// is listed but never chosen on its own.
const RANKED: &[&str] = &[
    "BF16", "F16", "F32", "Q8_0", "Q6_K_L", "Q6_K", "Q5_K_L", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0",
    "Q4_K_L", "Q4_K_M", "Q4_K_S", "IQ4_NL", "IQ4_XS", "Q4_1", "Q4_0", "Q3_K_XL", "Q3_K_L",
    "Q3_K_M", "IQ3_M", "Q3_K_S", "IQ3_S", "IQ3_XS", "IQ3_XXS", "Q2_K_L", "Q2_K", "Q2_K_S", "IQ2_M",
    "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S",
];

/// The quantization a file name says, and its rank (0 is best).
fn label(file: &str) -> Option<(usize, &'static str)> {
    let name = file.rsplit('/').next().unwrap_or(file).to_ascii_uppercase();
    let mut by_length: Vec<(usize, &'static str)> = RANKED.iter().copied().enumerate().collect();
    by_length.sort_by_key(|(_, l)| std::cmp::Reverse(l.len()));
    by_length.into_iter().find(|(_, l)| {
        name.match_indices(l).any(|(at, _)| {
            let before = name[..at].chars().next_back();
            let after = name[at + l.len()..].chars().next();
            before.is_none_or(|c| !c.is_ascii_alphanumeric())
                && after.is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_')
        })
    })
}

/// A part of a model split in several files (`-00002-of-00003.gguf`): not something one file
/// can serve (a split in one part is a whole model).
fn is_shard(file: &str) -> bool {
    let Some(stem) = file.strip_suffix(".gguf") else {
        return false;
    };
    // `-NNNNN-of-MMMMM`: 15 ASCII bytes at the end.
    let Some(tail) = stem.len().checked_sub(15).and_then(|at| stem.get(at..)) else {
        return false;
    };
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|c| c.is_ascii_digit());
    tail.starts_with('-')
        && &tail[6..10] == "-of-"
        && digits(&tail[1..6])
        && digits(&tail[10..15])
        && &tail[10..15] != "00001"
}

/// `segment` as one URL path segment (the hub's names are not trusted to be URL-safe).
fn encoded(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encoded_path(path: &str) -> String {
    path.split('/').map(encoded).collect::<Vec<_>>().join("/")
}

struct Candidate {
    path: String,
    size: u64,
    rank: Option<(usize, &'static str)>,
}

fn client_get(url: &str, token: Option<&str>) -> reqwest::RequestBuilder {
    let r = reqwest::Client::new().get(url);
    match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    }
}

/// The repository's files (the hub's tree API), GGUF ones only, without projectors and shards.
async fn candidates(c: &Choice<'_>) -> Result<Vec<Candidate>> {
    let url = format!(
        "{}/api/models/{}/tree/{}?recursive=true",
        c.hub.trim_end_matches('/'),
        encoded_path(c.repo),
        encoded(c.revision)
    );
    let resp = client_get(&url, c.token)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    if !resp.status().is_success() {
        bail!("GET {url}: {}", resp.status());
    }
    let entries: Vec<serde_json::Value> = resp.json().await.context("the hub's file list")?;
    let mut out: Vec<Candidate> = entries
        .iter()
        .filter(|e| e["type"] == "file")
        .filter_map(|e| {
            let path = e["path"].as_str()?.to_owned();
            let lower = path.to_ascii_lowercase();
            if !lower.ends_with(".gguf")
                || lower.contains("mmproj")
                || is_shard(&lower)
                || path
                    .split('/')
                    .any(|p| p.is_empty() || p == "." || p == "..")
            {
                return None;
            }
            let size = e["lfs"]["size"].as_u64().or(e["size"].as_u64())?;
            Some(Candidate {
                rank: label(&path),
                path,
                size,
            })
        })
        .collect();
    out.sort_by_key(|c| (c.rank.map_or(usize::MAX, |r| r.0), c.size));
    Ok(out)
}

/// The GGUF header of `path` (its first bytes, more until the header reads whole).
async fn header(c: &Choice<'_>, path: &str) -> Result<GgufInfo> {
    let url = format!(
        "{}/{}/resolve/{}/{}",
        c.hub.trim_end_matches('/'),
        encoded_path(c.repo),
        encoded(c.revision),
        encoded_path(path)
    );
    let mut want: u64 = 8 << 20;
    loop {
        let resp = client_get(&url, c.token)
            .header(reqwest::header::RANGE, format!("bytes=0-{}", want - 1))
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if resp.status() != reqwest::StatusCode::PARTIAL_CONTENT {
            bail!(
                "GET {url}: {} (a header read needs the hub to honour Range requests)",
                resp.status()
            );
        }
        let bytes = resp.bytes().await?;
        let mut tmp = tempfile::NamedTempFile::new()?;
        tmp.write_all(&bytes)?;
        match GgufInfo::read(tmp.path()) {
            Ok(info) => return Ok(info),
            Err(_) if (bytes.len() as u64) >= want && want < (128 << 20) => want *= 4,
            Err(e) => bail!("{path}: cannot read its GGUF header: {e}"),
        }
    }
}

/// Picks the file to download and says why (on stderr, with the table of candidates).
pub async fn choose(global: &Global, c: &Choice<'_>) -> Result<String> {
    // The budget of the config when it reads (model secrets not needed, model files may not
    // be there yet: pulling them is the point), else the default share of RAM.
    let local = match global.load_for_store() {
        Ok(config) => config.local,
        Err(e) => {
            eprintln!("note: the config did not load ({e}); using the default memory budget");
            llmrr_core::config::LocalConfig::default()
        }
    };
    let budget = llmrr_engine::lifecycle::memory_budget_bytes(&local);
    let context = c.context.unwrap_or(4096);
    let list = candidates(c).await?;
    // The KV cache and compute buffer depend on the architecture, not the quantization: read
    // once, from the smallest labelled file's header (a model, not an adapter or imatrix).
    let Some(probe) = list
        .iter()
        .filter(|x| x.rank.is_some())
        .min_by_key(|x| x.size)
        .or_else(|| list.iter().min_by_key(|x| x.size))
    else {
        bail!("{} has no single-file GGUF model", c.repo);
    };
    let info = header(c, &probe.path).await?;
    if info.str("general.architecture").is_none() {
        bail!(
            "{}: its header names no architecture (not a model?)",
            probe.path
        );
    }
    // As the server will run it: `context` tokens for each of the default parallel
    // sequences, in f16.
    let spec = llmrr_core::config::LocalModelSpec {
        path: probe.path.clone().into(),
        context_size: context.min(u64::from(u32::MAX)) as u32,
        threads: 1,
        parallel: llmrr_core::config::LOCAL_PARALLEL,
        keep_alive: std::time::Duration::ZERO,
        pinned: false,
        gpu_layers: 0,
        prefill_chunk: llmrr_core::config::LOCAL_PREFILL_CHUNK,
        pooling: None,
        kv_type: Default::default(),
        prefix_cache_share: 1.0,
        prompt_cache_mb: None,
    };
    let est = llmrr_engine::lifecycle::estimate(&info, &spec);
    // Everything but the file: as the server budgets the model.
    let overhead = est.total() - est.weights;
    let smallest = list.iter().min_by_key(|x| x.size).unwrap_or(probe);
    eprintln!(
        "{} GGUF file(s) in {}; budget {}; at {context} tokens of context each needs its size + {} (KV cache {}, compute {}, prompt cache {})",
        list.len(),
        c.repo,
        mib(budget),
        mib(overhead),
        mib(est.kv_cache),
        mib(est.compute),
        mib(est.prompt_cache)
    );
    for x in &list {
        let need = x.size + overhead;
        eprintln!(
            "  {:<8} {:>10}  needs {:>10}  {}  {}",
            x.rank.map_or("?", |r| r.1),
            mib(x.size),
            mib(need),
            if need <= budget { "fits" } else { "too big" },
            x.path
        );
    }
    let chosen = match c.quant {
        Some(q) => list
            .iter()
            .find(|x| x.rank.is_some_and(|r| r.1.eq_ignore_ascii_case(q)))
            .with_context(|| {
                let have: Vec<&str> = list.iter().filter_map(|x| x.rank.map(|r| r.1)).collect();
                format!("no {q} file in {} (it has: {})", c.repo, have.join(", "))
            })?,
        None => match list
            .iter()
            .find(|x| x.rank.is_some() && x.size + overhead <= budget)
        {
            Some(x) => x,
            None => bail!(
                "no file of {} fits the memory budget {} at {context} tokens (the smallest needs {}): \
                 raise [local] memory_budget_mb, lower --context, or pick one with --quant",
                c.repo,
                mib(budget),
                mib(smallest.size + overhead)
            ),
        },
    };
    let why = if c.quant.is_some() {
        "as asked (--quant)".to_owned()
    } else {
        let better: Vec<String> = list
            .iter()
            .take_while(|x| x.path != chosen.path)
            .map(|x| {
                format!(
                    "{} needs {}",
                    x.rank.map_or("?", |r| r.1),
                    mib(x.size + overhead)
                )
            })
            .collect();
        if better.is_empty() {
            "the best quantization there is, and it fits".to_owned()
        } else {
            format!("the best that fits ({})", better.join(", "))
        }
    };
    eprintln!(
        "chose {} ({}, needs {} of {}): {why}",
        chosen.path,
        chosen.rank.map_or("?", |r| r.1),
        mib(chosen.size + overhead),
        mib(budget)
    );
    Ok(chosen.path.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_from_file_names() {
        let l = |f: &str| label(f).map(|r| r.1);
        assert_eq!(l("Qwen2.5-7B-Instruct-Q4_K_M.gguf"), Some("Q4_K_M"));
        assert_eq!(l("model.q8_0.gguf"), Some("Q8_0"));
        assert_eq!(l("llama-3-8b.F16.gguf"), Some("F16"));
        assert_eq!(l("x-IQ4_XS.gguf"), Some("IQ4_XS"));
        assert_eq!(l("x-Q4_K.gguf"), None, "not a label of the list");
        assert_eq!(l("plain.gguf"), None);
        assert!(label("a-Q8_0.gguf").expect("q8").0 < label("a-Q4_K_M.gguf").expect("q4").0);
        assert!(is_shard("m-q4_k_m-00001-of-00003.gguf"));
        assert!(is_shard("q8_0/m-q8_0-00010-of-00012.gguf"));
        assert!(is_shard("mixture-of-experts-q4_k_m-00002-of-00002.gguf"));
        assert!(
            !is_shard("m-q4_k_m-00001-of-00001.gguf"),
            "one part is a whole model"
        );
        assert!(!is_shard("m-q4_k_m.gguf"));
        assert_eq!(l("m-Q6_K_L.gguf"), Some("Q6_K_L"));
        assert_eq!(l("m-Q4_0_4_4.gguf"), None);
        assert_eq!(encoded_path("a b/c%2e.gguf"), "a%20b/c%252e.gguf");
    }
}
