//! The worker loop of a model loaded for embeddings: inputs of a request (and of requests
//! queued behind it) are packed into one batch as separate sequences, decoded together, and
//! each sequence's pooled vector is returned, L2-normalised as OpenAI's are.

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

pub(crate) fn serve(name: &str, mut ctx: LlamaContext<'_>, rx: Receiver<Job>, n_seq: usize) {
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
        let result = embed_all(name, &mut ctx, &mut batch, n_batch, n_seq, &job.inputs);
        let _ = job.reply.send(result);
    }
}

fn embed_all(
    name: &str,
    ctx: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch<'_>,
    n_batch: usize,
    n_seq: usize,
    inputs: &[Vec<LlamaToken>],
) -> Result<Vec<Vec<f32>>> {
    let fail = |message: String| Error::Inference {
        model: name.to_owned(),
        message,
    };
    let mut out = Vec::with_capacity(inputs.len());
    let mut next = 0;
    while next < inputs.len() {
        batch.clear();
        let mut used = 0;
        let mut group = 0;
        while next + group < inputs.len() && group < n_seq {
            let tokens = &inputs[next + group];
            if used + tokens.len() > n_batch {
                break;
            }
            batch
                .add_sequence(tokens, group as i32, false)
                .map_err(|e| fail(e.to_string()))?;
            used += tokens.len();
            group += 1;
        }
        if group == 0 {
            // Checked on the request's side; kept as a guard.
            return Err(Error::InvalidRequest(format!(
                "an input has {} tokens; `{name}` embeds at most {n_batch}",
                inputs[next].len()
            )));
        }
        ctx.clear_kv_cache();
        ctx.decode(batch)
            .map_err(|e| fail(format!("decode: {e}")))?;
        for s in 0..group {
            let v = ctx
                .embeddings_seq_ith(s as i32)
                .map_err(|e| fail(format!("embeddings: {e}")))?;
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            out.push(if norm > 0.0 {
                v.iter().map(|x| x / norm).collect()
            } else {
                v.to_vec()
            });
        }
        next += group;
    }
    ctx.clear_kv_cache();
    Ok(out)
}
