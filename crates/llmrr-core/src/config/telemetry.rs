//! `[telemetry]`: where traces go (OTLP over HTTP or gRPC), how they are sampled, and the
//! logs' format and access lines.

use super::load::Env;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// The collector's base URL (`http://collector:4318` for HTTP, `http://collector:4317` for
    /// gRPC); default: `OTEL_EXPORTER_OTLP_ENDPOINT`. Unset (or `OTEL_SDK_DISABLED=true`): no
    /// traces are exported.
    pub otlp_endpoint: Option<String>,
    /// `http` (OTLP/HTTP with protobuf, the default) or `grpc`; default:
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub otlp_protocol: Option<String>,
    /// `service.name` of the traces (default `OTEL_SERVICE_NAME`, else `llmrr`).
    pub service_name: Option<String>,
    /// Share of new traces kept, 0-1 (default 1); a trace a client started keeps its
    /// caller's decision.
    pub sample_ratio: Option<f64>,
    /// One `llmrr::access` line per request (default true).
    pub access_log: Option<bool>,
    /// `text` (default) or `json` (one JSON object per line); `--log-format` overrides.
    pub log_format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    Http,
    Grpc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(path: &str, s: &str) -> Result<LogFormat> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(Error::config(
                path,
                format!("`{other}` must be `text` or `json`"),
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TelemetryConfig {
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: OtlpProtocol,
    pub service_name: String,
    pub sample_ratio: f64,
    pub access_log: bool,
    pub log_format: LogFormat,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::Http,
            service_name: "llmrr".into(),
            sample_ratio: 1.0,
            access_log: true,
            log_format: LogFormat::Text,
        }
    }
}

pub(super) fn telemetry(raw: RawTelemetry, env: &Env) -> Result<TelemetryConfig> {
    // OTEL_SDK_DISABLED=true turns traces off whatever else says, as in every OpenTelemetry
    // SDK.
    let disabled = env
        .get("OTEL_SDK_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let otlp_endpoint = raw
        .otlp_endpoint
        .or_else(|| env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .filter(|_| !disabled);
    if let Some(u) = &otlp_endpoint {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(Error::config(
                "telemetry.otlp_endpoint",
                format!("`{u}` must be an http:// or https:// URL"),
            ));
        }
    }
    // The environment's protocol only matters where traces are exported (another SDK's
    // `http/json` in a shared environment must not stop a server that exports nothing).
    let (protocol, path) = match raw.otlp_protocol {
        Some(p) => (Some(p), "telemetry.otlp_protocol"),
        None => (
            env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                .filter(|_| otlp_endpoint.is_some()),
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
    };
    let otlp_protocol = match protocol.as_deref() {
        None | Some("http") | Some("http/protobuf") => OtlpProtocol::Http,
        Some("grpc") => OtlpProtocol::Grpc,
        Some(other) => {
            return Err(Error::config(
                path,
                format!("`{other}` must be `http` (http/protobuf) or `grpc`"),
            ))
        }
    };
    let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(Error::config(
            "telemetry.sample_ratio",
            format!("{sample_ratio} must be between 0 and 1"),
        ));
    }
    let service_name = raw
        .service_name
        .or_else(|| env.get("OTEL_SERVICE_NAME"))
        .unwrap_or_else(|| "llmrr".into());
    let log_format = match raw.log_format.as_deref() {
        None => LogFormat::Text,
        Some(s) => LogFormat::parse("telemetry.log_format", s)?,
    };
    Ok(TelemetryConfig {
        otlp_endpoint,
        otlp_protocol,
        service_name,
        sample_ratio,
        access_log: raw.access_log.unwrap_or(true),
        log_format,
    })
}
