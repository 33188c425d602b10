//! The validated configuration the program runs on.

use super::routing::{RouteSpec, RoutingConfig};
use crate::secret::Secret;
use rust_decimal::Decimal;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The profile overlaid on the base config, if any.
    pub profile: Option<String>,
    /// Where the config came from (a file path, or "built-in defaults").
    pub source: String,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub models: Vec<ModelSpec>,
    pub routes: Vec<RouteSpec>,
    pub routing: RoutingConfig,
    pub local: LocalConfig,
    pub money: super::money::MoneyConfig,
    pub shared: super::money::SharedConfig,
    pub limits: super::limits::LimitsConfig,
    pub cache: super::cache::CacheConfig,
    pub telemetry: super::telemetry::TelemetryConfig,
}

impl Config {
    /// Every secret of the config (the master key, upstream keys, secret headers), to be
    /// masked in upstream text.
    pub fn secret_mask(&self) -> crate::secret::SecretMask {
        let headers = self.models.iter().flat_map(|m| {
            m.headers.iter().filter_map(|(_, v)| match v {
                HeaderValueSpec::Secret(s) => Some(s),
                HeaderValueSpec::Plain(_) => None,
            })
        });
        crate::secret::SecretMask::new(
            self.server
                .master_key
                .iter()
                .chain(self.models.iter().filter_map(|m| m.api_key.as_ref()))
                .chain(self.money.alert_webhook_secret.iter())
                .chain(self.shared.redis_url.iter())
                .chain(headers),
        )
    }
}

/// The in-process engine's settings.
#[derive(Debug, Clone, Serialize)]
pub struct LocalConfig {
    pub models_dir: Option<PathBuf>,
    pub memory_budget: MemoryBudget,
}

impl Default for LocalConfig {
    /// No models folder; the default share of RAM.
    fn default() -> Self {
        LocalConfig {
            models_dir: None,
            memory_budget: MemoryBudget::FractionOfRam(super::defaults::LOCAL_MEMORY_FRACTION),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryBudget {
    Bytes(u64),
    FractionOfRam(f64),
}

/// How a local model is loaded and run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalModelSpec {
    pub path: PathBuf,
    /// Tokens of context per sequence; the KV cache holds `context_size * parallel` cells.
    pub context_size: u32,
    pub threads: u32,
    pub parallel: u32,
    #[serde(with = "secs")]
    pub keep_alive: Duration,
    pub pinned: bool,
    pub gpu_layers: u32,
    pub prefill_chunk: u32,
    /// Set: an embedding model with this pooling.
    pub pooling: Option<Pooling>,
    /// The KV cache's element type.
    pub kv_type: KvType,
    /// The share of the KV cache's cells that finished sequences may keep for prefix reuse;
    /// past it the least recently kept are dropped.
    pub prefix_cache_share: f64,
    /// Memory for kept prompts beyond the slots (`None`: as much as the KV cache; 0: none).
    pub prompt_cache_mb: Option<u64>,
}

/// The element type of a local model's KV cache: quantized types take less memory (and
/// run with flash attention, which llama.cpp needs for a quantized V cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KvType {
    #[default]
    F16,
    Q8_0,
    Q4_0,
}

impl KvType {
    /// Bytes per element: ggml's block sizes (f16: 2; q8_0: 34 bytes a 32-element block;
    /// q4_0: 18 bytes a 32-element block).
    pub fn bytes_per_element(self) -> f64 {
        match self {
            KvType::F16 => 2.0,
            KvType::Q8_0 => 34.0 / 32.0,
            KvType::Q4_0 => 18.0 / 32.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    Mean,
    Cls,
    Last,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Guards every route but health; virtual keys are checked when it is set or presented.
    pub master_key: Option<Secret>,
    pub require_master_key: bool,
    pub max_body_bytes: usize,
    #[serde(with = "secs")]
    pub request_timeout: Duration,
    /// The whole shutdown (streams cut with an error event, the log flushed) takes at most
    /// this, plus a second for the log.
    #[serde(with = "secs")]
    pub shutdown_grace: Duration,
    /// A connection must send a request's headers within this; also closes idle keep-alive
    /// connections and connections that never send anything.
    #[serde(with = "secs")]
    pub header_read_timeout: Duration,
    /// A request body must arrive within this (408 after).
    #[serde(with = "secs")]
    pub body_read_timeout: Duration,
    /// Open connections at most; past it new ones are closed at once.
    pub max_connections: usize,
    /// Messages (or embedding inputs) one request may carry.
    pub max_messages: usize,
    /// How long a virtual key found in the store is served from memory.
    #[serde(with = "secs")]
    pub key_cache: Duration,
    /// Browser origins allowed to call the API (CORS); empty: CORS is off.
    pub cors_origins: Vec<String>,
    /// How long a browser may cache a preflight answer.
    pub cors_max_age_secs: u64,
    /// `/metrics` without a key (for a scraper on a private network); off: master key only.
    pub metrics_public: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreConfig {
    /// `sqlite://path` or `postgres://…`; may hold a password, so it is a secret.
    pub url: Secret,
    /// The URL with any password masked, for display.
    pub display_url: String,
    pub log_batch_size: usize,
    #[serde(with = "secs")]
    pub log_flush_interval: Duration,
    pub log_queue_capacity: usize,
    /// How long stored Responses-API answers are kept (`0`: none are stored).
    pub responses_retention_days: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    OpenAi,
    Anthropic,
    Local,
}

impl ProviderKind {
    /// The parameter of `f` this kind of provider cannot honour, if any — so that routing
    /// skips the model instead of spending an attempt on a certain 400.
    pub fn cannot_serve(self, f: &crate::routing::features::Features) -> Option<&'static str> {
        let n = &f.needs;
        let checks: &[(bool, &'static str)] = match self {
            ProviderKind::OpenAi => &[],
            // `response_format` is emulated through a forced tool, so not with tools.
            ProviderKind::Anthropic => {
                if let Some(param) = n.anthropic_refusal {
                    return Some(param);
                }
                &[(f.json && f.tools, "response_format")]
            }
            // Tools where the chat template renders them (the `tools` capability) and a
            // grammar can hold their parameters; not beside `response_format` (one grammar).
            ProviderKind::Local => &[
                (n.tools_not_local, "tools"),
                (n.local_tools && f.json, "response_format"),
                (n.json_schema && !n.json_schema_local, "response_format"),
                (n.logprobs, "logprobs"),
                (n.several_choices, "n"),
                (n.unknown_for_local, "an unknown field"),
            ],
        };
        checks.iter().find(|(needed, _)| *needed).map(|(_, p)| *p)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Local => "local",
        }
    }
}

/// Price of a model in USD per million tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pricing {
    pub input_per_mtok: Decimal,
    pub output_per_mtok: Decimal,
    /// A prompt-cache read (OpenAI's cached tokens, Anthropic's cache read).
    pub cached_input_per_mtok: Decimal,
    /// A prompt-cache write (Anthropic's cache creation, 5-minute lifetime).
    pub cache_write_per_mtok: Decimal,
    /// A write to Anthropic's one-hour prompt cache (twice the input price unless set).
    pub cache_write_1h_per_mtok: Decimal,
    /// USD per second of compute (local models report it; others: 0).
    pub per_compute_second: Decimal,
    /// Where the prices come from: `config`, `catalog:<date>`, `config+catalog:<date>`, or
    /// `unpriced` (a remote model with no price anywhere: its cost is unknown, never $0).
    pub version: String,
}

impl Pricing {
    pub const UNPRICED: &'static str = "unpriced";

    pub fn is_priced(&self) -> bool {
        self.version != Self::UNPRICED
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum HeaderValueSpec {
    Plain(String),
    Secret(Secret),
}

impl HeaderValueSpec {
    pub fn expose(&self) -> &str {
        match self {
            HeaderValueSpec::Plain(v) => v,
            HeaderValueSpec::Secret(s) => s.expose(),
        }
    }
}

/// One model clients can name.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSpec {
    pub name: Arc<str>,
    pub provider: ProviderKind,
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub upstream_model: String,
    pub pricing: Pricing,
    pub context_window: Option<u32>,
    pub max_output_tokens: Option<u32>,
    /// The most output tokens one answer can have: `max_output_tokens`, else the price
    /// catalog's (budgets reserve it for a request without max_tokens).
    pub output_limit: Option<u32>,
    pub quality: f64,
    pub headers: Vec<(String, HeaderValueSpec)>,
    pub organization: Option<String>,
    #[serde(with = "secs")]
    pub timeout: Duration,
    #[serde(with = "secs")]
    pub connect_timeout: Duration,
    pub anthropic_version: String,
    /// Requests that came through the Responses API are sent to this server's own
    /// `/responses` as the client wrote them (OpenAI-compatible models only).
    pub responses_api: bool,
    pub owned_by: String,
    pub capabilities: Capabilities,
    /// Streams: the first chunk must arrive within this.
    #[serde(with = "opt_secs")]
    pub ttft_timeout: Option<Duration>,
    /// Streams: at most this long between two chunks.
    #[serde(with = "opt_secs")]
    pub idle_timeout: Option<Duration>,
    /// `provider = "local"` only.
    pub local: Option<LocalModelSpec>,
    /// The provider's limits for our account, and the admission queue.
    pub limits: ModelLimits,
    /// Guardrails of requests naming this model.
    #[serde(skip)]
    pub guardrails: Option<Arc<crate::guardrails::Guardrails>>,
    /// The response cache of requests naming this model.
    pub cache: super::cache::CacheRule,
}

/// `rpm`, `tpm`, `max_concurrent`, `max_queue` of `[[models]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelLimits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// Calls at once; `None`: no queue.
    pub max_concurrent: Option<u32>,
    pub max_queue: u32,
}

/// What a model can do, for capability filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    pub tools: bool,
    pub vision: bool,
    pub json: bool,
    /// Stated in the config (`capabilities = […]`); otherwise a provider that can tell (a
    /// local model, from its chat template) has the last word.
    #[serde(skip)]
    pub declared: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            tools: true,
            vision: true,
            json: true,
            declared: false,
        }
    }
}

pub(super) mod opt_secs {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

pub(crate) mod secs {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}
