//! The loaded rules, and which of them apply to one request.

use super::{LimitSet, Priority};
use crate::auth::KeyContext;
use crate::config::limits::LimitsConfig;
use std::collections::HashMap;

#[derive(Debug, Default)]
pub(super) struct Rules {
    global: Option<LimitSet>,
    default_key: Option<LimitSet>,
    /// Stored rules by scope (`key:ID`, `user:ID`, `team:ID`, `model:NAME`).
    scopes: HashMap<String, LimitSet>,
    models: HashMap<String, LimitSet>,
}

/// One rule that applies, and the scope name its counters are kept under.
pub(super) struct Applied<'a> {
    pub(super) scope: String,
    pub(super) set: &'a LimitSet,
}

impl Rules {
    /// Stored rules replace the config's for the same scope.
    pub(super) fn new(config: &LimitsConfig, stored: Vec<(String, LimitSet)>) -> Rules {
        let mut scopes: HashMap<String, LimitSet> = config
            .tiers
            .iter()
            .map(|(t, set)| (format!("tier:{t}"), set.clone()))
            .collect();
        scopes.extend(stored);
        let global = scopes.remove("global").or_else(|| config.global.clone());
        let mut models: HashMap<String, LimitSet> = config
            .models
            .iter()
            .map(|(m, s)| (m.clone(), s.clone()))
            .collect();
        scopes.retain(|scope, set| match scope.strip_prefix("model:") {
            Some(m) => {
                models.insert(m.to_owned(), set.clone());
                false
            }
            None => true,
        });
        Rules {
            global,
            default_key: config.default_key.clone(),
            scopes,
            models,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.global.is_none()
            && self.default_key.is_none()
            && self.scopes.is_empty()
            && self.models.is_empty()
    }

    fn key_rule(&self, key: &KeyContext) -> Option<(String, &LimitSet)> {
        let id = key.key_id.as_deref()?;
        let scope = format!("key:{id}");
        let set = self.scopes.get(&scope).or(self.default_key.as_ref())?;
        Some((scope, set))
    }

    /// The rules of the key's user, team and tier. A tier's rule limits each key of the tier
    /// on its own (its counters are the key's).
    fn owner_rules<'a>(&'a self, key: &KeyContext) -> impl Iterator<Item = (String, &'a LimitSet)> {
        let user = key.user.as_deref().map(|u| format!("user:{u}"));
        let team = key.team.as_deref().map(|t| format!("team:{t}"));
        let tier = key.tier.as_deref().map(|t| format!("tier:{t}"));
        let key_id = key.key_id.clone().unwrap_or_default();
        [user, team, tier]
            .into_iter()
            .flatten()
            .filter_map(move |scope| {
                let set = self.scopes.get(&scope)?;
                let counted = match scope.strip_prefix("tier:") {
                    Some(_) => format!("{scope}|key:{key_id}"),
                    None => scope,
                };
                Some((counted, set))
            })
    }

    /// The scopes of the caller and the deployment (global, key or default, user, team).
    fn caller_scopes<'a>(&'a self, key: &KeyContext) -> Vec<(String, &'a LimitSet)> {
        let mut out = Vec::new();
        if let Some(g) = &self.global {
            out.push(("global".to_owned(), g));
        }
        out.extend(self.key_rule(key));
        out.extend(self.owner_rules(key));
        out
    }

    /// Every rule that applies to `key` asking for `requested`, with the per-model limits
    /// inside each.
    pub(super) fn applying<'a>(&'a self, key: &KeyContext, requested: &str) -> Vec<Applied<'a>> {
        let mut out = Vec::new();
        for (scope, set) in self.caller_scopes(key) {
            if let Some(inner) = set.models.get(requested) {
                out.push(Applied {
                    scope: format!("{scope}|model:{requested}"),
                    set: inner,
                });
            }
            out.push(Applied { scope, set });
        }
        if let Some(m) = self.models.get(requested) {
            out.push(Applied {
                scope: format!("model:{requested}"),
                set: m,
            });
        }
        out
    }

    /// The per-model rules of `model` alone (the caller's `models` entries and
    /// `model:NAME`): what an attempt on `model` must also pass when the request named a
    /// route or another model. The same counters as requests naming `model` directly.
    pub(super) fn for_model<'a>(&'a self, key: &KeyContext, model: &str) -> Vec<Applied<'a>> {
        let mut out: Vec<Applied<'a>> = self
            .caller_scopes(key)
            .into_iter()
            .filter_map(|(scope, set)| {
                set.models.get(model).map(|inner| Applied {
                    scope: format!("{scope}|model:{model}"),
                    set: inner,
                })
            })
            .collect();
        if let Some(m) = self.models.get(model) {
            out.push(Applied {
                scope: format!("model:{model}"),
                set: m,
            });
        }
        out
    }

    /// The class of a request: what it asked (`asked`), capped by what its key may ask; else
    /// its key's (or user's, or team's) default; else normal. The master key may ask any.
    pub(super) fn priority(&self, key: &KeyContext, asked: Option<Priority>) -> Priority {
        let sets: Vec<&LimitSet> = self
            .key_rule(key)
            .map(|(_, s)| s)
            .into_iter()
            .chain(self.owner_rules(key).map(|(_, s)| s))
            .collect();
        let default = sets
            .iter()
            .find_map(|s| s.priority)
            .unwrap_or(Priority::Normal);
        let max = if key.is_master {
            Priority::Critical
        } else {
            // A rule's cap is its `max_priority`, else its own `priority`.
            sets.iter()
                .find_map(|s| s.max_priority.or(s.priority))
                .unwrap_or(default)
                .max(default)
        };
        asked.map_or(default, |a| a.min(max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rpm: u64) -> LimitSet {
        LimitSet {
            rpm: Some(rpm),
            ..Default::default()
        }
    }

    fn key(id: &str, user: Option<&str>, team: Option<&str>) -> KeyContext {
        KeyContext {
            key_id: Some(id.into()),
            user: user.map(Into::into),
            team: team.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn every_scope_that_applies_and_the_per_model_limits_inside() {
        let config = LimitsConfig {
            default_key: Some(set(5)),
            models: [("gpt".to_owned(), set(100))].into(),
            ..Default::default()
        };
        let mut own = set(10);
        own.models.insert("gpt".into(), set(2));
        let rules = Rules::new(
            &config,
            vec![
                ("key:k1".into(), own),
                ("team:eng".into(), set(50)),
                ("global".into(), set(1000)),
                ("model:gpt".into(), set(90)),
            ],
        );
        let scopes = |k: &KeyContext, model: &str| -> Vec<(String, Option<u64>)> {
            rules
                .applying(k, model)
                .into_iter()
                .map(|a| (a.scope, a.set.rpm))
                .collect()
        };
        assert_eq!(
            scopes(&key("k1", Some("alice"), Some("eng")), "gpt"),
            [
                ("global".into(), Some(1000)),
                ("key:k1|model:gpt".into(), Some(2)),
                ("key:k1".into(), Some(10)),
                ("team:eng".into(), Some(50)),
                ("model:gpt".into(), Some(90)),
            ]
        );
        // A key without a rule gets the default; a stored model rule replaces the config's.
        assert_eq!(
            scopes(&key("k2", None, None), "other"),
            [("global".into(), Some(1000)), ("key:k2".into(), Some(5))]
        );
    }

    #[test]
    fn priority_is_capped_by_what_the_key_may_ask() {
        let low = LimitSet {
            priority: Some(Priority::Low),
            ..Default::default()
        };
        let high = LimitSet {
            max_priority: Some(Priority::High),
            ..Default::default()
        };
        let rules = Rules::new(
            &LimitsConfig::default(),
            vec![("key:batch".into(), low), ("team:ops".into(), high)],
        );
        let batch = key("batch", None, None);
        assert_eq!(rules.priority(&batch, None), Priority::Low);
        assert_eq!(
            rules.priority(&batch, Some(Priority::Critical)),
            Priority::Low
        );
        let ops = key("o", None, Some("ops"));
        assert_eq!(rules.priority(&ops, None), Priority::Normal);
        assert_eq!(
            rules.priority(&ops, Some(Priority::Critical)),
            Priority::High
        );
        let plain = key("p", None, None);
        assert_eq!(
            rules.priority(&plain, Some(Priority::High)),
            Priority::Normal
        );
        assert_eq!(rules.priority(&plain, Some(Priority::Low)), Priority::Low);
        // A tier gives its keys their class.
        let tiers = LimitsConfig {
            tiers: [(
                "batch".to_owned(),
                LimitSet {
                    priority: Some(Priority::Low),
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        };
        let rules = Rules::new(&tiers, Vec::new());
        let batch_tier = KeyContext {
            key_id: Some("t1".into()),
            tier: Some("batch".into()),
            ..Default::default()
        };
        assert_eq!(
            rules.priority(&batch_tier, Some(Priority::High)),
            Priority::Low
        );
        assert_eq!(
            rules.applying(&batch_tier, "m")[0].scope,
            "tier:batch|key:t1",
            "each key of a tier counted on its own"
        );
        let master = KeyContext {
            is_master: true,
            ..Default::default()
        };
        assert_eq!(
            rules.priority(&master, Some(Priority::Critical)),
            Priority::Critical
        );
    }
}
