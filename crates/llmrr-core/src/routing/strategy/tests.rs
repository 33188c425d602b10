use super::*;
use rand::SeedableRng;
use std::sync::atomic::AtomicUsize;

fn cand(
    name: &str,
    order: usize,
    quality: f64,
    cost: f64,
    latency: Option<f64>,
    in_flight: u32,
) -> Candidate {
    Candidate {
        name: Arc::from(name),
        quality,
        est_cost_usd: cost,
        stats: StatsSnapshot {
            latency_ms: latency,
            ttft_ms: latency.map(|l| l / 4.0),
            peak_latency_ms: latency,
            in_flight,
            ..Default::default()
        },
        weight: 1.0,
        order,
    }
}

/// cheap: low quality, cheap, slow; premium: high quality, expensive, fast; mid in between.
fn fixture() -> Vec<Candidate> {
    vec![
        cand("cheap", 0, 0.60, 0.0001, Some(900.0), 0),
        cand("mid", 1, 0.80, 0.0010, Some(500.0), 3),
        cand("premium", 2, 0.95, 0.0100, Some(300.0), 1),
    ]
}

fn names(
    kind: StrategyKind,
    c: &[Candidate],
    balanced: BalancedWeights,
    stream: bool,
) -> Vec<String> {
    let cursor = AtomicUsize::new(0);
    let input = RankInput {
        stream,
        balanced,
        cursor: &cursor,
        level: None,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    strategy(kind)
        .rank(c, &input, &mut rng)
        .iter()
        .map(|r| c[r.index].name.to_string())
        .collect()
}

fn first(kind: StrategyKind, c: &[Candidate]) -> String {
    names(kind, c, BalancedWeights::default(), false)[0].clone()
}

#[test]
fn each_strategy_on_fixed_stats() {
    let c = fixture();
    assert_eq!(first(StrategyKind::QualityFirst, &c), "premium");
    assert_eq!(first(StrategyKind::CostOptimized, &c), "cheap");
    assert_eq!(first(StrategyKind::SpeedPriority, &c), "premium");
    assert_eq!(first(StrategyKind::LeastLoaded, &c), "cheap");
    assert_eq!(first(StrategyKind::CapabilityMatch, &c), "cheap");
    assert_eq!(
        names(
            StrategyKind::CostOptimized,
            &c,
            BalancedWeights::default(),
            false
        ),
        ["cheap", "mid", "premium"]
    );
}

#[test]
fn balanced_follows_its_weights_and_stays_bounded() {
    let c = fixture();
    let quality_heavy = BalancedWeights {
        quality: 0.8,
        cost: 0.1,
        latency: 0.1,
    };
    let cost_only = BalancedWeights {
        quality: 0.0,
        cost: 1.0,
        latency: 0.0,
    };
    assert_eq!(
        names(StrategyKind::Balanced, &c, quality_heavy, false)[0],
        "premium"
    );
    assert_eq!(
        names(StrategyKind::Balanced, &c, cost_only, false)[0],
        "cheap"
    );
    // Extreme values cannot produce an infinite or out-of-range score.
    let mut wild = fixture();
    wild[0].est_cost_usd = 0.0;
    wild[2].est_cost_usd = 1e12;
    wild[1].stats.latency_ms = None;
    let cursor = AtomicUsize::new(0);
    let input = RankInput {
        stream: false,
        balanced: BalancedWeights::default(),
        cursor: &cursor,
        level: None,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for r in strategy(StrategyKind::Balanced).rank(&wild, &input, &mut rng) {
        assert!((0.0..=1.0).contains(&r.score), "{r:?}");
    }
}

#[test]
fn speed_uses_ttft_for_streams_and_explores_unmeasured() {
    let mut c = fixture();
    // Streaming: premium's TTFT (75 ms) beats mid's (125 ms) even if mid's total were lower.
    c[1].stats.latency_ms = Some(200.0);
    c[1].stats.ttft_ms = Some(125.0);
    assert_eq!(
        names(
            StrategyKind::SpeedPriority,
            &c,
            BalancedWeights::default(),
            true
        )[0],
        "premium"
    );
    assert_eq!(
        names(
            StrategyKind::SpeedPriority,
            &c,
            BalancedWeights::default(),
            false
        )[0],
        "mid"
    );
    c.push(cand("new", 3, 0.5, 0.001, None, 0));
    assert_eq!(first(StrategyKind::SpeedPriority, &c), "new");
}

#[test]
fn round_robin_rotates() {
    let c = fixture();
    let cursor = AtomicUsize::new(0);
    let input = RankInput {
        stream: false,
        balanced: BalancedWeights::default(),
        cursor: &cursor,
        level: None,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let firsts: Vec<String> = (0..6)
        .map(|_| {
            c[strategy(StrategyKind::RoundRobin).rank(&c, &input, &mut rng)[0].index]
                .name
                .to_string()
        })
        .collect();
    assert_eq!(
        firsts,
        ["cheap", "mid", "premium", "cheap", "mid", "premium"]
    );
}

#[test]
fn weighted_and_random_follow_their_distributions() {
    let mut c = fixture();
    c[0].weight = 9.0;
    c[1].weight = 1.0;
    c[2].weight = 0.0;
    let cursor = AtomicUsize::new(0);
    let input = RankInput {
        stream: false,
        balanced: BalancedWeights::default(),
        cursor: &cursor,
        level: None,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut counts = [0usize; 3];
    let mut random_counts = [0usize; 3];
    for _ in 0..10_000 {
        let plan = strategy(StrategyKind::Weighted).rank(&c, &input, &mut rng);
        counts[plan[0].index] += 1;
        assert_eq!(plan[2].index, 2, "weight 0 comes last");
        let plan = strategy(StrategyKind::Random).rank(&c, &input, &mut rng);
        assert_eq!(plan.len(), 3);
        random_counts[plan[0].index] += 1;
    }
    assert!((8_700..=9_300).contains(&counts[0]), "{counts:?}");
    assert_eq!(counts[2], 0);
    assert!(
        random_counts.iter().all(|&n| (3_000..=3_700).contains(&n)),
        "{random_counts:?}"
    );
}

#[test]
fn latency_aware_prefers_the_lighter_of_two() {
    // Two candidates: P2C always compares both, so the lower load must win every time.
    let c = vec![
        cand("busy", 0, 0.8, 0.001, Some(100.0), 9),
        cand("idle", 1, 0.8, 0.001, Some(300.0), 0),
    ];
    for _ in 0..50 {
        assert_eq!(
            first(StrategyKind::LatencyAware, &c),
            "idle",
            "100 ms x 10 > 300 ms x 1"
        );
    }
}
