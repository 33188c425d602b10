//! Signing in and out of the dashboard, and the session check of its API.
//!
//! Cross-site requests cannot use a session: the cookie is `SameSite=Strict`, writes need the
//! session's CSRF token (which only a same-origin page can read), and a sign-in whose
//! `Origin` is another site's is refused (no one can sign a browser in to their own account).

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use llmrr_core::auth::KeyContext;
use llmrr_core::{Error, RequestContext};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

const COOKIE: &str = "llmrr_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The CSRF token of the request's session, for `GET /ui/api/session`.
#[derive(Clone)]
pub struct Csrf(String);

/// Every `llmrr_session` cookie the request carries.
fn session_cookies(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .collect()
}

/// The session cookie. Two of them (one planted for a narrower path or from a sibling
/// domain, which the browser would send first) count as none.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    match session_cookies(headers)[..] {
        [one] if !one.is_empty() => Some(one),
        _ => None,
    }
}

/// Behind a TLS-terminating proxy (`X-Forwarded-Proto: https`) the cookie is `Secure`.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn cookie(value: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    // The value is hex (or empty): always a header value; were it not, the cookie is cleared.
    .unwrap_or_else(|_| HeaderValue::from_static("llmrr_session=; Path=/ui; Max-Age=0"))
}

/// A request another site's page made. The browser says so (`Sec-Fetch-Site`: only
/// `same-origin` is ours); a browser that does not send it is judged by its `Origin`, which
/// must name the host the client asked for (`X-Forwarded-Host` behind a proxy, else `Host`).
fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() != b"same-origin";
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text("x-forwarded-host")
        .and_then(|h| h.split(',').next())
        .or_else(|| text(header::HOST.as_str()))
        .map(str::trim);
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    match (origin_host, host) {
        (Some(o), Some(h)) => !o.eq_ignore_ascii_case(h),
        _ => true,
    }
}

fn who(key: &KeyContext) -> serde_json::Value {
    json!({
        "role": if key.may_administer() { "admin" } else { "user" },
        "name": key.key_name,
        "key_id": key.key_id,
        "user": key.user,
        "team": key.team,
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    key: String,
}

/// `POST /ui/login` `{"key": …}`.
pub async fn login(
    State(state): State<AppState>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    JsonBody(sign_in): JsonBody<SignIn>,
) -> Result<Response, ApiError> {
    if cross_site(&headers) {
        return Err(ApiError(Error::Forbidden {
            message: "sign in from the dashboard's own page".into(),
        }));
    }
    let session = state
        .gateway
        .auth()
        .sign_in(&sign_in.key, client.map(|c| c.0 .0.ip()))
        .await?;
    let max_age = (session.expires_at_ms - llmrr_core::store::now_ms()).max(0) / 1000;
    let mut resp = Json(json!({
        "csrf_token": session.csrf,
        "expires_at_ms": session.expires_at_ms,
        "who": who(&session.key),
    }))
    .into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&session.secret, max_age, over_tls(&headers)),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The session check of `/ui/api/…`, in place of a key: the session's key, as it is now.
/// Writes must carry the session's CSRF token.
pub async fn authenticate(
    state: &AppState,
    req: &mut Request,
) -> llmrr_core::Result<Arc<KeyContext>> {
    let ended = || Error::Unauthorized {
        message: "not signed in, or the session has ended: sign in again".into(),
    };
    if session_cookies(req.headers()).len() > 1 {
        return Err(Error::Unauthorized {
            message: format!(
                "the browser sent two `{COOKIE}` cookies (one set by another site of this \
                 domain?): clear this site's cookies, then sign in again"
            ),
        });
    }
    let secret = session_cookie(req.headers()).ok_or_else(ended)?;
    let session = state
        .gateway
        .auth()
        .session(secret)
        .await?
        .ok_or_else(ended)?;
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let presented = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if cross_site(req.headers()) || !session.csrf_matches(presented) {
            return Err(Error::Forbidden {
                message: format!("a write needs the session's `{CSRF_HEADER}` header"),
            });
        }
    }
    req.extensions_mut().insert(Csrf(session.csrf().to_owned()));
    Ok(session.key)
}

/// `GET /ui/api/session`: who is signed in, and the session's CSRF token (a reloaded page
/// reads it again; no other site can).
pub async fn whoami(
    Extension(ctx): Extension<RequestContext>,
    Extension(csrf): Extension<Csrf>,
) -> Json<serde_json::Value> {
    Json(json!({"who": who(&ctx.key), "csrf_token": csrf.0}))
}

/// `POST /ui/api/logout`: the session ends on every replica; the cookie is cleared.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(secret) = session_cookie(&headers) {
        state.gateway.auth().sign_out(secret).await?;
    }
    let mut resp = Json(json!({"signed_out": true})).into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, cookie("", 0, over_tls(&headers)));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; llmrr_session=abc ; b=2")]);
        assert_eq!(session_cookie(&h), Some("abc"));
        let h = headers(&[("cookie", "a=1"), ("cookie", "llmrr_session=def")]);
        assert_eq!(session_cookie(&h), Some("def"));
        assert_eq!(
            session_cookie(&headers(&[("cookie", "llmrr_sessionx=1")])),
            None
        );
        assert_eq!(
            session_cookie(&headers(&[("cookie", "llmrr_session=")])),
            None
        );
        let planted = headers(&[("cookie", "llmrr_session=evil; llmrr_session=mine")]);
        assert_eq!(session_cookie(&planted), None, "two sessions: none");
    }

    #[test]
    fn cross_site_requests_are_told_apart() {
        let same = headers(&[("host", "gw:8080"), ("origin", "http://gw:8080")]);
        assert!(!cross_site(&same));
        let other = headers(&[("host", "gw:8080"), ("origin", "https://evil.example")]);
        assert!(cross_site(&other));
        assert!(cross_site(&headers(&[("host", "gw"), ("origin", "null")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(
            !cross_site(&headers(&[("host", "gw")])),
            "no Origin: a same-site navigation"
        );
        let fetched = headers(&[("sec-fetch-site", "same-origin"), ("origin", "https://x")]);
        assert!(!cross_site(&fetched), "the browser's word counts");
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        let proxied = headers(&[
            ("host", "10.0.0.7:8080"),
            ("x-forwarded-host", "LLM.example.com"),
            ("origin", "https://llm.example.com"),
        ]);
        assert!(!cross_site(&proxied), "behind a proxy that rewrites Host");
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_behind_tls() {
        let c = cookie("s3cret", 60, true);
        let c = c.to_str().expect("text");
        for part in [
            "llmrr_session=s3cret",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/ui",
            "Max-Age=60",
            "Secure",
        ] {
            assert!(c.contains(part), "{c} lacks {part}");
        }
        assert!(!cookie("x", 1, false)
            .to_str()
            .expect("text")
            .contains("Secure"));
    }
}
