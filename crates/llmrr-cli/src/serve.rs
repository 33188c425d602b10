//! `llmrr serve`.

use crate::cli::{Global, ServeArgs};
use anyhow::{bail, Context, Result};
use llmrr_core::config::LogFormat;
use llmrr_server::telemetry::Logging;
use llmrr_server::AppState;

pub async fn run(global: &Global, args: &ServeArgs) -> Result<()> {
    let config = global.load()?;
    let format = match &args.log_format {
        Some(f) => LogFormat::parse("--log-format", f)?,
        None => config.telemetry.log_format,
    };
    let logging = Logging {
        format,
        default_filter: format!("info,{}", crate::QUIET_LLAMA),
        background: true,
    };
    let telemetry = llmrr_server::telemetry::install(&logging, Some(&config.telemetry))?;
    let served = serve(config, args).await;
    if let Err(e) = &served {
        // In the log's own format (one JSON object a line with --log-format json).
        tracing::error!("{e:#}");
        telemetry.shutdown();
        std::process::exit(1);
    }
    telemetry.shutdown();
    Ok(())
}

async fn serve(mut config: llmrr_core::config::Config, args: &ServeArgs) -> Result<()> {
    if let Some(listen) = &args.listen {
        config.server.listen = listen.parse().with_context(|| {
            format!("--listen `{listen}` is not an address like 127.0.0.1:8080")
        })?;
    }
    if config.server.master_key.is_none() {
        if !config.server.listen.ip().is_loopback() {
            bail!(
                "refusing to listen on {} without a master key: set LLMRR_MASTER_KEY",
                config.server.listen
            );
        }
        tracing::warn!("no master key (LLMRR_MASTER_KEY): serving loopback only, without auth");
    }
    if config.models.is_empty() {
        tracing::warn!(
            "no models configured: write an llmrr.toml or set OPENAI_API_KEY / ANTHROPIC_API_KEY"
        );
    }
    let state = AppState::build(&config).await.context("cannot start")?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        traces = config.telemetry.otlp_endpoint.is_some(),
        models = config.models.len(),
        store = %config.store.display_url,
        profile = config.profile.as_deref().unwrap_or("-"),
        "llmrr is serving"
    );
    llmrr_server::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing calls in flight");
}
