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
}

impl AppState {
    /// Install the metrics recorder (before any metric handle is made), then start the
    /// gateway: store, request log, providers.
    pub async fn build(config: &Config) -> llmrr_core::Result<AppState> {
        let metrics = crate::metrics::install();
        let gateway = Gateway::start(config).await?;
        Ok(AppState {
            gateway,
            server: config.server.clone(),
            metrics,
        })
    }
}
