//! Creating a key: every field checked before anything is stored, so that a key never exists
//! that could not work (a model or tier that is not configured) or that the store would
//! refuse (NUL) or that bloats it (a 10 MB name).

use super::{hash_key, CreatedKey, NewKey, KEY_PREFIX};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{NewKeyRow, Store};
use rand::RngCore;
use std::collections::BTreeSet;

/// Longest key name, user or team (characters).
pub const MAX_NAME_CHARS: usize = 128;
/// Most models one key may list.
const MAX_MODELS: usize = 1000;
/// Largest `metadata` object, as JSON.
const MAX_METADATA_BYTES: usize = 16 * 1024;

/// What a new key may name: the configured models and routes, and tiers.
#[derive(Debug, Clone, Default)]
pub struct KeyRules {
    pub models: BTreeSet<String>,
    pub tiers: BTreeSet<String>,
}

impl KeyRules {
    pub fn from_config(config: &Config) -> Self {
        KeyRules {
            models: config
                .models
                .iter()
                .map(|m| m.name.to_string())
                .chain(config.routes.iter().map(|r| r.name.to_string()))
                .collect(),
            tiers: config
                .routing
                .tiers
                .iter()
                .map(|t| t.name.clone())
                .collect(),
        }
    }

    fn check(&self, new: &NewKey) -> Result<()> {
        text("name", Some(&new.name))?;
        text("user", new.user.as_ref())?;
        text("team", new.team.as_ref())?;
        if let Some(tier) = &new.tier {
            if !self.tiers.contains(tier) {
                return Err(Error::invalid(
                    format!(
                        "no tier `{}` is configured (tiers: {})",
                        shown(tier),
                        list(&self.tiers)
                    ),
                    Some("tier".into()),
                ));
            }
        }
        if new.models.len() > MAX_MODELS {
            return Err(Error::invalid(
                format!("a key may list at most {MAX_MODELS} models"),
                Some("models".into()),
            ));
        }
        for (i, model) in new.models.iter().enumerate() {
            if !self.models.contains(model) {
                return Err(Error::invalid(
                    format!(
                        "no model or route `{}` is configured (known: {})",
                        shown(model),
                        list(&self.models)
                    ),
                    Some(format!("models[{i}]")),
                ));
            }
        }
        Ok(())
    }
}

/// A name-like field: non-empty once trimmed, at most [`MAX_NAME_CHARS`], no control
/// characters.
fn text(field: &str, value: Option<&String>) -> Result<()> {
    let Some(value) = value else { return Ok(()) };
    let bad = |why: &str| {
        Err(Error::invalid(
            format!("`{field}` {why}"),
            Some(field.into()),
        ))
    };
    if value.trim().is_empty() {
        return bad("must not be empty");
    }
    if value.chars().count() > MAX_NAME_CHARS {
        return bad(&format!("is longer than {MAX_NAME_CHARS} characters"));
    }
    if value.chars().any(char::is_control) {
        return bad("must not hold control characters");
    }
    Ok(())
}

/// A value quoted in an error message, cut short.
fn shown(value: &str) -> String {
    value
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

fn list(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        return "none".into();
    }
    names
        .iter()
        .take(50)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}

/// A fresh secret: 192 random bits.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

/// The part of a secret stored for display.
pub fn display_prefix(secret: &str) -> &str {
    &secret[..KEY_PREFIX.len() + 4]
}

/// Create a key directly in the store (the CLI does this without a running server).
pub async fn create_key(store: &Store, rules: &KeyRules, new: NewKey) -> Result<CreatedKey> {
    rules.check(&new)?;
    let expires_at_ms = new.expires_at_ms(crate::store::now_ms())?;
    let metadata = new.metadata.unwrap_or_else(|| serde_json::json!({}));
    if !metadata.is_object() {
        return Err(Error::invalid(
            "`metadata` must be a JSON object",
            Some("metadata".into()),
        ));
    }
    if metadata.to_string().len() > MAX_METADATA_BYTES {
        return Err(Error::invalid(
            format!("`metadata` is larger than {MAX_METADATA_BYTES} bytes"),
            Some("metadata".into()),
        ));
    }
    // A key of a registered user belongs to the user's team unless it names its own; a key
    // naming a user or team that is not registered keeps the names as labels (older keys).
    let team = match (&new.team, &new.user) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(u)) => store.user(u).await?.and_then(|u| u.team_id),
        (None, None) => None,
    };
    if let Some(limits) = &new.limits {
        limits.check("limits")?;
    }
    let secret = new_secret();
    let id = format!("key_{}", uuid::Uuid::now_v7().simple());
    // The rule before the key: no replica may see the key without its limits.
    if let Some(limits) = &new.limits {
        store.set_limits(&format!("key:{id}"), limits).await?;
    }
    let row = store
        .insert_key(&NewKeyRow {
            id: &id,
            name: new.name.trim(),
            key_hash: &hash_key(&secret),
            key_prefix: display_prefix(&secret),
            owner_user: new.user.as_deref(),
            owner_team: team.as_deref(),
            tier: new.tier.as_deref(),
            allowed_models: &new.models,
            metadata: &metadata,
            expires_at_ms,
            admin: new.admin,
        })
        .await?;
    Ok(CreatedKey { row, key: secret })
}
