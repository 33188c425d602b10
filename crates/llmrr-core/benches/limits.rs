//! The in-process cost of limits on one request (target: < 5 µs): `Limits::admit` for a key
//! with requests- and tokens-per-minute limits and a concurrency limit, then the settle; and
//! a model queue's uncontended slot.

#![expect(
    clippy::expect_used,
    reason = "a bench whose setup fails must stop loudly"
)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use llmrr_core::auth::KeyContext;
use llmrr_core::config::{self, ConfigSource, Env};
use llmrr_core::limits::{Gate, LimitSet, Limits, Priority};
use llmrr_core::money::Money;
use llmrr_core::shared::SharedState;
use llmrr_core::store::Store;
use std::sync::OnceLock;
use std::time::Duration;

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
            toml: "[[models]]\nname = \"m\"\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n",
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
    let money = rt
        .block_on(Money::start(&cfg, store.clone()))
        .expect("money");
    let limits = rt
        .block_on(Limits::start(&cfg, store, None, money))
        .expect("limits");
    let rule = LimitSet {
        rpm: Some(1 << 40),
        tpm: Some(1 << 45),
        max_concurrent: Some(1 << 20),
        ..Default::default()
    };
    rt.block_on(limits.set("key:k1", &rule)).expect("rule");
    let key = KeyContext {
        key_id: Some("k1".into()),
        ..Default::default()
    };
    c.bench_function(
        "limits admit + settle (rpm, tpm, concurrency; in process)",
        |b| {
            b.iter(|| {
                rt.block_on(async {
                    let rate = OnceLock::new();
                    let ticket = limits
                        .admit(&key, "req_1", "m", 900, None, &rate)
                        .await
                        .expect("admitted");
                    if let Some(work) = ticket.settle(700) {
                        work.await;
                    }
                    black_box(rate.get().is_some())
                })
            })
        },
    );
    let unlimited = KeyContext {
        key_id: Some("k2".into()),
        ..Default::default()
    };
    c.bench_function("limits admit, no rule for the key", |b| {
        b.iter(|| {
            rt.block_on(async {
                let rate = OnceLock::new();
                let ticket = limits
                    .admit(&unlimited, "req_2", "m", 900, None, &rate)
                    .await
                    .expect("admitted");
                black_box(ticket.class)
            })
        })
    });
    // The same on Redis (when one answers at LLMRR_TEST_REDIS_URL or 127.0.0.1:6379): the
    // admit is on the request path, the settle runs after the answer (spawned here too).
    let url =
        std::env::var("LLMRR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("llmrr-bench-{}", std::process::id());
    let shared = rt
        .block_on(SharedState::redis(&url, &prefix))
        .expect("a redis URL");
    if rt.block_on(shared.rebuild(&[], true)).is_ok() {
        let store = rt
            .block_on(Store::connect(&format!(
                "sqlite://{}/r.db",
                dir.path().display()
            )))
            .expect("store");
        let money = rt
            .block_on(Money::start(&cfg, store.clone()))
            .expect("money");
        let on_redis = rt
            .block_on(Limits::start(
                &cfg,
                store,
                Some(shared.scoped("limits")),
                money,
            ))
            .expect("limits");
        rt.block_on(on_redis.set("key:k1", &rule)).expect("rule");
        c.bench_function("limits admit (rpm, tpm, concurrency; Redis)", |b| {
            b.iter(|| {
                rt.block_on(async {
                    let rate = OnceLock::new();
                    let ticket = on_redis
                        .admit(&key, "req_1", "m", 900, None, &rate)
                        .await
                        .expect("admitted");
                    if let Some(work) = ticket.settle(700) {
                        tokio::spawn(work);
                    }
                    black_box(rate.get().is_some())
                })
            })
        });
    } else {
        eprintln!("no Redis at {url}: the Redis bench is skipped");
    }
    let gate = Gate::new("m".into(), 64, 256);
    c.bench_function("model queue: a free slot, taken and given back", |b| {
        b.iter(|| {
            rt.block_on(async {
                let until = tokio::time::Instant::now() + Duration::from_secs(60);
                let slot = gate
                    .acquire(Priority::Normal, until, None)
                    .await
                    .expect("a slot");
                drop(black_box(slot));
            })
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
