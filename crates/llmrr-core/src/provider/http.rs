//! Outbound HTTP: one pooled keep-alive client per upstream (base URL and connect timeout),
//! shared by every model served from it; and the mapping of transport failures and upstream
//! error statuses to [`Error`], keeping the upstream's own message, type and Retry-After.

use crate::config::{ModelSpec, ProviderKind};
use crate::error::{Error, Result, UpstreamError};
use crate::provider::sse::{SseEvent, SseParser};
use crate::secret::SecretMask;
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::Duration;

/// The largest complete (non-streamed) answer read from an upstream: far above any chat answer
/// or a batch of 2,048 embeddings as JSON floats.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

pub struct ClientPool {
    clients: HashMap<(String, Duration), reqwest::Client>,
    mask: SecretMask,
}

impl ClientPool {
    /// `mask`: the secrets every upstream's error text is cleaned of.
    pub fn new(mask: SecretMask) -> Self {
        ClientPool {
            clients: HashMap::new(),
            mask,
        }
    }

    /// Who a provider for `spec` calls, for its errors and labels.
    pub fn target(&self, spec: &ModelSpec) -> Target {
        Target {
            model: spec.name.to_string(),
            provider: spec.provider,
            timeout: spec.timeout,
            mask: self.mask.clone(),
        }
    }

    pub fn client_for(&mut self, spec: &ModelSpec) -> Result<reqwest::Client> {
        let key = (spec.base_url.clone(), spec.connect_timeout);
        if let Some(c) = self.clients.get(&key) {
            return Ok(c.clone());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(spec.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .user_agent(concat!("llmrr/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))?;
        self.clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Add a model's configured extra headers; values that came from the environment are marked
/// sensitive (never logged by the HTTP stack).
pub fn extra_headers(spec: &ModelSpec, headers: &mut reqwest::header::HeaderMap) -> Result<()> {
    let bad = || Error::config(format!("models.{}.headers", spec.name), "invalid header");
    for (name, value) in &spec.headers {
        let mut v = reqwest::header::HeaderValue::from_str(value.expose()).map_err(|_| bad())?;
        v.set_sensitive(matches!(value, crate::config::HeaderValueSpec::Secret(_)));
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        headers.insert(name, v);
    }
    Ok(())
}

/// Who is being called, for error messages and labels.
#[derive(Debug, Clone)]
pub struct Target {
    pub model: String,
    pub provider: ProviderKind,
    pub timeout: Duration,
    /// Upstream text (error messages) is cleaned of every configured secret.
    pub mask: SecretMask,
}

impl Target {
    pub fn transport_error(&self, e: reqwest::Error) -> Error {
        let provider = self.provider.as_str();
        if e.is_timeout() {
            Error::UpstreamTimeout {
                model: self.model.clone(),
                provider,
                after: self.timeout,
            }
        } else if e.is_decode() {
            // reqwest's text names the URL: the client gets the class only.
            self.protocol("the answer's body could not be read")
        } else {
            // Connection refused, reset, TLS failure, a body cut mid-transfer. The client is
            // told the class; the full chain (with the upstream's URL) is for the log.
            let mut detail = e.to_string();
            // The causes alone (reqwest's own text names the URL, whose host could hold "tls").
            let mut causes = String::new();
            let mut io_kind = None;
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                detail.push_str(": ");
                detail.push_str(&s.to_string());
                causes.push_str(&s.to_string().to_lowercase());
                causes.push(' ');
                if let Some(io) = s.downcast_ref::<std::io::Error>() {
                    io_kind = Some(io.kind());
                }
                source = s.source();
            }
            let lower = causes;
            let class = match io_kind {
                Some(std::io::ErrorKind::ConnectionRefused) => "connection refused",
                Some(std::io::ErrorKind::ConnectionReset) => "connection reset by the upstream",
                Some(std::io::ErrorKind::ConnectionAborted) => "connection aborted",
                Some(std::io::ErrorKind::TimedOut) => "connection timed out",
                _ if lower.contains("dns error") => "the upstream's host name does not resolve",
                _ if lower.contains("certificate") || lower.contains("tls") => {
                    "the TLS handshake failed"
                }
                _ if e.is_body() => "the answer was cut off",
                _ if e.is_connect() => "could not connect",
                _ => "the connection failed",
            };
            Error::UpstreamUnreachable {
                model: self.model.clone(),
                provider,
                message: class.to_owned(),
                detail: self.mask.apply(detail),
            }
        }
    }

    pub fn protocol(&self, message: impl Into<String>) -> Error {
        Error::UpstreamProtocol {
            model: self.model.clone(),
            provider: self.provider.as_str(),
            message: self.mask.apply(message.into()),
        }
    }

    /// Send a request (with our request id, and the trace context when traces are on); a
    /// non-2xx status becomes [`Error::Upstream`].
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let req = match super::call_scope::request_id() {
            Some(id) => req.header("x-request-id", id),
            None => req,
        };
        let req = crate::spans::propagate(req);
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        super::call_scope::record(resp.headers());
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.status_error(resp).await)
        }
    }

    /// A GET that only has to succeed (health probes).
    pub async fn get_ok(
        &self,
        client: &reqwest::Client,
        url: &str,
        headers: &reqwest::header::HeaderMap,
    ) -> Result<()> {
        let req = client
            .get(url)
            .headers(headers.clone())
            .timeout(self.timeout);
        self.send(req).await.map(drop)
    }

    /// The whole answer body, at most [`MAX_ANSWER_BYTES`] (a larger one is a clear 502, read
    /// no further).
    pub async fn body(&self, resp: reqwest::Response) -> Result<Bytes> {
        let too_large = || {
            self.protocol(format!(
                "the answer is larger than {} MiB",
                MAX_ANSWER_BYTES / (1024 * 1024)
            ))
        };
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = bytes::BytesMut::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.transport_error(e))?;
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    async fn status_error(&self, resp: reqwest::Response) -> Error {
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers());
        // Error bodies are small; a huge one is cut, not buffered whole.
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            body.extend_from_slice(&chunk);
            if body.len() > 64 * 1024 {
                break;
            }
        }
        self.error_from_body(status, &body, retry_after)
    }

    /// Read the upstream's error body: OpenAI's `{"error":{...}}`, Anthropic's
    /// `{"type":"error","error":{...}}`, or the shapes other servers use.
    pub fn error_from_body(
        &self,
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
    ) -> Error {
        let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let field = |v: &serde_json::Value, k: &str| -> Option<String> {
            match v.get(k)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            }
        };
        let (message, kind, code, param) = match &parsed {
            Some(v) if v.get("error").is_some_and(|e| e.is_object()) => {
                let e = &v["error"];
                (
                    field(e, "message"),
                    field(e, "type"),
                    field(e, "code"),
                    field(e, "param"),
                )
            }
            Some(v) if v.get("error").is_some_and(|e| e.is_string()) => {
                (field(v, "error"), None, None, None)
            }
            Some(v) => (
                field(v, "detail").or_else(|| field(v, "message")),
                None,
                None,
                None,
            ),
            None => (None, None, None, None),
        };
        let message = message.unwrap_or_else(|| {
            // Masked before it is cut: a secret across the cut would leak its first half.
            let text = self.mask.apply(String::from_utf8_lossy(body).into_owned());
            let text = text.trim();
            if text.is_empty() {
                format!("upstream answered HTTP {status} with an empty body")
            } else {
                let cut: String = text.chars().take(500).collect();
                format!("upstream answered HTTP {status}: {cut}")
            }
        });
        Error::Upstream(Box::new(UpstreamError {
            model: self.model.clone(),
            provider: self.provider.as_str(),
            status,
            kind: kind
                .map(|k| self.mask.apply(k))
                .unwrap_or_else(|| default_error_type(status).to_owned()),
            code: code.map(|c| self.mask.apply(c)),
            param: param.map(|p| self.mask.apply(p)),
            message: self.mask.apply(message),
            retry_after,
        }))
    }
}

fn default_error_type(status: u16) -> &'static str {
    match status {
        400 | 404 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "upstream_error",
    }
}

/// `retry-after-ms` (OpenAI) or `retry-after` in seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0));
    }
    let secs = text("retry-after")?.parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// The events of an SSE response body, parsed as they arrive. The stream yields
/// `Err(..)` when the transport fails and then ends; a clean end of the body just ends it.
pub fn sse_events(
    target: Target,
    resp: reqwest::Response,
) -> futures_util::stream::BoxStream<'static, Result<SseEvent>> {
    struct State {
        body: futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>,
        parser: SseParser,
        ready: std::collections::VecDeque<SseEvent>,
        done: bool,
        target: Target,
    }
    let state = State {
        body: resp.bytes_stream().boxed(),
        parser: SseParser::new(),
        ready: Default::default(),
        done: false,
        target,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.ready.pop_front() {
                return Some((Ok(ev), st));
            }
            if st.done {
                return None;
            }
            let mut out = Vec::new();
            match st.body.next().await {
                Some(Ok(bytes)) => {
                    st.parser.push(&bytes, &mut out);
                    if st.parser.overflowed() {
                        // The stream is broken: what it had before does not matter now.
                        st.done = true;
                        let err = st.target.protocol(format!(
                            "a stream line is longer than {} MiB",
                            crate::provider::sse::MAX_LINE_BYTES / (1024 * 1024)
                        ));
                        return Some((Err(err), st));
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    let err = st.target.transport_error(e);
                    return Some((Err(err), st));
                }
                None => {
                    st.parser.finish(&mut out);
                    st.done = true;
                }
            }
            st.ready.extend(out);
        }
    })
    .boxed()
}
