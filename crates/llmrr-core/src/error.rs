//! The one error type of `llmrr-core`. Variants are typed so that the server can map each to
//! an HTTP status and OpenAI error body, metrics can label it, and (later) routing can decide
//! from the error alone whether to retry or fall back.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client's request is malformed or has an invalid value.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    /// The request body is larger than the configured limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the model `{model}` does not exist")]
    ModelNotFound { model: String },
    #[error("this key is not allowed to use the model `{model}`")]
    ModelNotAllowed { model: String },
    #[error("{message}")]
    Unauthorized { message: String },
    #[error("{message}")]
    Forbidden { message: String },
    /// The client is refused for a while (too many failed authentications, …): 429.
    #[error("{message}")]
    Throttled {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The gateway cannot serve right now (a store it needs is down, it is shutting down): 503.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("the model `{model}` (provider {provider}) does not support {what}")]
    Unsupported {
        model: String,
        provider: &'static str,
        what: String,
    },
    /// The upstream answered with an error status; its own message and type are kept.
    #[error("{}", .0.message)]
    Upstream(Box<UpstreamError>),
    #[error("could not reach the upstream of `{model}` ({provider}): {message}")]
    UpstreamUnreachable {
        model: String,
        provider: &'static str,
        /// The failure class (connection refused, reset, TLS…), without the upstream's URL.
        message: String,
        /// The transport's full error chain, for the server log only.
        detail: String,
    },
    #[error("the upstream of `{model}` ({provider}) did not answer within {after:?}")]
    UpstreamTimeout {
        model: String,
        provider: &'static str,
        after: Duration,
    },
    /// The upstream answered 2xx with something that is not the protocol (garbage, a cut
    /// stream, an unknown event).
    #[error("the upstream of `{model}` ({provider}) broke the protocol: {message}")]
    UpstreamProtocol {
        model: String,
        provider: &'static str,
        message: String,
    },
    /// No model of the plan may serve the request (each reason says why).
    #[error("no model can serve `{requested}`: {}", reasons.join("; "))]
    NoCandidate {
        requested: String,
        reasons: Vec<String>,
        /// 429 when only rate limits stand in the way, 503 when breakers do, 400 otherwise.
        status: u16,
        retry_after: Option<Duration>,
        /// What clients key on: the prompt's size, a missing capability, or anything else.
        cause: NoCandidateCause,
    },
    /// Every attempt of the plan failed.
    #[error("all {} attempts failed: {}", attempts.len(), attempts.iter().map(|a| a.to_string()).collect::<Vec<_>>().join("; "))]
    AllFailed {
        attempts: Vec<AttemptFailure>,
        retry_after: Option<Duration>,
    },
    /// The body is not in a format the route takes (JSON).
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    /// The client hung up before the answer was ready (logged as 499, nginx's status).
    #[error("the client closed the connection")]
    ClientClosed,
    /// The client was too slow sending its request.
    #[error("the request {what} did not arrive within {after:?}")]
    ClientTimeout { what: &'static str, after: Duration },
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("not found: {0}")]
    NotFound(String),
    /// A hard budget has no room for the request (429, `insufficient_quota`); the message
    /// names the budget, its limit, its spend and when it resets.
    #[error("{message}")]
    BudgetExceeded {
        message: String,
        retry_after: Option<Duration>,
    },
    /// A rate limit, quota or concurrency limit has no room (429, `rate_limit_exceeded`); the
    /// message names the limit, Retry-After says when it has room again.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Shed by admission: a full queue (429), a deadline that cannot be met or the global cap
    /// (503). `code`: `queue_full`, `deadline_unreachable`, `overloaded`.
    #[error("{message}")]
    Overloaded {
        message: String,
        status: u16,
        code: &'static str,
        retry_after: Option<Duration>,
    },
    /// A guardrail rule denied the request or withheld the answer (400).
    #[error("{message}")]
    Guardrail { message: String },
    /// The shared-state server (Redis) failed and the feature's policy is to refuse.
    #[error("shared state: {0}")]
    Shared(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why no model could serve, as far as a client can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCandidateCause {
    /// Health, limits, tiers, constraints — or a mix of reasons.
    Unavailable,
    /// Only the prompt's size: `context_length_exceeded` (clients trim history on it).
    ContextLength,
    /// A capability the request needs that no model has: `unsupported_parameter`, naming it.
    Unsupported { param: &'static str },
}

/// An error status returned by an upstream provider.
#[derive(Debug, Clone)]
pub struct UpstreamError {
    pub model: String,
    pub provider: &'static str,
    pub status: u16,
    /// The upstream's error type (`invalid_request_error`, `rate_limit_error`, …).
    pub kind: String,
    pub code: Option<String>,
    pub param: Option<String>,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl UpstreamError {
    /// A 401, or a 403 that is not a content-policy refusal: the upstream refused the gateway's
    /// own credentials (our key, our account's permissions), which the client cannot fix.
    pub fn refused_gateway_credentials(&self) -> bool {
        let text =
            format!("{} {}", self.code.as_deref().unwrap_or(""), self.message).to_lowercase();
        self.status == 401
            || (self.status == 403 && !crate::routing::classify::is_content_policy(&text))
    }
}

/// One failed attempt, as listed in [`Error::AllFailed`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptFailure {
    pub model: String,
    pub status: u16,
    pub error: &'static str,
    pub message: String,
}

impl std::fmt::Display for AttemptFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let message: String = self.message.chars().take(200).collect();
        write!(
            f,
            "{} -> {} {} ({message})",
            self.model, self.status, self.error
        )
    }
}

impl Error {
    pub fn invalid(message: impl Into<String>, param: impl Into<Option<String>>) -> Self {
        Error::InvalidRequest {
            message: message.into(),
            param: param.into(),
        }
    }

    pub fn config(path: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status_code(&self) -> u16 {
        match self {
            Error::InvalidRequest { .. } | Error::Unsupported { .. } | Error::Guardrail { .. } => {
                400
            }
            Error::RateLimited { .. } => 429,
            Error::Overloaded { status, .. } => *status,
            Error::PayloadTooLarge { .. } => 413,
            Error::ModelNotFound { .. } | Error::NotFound(_) => 404,
            Error::ModelNotAllowed { .. } | Error::Forbidden { .. } => 403,
            Error::Unauthorized { .. } => 401,
            Error::Throttled { .. } | Error::BudgetExceeded { .. } => 429,
            Error::Unavailable { .. } | Error::Shared(_) => 503,
            Error::Upstream(e) => match e.status {
                // Anthropic's "overloaded" is not a standard status; clients know 503.
                529 => 503,
                // The upstream refused the gateway's own credentials: not the client's fault.
                _ if e.refused_gateway_credentials() => 502,
                s if (400..600).contains(&s) => s,
                _ => 502,
            },
            Error::UpstreamUnreachable { .. } | Error::UpstreamProtocol { .. } => 502,
            Error::NoCandidate { status, .. } => *status,
            Error::AllFailed { attempts, .. } => all_failed_status(attempts),
            Error::UpstreamTimeout { .. } => 504,
            Error::ClientClosed => 499,
            Error::UnsupportedMediaType { .. } => 415,
            Error::ClientTimeout { .. } => 408,
            Error::Config { .. } | Error::Store(_) | Error::Internal(_) => 500,
        }
    }

    /// OpenAI's `error.type`.
    pub fn error_type(&self) -> &str {
        match self {
            Error::InvalidRequest { .. }
            | Error::Unsupported { .. }
            | Error::PayloadTooLarge { .. }
            | Error::ModelNotFound { .. }
            | Error::NotFound(_) => "invalid_request_error",
            Error::Unauthorized { .. } => "authentication_error",
            Error::Throttled { .. } | Error::RateLimited { .. } => "rate_limit_error",
            Error::Overloaded { status: 429, .. } => "rate_limit_error",
            Error::Overloaded { .. } => "server_error",
            Error::Guardrail { .. } => "invalid_request_error",
            Error::BudgetExceeded { .. } => "insufficient_quota",
            Error::Unavailable { .. } | Error::Shared(_) => "server_error",
            Error::ModelNotAllowed { .. } | Error::Forbidden { .. } => "permission_error",
            Error::Upstream(e) if e.refused_gateway_credentials() => "upstream_error",
            Error::Upstream(e) => &e.kind,
            Error::AllFailed { attempts, .. } => match all_failed_status(attempts) {
                429 => "rate_limit_error",
                s if s < 500 => "invalid_request_error",
                _ => "upstream_error",
            },
            Error::UpstreamUnreachable { .. }
            | Error::UpstreamTimeout { .. }
            | Error::UpstreamProtocol { .. } => "upstream_error",
            Error::NoCandidate { status: 400, .. } => "invalid_request_error",
            Error::NoCandidate { status: 429, .. } => "rate_limit_error",
            Error::NoCandidate { .. } => "upstream_error",
            Error::ClientClosed
            | Error::ClientTimeout { .. }
            | Error::UnsupportedMediaType { .. } => "invalid_request_error",
            Error::Config { .. } | Error::Store(_) | Error::Internal(_) => "server_error",
        }
    }

    /// OpenAI's `error.code`.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::ModelNotFound { .. } => Some("model_not_found"),
            Error::ModelNotAllowed { .. } => Some("model_not_allowed"),
            Error::PayloadTooLarge { .. } => Some("payload_too_large"),
            Error::Unauthorized { .. } => Some("invalid_api_key"),
            Error::Throttled { .. } | Error::RateLimited { .. } => Some("rate_limit_exceeded"),
            Error::Overloaded { code, .. } => Some(code),
            Error::Guardrail { .. } => Some("guardrail_denied"),
            Error::Unavailable { .. } | Error::Shared(_) => Some("service_unavailable"),
            Error::BudgetExceeded { .. } => Some("budget_exceeded"),
            Error::Unsupported { .. } => Some("unsupported_parameter"),
            Error::Upstream(e) if e.refused_gateway_credentials() => Some("upstream_auth_failed"),
            Error::Upstream(e) => e.code.as_deref(),
            Error::UpstreamTimeout { .. } => Some("upstream_timeout"),
            Error::UpstreamUnreachable { .. } => Some("upstream_unreachable"),
            Error::UpstreamProtocol { .. } => Some("upstream_protocol_error"),
            Error::NoCandidate { cause, .. } => Some(match cause {
                NoCandidateCause::ContextLength => "context_length_exceeded",
                NoCandidateCause::Unsupported { .. } => "unsupported_parameter",
                NoCandidateCause::Unavailable => "no_candidate",
            }),
            Error::AllFailed { .. } => Some("all_candidates_failed"),
            Error::ClientTimeout { .. } => Some("request_timeout"),
            _ => None,
        }
    }

    /// OpenAI's `error.param`.
    pub fn param(&self) -> Option<&str> {
        match self {
            Error::InvalidRequest { param, .. } => param.as_deref(),
            Error::ModelNotFound { .. } | Error::ModelNotAllowed { .. } => Some("model"),
            Error::Upstream(e) => e.param.as_deref(),
            Error::NoCandidate { cause, .. } => match cause {
                NoCandidateCause::ContextLength => Some("messages"),
                NoCandidateCause::Unsupported { param } => Some(param),
                NoCandidateCause::Unavailable => None,
            },
            _ => None,
        }
    }

    /// How long the client should wait before trying again, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Upstream(e) => e.retry_after,
            Error::NoCandidate { retry_after, .. }
            | Error::AllFailed { retry_after, .. }
            | Error::Throttled { retry_after, .. }
            | Error::RateLimited { retry_after, .. }
            | Error::Overloaded { retry_after, .. }
            | Error::BudgetExceeded { retry_after, .. }
            | Error::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A stable, low-cardinality label for metrics and the request log.
    pub fn label(&self) -> &'static str {
        match self {
            Error::InvalidRequest { .. } => "invalid_request",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::ModelNotFound { .. } => "model_not_found",
            Error::ModelNotAllowed { .. } => "model_not_allowed",
            Error::Unauthorized { .. } => "unauthorized",
            Error::Forbidden { .. } => "forbidden",
            Error::Throttled { .. } => "throttled",
            Error::RateLimited { .. } => "rate_limited",
            Error::Overloaded { .. } => "shed",
            Error::Guardrail { .. } => "guardrail",
            Error::Unavailable { .. } => "unavailable",
            Error::Unsupported { .. } => "unsupported",
            Error::Upstream(e) => match e.status {
                400 | 422 => "upstream_bad_request",
                401 | 403 => "upstream_auth",
                404 => "upstream_not_found",
                408 => "upstream_timeout",
                429 => "upstream_rate_limited",
                s if s >= 500 => "upstream_server_error",
                _ => "upstream_other",
            },
            Error::UpstreamUnreachable { .. } => "upstream_unreachable",
            Error::UpstreamTimeout { .. } => "upstream_timeout",
            Error::UpstreamProtocol { .. } => "upstream_protocol",
            Error::NoCandidate { .. } => "no_candidate",
            Error::AllFailed { .. } => "all_candidates_failed",
            Error::ClientClosed => "client_disconnected",
            Error::UnsupportedMediaType { .. } => "unsupported_media_type",
            Error::ClientTimeout { .. } => "client_timeout",
            Error::Config { .. } => "config",
            Error::Store(_) => "store",
            Error::NotFound(_) => "not_found",
            Error::BudgetExceeded { .. } => "budget_exceeded",
            Error::Shared(_) => "shared_state",
            Error::Internal(_) => "internal",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The status of "every attempt failed", in the class of the attempts: when all were client
/// errors (a retry cannot help), theirs if they agree, else 400; 429 when all were rate
/// limited; else 503 (worth retrying later).
fn all_failed_status(attempts: &[AttemptFailure]) -> u16 {
    let Some(first) = attempts.first() else {
        return 503;
    };
    let client_error = |s: u16| (400..500).contains(&s);
    if attempts.iter().all(|a| client_error(a.status)) {
        if attempts.iter().all(|a| a.status == first.status) {
            return first.status;
        }
        if attempts.iter().all(|a| a.status != 429) {
            return 400;
        }
    }
    503
}

impl Error {
    /// OpenAI's error envelope for this error: the body of an HTTP error response and of an
    /// SSE error event alike.
    pub fn to_body(&self) -> llmrr_types::openai::ErrorBody {
        llmrr_types::openai::ErrorBody {
            error: llmrr_types::openai::ErrorDetail {
                message: self.client_message(),
                kind: self.error_type().to_owned(),
                param: self.param().map(str::to_owned),
                code: self.code().map(str::to_owned),
            },
        }
    }

    /// What the client is told. Store and internal errors are logged in full but described
    /// only generally: they may hold connection strings or paths. Upstream transport errors
    /// name the provider and the failure class, never the upstream's URL.
    pub(crate) fn client_message(&self) -> String {
        match self {
            Error::Store(_) => "the gateway's store failed; see the server log".into(),
            Error::Internal(_) => "internal error; see the server log".into(),
            Error::Upstream(e) if e.refused_gateway_credentials() => format!(
                "the {} provider refused the gateway's credentials for `{}` (HTTP {}): \
                 check the upstream API key in llmrr's configuration; upstream said: {}",
                e.provider, e.model, e.status, e.message
            ),
            other => other.to_string(),
        }
    }

    /// Detail for the server log that the client is not told (an upstream's URL).
    pub fn log_detail(&self) -> Option<&str> {
        match self {
            Error::UpstreamUnreachable { detail, .. } => Some(detail),
            _ => None,
        }
    }
}
