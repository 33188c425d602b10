//! `llmrr router train|eval|score`: the difficulty scorer's weights, made and measured here
//! (the work is in `llmrr_core::routing::difficulty`).

use crate::cli::{Global, RouterCommand};
use anyhow::{bail, Context, Result};
use llmrr_core::routing::difficulty::dataset::{self, DatasetReport, Labelled, Measured};
use llmrr_core::routing::difficulty::train::{train, Example, TrainParams};
use llmrr_core::routing::difficulty::{self, Difficulty, PromptView, Weights};
use llmrr_core::routing::feedback;
use llmrr_core::store::Store;
use std::path::{Path, PathBuf};

pub async fn run(global: &Global, command: &RouterCommand) -> Result<()> {
    match command {
        RouterCommand::Train {
            files,
            from_log,
            route,
            out,
        } => {
            let mut rows: Vec<Example> = Vec::new();
            for (name, set) in read_all(files)? {
                eprintln!("{name}: {} rows", set.len());
                rows.extend(set.iter().map(Labelled::example));
            }
            if *from_log {
                let logged = from_log_rows(global, route.as_deref()).await?;
                eprintln!("request log: {} rows with feedback", logged.len());
                rows.extend(logged.iter().map(Labelled::example));
            }
            if rows.is_empty() {
                bail!("no rows to train on (give files of labelled prompts, or --from-log)");
            }
            let weights = train(&rows, &TrainParams::default());
            std::fs::write(out, weights.to_bytes())
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "wrote {} ({} rows; default threshold {:.4}); a route loads it with scorer = \"{}\"",
                out.display(),
                weights.trained_rows,
                weights.default_threshold,
                out.display()
            );
            Ok(())
        }
        RouterCommand::Eval { files, json } => {
            let sets = read_all(files)?;
            if sets.is_empty() {
                bail!("give one or more files of labelled prompts");
            }
            let reports = dataset::cross_validate(&sets, &TrainParams::default());
            if *json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                print_reports(&reports);
            }
            Ok(())
        }
        RouterCommand::Score { prompt, weights } => {
            let weights = match weights {
                Some(path) => load_weights(path)?,
                None => (*difficulty::shipped()).clone(),
            };
            let d = Difficulty::of(
                &weights,
                &PromptView {
                    text: prompt,
                    turns: 1,
                    ..Default::default()
                },
            );
            println!(
                "score {:.4} (threshold {:.4}), category {}",
                d.score, weights.default_threshold, d.category
            );
            Ok(())
        }
    }
}

fn load_weights(path: &Path) -> Result<Weights> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Weights::from_bytes(&bytes, &path.display().to_string())?)
}

fn read_all(files: &[PathBuf]) -> Result<Vec<(String, Vec<Labelled>)>> {
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((name, dataset::parse(&text, &path.display().to_string())?))
        })
        .collect()
}

async fn from_log_rows(global: &Global, route: Option<&str>) -> Result<Vec<Labelled>> {
    let config = global.load()?;
    let store = Store::connect(config.store.url.expose())
        .await
        .with_context(|| format!("cannot open the store {}", config.store.display_url))?;
    let strongest = |name: &str| feedback::strongest_model(&config, name).map(str::to_owned);
    Ok(feedback::labelled_from_log(&store, route, strongest).await?)
}

fn print_reports(reports: &[DatasetReport]) {
    println!(
        "{:<20} {:>6}  {:<18} {:>6} {:>8} {:>8}",
        "DATASET", "ROWS", "ROUTER", "APGR", "50% GAP", "80% GAP"
    );
    for r in reports {
        let line = |name: &str, m: &Measured| {
            println!(
                "{:<20} {:>6}  {:<18} {:>6.3} {:>7.1}% {:>7.1}%",
                r.name,
                r.rows,
                name,
                m.apgr,
                m.share_50 * 100.0,
                m.share_80 * 100.0
            );
        };
        line("difficulty scorer", &r.scorer);
        if let Some(p) = &r.subject_prior {
            line("per-subject prior", p);
        }
        line("prompt length", &r.prompt_length);
        line("random", &r.random);
        println!(
            "{:<20} weak-only quality {:.3}, strong-only {:.3}",
            "", r.weak_quality, r.strong_quality
        );
    }
    eprintln!(
        "APGR: area under the quality-gap-recovered curve as the share sent to the strong model \
         goes 0→100 % (random 0.5); GAP columns: strong-call share needed for that part of the \
         gap; 5-fold cross-validation, mean of the folds"
    );
}
