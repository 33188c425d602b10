//! `llmrr`: the command. Parses flags, loads the config, wires the pieces together; all the
//! work lives in the libraries. `anyhow` is used here and only here.

#[cfg(feature = "local")]
mod bench;
mod cache;
mod chat;
mod cli;
mod keys;
#[cfg(feature = "local")]
mod models;
mod money;
#[cfg(feature = "local")]
mod quant;
mod router;
mod serve;

/// What the commands that read GGUF files or run llama.cpp say in a build without it.
#[cfg(not(feature = "local"))]
const NO_LOCAL: &str =
    "this llmrr was built without local models (the `local` feature): rebuild with it";

use anyhow::Result;
use clap::Parser;
#[cfg(feature = "local")]
use cli::BenchCommand;
use cli::{Cli, Command, ConfigCommand};

/// The request path allocates many small, short-lived buffers; mimalloc serves them with
/// less CPU than glibc's allocator (measured: glibc's malloc/free were ~9% of the gateway's
/// CPU under load).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// llama.cpp logs every load at length (through llama-cpp-2's tracing bridge): only its
/// errors by default; RUST_LOG=llama-cpp-2=info shows the rest.
pub(crate) const QUIET_LLAMA: &str = "llama_cpp_2=error,llama-cpp-2=error";

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    if let Command::Serve(args) = &cli.command {
        // The server sets up its log and traces from its config.
        return serve::run(&cli.global, args).await;
    }
    // Other commands print their own results and errors; the gateway they run in-process
    // stays quiet unless RUST_LOG asks (a warning must not land in the middle of an answer).
    let logging = llmrr_server::telemetry::Logging {
        format: llmrr_core::config::LogFormat::Text,
        default_filter: format!("error,{QUIET_LLAMA}"),
        background: false,
    };
    let _telemetry = llmrr_server::telemetry::install(&logging, None)?;
    match &cli.command {
        Command::Serve(_) => Ok(()),
        Command::Chat(args) => chat::run(&cli.global, args).await,
        Command::Models { command, list } => match command {
            None => chat::models(&cli.global, list).await,
            #[cfg(feature = "local")]
            Some(c) => models::run(&cli.global, c).await,
            #[cfg(not(feature = "local"))]
            Some(_) => anyhow::bail!(NO_LOCAL),
        },
        #[cfg(feature = "local")]
        Command::Bench {
            command: BenchCommand::Local(args),
        } => bench::local(args).await,
        #[cfg(not(feature = "local"))]
        Command::Bench { .. } => anyhow::bail!(NO_LOCAL),
        Command::Route(args) => chat::route(&cli.global, args).await,
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let config = cli.global.load()?;
            println!("{}", serde_json::to_string_pretty(&config)?);
            eprintln!(
                "config OK ({} model(s), from {})",
                config.models.len(),
                config.source
            );
            Ok(())
        }
        Command::Keys { command } => keys::run(&cli.global, command).await,
        Command::Limits { command } => keys::limits(&cli.global, command).await,
        Command::Prices { json } => money::prices(*json),
        Command::Budgets { command } => money::budgets(&cli.global, command).await,
        Command::Users { command } => money::users(&cli.global, command).await,
        Command::Teams { command } => money::teams(&cli.global, command).await,
        Command::Spend(args) => money::spend(&cli.global, args).await,
        Command::Router { command } => router::run(&cli.global, command).await,
        Command::Cache(args) => cache::run(&cli.global, args).await,
    }
}
