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
        let default = PathBuf::from("llmrr.toml");
        let path = self
            .config
            .clone()
            .or_else(|| default.exists().then_some(default));
        let source = match &path {
            Some(p) => ConfigSource::File(p),
            None => ConfigSource::Defaults,
        };
        config::load(source, self.profile.as_deref(), &Env::Process).context("invalid config")
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Start the HTTP server.
    Serve(ServeArgs),
    /// Send one chat message and print the answer.
    Chat(ChatArgs),
    /// List the models clients can name.
    Models(RemoteArgs),
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
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on, overriding server.listen (e.g. 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<String>,
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
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke { id: String },
}
