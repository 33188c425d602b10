//! What one call carries across the provider boundary without widening the `Provider` trait:
//! our request id (sent upstream as `x-request-id`), and what the upstream's answer headers
//! said (its own request id, its `x-ratelimit-*` headers) for the client's answer.
//!
//! A task-local set by the gateway around a call's attempts: providers read the id when they
//! send, and record the headers when the answer's head arrives; the last attempt's headers win
//! (the one that answered). Outside a scope (tests calling a provider directly) both are no-ops.

use std::sync::Mutex;

tokio::task_local! {
    static CALL: CallScope;
}

/// Upstream headers worth passing on to the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamMeta {
    /// The upstream's request id (`x-request-id`, or Anthropic's `request-id`).
    pub request_id: Option<String>,
    /// `x-ratelimit-*` headers, name and value, as the upstream sent them.
    pub rate_limits: Vec<(String, String)>,
}

pub struct CallScope {
    request_id: String,
    upstream: Mutex<UpstreamMeta>,
}

/// Run `work` with `request_id` as the call's id.
pub async fn scope<F: std::future::Future>(request_id: String, work: F) -> F::Output {
    CALL.scope(
        CallScope {
            request_id,
            upstream: Mutex::new(UpstreamMeta::default()),
        },
        work,
    )
    .await
}

/// The id to send upstream, inside a call.
pub fn request_id() -> Option<String> {
    CALL.try_with(|c| c.request_id.clone()).ok()
}

/// Headers of the current attempt's answer (replacing an earlier attempt's).
pub fn record(headers: &reqwest::header::HeaderMap) {
    let text = |v: &reqwest::header::HeaderValue| {
        v.to_str()
            .ok()
            .map(|s| s.chars().take(200).collect::<String>())
    };
    let meta = UpstreamMeta {
        request_id: ["x-request-id", "request-id"]
            .iter()
            .find_map(|h| headers.get(*h).and_then(text)),
        rate_limits: headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-ratelimit-"))
            .take(16)
            .filter_map(|(name, v)| Some((name.as_str().to_owned(), text(v)?)))
            .collect(),
    };
    let _ = CALL.try_with(|c| {
        if let Ok(mut m) = c.upstream.lock() {
            *m = meta;
        }
    });
}

/// A new attempt starts: forget what an earlier attempt's upstream said (a local model, which
/// sends no headers, must not answer with a failed remote attempt's ids).
pub fn reset() {
    let _ = CALL.try_with(|c| {
        if let Ok(mut m) = c.upstream.lock() {
            *m = UpstreamMeta::default();
        }
    });
}

/// What the answering attempt's upstream said.
pub fn upstream() -> UpstreamMeta {
    CALL.try_with(|c| c.upstream.lock().map(|m| m.clone()).unwrap_or_default())
        .unwrap_or_default()
}
