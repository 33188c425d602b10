//! `guardrails` of a route or a model: regex rules and built-in maskers, compiled at load
//! (a bad pattern is a config error, not a failed request).

use crate::error::{Error, Result};
use crate::guardrails::{Action, Guardrails, Masker, Rule, Side};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuardrails {
    /// Built-in maskers: `email`, `phone`, `card` (Luhn-checked), `api_key`.
    #[serde(default)]
    pub mask: Vec<String>,
    /// Where the maskers apply: `input`, `output` or `both` (default).
    pub mask_on: Option<String>,
    /// The longest text one rule may match in a stream (default 256 characters): a stream
    /// holds back this much so that no match is split across chunks.
    pub max_match_chars: Option<usize>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Option<String>,
    /// A regular expression (Rust `regex` syntax: linear time, no look-around).
    pub pattern: String,
    /// `deny` (the request or answer is refused) or `redact` (the match is replaced).
    pub action: String,
    /// `input`, `output` or `both` (default).
    pub on: Option<String>,
    /// What a redacted match becomes (default `[REDACTED]`).
    pub replacement: Option<String>,
}

fn side(path: &str, v: Option<&str>) -> Result<Side> {
    match v {
        None | Some("both") => Ok(Side::Both),
        Some("input") => Ok(Side::Input),
        Some("output") => Ok(Side::Output),
        Some(other) => Err(Error::config(
            path,
            format!("`{other}` must be `input`, `output` or `both`"),
        )),
    }
}

pub(super) fn compile(path: &str, raw: RawGuardrails) -> Result<Arc<Guardrails>> {
    let mut rules = Vec::new();
    let mask_side = side(&format!("{path}.mask_on"), raw.mask_on.as_deref())?;
    for name in &raw.mask {
        let masker = Masker::parse(name).ok_or_else(|| {
            Error::config(
                format!("{path}.mask"),
                format!("`{name}` must be one of email, phone, card, api_key"),
            )
        })?;
        rules.push(masker.rule(mask_side));
    }
    for (i, r) in raw.rules.into_iter().enumerate() {
        let at = |k: &str| format!("{path}.rules[{i}].{k}");
        let regex = regex::RegexBuilder::new(&r.pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| Error::config(at("pattern"), e.to_string()))?;
        let action = match r.action.as_str() {
            "deny" => Action::Deny,
            "redact" => Action::Redact(r.replacement.unwrap_or_else(|| "[REDACTED]".into())),
            other => {
                return Err(Error::config(
                    at("action"),
                    format!("`{other}` must be `deny` or `redact`"),
                ))
            }
        };
        rules.push(Rule {
            name: r.name.unwrap_or_else(|| format!("rules[{i}]")),
            regex,
            action,
            side: side(&at("on"), r.on.as_deref())?,
            luhn: false,
        });
    }
    let hold = raw.max_match_chars.unwrap_or(256);
    if hold == 0 || hold > 65_536 {
        return Err(Error::config(
            format!("{path}.max_match_chars"),
            "must be between 1 and 65536",
        ));
    }
    Ok(Arc::new(Guardrails { rules, hold }))
}
