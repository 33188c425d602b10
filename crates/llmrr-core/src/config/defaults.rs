//! Defaults as named constants in one place, and the built-in model catalog used when no
//! config file is given: each provider whose API-key variable is set is registered with its
//! current models and list prices (USD per million tokens).

pub const LISTEN: &str = "127.0.0.1:8080";
pub const STORE_URL: &str = "sqlite://data/llmrr.db";
pub const MASTER_KEY_VAR: &str = "LLMRR_MASTER_KEY";
pub const PROFILE_VAR: &str = "LLMRR_PROFILE";
/// What real clients send: a long chat plus a few base64 images fits; a larger body is almost
/// surely a mistake (images should be URLs) and costs memory while it is parsed.
pub const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// Messages in one chat (or inputs in one embeddings request): long agent sessions stay well
/// under it. The count is checked after parsing, so what bounds parse memory is
/// `MAX_BODY_BYTES` (ten concurrent 3 MB bodies of 100,000 messages peaked at 170 MB RSS).
pub const MAX_MESSAGES: u64 = 4096;
pub const REQUEST_TIMEOUT_SECS: f64 = 600.0;
pub const SHUTDOWN_GRACE_SECS: f64 = 30.0;
/// Slow or idle clients: headers (and the next request on a keep-alive connection) within
/// this; SDK pools drop idle connections after ~5 s, so 20 s never races them.
pub const HEADER_READ_TIMEOUT_SECS: f64 = 20.0;
pub const BODY_READ_TIMEOUT_SECS: f64 = 60.0;
/// Open connections (the process's file limit must allow it).
pub const MAX_CONNECTIONS: u64 = 8192;
/// Streams: the first token within this (a stalled upstream fails over), then at most this
/// long between two chunks. Both are capped by the model's `timeout_secs`.
pub const TTFT_TIMEOUT_SECS: f64 = 120.0;
pub const IDLE_TIMEOUT_SECS: f64 = 60.0;
pub const MIN_MASTER_KEY_CHARS: usize = 16;
/// Virtual keys are served from memory this long (revokes reach every server within a second
/// anyway, through the revocation watch).
pub const KEY_CACHE_SECS: f64 = 30.0;
/// Browsers cache a CORS preflight answer this long.
pub const CORS_MAX_AGE_SECS: u64 = 600;
pub const CONNECT_TIMEOUT_SECS: f64 = 10.0;
pub const LOG_BATCH_SIZE: usize = 512;
pub const LOG_FLUSH_INTERVAL_MS: u64 = 250;
pub const LOG_QUEUE_CAPACITY: usize = 16_384;
/// Stored Responses-API answers are kept this many days (OpenAI keeps them 30).
pub const RESPONSES_RETENTION_DAYS: u64 = 30;
/// Retention settings are capped at ten years (so that a horizon never overflows).
pub const MAX_RETENTION_DAYS: u64 = 3650;
pub const QUALITY: f64 = 0.5;
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; OpenAI clients often omit it.
pub const ANTHROPIC_MAX_TOKENS: u32 = 4096;
/// Profiles that may be named without being defined in the file.
pub const KNOWN_PROFILES: [&str; 2] = ["development", "production"];

/// A model registered when its provider's key is set; its prices come from the price catalog
/// (`data/prices.toml`).
pub struct CatalogEntry {
    pub name: &'static str,
    pub context_window: u32,
    pub quality: f64,
}

pub struct CatalogProvider {
    pub provider: &'static str,
    pub key_var: &'static str,
    pub base_url_var: &'static str,
    pub base_url: &'static str,
    pub models: &'static [CatalogEntry],
}

const fn entry(name: &'static str, context_window: u32, quality: f64) -> CatalogEntry {
    CatalogEntry {
        name,
        context_window,
        quality,
    }
}

pub const CATALOG: [CatalogProvider; 2] = [
    CatalogProvider {
        provider: "openai",
        key_var: "OPENAI_API_KEY",
        base_url_var: "OPENAI_BASE_URL",
        base_url: "https://api.openai.com/v1",
        models: &[
            entry("gpt-4o-mini", 128_000, 0.80),
            entry("gpt-4o", 128_000, 0.90),
            entry("gpt-4.1", 1_047_576, 0.92),
            entry("gpt-4.1-mini", 1_047_576, 0.85),
            entry("gpt-4.1-nano", 1_047_576, 0.75),
            entry("text-embedding-3-small", 8_192, 0.80),
            entry("text-embedding-3-large", 8_192, 0.90),
        ],
    },
    CatalogProvider {
        provider: "anthropic",
        key_var: "ANTHROPIC_API_KEY",
        base_url_var: "ANTHROPIC_BASE_URL",
        base_url: "https://api.anthropic.com/v1",
        models: &[
            entry("claude-sonnet-4-5", 200_000, 0.94),
            entry("claude-haiku-4-5", 200_000, 0.86),
            entry("claude-opus-4-1", 200_000, 0.96),
        ],
    },
];

/// Local models: tokens of context per sequence, sequences decoded together, idle time before
/// unloading, prompt tokens per step, and the memory budget as a fraction of RAM.
pub const LOCAL_CONTEXT_SIZE: u32 = 4096;
pub const LOCAL_PARALLEL: u32 = 4;
pub const LOCAL_KEEP_ALIVE_SECS: f64 = 600.0;
pub const LOCAL_PREFILL_CHUNK: u32 = 512;
pub const LOCAL_MEMORY_FRACTION: f64 = 0.75;
