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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub url: Option<String>,
    pub log_batch_size: Option<usize>,
    pub log_flush_interval_ms: Option<u64>,
    pub log_queue_capacity: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: String,
    pub provider: String,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub upstream_model: Option<String>,
    pub input_cost_per_mtok: Option<toml::Value>,
    pub output_cost_per_mtok: Option<toml::Value>,
    pub context_window: Option<u32>,
    pub max_output_tokens: Option<u32>,
    pub quality: Option<f64>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub organization: Option<String>,
    pub timeout_secs: Option<f64>,
    pub connect_timeout_secs: Option<f64>,
    pub anthropic_version: Option<String>,
    pub owned_by: Option<String>,
    /// Any of `tools`, `vision`, `json`; absent: all of them.
    pub capabilities: Option<Vec<String>>,
    pub ttft_timeout_secs: Option<f64>,
    pub idle_timeout_secs: Option<f64>,
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
