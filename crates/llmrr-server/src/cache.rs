//! The HTTP side of the response cache: what a request asks (`Cache-Control: no-cache` /
//! `no-store`, `x-llmrr-cache-ttl`, `x-llmrr-cache-namespace`) and what the answer says
//! (`x-llmrr-cache: hit | semantic-hit | miss | bypass`, `x-llmrr-cache-tier`,
//! `x-llmrr-cache-saved-usd`, `x-llmrr-cache-similarity`).

use axum::http::{header, HeaderMap, HeaderValue};
use llmrr_core::cache::{CacheDirectives, CacheStatus};
use llmrr_core::Error;
use std::time::Duration;

pub const TTL: &str = "x-llmrr-cache-ttl";
pub const NAMESPACE: &str = "x-llmrr-cache-namespace";

/// The request's cache directives; a malformed one is a 400 naming the header.
pub fn directives(headers: &HeaderMap) -> llmrr_core::Result<CacheDirectives> {
    let mut d = CacheDirectives::default();
    for v in headers.get_all(header::CACHE_CONTROL) {
        let text = v.to_str().unwrap_or_default();
        for part in text.split(',').map(|p| p.trim().to_ascii_lowercase()) {
            match part.as_str() {
                "no-cache" => d.no_read = true,
                "no-store" => d.no_store = true,
                _ => {}
            }
        }
    }
    let invalid = |name: &str, why: String| Error::invalid(why, Some(name.to_owned()));
    if let Some(v) = headers.get(TTL) {
        let secs: f64 = v
            .to_str()
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 31_536_000.0)
            .ok_or_else(|| {
                invalid(
                    TTL,
                    format!("{TTL} must be a number of seconds between 0 and 31536000"),
                )
            })?;
        d.ttl = Some(Duration::from_secs_f64(secs));
    }
    if let Some(v) = headers.get(NAMESPACE) {
        let ns = v
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|n| {
                !n.is_empty()
                    && n.len() <= 128
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c))
            })
            .ok_or_else(|| {
                invalid(
                    NAMESPACE,
                    format!("{NAMESPACE} must be 1 to 128 of A-Z a-z 0-9 - _ . : /"),
                )
            })?;
        d.namespace = Some(ns.to_owned());
    }
    Ok(d)
}

/// `x-llmrr-cache` and its details on an answer.
pub fn status_headers(h: &mut HeaderMap, status: &CacheStatus) {
    h.insert("x-llmrr-cache", HeaderValue::from_static(status.status));
    if let Some(tier) = status.tier {
        h.insert(
            "x-llmrr-cache-tier",
            HeaderValue::from_static(tier.as_str()),
        );
    }
    if let Some(v) = status
        .saved_usd
        .and_then(|usd| HeaderValue::from_str(&usd.to_string()).ok())
    {
        h.insert("x-llmrr-cache-saved-usd", v);
    }
    if let Some(v) = status
        .similarity
        .and_then(|sim| HeaderValue::from_str(&format!("{sim:.4}")).ok())
    {
        h.insert("x-llmrr-cache-similarity", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_read_and_bad_ones_refused() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("No-Cache, max-age=0"),
        );
        h.insert(TTL, HeaderValue::from_static("90"));
        h.insert(NAMESPACE, HeaderValue::from_static("exp-1"));
        let d = directives(&h).unwrap();
        assert!(d.no_read && !d.no_store);
        assert_eq!(d.ttl, Some(Duration::from_secs(90)));
        assert_eq!(d.namespace.as_deref(), Some("exp-1"));
        for (name, bad) in [
            (TTL, "-1"),
            (TTL, "soon"),
            (NAMESPACE, "a b"),
            (NAMESPACE, "*"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(bad));
            assert!(directives(&h).is_err(), "{name}: {bad}");
        }
    }
}
