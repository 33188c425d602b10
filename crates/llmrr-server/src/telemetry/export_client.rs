//! OTLP/HTTP through reqwest 0.12, the client llmrr already builds (the exporter's own would
//! bring a second reqwest). The batch exporter runs its exports on a thread of its own; the
//! request itself runs on the Tokio runtime the client was made on.

use llmrr_core::{Error, Result};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// The largest collector answer read (its partial-success message).
const MAX_ANSWER: usize = 1 << 20;

/// Unix seconds of the last warning about a failed export (at most one a minute).
static LAST_WARNING: AtomicI64 = AtomicI64::new(0);

/// A failed export, in the log at most once a minute (the exporter drops the batch).
fn warn_export_failed(why: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let last = LAST_WARNING.load(Ordering::Relaxed);
    if now - last >= 60
        && LAST_WARNING
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            error = why,
            "traces: an export to the collector failed; its spans are lost"
        );
    }
}

#[derive(Debug)]
pub(super) struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl ExportClient {
    /// Inside the Tokio runtime.
    pub(super) fn new(timeout: Duration) -> Result<ExportClient> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Internal("traces: no Tokio runtime to export on".into()))?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Internal(format!("traces: the HTTP client: {e}")))?;
        Ok(ExportClient { client, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: Request<Bytes>,
    ) -> std::result::Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let req = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body);
        let sent = self.runtime.spawn(async move {
            let mut resp = req.send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let mut body = Vec::new();
            while let Some(piece) = resp.chunk().await? {
                let room = MAX_ANSWER.saturating_sub(body.len());
                body.extend_from_slice(&piece[..piece.len().min(room)]);
                if room <= piece.len() {
                    break;
                }
            }
            Ok::<_, reqwest::Error>((status, headers, Bytes::from(body)))
        });
        let sent = sent.await?;
        let failed = match &sent {
            Ok((status, _, _)) if status.is_success() => None,
            Ok((status, _, _)) => Some(format!("the collector answered {status}")),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failed {
            warn_export_failed(&why);
        }
        let (status, headers, body) = sent?;
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        Ok(resp)
    }
}
