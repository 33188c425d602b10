//! What a failed attempt means for the next one.

use crate::error::Error;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// 5xx, 408/409, timeouts, connection and protocol errors: retry, then fall back.
    Retryable,
    /// 429: skip this model (until Retry-After) and fall back at once.
    RateLimited(Option<Duration>),
    /// The prompt does not fit: only a model with a larger context window can help.
    ContextLength,
    /// Refused by a content policy: only the route's content fallback may help.
    ContentPolicy,
    /// 400/401/403/404 and the like: final for this model; the next may differ.
    Final,
}

impl FailureClass {
    /// Whether the failure says something about the model's health (for the breaker).
    pub fn counts_for_health(self) -> bool {
        self == FailureClass::Retryable
    }
}

pub fn classify(e: &Error) -> FailureClass {
    match e {
        Error::Upstream(u) => {
            let text = format!("{} {}", u.code.as_deref().unwrap_or(""), u.message).to_lowercase();
            match u.status {
                429 => FailureClass::RateLimited(u.retry_after),
                408 | 409 => FailureClass::Retryable,
                s if s >= 500 => FailureClass::Retryable,
                400 | 413 | 422 if is_context_length(&text) => FailureClass::ContextLength,
                400 | 403 | 422 if is_content_policy(&text) => FailureClass::ContentPolicy,
                _ => FailureClass::Final,
            }
        }
        Error::UpstreamTimeout { .. }
        | Error::UpstreamUnreachable { .. }
        | Error::UpstreamProtocol { .. } => FailureClass::Retryable,
        _ => FailureClass::Final,
    }
}

fn is_context_length(text: &str) -> bool {
    [
        "context_length_exceeded",
        "context length",
        "context window",
        "maximum context",
        "prompt is too long",
        "too many tokens",
        "reduce the length",
    ]
    .iter()
    .any(|p| text.contains(p))
}

pub(crate) fn is_content_policy(text: &str) -> bool {
    [
        "content_filter",
        "content_policy",
        "content policy",
        "content management policy",
        "safety system",
    ]
    .iter()
    .any(|p| text.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UpstreamError;

    fn upstream(status: u16, code: Option<&str>, message: &str) -> Error {
        Error::Upstream(Box::new(UpstreamError {
            model: "m".into(),
            provider: "openai",
            status,
            kind: "x".into(),
            code: code.map(str::to_owned),
            param: None,
            message: message.into(),
            retry_after: Some(Duration::from_secs(3)),
        }))
    }

    #[test]
    fn classes() {
        assert_eq!(
            classify(&upstream(429, None, "slow down")),
            FailureClass::RateLimited(Some(Duration::from_secs(3)))
        );
        assert_eq!(classify(&upstream(503, None, "")), FailureClass::Retryable);
        assert_eq!(
            classify(&upstream(400, Some("context_length_exceeded"), "")),
            FailureClass::ContextLength
        );
        assert_eq!(
            classify(&upstream(400, None, "prompt is too long: 300000 tokens")),
            FailureClass::ContextLength
        );
        assert_eq!(
            classify(&upstream(400, Some("content_policy_violation"), "")),
            FailureClass::ContentPolicy
        );
        assert_eq!(
            classify(&upstream(401, None, "bad key")),
            FailureClass::Final
        );
        assert_eq!(
            classify(&upstream(404, None, "no such model")),
            FailureClass::Final
        );
        let timeout = Error::UpstreamTimeout {
            model: "m".into(),
            provider: "openai",
            after: Duration::from_secs(1),
        };
        assert_eq!(classify(&timeout), FailureClass::Retryable);
        assert!(!FailureClass::RateLimited(None).counts_for_health());
    }
}
