//! A secret string that never prints: `Debug`, `Display` and `Serialize` all show a mask.

use std::fmt;
use std::sync::Arc;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

const MASK: &str = "********";

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Call only where it is sent, compared or hashed.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({MASK})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("sk-very-secret");
        assert!(!format!("{s:?}").contains("very"));
        assert!(!format!("{s}").contains("very"));
        assert_eq!(
            serde_json::to_string(&s).expect("serializes"),
            "\"********\""
        );
        assert_eq!(s.expose(), "sk-very-secret");
    }
}

/// Every configured secret, to be masked in text that comes from outside (an upstream's error
/// message may echo the key we sent) before it is logged or returned.
#[derive(Clone, Default)]
pub struct SecretMask(Arc<[String]>);

impl fmt::Debug for SecretMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretMask({} secrets)", self.0.len())
    }
}

/// Shorter values are not masked: they would hide ordinary words, and no real key is so short.
const MIN_MASKED_LEN: usize = 8;

impl SecretMask {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut list: Vec<String> = secrets
            .into_iter()
            .map(|s| s.expose().to_owned())
            .filter(|s| s.len() >= MIN_MASKED_LEN)
            .collect();
        // Longest first, so that a secret containing another is masked whole.
        list.sort_by_key(|s| std::cmp::Reverse(s.len()));
        list.dedup();
        SecretMask(list.into())
    }

    /// `text` with every secret replaced by a mask.
    pub fn apply(&self, text: String) -> String {
        if !self.0.iter().any(|s| text.contains(s.as_str())) {
            return text;
        }
        let mut text = text;
        for secret in self.0.iter() {
            text = text.replace(secret.as_str(), MASK);
        }
        text
    }
}

#[cfg(test)]
mod mask_tests {
    use super::*;

    #[test]
    fn issue15_secrets_echoed_by_an_upstream_are_masked() {
        let keys = [Secret::new("sk-upstream-secret"), Secret::new("short")];
        let mask = SecretMask::new(&keys);
        assert_eq!(
            mask.apply("Incorrect API key provided: sk-upstream-secret.".into()),
            "Incorrect API key provided: ********."
        );
        assert_eq!(mask.apply("a short text".into()), "a short text");
    }
}
