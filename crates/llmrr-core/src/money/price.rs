//! The built-in price catalog (`data/prices.toml`, compiled in) and how a model finds its
//! entry: by its upstream name exactly, after a `provider/` prefix, after a date suffix
//! (`gpt-4o-2024-08-06`, `claude-sonnet-4-5-20250929`), or by an alias.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

const CATALOG_TOML: &str = include_str!("../../data/prices.toml");

/// One catalog entry: list prices in USD per million tokens.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogPrice {
    pub name: String,
    pub provider: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub input: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub output: Decimal,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub cached_input: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub cache_write: Option<Decimal>,
    /// The day the price was taken from the provider's price page.
    pub as_of: String,
    /// The most output tokens one answer can have, where known.
    #[serde(default)]
    pub max_output: Option<u32>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    model: Vec<CatalogPrice>,
}

/// Every entry, in file order. The file is part of the binary and checked by a test, so a
/// parse failure here is a build defect: it yields an empty catalog and an error line.
pub fn catalog() -> &'static [CatalogPrice] {
    static CATALOG: OnceLock<Vec<CatalogPrice>> = OnceLock::new();
    CATALOG.get_or_init(|| match toml::from_str::<CatalogFile>(CATALOG_TOML) {
        Ok(f) => f.model,
        Err(e) => {
            tracing::error!(error = %e, "the built-in price catalog does not parse");
            Vec::new()
        }
    })
}

/// The catalog entry for an upstream model name, if any.
pub fn lookup(name: &str) -> Option<&'static CatalogPrice> {
    let name = name.trim().to_ascii_lowercase();
    let find = |n: &str| {
        catalog()
            .iter()
            .find(|p| p.name == n || p.aliases.iter().any(|a| a == n))
    };
    if let Some(p) = find(&name) {
        return Some(p);
    }
    let bare = name.split_once('/').map_or(name.as_str(), |(_, rest)| rest);
    find(bare).or_else(|| find(strip_date(bare)))
}

/// `gpt-4o-2024-08-06` -> `gpt-4o`; `claude-sonnet-4-5-20250929` -> `claude-sonnet-4-5`.
fn strip_date(name: &str) -> &str {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((head, tail)) = name.rsplit_once('-') {
        if tail.len() == 8 && digits(tail) {
            return head;
        }
    }
    // -YYYY-MM-DD
    let parts: Vec<&str> = name.rsplitn(4, '-').collect();
    if parts.len() == 4
        && parts[0].len() == 2
        && parts[1].len() == 2
        && parts[2].len() == 4
        && parts[..3].iter().all(|p| digits(p))
    {
        return parts[3];
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_parses_and_every_entry_is_sane() {
        let all = catalog();
        assert!(all.len() >= 30, "{} entries", all.len());
        for p in all {
            assert!(
                p.input >= Decimal::ZERO && p.output >= Decimal::ZERO,
                "{}",
                p.name
            );
            assert!(
                p.as_of.len() == 10 && p.as_of.starts_with("20"),
                "{}",
                p.name
            );
            if let Some(c) = p.cached_input {
                assert!(
                    c <= p.input,
                    "{}: a cache read costs more than input",
                    p.name
                );
            }
        }
        let mut names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len(), "duplicate names");
    }

    #[test]
    fn names_match_with_prefixes_dates_and_aliases() {
        assert_eq!(
            lookup("gpt-4o-mini").map(|p| p.name.as_str()),
            Some("gpt-4o-mini")
        );
        assert_eq!(
            lookup("gpt-4o-2024-08-06").map(|p| p.name.as_str()),
            Some("gpt-4o")
        );
        assert_eq!(
            lookup("claude-sonnet-4-5-20250929").map(|p| p.name.as_str()),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(
            lookup("openai/gpt-4.1").map(|p| p.name.as_str()),
            Some("gpt-4.1")
        );
        assert_eq!(
            lookup("openai/gpt-oss-120b").map(|p| p.name.as_str()),
            Some("openai/gpt-oss-120b")
        );
        assert_eq!(
            lookup("claude-opus-4").map(|p| p.name.as_str()),
            Some("claude-opus-4-0")
        );
        assert!(lookup("my-finetune").is_none());
        assert_eq!(lookup("gpt-4o").and_then(|p| p.max_output), Some(16_384));
        assert!(lookup("gpt-4o-mini-2024").is_none());
    }
}
