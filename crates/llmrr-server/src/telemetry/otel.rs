//! The OpenTelemetry side: a tracer provider exporting in batches over OTLP, sampled at the
//! configured ratio for new traces (a continued trace keeps its caller's decision), and the
//! layer that turns the request path's spans into OpenTelemetry spans.

use llmrr_core::config::{OtlpProtocol, TelemetryConfig};
use llmrr_core::{Error, Result};
use opentelemetry_otlp::tonic_types::transport::ClientTlsConfig;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicI64, Ordering};
use tracing::Subscriber;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// How long one export may take.
const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The tracer provider for `config`'s collector. Inside the Tokio runtime.
pub fn tracer_provider(config: &TelemetryConfig) -> Result<SdkTracerProvider> {
    let endpoint = config
        .otlp_endpoint
        .as_deref()
        .ok_or_else(|| Error::config("telemetry.otlp_endpoint", "not set"))?;
    let failed = |e: opentelemetry_otlp::ExporterBuildError| {
        Error::config(
            "telemetry.otlp_endpoint",
            format!("the OTLP exporter cannot start: {e}"),
        )
    };
    let exporter = Reported(match config.otlp_protocol {
        OtlpProtocol::Http => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(traces_url(endpoint))
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(super::export_client::ExportClient::new(EXPORT_TIMEOUT)?)
            .build()
            .map_err(failed)?,
        OtlpProtocol::Grpc => {
            let builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(EXPORT_TIMEOUT);
            // TLS to an https:// collector, trusting the public CAs (Mozilla's, built in:
            // the runtime image has no CA store of its own to rely on).
            let builder = if endpoint.starts_with("https://") {
                builder.with_tls_config(ClientTlsConfig::new().with_webpki_roots())
            } else {
                builder
            };
            builder.build().map_err(failed)?
        }
    });
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build())
}

/// An exporter whose failures are logged (at most once a minute): the SDK's own logs are
/// compiled out, and a dropped batch must not go unnoticed.
#[derive(Debug)]
struct Reported<E>(E);

/// Unix seconds of the last warning about a failed export.
static LAST_WARNING: AtomicI64 = AtomicI64::new(0);

impl<E: SpanExporter> SpanExporter for Reported<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let exported = self.0.export(batch).await;
        if let Err(e) = &exported {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let last = LAST_WARNING.load(Ordering::Relaxed);
            if now - last >= 60
                && LAST_WARNING
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                // Outside any span (the exporter's own thread): never exported itself.
                tracing::warn!(error = %e, "traces: an export to the collector failed; its spans are lost");
            }
        }
        exported
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// OTLP/HTTP's traces URL under a collector's base URL (kept as is when it already names it,
/// as `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` would).
fn traces_url(base: &str) -> String {
    if base.trim_end_matches('/').ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{}/v1/traces", base.trim_end_matches('/'))
    }
}

/// The layer exporting the request path's spans (and the warnings and errors logged inside
/// them, as span events) to `tracer`.
pub fn layer<S, T>(tracer: T) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    T: opentelemetry::trace::Tracer + Send + Sync + 'static,
    T::Span: Send + Sync,
{
    // Targets, not a filter function: each callsite's interest is decided once.
    let spans_and_warnings = Targets::new()
        .with_target(llmrr_core::spans::TARGET, tracing::Level::TRACE)
        .with_default(tracing::Level::WARN);
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_filter(spans_and_warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each protocol's exporter starts (gRPC connects lazily, on the runtime), TLS included.
    #[tokio::test]
    async fn both_protocols_start() {
        for (protocol, endpoint) in [
            (OtlpProtocol::Http, "http://127.0.0.1:4318"),
            (OtlpProtocol::Grpc, "http://127.0.0.1:4317"),
            (OtlpProtocol::Grpc, "https://collector.example:4317"),
            (OtlpProtocol::Http, "https://collector.example/otlp"),
        ] {
            let config = TelemetryConfig {
                otlp_endpoint: Some(endpoint.into()),
                otlp_protocol: protocol,
                ..Default::default()
            };
            let provider = tracer_provider(&config);
            assert!(provider.is_ok(), "{endpoint}: {:?}", provider.err());
        }
    }

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(traces_url("https://x/otlp"), "https://x/otlp/v1/traces");
    }
}
