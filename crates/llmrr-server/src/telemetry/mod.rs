//! The process's logs and traces: a `tracing` subscriber with the text or JSON log (access
//! lines included) and, when `[telemetry] otlp_endpoint` is set, the OpenTelemetry layer that
//! exports the request path's spans over OTLP (HTTP/protobuf or gRPC).
//!
//! - [`install`]: build and install the subscriber once, at start; [`Telemetry::shutdown`]
//!   exports what is left at exit
//! - `otel`: the tracer provider, the sampler, the layer and its filter
//! - `export_client`: OTLP/HTTP through the reqwest client llmrr already has
//! - `propagation`: a client's `traceparent` continued by the server's request span

mod export_client;
mod otel;
mod propagation;

pub use otel::{layer, tracer_provider};
pub use propagation::request_span;

use llmrr_core::config::{LogFormat, TelemetryConfig};
use llmrr_core::{Error, Result};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Log lines the background writer holds at most (about 16 MiB of access lines).
const LOG_BUFFER_LINES: usize = 16_384;

/// How the process logs.
#[derive(Debug, Clone)]
pub struct Logging {
    pub format: LogFormat,
    /// The filter when `RUST_LOG` is not set (e.g. `info`).
    pub default_filter: String,
    /// Write from a background thread (a slow stderr never holds a request); lines beyond its
    /// buffer are dropped rather than waited for. For the server; commands write directly.
    pub background: bool,
}

/// What must live as long as the process logs and traces.
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    _writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn traces(&self) -> bool {
        self.provider.is_some()
    }

    /// Export the spans still buffered (at most a few seconds), then stop.
    pub fn shutdown(self) {
        if let Some(p) = &self.provider {
            if let Err(e) = p.shutdown_with_timeout(std::time::Duration::from_secs(5)) {
                tracing::warn!(error = %e, "traces: the last export failed");
            }
        }
    }
}

/// The log's filter: `RUST_LOG`, else `default`. The request path's spans are for traces: the
/// log names them only when `RUST_LOG` does. (Only directives: a filter function would make
/// every callsite of every crate evaluated at each hit instead of once.)
fn log_filter(rust_log: Option<&str>, default: &str) -> EnvFilter {
    let spans_off = format!("{}=off", llmrr_core::spans::TARGET);
    let names_spans = |v: &str| {
        v.split(',').any(|d| {
            let target = d.trim().split(['=', '[']).next().unwrap_or("");
            target == llmrr_core::spans::TARGET
        })
    };
    match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) if names_spans(v) => EnvFilter::new(v),
        Some(v) => EnvFilter::try_new(format!("{v},{spans_off}"))
            .unwrap_or_else(|_| EnvFilter::new(format!("{default},{spans_off}"))),
        None => EnvFilter::new(format!("{default},{spans_off}")),
    }
}

/// The log's layer: `text` (colours when `ansi`) or `json` (one flat object per event: time,
/// level, target, the event's fields).
pub fn log_layer<S>(
    format: LogFormat,
    writer: BoxMakeWriter,
    ansi: bool,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
    }
}

/// Install the process's subscriber: the log, and the trace exporter when `traces` has an
/// endpoint. Call once, inside the Tokio runtime (the exporters run on it).
pub fn install(logging: &Logging, traces: Option<&TelemetryConfig>) -> Result<Telemetry> {
    let filter = log_filter(
        std::env::var("RUST_LOG").ok().as_deref(),
        &logging.default_filter,
    );
    let (writer, guard) = if logging.background {
        // Lines past the buffer (a stalled log pipe) are dropped, not waited for.
        let (w, g) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .buffered_lines_limit(LOG_BUFFER_LINES)
            .lossy(true)
            .finish(std::io::stderr());
        (BoxMakeWriter::new(w), Some(g))
    } else {
        (BoxMakeWriter::new(std::io::stderr), None)
    };
    let ansi = !logging.background && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let log = log_layer(logging.format, writer, ansi).with_filter(filter);
    let provider = match traces.filter(|t| t.otlp_endpoint.is_some()) {
        Some(t) => Some(tracer_provider(t)?),
        None => None,
    };
    let traced = provider.as_ref().map(|p| {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        layer(opentelemetry::trace::TracerProvider::tracer(p, "llmrr"))
    });
    tracing_subscriber::registry()
        .with(log)
        .with(traced)
        .try_init()
        .map_err(|e| Error::Internal(format!("the log is already set up: {e}")))?;
    Ok(Telemetry {
        provider,
        _writer: guard,
    })
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn spans_stay_out_of_the_log_unless_rust_log_names_them() {
        let off = format!("{}=off", llmrr_core::spans::TARGET);
        for (rust_log, has_off) in [
            (None, true),
            (Some(""), true),
            (Some("info"), true),
            (Some("debug,hyper=warn"), true),
            (Some("info,llmrr::span=debug"), false),
            (Some("info,llmrr::spans_x=debug"), true),
        ] {
            let filter = log_filter(rust_log, "info").to_string();
            assert_eq!(filter.contains(&off), has_off, "{rust_log:?}: {filter}");
        }
        assert!(log_filter(Some("info,llmrr::span=debug"), "info")
            .to_string()
            .contains("llmrr::span=debug"));
    }
}
