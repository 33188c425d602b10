//! Flags and subcommands.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use llmrr_core::config::{self, Config, ConfigSource, Env};
use std::path::PathBuf;

/// LLM Runner Router: one OpenAI-compatible API over local and remote models.
#[derive(Parser)]
#[command(name = "llmrr", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
pub struct Global {
    /// Config file (TOML). Default: ./llmrr.toml if it exists, else built-in defaults.
    #[arg(long, short = 'c', global = true, env = "LLMRR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Profile overlaid on the config (e.g. production). Also LLMRR_PROFILE.
    #[arg(long, global = true)]
    pub profile: Option<String>,
}

impl Global {
    pub fn load(&self) -> Result<Config> {
        self.load_with(&Env::Process)
    }

    /// The config for commands that only use the store (`keys`): upstream keys need not be set.
    pub fn load_for_store(&self) -> Result<Config> {
        self.load_with(&Env::WithoutModelSecrets(Box::new(Env::Process)))
    }

    fn load_with(&self, env: &Env) -> Result<Config> {
        let default = PathBuf::from("llmrr.toml");
        let path = self
            .config
            .clone()
            .or_else(|| default.exists().then_some(default));
        let source = match &path {
            Some(p) => ConfigSource::File(p),
            None => ConfigSource::Defaults,
        };
        config::load(source, self.profile.as_deref(), env).context("invalid config")
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Start the HTTP server.
    Serve(ServeArgs),
    /// Send one chat message and print the answer.
    Chat(ChatArgs),
    /// List the models clients can name; inspect, pull or synthesize GGUF files.
    #[command(args_conflicts_with_subcommands = true)]
    Models {
        #[command(subcommand)]
        command: Option<ModelsCommand>,
        #[command(flatten)]
        list: RemoteArgs,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Show which model a prompt would be routed to, and why, without calling it.
    Route(RouteArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage virtual API keys (directly in the configured store).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The built-in price catalog (USD per million tokens, with the date of each price).
    Prices {
        #[arg(long)]
        json: bool,
    },
    /// Rate limits, quotas, concurrency and priority per scope (directly in the configured
    /// store; running servers apply a change within a second).
    Limits {
        #[command(subcommand)]
        command: LimitsCommand,
    },
    /// Budgets: spend limits per scope and period (directly in the configured store).
    Budgets {
        #[command(subcommand)]
        command: BudgetsCommand,
    },
    /// Users (keys belong to them; budgets and reports are about them).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Teams (users belong to them).
    Teams {
        #[command(subcommand)]
        command: TeamsCommand,
    },
    /// Where the money went: totals, a breakdown, savings, and a forecast.
    Spend(SpendArgs),
    /// The response cache of a running server: stats, purge, warm.
    Cache(CacheArgs),
    /// The difficulty router's scorer: train weights, measure them, score a prompt.
    Router {
        #[command(subcommand)]
        command: RouterCommand,
    },
}

#[derive(Subcommand)]
pub enum RouterCommand {
    /// Train difficulty weights on labelled prompts (JSON lines: `prompt` or `messages`,
    /// `weak`, `strong`) and/or the request log's prompts with feedback (`--from-log`; give
    /// the shipped data's files too so that a little feedback adjusts the shipped weights
    /// instead of replacing them). Same rows, same weights, byte for byte.
    Train {
        /// Files of labelled prompts.
        files: Vec<std::path::PathBuf>,
        /// Train on the configured store's logged prompts that have feedback (prompts are
        /// kept only for routes with `log_prompts = true`).
        #[arg(long)]
        from_log: bool,
        /// With `--from-log`: only requests of this route (default: every route).
        #[arg(long)]
        route: Option<String>,
        #[arg(long, default_value = "weights.bin")]
        out: std::path::PathBuf,
    },
    /// Measure the scorer by 5-fold cross-validation on each file, beside random routing,
    /// prompt length and (where rows carry a `subject`) a per-subject prior.
    Eval {
        files: Vec<std::path::PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Score one prompt with the shipped weights (or `--weights`).
    Score {
        prompt: String,
        #[arg(long)]
        weights: Option<std::path::PathBuf>,
    },
}

#[derive(Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
    /// The server (default: the config's `server.listen`).
    #[arg(long, global = true)]
    pub url: Option<String>,
    #[arg(long, env = "LLMRR_MASTER_KEY", hide_env_values = true, global = true)]
    pub master_key: Option<String>,
}

#[derive(Subcommand)]
pub enum CacheCommand {
    /// Entries, bytes, hits per tier, and savings.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Drop entries: all of them, or those of a namespace, a route (or model), a key.
    Purge {
        /// e.g. team:T, key:K, global, or team:T/partition.
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long)]
        route: Option<String>,
        /// The key id whose requests made them.
        #[arg(long)]
        key: Option<String>,
    },
    /// Ask again, at low priority, the most frequent cacheable requests whose answers are no
    /// longer cached, spending at most --max-cost (each replay is a real request of the key
    /// that made it: its limits and budgets apply).
    Warm {
        /// Spend at most this much (USD), estimated from each request's last answer.
        #[arg(long)]
        max_cost: String,
        /// The most frequent requests considered.
        #[arg(long, default_value_t = 100)]
        top: usize,
        /// Count how often each was asked over this many hours back.
        #[arg(long, default_value_t = 24.0)]
        since_hours: f64,
        /// Only list what would be replayed, and its estimated cost.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum BudgetsCommand {
    /// Create or update the budget of a scope and period.
    Set {
        /// global, team:T, user:U, key:K, model:M, key:K/model:M or team:T/model:M.
        #[arg(long)]
        scope: String,
        /// hour, day, week, month or lifetime.
        #[arg(long, default_value = "month")]
        period: String,
        #[arg(long)]
        limit_usd: Option<String>,
        #[arg(long)]
        limit_tokens: Option<u64>,
        /// reject, downgrade or alert.
        #[arg(long)]
        action: Option<String>,
        /// Alert thresholds in percent, e.g. 50,80,90,100.
        #[arg(long, value_delimiter = ',')]
        alert_percent: Option<Vec<u32>>,
        /// Caps the output a request without max_tokens reserves (and is sent with).
        #[arg(long)]
        default_max_tokens: Option<u32>,
    },
    /// Every budget with its spend, remaining, reset time and projected exhaustion.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a budget by id, or every budget of a scope.
    Rm { id: String },
}

#[derive(Subcommand)]
pub enum UsersCommand {
    Set {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        team: Option<String>,
    },
    List,
    Rm {
        id: String,
    },
}

#[derive(Subcommand)]
pub enum TeamsCommand {
    Set {
        id: String,
        #[arg(long)]
        name: Option<String>,
    },
    List,
    Rm {
        id: String,
    },
}

#[derive(Args)]
pub struct SpendArgs {
    /// Start: 2026-11-01, RFC 3339, Unix ms, or an age (24h, 7d).
    #[arg(long, default_value = "30d")]
    pub from: String,
    #[arg(long)]
    pub to: Option<String>,
    /// model, provider, key, user, team, route, category, hour or day.
    #[arg(long)]
    pub by: Option<String>,
    #[arg(long, default_value = "global")]
    pub scope: String,
    /// table, json or csv.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Add the 24 h / 7 d / 30 d forecast (table format).
    #[arg(long)]
    pub forecast: bool,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on, overriding server.listen (e.g. 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<String>,
    /// `text` or `json` (one object per line, an access line per request); overrides
    /// `[telemetry] log_format`.
    #[arg(long, env = "LLMRR_LOG_FORMAT")]
    pub log_format: Option<String>,
}

#[derive(Args)]
pub struct RemoteArgs {
    /// A running llmrr (or any OpenAI-compatible server), e.g. http://127.0.0.1:8080.
    /// Without it, the config is loaded and models are called in-process.
    #[arg(long)]
    pub url: Option<String>,
    /// API key for --url.
    #[arg(long, env = "LLMRR_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Args)]
pub struct ChatArgs {
    /// The prompt.
    pub prompt: String,
    /// Model (or route) name. Default: the first configured model.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Print the answer as it is generated.
    #[arg(long)]
    pub stream: bool,
    /// A system message.
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long)]
    pub max_tokens: Option<u32>,
    #[arg(long)]
    pub temperature: Option<f64>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Args)]
pub struct RouteArgs {
    /// The prompt.
    pub prompt: String,
    /// The route (or model) name.
    #[arg(long, short = 'r', default_value = "auto")]
    pub route: String,
    /// Override the route's strategy for this decision.
    #[arg(long)]
    pub strategy: Option<String>,
    /// Plan for a streamed request (ranks by time to first token).
    #[arg(long)]
    pub stream: bool,
    /// Print the whole decision as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate the config and print it resolved, secrets masked.
    Check,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        team: Option<String>,
        /// The key's routing tier (a name from [tiers]).
        #[arg(long)]
        tier: Option<String>,
        /// A model the key may use (repeat; none = every model).
        #[arg(long = "model")]
        models: Vec<String>,
        /// A JSON object stored with the key.
        #[arg(long)]
        metadata: Option<String>,
        /// The key stops working this many seconds from now.
        #[arg(long)]
        expires_in: Option<u64>,
        /// Its limits as JSON, e.g. '{"rpm": 60, "tpm": 100000, "max_concurrent": 4}'.
        #[arg(long)]
        limits: Option<String>,
        /// An admin key: the admin API and the whole dashboard, as the master key.
        #[arg(long)]
        admin: bool,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke { id: String },
    /// Give a key a new secret (printed once); the old one keeps working for --grace seconds.
    Rotate {
        id: String,
        #[arg(long, default_value_t = 0)]
        grace: u64,
    },
}

#[derive(Subcommand)]
pub enum LimitsCommand {
    /// Set the limits of a scope: global, key:ID, user:ID, team:ID or model:NAME.
    Set {
        scope: String,
        /// JSON, e.g. '{"rpm": 60, "tpm": 100000, "requests_per_day": 1000}'.
        limits: String,
    },
    /// List the stored limit rules.
    List,
    /// Remove a scope's stored rule.
    Rm { scope: String },
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// List the models clients can name (the default).
    List(RemoteArgs),
    /// Show a GGUF file's architecture, size, quantization, context, template and memory need.
    Inspect {
        file: PathBuf,
        /// Context (KV cells) for the memory estimate; default: the model's training context.
        #[arg(long)]
        ctx: Option<u64>,
    },
    /// Download REPO/FILE (e.g. org/name/model.Q8_0.gguf) from a Hugging Face-compatible hub:
    /// resumable, checksum-verified. Given OWNER/REPO alone, lists its GGUF files and picks the
    /// best quantization whose memory estimate (weights + KV cache + compute at `--context`)
    /// fits the local memory budget, explaining the choice; `--quant` picks one by name.
    Pull {
        /// `owner/repo/path/in/repo.gguf`, or `owner/repo` to choose a quantization
        target: String,
        /// With `owner/repo`: this quantization (e.g. Q4_K_M) instead of the best that fits.
        #[arg(long)]
        quant: Option<String>,
        /// With `owner/repo`: tokens of context the estimate counts (default 4096).
        #[arg(long)]
        context: Option<u64>,
        /// With `owner/repo`: only list the files and the choice, download nothing.
        #[arg(long)]
        dry_run: bool,
        /// Directory to save into.
        #[arg(long, default_value = "models")]
        dir: PathBuf,
        #[arg(long, default_value = "main")]
        revision: String,
        /// The hub's base URL.
        #[arg(long, env = "LLMRR_HUB_URL", default_value = "https://huggingface.co")]
        hub: String,
        /// Token for private repositories (read from HF_TOKEN).
        #[arg(long, env = "HF_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Write a small random-weight llama GGUF (gibberish output, real llama.cpp compute).
    Synth {
        #[arg(long)]
        out: PathBuf,
        /// `tiny` (tests) or `270m` (the benchmark's size).
        #[arg(long, default_value = "tiny")]
        preset: String,
        /// Weight type: f32, f16, q8_0, q4_0 (default: the preset's).
        #[arg(long)]
        quant: Option<String>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Leave out the chat template (completions only).
        #[arg(long)]
        no_template: bool,
    },
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Local inference: prompt and decode tokens/s, TTFT, aggregate tokens/s at several
    /// concurrencies, load time and peak RSS, on one GGUF file.
    Local(BenchLocalArgs),
}

#[derive(Args)]
pub struct BenchLocalArgs {
    pub file: PathBuf,
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Concurrency levels, comma-separated.
    #[arg(long, default_value = "1,4,8", value_delimiter = ',')]
    pub concurrency: Vec<u32>,
    /// Tokens generated per request.
    #[arg(long, default_value_t = 128)]
    pub tokens: u32,
    /// Prompt length, in tokens, for the prefill measurement.
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: u32,
    /// Requests per concurrency level (at least the level itself).
    #[arg(long, default_value_t = 8)]
    pub requests: u32,
    /// Only measure llama.cpp bare and print JSON (the parent run starts this as a child).
    #[arg(long, hide = true)]
    pub baseline_only: bool,
}
