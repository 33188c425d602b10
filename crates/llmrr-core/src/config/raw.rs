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
}
