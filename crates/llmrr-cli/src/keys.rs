//! `llmrr keys …` and `llmrr limits …`: straight on the configured store, no server needed
//! (running servers see the changes within a second).

use crate::cli::{Global, KeysCommand, LimitsCommand};
use anyhow::{bail, Context, Result};
use llmrr_core::auth::{create_key, display_prefix, hash_key, new_secret, KeyRules, NewKey};
use llmrr_core::limits::{check_scope, LimitSet};
use llmrr_core::store::Store;

async fn open(global: &Global) -> Result<(llmrr_core::config::Config, Store)> {
    let config = global.load_for_store()?;
    let store = Store::connect(config.store.url.expose())
        .await
        .with_context(|| format!("cannot open the store {}", config.store.display_url))?;
    Ok((config, store))
}

fn when(ms: Option<i64>) -> String {
    ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| "-".into(), |t| t.strftime("%Y-%m-%dT%H:%MZ").to_string())
}

pub async fn limits(global: &Global, command: &LimitsCommand) -> Result<()> {
    let (_, store) = open(global).await?;
    match command {
        LimitsCommand::Set { scope, limits } => {
            let set: LimitSet = serde_json::from_str(limits).context("the limits JSON")?;
            check_scope(scope)?;
            set.check(scope)?;
            store.set_limits(scope, &set).await?;
            println!("{scope}: {}", serde_json::to_string(&set)?);
        }
        LimitsCommand::List => {
            for (scope, set) in store.list_limits().await? {
                println!("{scope:<40} {}", serde_json::to_string(&set)?);
            }
        }
        LimitsCommand::Rm { scope } => {
            if !store.remove_limits(scope).await? {
                bail!("no stored limit rule for `{scope}`");
            }
            println!("removed {scope}");
        }
    }
    store.close().await;
    Ok(())
}

pub async fn run(global: &Global, command: &KeysCommand) -> Result<()> {
    let (config, store) = open(global).await?;
    match command {
        KeysCommand::Create {
            name,
            user,
            team,
            tier,
            models,
            metadata,
            expires_in,
            limits,
            admin,
        } => {
            let limits = limits
                .as_deref()
                .map(serde_json::from_str::<LimitSet>)
                .transpose()
                .context("--limits must be a JSON object of limits")?;
            let metadata = metadata
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .context("--metadata must be a JSON object")?;
            let created = create_key(
                &store,
                &KeyRules::from_config(&config),
                NewKey {
                    name: name.clone(),
                    user: user.clone(),
                    team: team.clone(),
                    tier: tier.clone(),
                    models: models.clone(),
                    metadata,
                    expires_in_secs: *expires_in,
                    limits,
                    admin: *admin,
                    expires_at: None,
                },
            )
            .await?;
            println!("{}", created.key);
            eprintln!(
                "created key {} ({}); the secret above is shown only this once",
                created.row.id, created.row.name
            );
        }
        KeysCommand::List => {
            println!(
                "{:<40} {:<20} {:<16} {:<12} {:<12} {:<17} {:<17} STATUS",
                "ID", "NAME", "PREFIX", "USER", "TEAM", "EXPIRES", "LAST USED"
            );
            let now = llmrr_core::store::now_ms();
            for k in store.list_keys().await? {
                let status = if k.revoked_at_ms.is_some() {
                    "revoked"
                } else if k.expires_at_ms.is_some_and(|t| t <= now) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<40} {:<20} {:<16} {:<12} {:<12} {:<17} {:<17} {}",
                    k.id,
                    k.name,
                    format!("{}…", k.key_prefix),
                    k.owner_user.as_deref().unwrap_or("-"),
                    k.owner_team.as_deref().unwrap_or("-"),
                    when(k.expires_at_ms),
                    when(k.last_used_at_ms),
                    if k.admin {
                        format!("{status} (admin)")
                    } else {
                        status.to_owned()
                    }
                );
            }
        }
        KeysCommand::Rotate { id, grace } => {
            let secret = new_secret();
            let until = llmrr_core::store::now_ms()
                .saturating_add((*grace).min(366 * 86_400) as i64 * 1000);
            if !store
                .rotate_key(id, &hash_key(&secret), display_prefix(&secret), until)
                .await?
            {
                bail!("no active key with id `{id}`");
            }
            println!("{secret}");
            eprintln!(
                "rotated {id}; the old secret works until {}; the new one above is shown only \
                 this once",
                when(Some(until))
            );
        }
        KeysCommand::Revoke { id } => {
            if !store.revoke_key(id).await? {
                bail!("no active key with id `{id}`");
            }
            println!("revoked {id}");
        }
    }
    store.close().await;
    Ok(())
}
