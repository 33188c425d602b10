//! `llmrr prices`, `llmrr budgets`, `llmrr users`, `llmrr teams`, `llmrr spend`: the money
//! layer, directly on the configured store (like `llmrr keys`).

use crate::cli::{BudgetsCommand, Global, SpendArgs, TeamsCommand, UsersCommand};
use anyhow::{bail, Context, Result};
use llmrr_core::config::Config;
use llmrr_core::money::budget::{BudgetSpec, Scope};
use llmrr_core::money::{self, price, Money};
use llmrr_core::store::{GroupBy, SpendQuery, Store};

async fn open(global: &Global) -> Result<(Config, Store)> {
    let config = global.load_for_store()?;
    let store = Store::connect(config.store.url.expose())
        .await
        .with_context(|| format!("cannot open the store {}", config.store.display_url))?;
    Ok((config, store))
}

/// The money layer on the configured shared state (what is reserved lives there).
async fn money(config: &Config, store: Store) -> Result<Money> {
    Ok(Money::start(config, store).await?)
}

pub fn prices(json: bool) -> Result<()> {
    let all = price::catalog();
    if json {
        println!("{}", serde_json::to_string_pretty(all)?);
        return Ok(());
    }
    println!(
        "{:<28} {:<10} {:>9} {:>9} {:>10} {:>11}  AS OF",
        "MODEL", "PROVIDER", "INPUT", "OUTPUT", "CACHED IN", "CACHE WRITE"
    );
    for p in all {
        let opt = |d: Option<rust_decimal::Decimal>| d.map_or("-".into(), |d| d.to_string());
        println!(
            "{:<28} {:<10} {:>9} {:>9} {:>10} {:>11}  {}",
            p.name,
            p.provider,
            p.input.to_string(),
            p.output.to_string(),
            opt(p.cached_input),
            opt(p.cache_write),
            p.as_of
        );
    }
    eprintln!("USD per million tokens; a model matched by its upstream name gets these prices unless the config sets its own");
    Ok(())
}

pub async fn budgets(global: &Global, command: &BudgetsCommand) -> Result<()> {
    let (config, store) = open(global).await?;
    let m = money(&config, store.clone()).await?;
    match command {
        BudgetsCommand::Set {
            scope,
            period,
            limit_usd,
            limit_tokens,
            action,
            alert_percent,
            default_max_tokens,
        } => {
            let b = m
                .set_budget(BudgetSpec {
                    scope: scope.clone(),
                    period: period.clone(),
                    limit_usd: limit_usd.clone().map(serde_json::Value::String),
                    limit_tokens: *limit_tokens,
                    action: action.clone(),
                    alert_percent: alert_percent.clone(),
                    default_max_tokens: *default_max_tokens,
                })
                .await?;
            println!("{}", b.id);
            eprintln!("budget {} ({}) set", b.scope, b.period.as_str());
        }
        BudgetsCommand::List { json } => {
            let all = m.status().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!(
                    "{:<34} {:<26} {:<8} {:<9} {:>10} {:>12} {:>12}  RESETS / RUNS OUT",
                    "ID", "SCOPE", "PERIOD", "ACTION", "LIMIT", "SPENT", "REMAINING"
                );
                for s in all {
                    println!(
                        "{:<34} {:<26} {:<8} {:<9} {:>10} {:>12} {:>12}  {} / {}",
                        s.budget.id,
                        s.budget.scope.to_string(),
                        s.budget.period.as_str(),
                        s.budget.action.as_str(),
                        s.budget
                            .limit_usd
                            .map_or("-".into(), |l| format!("${}", l.normalize())),
                        format!("${}", s.spent_usd),
                        s.remaining_usd.map_or("-".into(), |r| format!("${r}")),
                        s.resets_at.as_deref().unwrap_or("never"),
                        s.projected_exhaustion.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        BudgetsCommand::Rm { id } => {
            if m.remove_budget(id).await? == 0 {
                bail!("no budget `{id}`");
            }
            println!("removed {id}");
        }
    }
    store.close().await;
    Ok(())
}

pub async fn users(global: &Global, command: &UsersCommand) -> Result<()> {
    let (_, store) = open(global).await?;
    match command {
        UsersCommand::Set {
            id,
            name,
            email,
            team,
        } => {
            let u = store
                .upsert_user(
                    id,
                    name.as_deref().unwrap_or(id),
                    email.as_deref(),
                    team.as_deref(),
                )
                .await?;
            println!("{}", serde_json::to_string(&u)?);
        }
        UsersCommand::List => {
            println!("{:<24} {:<24} {:<28} TEAM", "ID", "NAME", "EMAIL");
            for u in store.list_users().await? {
                println!(
                    "{:<24} {:<24} {:<28} {}",
                    u.id,
                    u.name,
                    u.email.as_deref().unwrap_or("-"),
                    u.team_id.as_deref().unwrap_or("-")
                );
            }
        }
        UsersCommand::Rm { id } => {
            if !store.delete_user(id).await? {
                bail!("no user `{id}`");
            }
            println!("removed {id}");
        }
    }
    store.close().await;
    Ok(())
}

pub async fn teams(global: &Global, command: &TeamsCommand) -> Result<()> {
    let (_, store) = open(global).await?;
    match command {
        TeamsCommand::Set { id, name } => {
            let t = store.upsert_team(id, name.as_deref().unwrap_or(id)).await?;
            println!("{}", serde_json::to_string(&t)?);
        }
        TeamsCommand::List => {
            println!("{:<24} NAME", "ID");
            for t in store.list_teams().await? {
                println!("{:<24} {}", t.id, t.name);
            }
        }
        TeamsCommand::Rm { id } => {
            if !store.delete_team(id).await? {
                bail!("no team `{id}`");
            }
            println!("removed {id}");
        }
    }
    store.close().await;
    Ok(())
}

pub async fn spend(global: &Global, args: &SpendArgs) -> Result<()> {
    let (config, store) = open(global).await?;
    let m = money(&config, store.clone()).await?;
    let now = m.now().as_millisecond();
    let q = SpendQuery {
        from_ms: money::parse_time(&args.from, now)?,
        to_ms: args
            .to
            .as_deref()
            .map(|t| money::parse_time(t, now))
            .transpose()?
            .unwrap_or(now + 1),
        scope: Scope::parse(&args.scope)?,
        group_by: args.by.as_deref().map(GroupBy::parse).transpose()?,
        tz_offset_ms: i64::from(m.time_zone().to_offset(m.now()).seconds()) * 1000,
        limit: 1000,
    };
    let report = m.spend_report(&q).await?;
    match args.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&report)?),
        "csv" => print!("{}", report.to_csv()),
        "table" => {
            let t = &report.totals;
            println!(
                "{} to {} ({}): {} requests, ${} ({} prompt / {} cached / {} completion tokens)",
                report.from,
                report.to,
                report.scope,
                t.requests,
                t.cost_usd,
                t.prompt_tokens,
                t.cached_tokens,
                t.completion_tokens
            );
            if !report.groups.is_empty() {
                println!(
                    "{:<32} {:>9} {:>14} {:>12}",
                    "GROUP", "REQUESTS", "COST USD", "TOKENS"
                );
                for g in &report.groups {
                    println!(
                        "{:<32} {:>9} {:>14} {:>12}",
                        g.group,
                        g.totals.requests,
                        g.totals.cost_usd,
                        g.totals.prompt_tokens + g.totals.completion_tokens
                    );
                }
            }
            let s = &report.savings;
            println!(
                "saved: cache ${}, routing ${}, local ${}",
                s.cache.saved_usd, s.routing.saved_usd, s.local.saved_usd
            );
            if args.forecast {
                let f = m.forecast(&q.scope, true).await?;
                for (name, v) in [
                    ("24h", &f.next_24h),
                    ("7d", &f.next_7d),
                    ("30d", &f.next_30d),
                ] {
                    println!(
                        "forecast next {name}: ${:.2} (95%: ${:.2} – ${:.2})",
                        v.expected_usd, v.low_usd, v.high_usd
                    );
                }
            }
        }
        other => bail!("--format {other}: use table, json or csv"),
    }
    store.close().await;
    Ok(())
}
