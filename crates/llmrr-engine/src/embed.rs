//! The worker loop of a model loaded for embeddings: each input is decoded alone and its
//! pooled vector returned, L2-normalised as OpenAI's are.
//!
//! One input per decode, on purpose: packed as several sequences into one batch, llama.cpp
//! pooled the longer inputs differently from their solo runs (cosine 0.82–0.995 in 28 of 30
//! pairs on a test model), and an embedding must not depend on what else was in the request.

use crate::error::{Error, Result};
use crate::worker::Job;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use std::sync::mpsc::Receiver;
use tokio::sync::oneshot;

pub(crate) struct EmbedJob {
    pub inputs: Vec<Vec<LlamaToken>>,
    pub reply: oneshot::Sender<Result<Vec<Vec<f32>>>>,
}

pub(crate) fn serve(name: &str, mut ctx: LlamaContext<'_>, rx: Receiver<Job>) {
    let n_batch = ctx.n_batch() as usize;
    let mut batch = LlamaBatch::new(n_batch, 1);
    while let Ok(job) = rx.recv() {
        let job = match job {
            Job::Embed(e) => e,
            Job::Generate(g) => {
                let _ = g
                    .events
                    .try_send(crate::worker::Event::Failed(Error::Unsupported {
                        model: name.to_owned(),
                        what: "is loaded for embeddings only (it has `pooling` set)".into(),
                    }));
                continue;
            }
        };
        if job.reply.is_closed() {
            continue;
        }
        let result = embed_all(name, &mut ctx, &mut batch, n_batch, &job.inputs);
        let _ = job.reply.send(result);
    }
}

fn embed_all(
    name: &str,
    ctx: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch<'_>,
    n_batch: usize,
    inputs: &[Vec<LlamaToken>],
) -> Result<Vec<Vec<f32>>> {
    let fail = |message: String| Error::Inference {
        model: name.to_owned(),
        message,
    };
    let mut out = Vec::with_capacity(inputs.len());
    for tokens in inputs {
        if tokens.len() > n_batch {
            // Checked on the request's side; kept as a guard.
            return Err(Error::InvalidRequest(format!(
                "an input has {} tokens; `{name}` embeds at most {n_batch}",
                tokens.len()
            )));
        }
        batch.clear();
        batch
            .add_sequence(tokens, 0, false)
            .map_err(|e| fail(e.to_string()))?;
        ctx.clear_kv_cache();
        ctx.decode(batch)
            .map_err(|e| fail(format!("decode: {e}")))?;
        let v = ctx
            .embeddings_seq_ith(0)
            .map_err(|e| fail(format!("embeddings: {e}")))?;
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        out.push(if norm > 0.0 {
            v.iter().map(|x| x / norm).collect()
        } else {
            v.to_vec()
        });
    }
    ctx.clear_kv_cache();
    Ok(out)
}
