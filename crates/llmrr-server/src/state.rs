//! What every handler shares.

use llmrr_core::config::{Config, ServerConfig};
use llmrr_core::Gateway;
use metrics_exporter_prometheus::PrometheusHandle;

/// Cloneable: every field is a handle.
#[derive(Clone)]
pub struct AppState {
    pub gateway: Gateway,
    pub server: ServerConfig,
    pub metrics: PrometheusHandle,
    /// `[store] responses_retention_days` (0: Responses-API answers are not stored).
    pub responses_retention_days: u64,
}

impl AppState {
    /// Install the metrics recorder (before any metric handle is made), then start the
    /// gateway: store, request log, providers.
    pub async fn build(config: &Config) -> llmrr_core::Result<AppState> {
        let metrics = crate::metrics::install();
        let gateway = start_gateway(config).await?;
        Ok(AppState {
            gateway,
            server: config.server.clone(),
            metrics,
            responses_retention_days: config.store.responses_retention_days,
        })
    }
}

/// The gateway, with the in-process engine for `provider = "local"` models when this build
/// has it (the `local` feature, on by default).
pub async fn start_gateway(config: &Config) -> llmrr_core::Result<Gateway> {
    #[cfg(feature = "local")]
    let local: Option<std::sync::Arc<dyn llmrr_core::provider::LocalBackend>> =
        Some(std::sync::Arc::new(llmrr_engine::EngineBackend::new(
            llmrr_engine::Engine::new(&config.local),
        )));
    #[cfg(not(feature = "local"))]
    let local = None;
    Gateway::start_with(config, local).await
}
