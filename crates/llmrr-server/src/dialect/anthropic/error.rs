//! Anthropic's error envelope, `{"type": "error", "error": {"type", "message"}}`, with the
//! error's own status; the type is Anthropic's name for the status.

use crate::error::error_response;
use axum::response::{IntoResponse, Response};
use llmrr_core::answer::AnswerError;
use llmrr_core::Error;
use llmrr_types::anthropic as a;

pub struct AnthropicError(pub Error);

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&envelope(&AnswerError::from(&self.0))).unwrap_or_default();
        error_response(&self.0, body)
    }
}

/// Anthropic's error type for an HTTP status.
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        408 | 504 => "timeout_error",
        503 | 529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The envelope of an error (the body of an error response, and the data of a stream's
/// `error` event).
pub fn envelope(e: &AnswerError) -> a::ErrorBody {
    // The parameter at fault is part of OpenAI's envelope only: say it in the message.
    let message = match &e.param {
        Some(p) if !e.message.contains(p.as_str()) => format!("{} (parameter `{p}`)", e.message),
        _ => e.message.clone(),
    };
    a::ErrorBody {
        kind: "error".into(),
        error: a::ErrorDetail {
            kind: error_type(e.status).into(),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_anthropic_types() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (503, "overloaded_error"),
            (504, "timeout_error"),
        ] {
            assert_eq!(error_type(status), kind, "{status}");
        }
    }
}
