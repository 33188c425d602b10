//! `Json<T>` with OpenAI-style errors: 413 past the body limit, 400 for malformed JSON with
//! its line and column, 400 naming the path of a missing or invalid field.

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use llmrr_core::Error;
use serde::de::DeserializeOwned;

pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        // A declared size over the limit is refused before a byte of the body is read.
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > state.server.max_body_bytes as u64) {
            return Err(ApiError(Error::PayloadTooLarge {
                limit: state.server.max_body_bytes,
            }));
        }
        // A body that trickles in is cut off: a slow client cannot hold a request open.
        let limit = state.server.body_read_timeout;
        let read = tokio::time::timeout(limit, Bytes::from_request(req, state))
            .await
            .map_err(|_| {
                ApiError(Error::ClientTimeout {
                    what: "body",
                    after: limit,
                })
            })?;
        let bytes = read.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError(Error::PayloadTooLarge {
                    limit: state.server.max_body_bytes,
                })
            } else {
                ApiError(Error::invalid(
                    format!("could not read the request body: {rejection}"),
                    None,
                ))
            }
        })?;
        parse(&bytes).map(JsonBody).map_err(ApiError)
    }
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid(
            "the request body is empty: send a JSON object",
            None,
        ));
    }
    // Valid bodies take the plain parser; only a failure is parsed again with path tracking,
    // to say where it failed.
    if let Ok(v) = serde_json::from_slice(bytes) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    if value.is_ok() {
        de.end().map_err(|e| {
            Error::invalid(format!("the request body is not valid JSON: {e}"), None)
        })?;
    }
    value.map_err(described)
}

/// A body already read as JSON, as `T`: its errors said as [`parse`] says them.
pub fn from_value<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(described)
}

/// A field that did not parse, said with its full path.
fn described(e: serde_path_to_error::Error<serde_json::Error>) -> Error {
    let inner = e.inner();
    if inner.is_syntax() || inner.is_eof() {
        return Error::invalid(format!("the request body is not valid JSON: {inner}"), None);
    }
    let path = e.path().to_string();
    let text = inner.to_string();
    // serde says "missing field `x` at line 1 column 20"; name the field's full path.
    let missing = text
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let param = match (missing, path.as_str()) {
        (Some(field), ".") => field.to_owned(),
        (Some(field), p) => format!("{p}.{field}"),
        (None, p) => p.to_owned(),
    };
    let detail = text.split(" at line ").next().unwrap_or(&text);
    let message = match missing {
        Some(_) => format!("missing required parameter `{param}`"),
        None => format!("invalid value for `{param}`: {detail}"),
    };
    Error::invalid(message, (param != ".").then_some(param))
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmrr_types::openai::ChatCompletionRequest;

    fn err(body: &str) -> (String, Option<String>) {
        match parse::<ChatCompletionRequest>(body.as_bytes()) {
            Err(Error::InvalidRequest { message, param }) => (message, param),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_say_where() {
        let (m, p) = err(r#"{"model": "x", "messages": [}"#);
        assert!(m.contains("not valid JSON") && m.contains("column"), "{m}");
        assert_eq!(p, None);
        let (m, p) = err(r#"{"messages": []}"#);
        assert_eq!(p.as_deref(), Some("model"), "{m}");
        let (m, p) = err(r#"{"model": "x", "messages": [{"content": "hi"}]}"#);
        assert_eq!(p.as_deref(), Some("messages[0].role"), "{m}");
        let (m, p) = err(r#"{"model": "x", "messages": [{"role": "robot", "content": "hi"}]}"#);
        assert_eq!(p.as_deref(), Some("messages[0].role"));
        assert!(m.contains("robot"), "{m}");
        let (_, p) = err(r#"{"model": "x", "messages": [], "temperature": "hot"}"#);
        assert_eq!(p.as_deref(), Some("temperature"));
        let (_, p) = err(r#"{"model": "x", "messages": [{"role": "user", "content": 5}]}"#);
        assert_eq!(p.as_deref(), Some("messages[0].content"));
        let (m, _) = err("  ");
        assert!(m.contains("empty"));
        let (m, _) = err(r#"{"model": "x", "messages": []} trailing"#);
        assert!(m.contains("not valid JSON"), "{m}");
    }
}
