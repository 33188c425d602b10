//! `llmrr keys …`: straight on the configured store, no server needed.

use crate::cli::{Global, KeysCommand};
use anyhow::{bail, Context, Result};
use llmrr_core::auth::{create_key, KeyRules, NewKey};
use llmrr_core::store::Store;

pub async fn run(global: &Global, command: &KeysCommand) -> Result<()> {
    let config = global.load_for_store()?;
    let store = Store::connect(config.store.url.expose())
        .await
        .with_context(|| format!("cannot open the store {}", config.store.display_url))?;
    match command {
        KeysCommand::Create {
            name,
            user,
            team,
            tier,
            models,
            metadata,
        } => {
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
                "{:<40} {:<20} {:<16} {:<12} {:<12} STATUS",
                "ID", "NAME", "PREFIX", "USER", "TEAM"
            );
            for k in store.list_keys().await? {
                println!(
                    "{:<40} {:<20} {:<16} {:<12} {:<12} {}",
                    k.id,
                    k.name,
                    format!("{}…", k.key_prefix),
                    k.owner_user.as_deref().unwrap_or("-"),
                    k.owner_team.as_deref().unwrap_or("-"),
                    if k.revoked_at_ms.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
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
