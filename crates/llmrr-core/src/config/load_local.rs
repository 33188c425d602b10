//! `provider = "local"` models and the `[local]` section: defaults filled from `[local]`, the
//! models directory scanned, every value checked with its key path.

use super::defaults as d;
use super::load::seconds;
use super::raw::{RawLocal, RawModel};
use super::resolved::{KvType, LocalConfig, LocalModelSpec, MemoryBudget, Pooling};
use crate::error::{Error, Result};
use std::path::PathBuf;

pub(super) fn local_config(raw: &RawLocal) -> Result<LocalConfig> {
    let memory_budget = match (raw.memory_budget_mb, raw.memory_budget_fraction) {
        (Some(_), Some(_)) => {
            return Err(Error::config(
                "local.memory_budget_mb",
                "set memory_budget_mb or memory_budget_fraction, not both",
            ))
        }
        (Some(0), None) => {
            return Err(Error::config(
                "local.memory_budget_mb",
                "0 must be a positive size",
            ))
        }
        (Some(mb), None) => MemoryBudget::Bytes(mb << 20),
        (None, f) => {
            let f = f.unwrap_or(d::LOCAL_MEMORY_FRACTION);
            if !(f > 0.0 && f <= 1.0) {
                return Err(Error::config(
                    "local.memory_budget_fraction",
                    format!("{f} must be in (0, 1]"),
                ));
            }
            MemoryBudget::FractionOfRam(f)
        }
    };
    Ok(LocalConfig {
        models_dir: raw.models_dir.as_ref().map(PathBuf::from),
        memory_budget,
    })
}

/// One model per `*.gguf` file of `[local].models_dir`, named after the file, with the
/// `[local]` defaults. Names already configured in `[[models]]` are left to that entry.
pub(super) fn scan_models_dir(raw: &RawLocal, taken: &[RawModel]) -> Result<Vec<RawModel>> {
    let Some(dir) = &raw.models_dir else {
        return Ok(Vec::new());
    };
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::config(
            "local.models_dir",
            format!("cannot read the directory `{dir}`: {e}"),
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    files.sort();
    let mut found = Vec::new();
    for path in files {
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let name = name.replace(char::is_whitespace, "-");
        if taken.iter().any(|m| m.name == name) {
            continue;
        }
        found.push(RawModel {
            path: Some(path.to_string_lossy().into_owned()),
            ..blank_local(name)
        });
    }
    Ok(found)
}

fn blank_local(name: String) -> RawModel {
    RawModel {
        name,
        provider: "local".into(),
        ..RawModel::default()
    }
}

/// Fills a local model's unset settings from `[local]`.
pub(super) fn apply_defaults(m: &mut RawModel, dd: &RawLocal) {
    let dd = RawLocal {
        models_dir: None,
        ..dd.clone()
    };
    m.context_size = m.context_size.or(dd.context_size);
    m.threads = m.threads.or(dd.threads);
    m.parallel = m.parallel.or(dd.parallel);
    m.keep_alive_secs = m.keep_alive_secs.or(dd.keep_alive_secs);
    m.pinned = m.pinned.or(dd.pinned);
    m.gpu_layers = m.gpu_layers.or(dd.gpu_layers);
    m.prefill_chunk = m.prefill_chunk.or(dd.prefill_chunk);
    m.pooling = m.pooling.take().or(dd.pooling);
    m.kv_type = m.kv_type.take().or(dd.kv_type);
    m.prefix_cache_share = m.prefix_cache_share.or(dd.prefix_cache_share);
    m.prompt_cache_mb = m.prompt_cache_mb.or(dd.prompt_cache_mb);
    m.input_cost_per_mtok = m.input_cost_per_mtok.take().or(dd.input_cost_per_mtok);
    m.output_cost_per_mtok = m.output_cost_per_mtok.take().or(dd.output_cost_per_mtok);
    m.cost_per_compute_second = m
        .cost_per_compute_second
        .take()
        .or(dd.cost_per_compute_second);
}

/// The local settings of model `i`; remote-only keys are refused.
pub(super) fn local_spec(i: usize, m: &RawModel) -> Result<LocalModelSpec> {
    let at = |key: &str| format!("models[{i}].{key}");
    for (key, set) in [
        ("base_url", m.base_url.is_some()),
        ("api_key", m.api_key.is_some()),
        ("organization", m.organization.is_some()),
        ("anthropic_version", m.anthropic_version.is_some()),
        ("responses_api", m.responses_api.is_some()),
        ("headers", !m.headers.is_empty()),
        ("context_window", m.context_window.is_some()),
    ] {
        if set {
            let hint = if key == "context_window" {
                " (use context_size)"
            } else {
                ""
            };
            return Err(Error::config(
                at(key),
                format!("is not a setting of a local model{hint}"),
            ));
        }
    }
    let path = m.path.as_ref().ok_or_else(|| {
        Error::config(at("path"), "a local model needs the path of its .gguf file")
    })?;
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(Error::config(
            at("path"),
            format!("`{}` is not a file", path.display()),
        ));
    }
    let per_token = m.input_cost_per_mtok.is_some() && m.output_cost_per_mtok.is_some();
    if !per_token && m.cost_per_compute_second.is_none() {
        return Err(Error::config(
            at("input_cost_per_mtok"),
            "a local model's price must be explicit: set input_cost_per_mtok and \
             output_cost_per_mtok, or cost_per_compute_second (0 is allowed), here or in [local]",
        ));
    }
    let positive = |key: &str, v: Option<u32>, default: u32| -> Result<u32> {
        match v.unwrap_or(default) {
            0 => Err(Error::config(at(key), "0 must be a positive number")),
            n => Ok(n),
        }
    };
    let pooling = match m.pooling.as_deref() {
        None => None,
        Some("mean") => Some(Pooling::Mean),
        Some("cls") => Some(Pooling::Cls),
        Some("last") => Some(Pooling::Last),
        Some(other) => {
            return Err(Error::config(
                at("pooling"),
                format!("`{other}` is not a pooling (mean, cls, last)"),
            ))
        }
    };
    let kv_type = match m.kv_type.as_deref() {
        None | Some("f16") => KvType::F16,
        Some("q8_0") => KvType::Q8_0,
        Some("q4_0") => KvType::Q4_0,
        Some(other) => {
            return Err(Error::config(
                at("kv_type"),
                format!("`{other}` is not a KV cache type (f16, q8_0, q4_0)"),
            ))
        }
    };
    let prefix_cache_share = m.prefix_cache_share.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&prefix_cache_share) {
        return Err(Error::config(
            at("prefix_cache_share"),
            "is a share of the KV cache, from 0 (no prefix reuse) to 1",
        ));
    }
    let keep_alive = m.keep_alive_secs.unwrap_or(d::LOCAL_KEEP_ALIVE_SECS);
    Ok(LocalModelSpec {
        path,
        context_size: positive("context_size", m.context_size, d::LOCAL_CONTEXT_SIZE)?,
        threads: positive("threads", m.threads, default_threads())?,
        parallel: positive("parallel", m.parallel, d::LOCAL_PARALLEL)?,
        keep_alive: if keep_alive == 0.0 {
            std::time::Duration::ZERO
        } else {
            seconds(&at("keep_alive_secs"), keep_alive)?
        },
        pinned: m.pinned.unwrap_or(false),
        gpu_layers: m.gpu_layers.unwrap_or(0),
        prefill_chunk: positive("prefill_chunk", m.prefill_chunk, d::LOCAL_PREFILL_CHUNK)?,
        pooling,
        kv_type,
        prefix_cache_share,
        prompt_cache_mb: m.prompt_cache_mb,
    })
}

/// One thread fewer than the cores (at least one): llama.cpp's threads spin while they wait,
/// and collapse when they share a core with the server's own threads.
fn default_threads() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    cores.saturating_sub(1).max(1)
}
