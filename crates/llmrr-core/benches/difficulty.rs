//! The difficulty scorer: one decision (features, score, category) on a 2 KB prompt (target:
//! < 50 µs), and on a one-line prompt; and training on the shipped data.

#![expect(
    clippy::expect_used,
    reason = "a bench whose setup fails must stop loudly"
)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use llmrr_core::routing::difficulty::dataset::{self, Labelled};
use llmrr_core::routing::difficulty::train::{train, TrainParams};
use llmrr_core::routing::difficulty::{shipped, Difficulty, PromptView};
use llmrr_types::openai::ChatCompletionRequest;

fn two_kb_prompt() -> String {
    let paragraph = "A farmer has 17 sheep and buys 3 more every week; each sheep eats 2.5 kg \
        of hay a day, and hay costs $0.40 per kg. Write a Python function that returns the \
        cost of feeding the flock for n weeks, then explain why the total grows quadratically. ";
    paragraph.repeat(2048 / paragraph.len() + 1)[..2048].to_owned()
}

fn view(text: &str) -> PromptView<'_> {
    PromptView {
        text,
        turns: 1,
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    let weights = shipped();
    let long = two_kb_prompt();
    c.bench_function("difficulty: score + category, 2 KB prompt", |b| {
        b.iter(|| Difficulty::of(&weights, black_box(&view(&long))))
    });
    c.bench_function("difficulty: category alone, 2 KB prompt", |b| {
        b.iter(|| llmrr_core::money::category::categorize(black_box(&long)))
    });
    c.bench_function("difficulty: score + category, one line", |b| {
        b.iter(|| Difficulty::of(&weights, black_box(&view("What is the capital of France?"))))
    });
    let req: ChatCompletionRequest = serde_json::from_value(serde_json::json!({
        "model": "auto",
        "messages": [{"role": "system", "content": "You are terse."},
                     {"role": "user", "content": long}]
    }))
    .expect("a request");
    c.bench_function("difficulty: from a chat request, 2 KB prompt", |b| {
        b.iter(|| Difficulty::of_chat(&weights, black_box(&req)))
    });

    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../training/routing/");
    let mut rows: Vec<Labelled> = Vec::new();
    for file in ["mmlu.train.jsonl", "gsm8k.train.jsonl"] {
        let path = format!("{root}{file}");
        let text = std::fs::read_to_string(&path).expect("the training data");
        rows.extend(dataset::parse(&text, &path).expect("rows"));
    }
    let examples: Vec<_> = rows.iter().map(Labelled::example).collect();
    let mut g = c.benchmark_group("difficulty training");
    g.sample_size(10);
    g.bench_function("train on the shipped data (7,777 rows)", |b| {
        b.iter(|| train(black_box(&examples), &TrainParams::default()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
