//! One routing decision over 50 candidates with live stats (target: < 5 µs), for the
//! strategies whose work grows with the candidates.

#![expect(
    clippy::expect_used,
    reason = "a bench whose setup fails must stop loudly"
)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use llmrr_core::auth::KeyContext;
use llmrr_core::config::{self, ConfigSource, Env, StrategyKind};
use llmrr_core::models::ModelRegistry;
use llmrr_core::routing::features::Features;
use llmrr_core::routing::options::RequestOptions;
use llmrr_core::routing::rollout::RolloutBook;
use llmrr_core::routing::{PlanRequest, Router};
use llmrr_core::store::Store;

const CANDIDATES: usize = 50;

fn config_text() -> String {
    let mut t = String::new();
    for i in 0..CANDIDATES {
        t.push_str(&format!(
            "[[models]]\nname = \"m{i}\"\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
             quality = {q}\ninput_cost_per_mtok = {c}\noutput_cost_per_mtok = {o}\ncontext_window = 128000\n\n",
            q = 0.5 + (i % 10) as f64 / 20.0,
            c = 0.1 + i as f64 / 10.0,
            o = 0.4 + i as f64 / 5.0,
        ));
    }
    let names: Vec<String> = (0..CANDIDATES).map(|i| format!("\"m{i}\"")).collect();
    t.push_str(&format!(
        "[[routes]]\nname = \"auto\"\nmodels = [{}]\n",
        names.join(", ")
    ));
    t
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config::load(
        ConfigSource::Text {
            name: "bench",
            toml: &config_text(),
        },
        None,
        &Env::Map(Default::default()),
    )
    .expect("config");
    let store = rt
        .block_on(Store::connect(&format!(
            "sqlite://{}/b.db",
            dir.path().display()
        )))
        .expect("store");
    let rollouts = rt.block_on(RolloutBook::load(store)).expect("rollouts");
    let models = ModelRegistry::build(&cfg, None).expect("models");
    for (i, m) in models.all().iter().enumerate() {
        m.stats
            .seed(200.0 + (i * 37 % 500) as f64, 50.0 + (i * 13 % 200) as f64);
    }
    let router = Router::new(&cfg.routes, cfg.routing.clone(), rollouts, &models);
    let key = KeyContext::default();
    let features = Features {
        prompt_tokens: 800,
        max_output_tokens: Some(256),
        ..Default::default()
    };
    for kind in [
        StrategyKind::Balanced,
        StrategyKind::CostOptimized,
        StrategyKind::LatencyAware,
        StrategyKind::RoundRobin,
    ] {
        let options = RequestOptions {
            strategy: Some(kind),
            ..Default::default()
        };
        c.bench_function(&format!("plan 50 candidates {}", kind.as_str()), |b| {
            b.iter(|| {
                let plan = router
                    .plan(
                        &models,
                        PlanRequest {
                            name: "auto",
                            key: &key,
                            features,
                            options: &options,
                            explain: false,
                            prompt: None,
                            dry_run: false,
                        },
                    )
                    .expect("a plan");
                black_box(plan.attempts.len())
            })
        });
    }
    let options = RequestOptions::default();
    c.bench_function("plan 50 candidates balanced, explained", |b| {
        b.iter(|| {
            let plan = router
                .plan(
                    &models,
                    PlanRequest {
                        name: "auto",
                        key: &key,
                        features,
                        options: &options,
                        explain: true,
                        prompt: None,
                        dry_run: false,
                    },
                )
                .expect("a plan");
            black_box(plan.decision.ranking.len())
        })
    });
    c.bench_function("plan a direct model", |b| {
        b.iter(|| {
            let plan = router
                .plan(
                    &models,
                    PlanRequest {
                        name: "m7",
                        key: &key,
                        features,
                        options: &options,
                        explain: false,
                        prompt: None,
                        dry_run: false,
                    },
                )
                .expect("a plan");
            black_box(plan.attempts.len())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
