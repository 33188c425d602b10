//! The one place errors become HTTP responses: the error's status, `Retry-After` when the
//! upstream gave one, and the body in the client's dialect — OpenAI's envelope
//! `{"error":{"message","type","param","code"}}` here ([`ApiError`]), Anthropic's in
//! `dialect::anthropic`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use llmrr_core::Error;

pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.0.to_body()).unwrap_or_default();
        error_response(&self.0, body)
    }
}

/// `e`'s status and headers around `body` (its envelope in the client's dialect).
pub fn error_response(e: &Error, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::BAD_GATEWAY);
    if status.is_server_error() {
        tracing::warn!(error = %e, detail = e.log_detail(), label = e.label(), "request failed");
    }
    let mut resp = (status, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(after) = e.retry_after() {
        let secs = after.as_secs_f64().ceil() as u64;
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}
