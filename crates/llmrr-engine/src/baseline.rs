//! llama.cpp measured bare, the way its `llama-bench` does it: one context, no scheduler, no
//! sampler, no text. Prompt processing decodes `prompt` tokens in one batch; generation
//! decodes one token at a time `generate` times. `llmrr bench local` sets the engine's numbers
//! beside these, from the same build and file, so the ratio is the engine's own overhead.

use crate::error::{Error, Result};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    pub prompt_tokens_per_sec: f64,
    pub decode_tokens_per_sec: f64,
}

fn fail(message: impl ToString) -> Error {
    Error::Inference {
        model: "baseline".into(),
        message: message.to_string(),
    }
}

/// Medians over `reps` runs of each.
pub fn measure(
    path: &Path,
    threads: u32,
    prompt: u32,
    generate: u32,
    reps: u32,
) -> Result<Baseline> {
    let backend = crate::backend::backend().map_err(fail)?;
    let model =
        LlamaModel::load_from_file(backend, path, &LlamaModelParams::default()).map_err(fail)?;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(prompt + generate + 16))
        .with_n_batch(prompt.max(1))
        .with_n_ubatch(prompt.max(1))
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32);
    let mut ctx = model.new_context(backend, params).map_err(fail)?;
    let n_vocab = model.n_vocab();
    let token = |i: u32| LlamaToken((i as i32 * 7919 + 13) % n_vocab);
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    let mut batch = LlamaBatch::new(prompt.max(1) as usize, 1);
    // One warm-up of each, as llama-bench does.
    for rep in 0..=reps {
        ctx.clear_kv_cache();
        batch.clear();
        let tokens: Vec<LlamaToken> = (0..prompt).map(token).collect();
        batch.add_sequence(&tokens, 0, false).map_err(fail)?;
        let t = Instant::now();
        ctx.decode(&mut batch).map_err(fail)?;
        let pp_secs = t.elapsed().as_secs_f64();

        ctx.clear_kv_cache();
        let t = Instant::now();
        for i in 0..generate {
            batch.clear();
            batch.add(token(i), i as i32, &[0], true).map_err(fail)?;
            ctx.decode(&mut batch).map_err(fail)?;
        }
        let tg_secs = t.elapsed().as_secs_f64();
        if rep > 0 {
            pp.push(prompt as f64 / pp_secs);
            tg.push(generate as f64 / tg_secs);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok(Baseline {
        prompt_tokens_per_sec: median(pp),
        decode_tokens_per_sec: median(tg),
    })
}
