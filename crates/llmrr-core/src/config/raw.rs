//! The config file as written. Every struct rejects unknown keys so a typo is an error, not a
//! silently ignored setting.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub routing: RawRouting,
    /// Tier name -> the models a key of that tier may reach (`"*"`: all).
    #[serde(default)]
    pub tiers: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub local: RawLocal,
    #[serde(default)]
    pub money: super::money::RawMoney,
    #[serde(default)]
    pub shared: super::money::RawShared,
    #[serde(default)]
    pub limits: super::limits::RawLimits,
    #[serde(default)]
    pub cache: super::cache::RawCache,
    #[serde(default)]
    pub telemetry: super::telemetry::RawTelemetry,
}

/// `[local]`: the in-process engine: a models directory, the memory budget, and the defaults
/// of every local model.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocal {
    /// Every `*.gguf` in it becomes a model named after its file.
    pub models_dir: Option<String>,
    /// The memory the loaded models may take together, in MiB…
    pub memory_budget_mb: Option<u64>,
    /// …or as a fraction of the machine's RAM (default 0.75).
    pub memory_budget_fraction: Option<f64>,
    // The defaults of every local model (see `RawModel` for each).
    pub context_size: Option<u32>,
    pub threads: Option<u32>,
    pub parallel: Option<u32>,
    pub keep_alive_secs: Option<f64>,
    pub pinned: Option<bool>,
    pub gpu_layers: Option<u32>,
    pub prefill_chunk: Option<u32>,
    pub pooling: Option<String>,
    pub kv_type: Option<String>,
    pub prefix_cache_share: Option<f64>,
    pub prompt_cache_mb: Option<u64>,
    pub input_cost_per_mtok: Option<toml::Value>,
    pub output_cost_per_mtok: Option<toml::Value>,
    pub cost_per_compute_second: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    /// An `env:NAME` reference; defaults to `env:LLMRR_MASTER_KEY`.
    pub master_key: Option<String>,
    pub require_master_key: Option<bool>,
    pub max_body_bytes: Option<u64>,
    pub request_timeout_secs: Option<f64>,
    pub shutdown_grace_secs: Option<f64>,
    pub header_read_timeout_secs: Option<f64>,
    pub body_read_timeout_secs: Option<f64>,
    pub max_connections: Option<u64>,
    pub max_messages: Option<u64>,
    pub metrics_public: Option<bool>,
    pub key_cache_secs: Option<f64>,
    #[serde(default)]
    pub cors: RawCors,
}

/// `[server.cors]`: browser clients from these origins may call the API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    pub max_age_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub url: Option<String>,
    pub log_batch_size: Option<usize>,
    pub log_flush_interval_ms: Option<u64>,
    pub log_queue_capacity: Option<usize>,
    pub responses_retention_days: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: String,
    pub provider: String,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub upstream_model: Option<String>,
    pub input_cost_per_mtok: Option<toml::Value>,
    pub output_cost_per_mtok: Option<toml::Value>,
    /// A prompt-cache read; default: the catalog's, else the input price.
    pub cached_input_cost_per_mtok: Option<toml::Value>,
    /// A prompt-cache write; default: the catalog's, else the input price.
    pub cache_write_cost_per_mtok: Option<toml::Value>,
    pub cache_write_1h_cost_per_mtok: Option<toml::Value>,
    /// USD per second of compute (local models, which report their compute time).
    pub cost_per_compute_second: Option<toml::Value>,
    pub context_window: Option<u32>,
    pub max_output_tokens: Option<u32>,
    pub quality: Option<f64>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub organization: Option<String>,
    pub timeout_secs: Option<f64>,
    pub connect_timeout_secs: Option<f64>,
    pub anthropic_version: Option<String>,
    /// `provider = "openai"`: the server also speaks OpenAI's Responses API (`/responses`);
    /// default: true for OpenAI's own URL.
    pub responses_api: Option<bool>,
    pub owned_by: Option<String>,
    /// Any of `tools`, `vision`, `json`; absent: all of them.
    pub capabilities: Option<Vec<String>>,
    pub ttft_timeout_secs: Option<f64>,
    pub idle_timeout_secs: Option<f64>,
    /// `provider = "local"`: the GGUF file.
    pub path: Option<String>,
    /// Tokens of context per sequence (prompt + output).
    pub context_size: Option<u32>,
    pub threads: Option<u32>,
    /// Sequences decoded together (continuous batching).
    pub parallel: Option<u32>,
    pub keep_alive_secs: Option<f64>,
    pub pinned: Option<bool>,
    pub gpu_layers: Option<u32>,
    /// Prompt tokens evaluated per step, at most (chunked prefill).
    pub prefill_chunk: Option<u32>,
    /// `mean`, `cls` or `last`: load the model for `/v1/embeddings` with that pooling.
    pub pooling: Option<String>,
    /// The KV cache's element type: `f16` (default), `q8_0` or `q4_0`.
    pub kv_type: Option<String>,
    /// The share of the KV cache that finished sequences' prompts may keep for reuse (0–1,
    /// default 1: every idle slot keeps its own).
    pub prefix_cache_share: Option<f64>,
    /// Memory for kept prompts beyond the slots, in MiB (default: the KV cache's size; 0: none).
    pub prompt_cache_mb: Option<u64>,
    /// The provider's requests per minute for our account: routing skips the model at it.
    pub rpm: Option<u64>,
    /// The provider's tokens per minute for our account.
    pub tpm: Option<u64>,
    /// Calls in flight at once (default: a local model's `parallel`, else unlimited).
    pub max_concurrent: Option<u32>,
    /// Requests waiting for a slot, at most (default 256): past it the lowest is shed.
    pub max_queue: Option<u32>,
    /// Guardrails of requests naming this model (see `[routes.guardrails]`).
    pub guardrails: Option<super::guardrails::RawGuardrails>,
    /// The response cache of requests naming this model (see `[cache]`).
    pub cache: Option<super::cache::RawCacheRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    pub strategy: Option<String>,
    pub models: Vec<String>,
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// For `weighted`: model -> relative share of traffic.
    #[serde(default)]
    pub weights: BTreeMap<String, f64>,
    pub min_quality: Option<f64>,
    pub max_cost_usd: Option<toml::Value>,
    pub max_latency_ms: Option<f64>,
    pub expected_output_tokens: Option<u32>,
    pub content_fallback: Option<String>,
    pub balanced: Option<RawBalanced>,
    /// Input and output rules of requests naming this route (off unless given).
    pub guardrails: Option<super::guardrails::RawGuardrails>,
    /// The response cache of requests naming this route (see `[cache]`).
    pub cache: Option<super::cache::RawCacheRule>,
    /// `complexity`: difficulty thresholds, one fewer than the models (ordered by quality).
    pub thresholds: Option<Vec<f64>>,
    /// `complexity`: the share of requests the strongest model should get.
    pub strong_share: Option<f64>,
    /// `complexity`: a weights file from `llmrr router train` (default: the shipped weights).
    pub scorer: Option<String>,
    /// Keep what the difficulty scorer reads of each prompt in the request log, for
    /// `llmrr router train --from-log`.
    pub log_prompts: Option<bool>,
    /// `cascade`: the checks an answer must pass before it is accepted.
    pub cascade: Option<RawCascade>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCascade {
    /// Escalate when the answer's mean token log-probability is below this (where the
    /// provider returns logprobs).
    pub min_mean_logprob: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBalanced {
    pub quality: Option<f64>,
    pub cost: Option<f64>,
    pub latency: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    pub retry_max_attempts: Option<u32>,
    pub retry_base_delay_ms: Option<u64>,
    pub retry_max_delay_ms: Option<u64>,
    pub max_total_secs: Option<f64>,
    pub breaker_consecutive_failures: Option<u32>,
    pub breaker_failure_ratio: Option<f64>,
    pub breaker_window_secs: Option<f64>,
    pub breaker_min_requests: Option<u32>,
    pub breaker_cooldown_secs: Option<f64>,
    pub breaker_half_open_probes: Option<u32>,
    pub breaker_close_after: Option<u32>,
    pub health_probe_interval_secs: Option<f64>,
    pub stats_window_secs: Option<f64>,
    pub ewma_half_life_secs: Option<f64>,
}

impl RawModel {
    /// The first setting given that only local models take, if any.
    pub fn local_only_key(&self) -> Option<&'static str> {
        [
            ("path", self.path.is_some()),
            ("context_size", self.context_size.is_some()),
            ("threads", self.threads.is_some()),
            ("parallel", self.parallel.is_some()),
            ("keep_alive_secs", self.keep_alive_secs.is_some()),
            ("pinned", self.pinned.is_some()),
            ("gpu_layers", self.gpu_layers.is_some()),
            ("prefill_chunk", self.prefill_chunk.is_some()),
            ("pooling", self.pooling.is_some()),
            ("kv_type", self.kv_type.is_some()),
            ("prefix_cache_share", self.prefix_cache_share.is_some()),
            ("prompt_cache_mb", self.prompt_cache_mb.is_some()),
        ]
        .into_iter()
        .find_map(|(k, set)| set.then_some(k))
    }
}
