//! Synthetic GGUF models for tests: the engine's writer (the same one `llmrr models synth`
//! uses), with helpers that put a model in a directory.

use llmrr_core::config::LocalModelSpec;
pub use llmrr_engine::gguf::{synthesize, GgufInfo, SynthSpec, TensorType};
use std::path::{Path, PathBuf};

/// Writes the tiny preset (F32, 2 layers, 512 tokens) as `dir/name.gguf`.
pub fn tiny_model(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.gguf"));
    synthesize(&SynthSpec::tiny(), &path).expect("writes the synthetic model");
    path
}

/// [`tiny_model`] without a chat template (chats are refused; raw completions work).
pub fn tiny_model_without_template(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.gguf"));
    let spec = SynthSpec {
        chat_template: false,
        ..SynthSpec::tiny()
    };
    synthesize(&spec, &path).expect("writes the synthetic model");
    path
}

/// The engine's own memory estimate for a generation model with these settings, in bytes.
pub fn estimated_bytes(path: &Path, context_size: u32, parallel: u32, prefill_chunk: u32) -> u64 {
    let info = GgufInfo::read(path).expect("reads the header");
    let spec = LocalModelSpec {
        path: path.to_owned(),
        context_size,
        threads: 1,
        parallel,
        keep_alive: std::time::Duration::ZERO,
        pinned: false,
        gpu_layers: 0,
        prefill_chunk,
        pooling: None,
        kv_type: Default::default(),
        prefix_cache_share: 1.0,
        prompt_cache_mb: None,
    };
    llmrr_engine::lifecycle::estimate(&info, &spec).total()
}
