//! Synthetic GGUF models for tests: the engine's writer (the same one `llmrr models synth`
//! uses), with helpers that put a model in a directory.

pub use llmrr_engine::gguf::{synthesize, GgufInfo, SynthSpec, TensorType};
use std::path::{Path, PathBuf};

/// Writes the tiny preset (F32, 2 layers, 512 tokens) as `dir/name.gguf`.
pub fn tiny_model(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.gguf"));
    synthesize(&SynthSpec::tiny(), &path).expect("writes the synthetic model");
    path
}

/// The engine's memory estimate for a generation model with these settings, in bytes.
pub fn estimated_bytes(path: &Path, context_size: u64, parallel: u64, prefill_chunk: u64) -> u64 {
    GgufInfo::read(path)
        .expect("reads the header")
        .estimate_memory(context_size * parallel, prefill_chunk + parallel)
        .total()
}
