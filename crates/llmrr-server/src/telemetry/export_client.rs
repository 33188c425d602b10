//! OTLP/HTTP through reqwest 0.12, the client llmrr already builds (the exporter's own would
//! bring a second reqwest). The batch exporter runs its exports on a thread of its own; the
//! request itself runs on the Tokio runtime the client was made on.

use llmrr_core::{Error, Result};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use std::time::Duration;

/// The largest collector answer read (its partial-success message).
const MAX_ANSWER: usize = 1 << 20;

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
        let (status, headers, body) = sent.await??;
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        Ok(resp)
    }
}
