//! Without a master key llmrr serves loopback only and lets keyless calls through — so a web
//! page the operator visits must not be able to use it: a cross-site form POST (`text/plain`,
//! no preflight) or a DNS-rebinding page (a foreign `Host` that resolves to 127.0.0.1) would
//! otherwise spend the operator's upstream credit. In that mode every request must name a
//! loopback host, a browser `Origin` must be a loopback one, and a body must be JSON.

use axum::http::{header, HeaderMap, Method, Uri};
use llmrr_core::Error;

/// Refuse what a browser could send from another site; `Ok` for everything a local client
/// (SDK, curl with a JSON content type, the CLI) sends.
/// `origin_allowed`: whether a browser origin is allowed by the CORS setting.
pub fn check(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    origin_allowed: impl Fn(&str) -> bool,
) -> Result<(), Error> {
    let host = uri
        .host()
        .map(str::to_owned)
        .or_else(|| header_text(headers, header::HOST).map(str::to_owned));
    if let Some(host) = host {
        if !is_loopback_host(&host) {
            return Err(Error::Forbidden {
                message: format!(
                    "without a master key llmrr answers only requests to a loopback host, not \
                     `{}`: set LLMRR_MASTER_KEY to serve other hosts",
                    host.chars().take(100).collect::<String>()
                ),
            });
        }
    }
    if let Some(origin) = header_text(headers, header::ORIGIN) {
        let origin_host = origin
            .parse::<Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_owned));
        if !origin_host.as_deref().is_some_and(is_loopback_host) && !origin_allowed(origin) {
            return Err(Error::Forbidden {
                message: "browser requests from this origin are refused: it is not in \
                          `server.cors.allowed_origins`"
                    .into(),
            });
        }
    }
    let has_body = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if has_body && !is_json(headers) {
        return Err(Error::UnsupportedMediaType {
            message: "send the body as JSON with `Content-Type: application/json`".into(),
        });
    }
    Ok(())
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_json(headers: &HeaderMap) -> bool {
    header_text(headers, header::CONTENT_TYPE).is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case("application/json")
    })
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host_and_port: &str) -> bool {
    let host = if let Some(rest) = host_and_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host_and_port.split(':').next().unwrap_or("")
    };
    let host = host.trim_end_matches('.');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn issue15_cross_site_requests_are_refused_without_a_master_key() {
        let uri: Uri = "/v1/chat/completions".parse().expect("uri");
        let json = (header::CONTENT_TYPE, "application/json; charset=utf-8");
        let ok = |h: &[(header::HeaderName, &str)]| {
            check(&Method::POST, &uri, &headers(h), |o| {
                o == "https://app.example"
            })
        };
        assert!(ok(&[(header::HOST, "127.0.0.1:8080"), json.clone()]).is_ok());
        assert!(ok(&[(header::HOST, "localhost:8080"), json.clone()]).is_ok());
        assert!(ok(&[(header::HOST, "[::1]:8080"), json.clone()]).is_ok());
        // DNS rebinding: a foreign name that resolves to loopback.
        assert!(ok(&[(header::HOST, "attacker.example:8080"), json.clone()]).is_err());
        // A cross-site form post: text/plain needs no preflight.
        let e = ok(&[
            (header::HOST, "127.0.0.1:8080"),
            (header::CONTENT_TYPE, "text/plain"),
        ]);
        assert_eq!(e.map_err(|e| e.status_code()), Err(415));
        let e = ok(&[
            (header::HOST, "127.0.0.1:8080"),
            json.clone(),
            (header::ORIGIN, "https://evil.example"),
        ]);
        assert_eq!(e.map_err(|e| e.status_code()), Err(403));
        assert!(ok(&[
            (header::HOST, "127.0.0.1:8080"),
            json,
            (header::ORIGIN, "http://localhost:3000"),
        ])
        .is_ok());
        // An origin the CORS setting allows.
        assert!(ok(&[
            (header::HOST, "127.0.0.1:8080"),
            (header::CONTENT_TYPE, "application/json"),
            (header::ORIGIN, "https://app.example"),
        ])
        .is_ok());
        // Reads need no content type.
        let get = check(
            &Method::GET,
            &uri,
            &headers(&[(header::HOST, "127.0.0.1")]),
            |_| false,
        );
        assert!(get.is_ok());
    }
}
