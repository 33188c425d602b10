//! The engine's metrics (names in docs/METRICS.md). Recorded from the model threads and the
//! lifecycle manager through the process-wide `metrics` recorder.

use crate::worker::Finished;
use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

pub const LOAD_SECONDS: &str = "llmrr_local_load_seconds";
pub const LOADED: &str = "llmrr_local_model_loaded";
pub const MEMORY_BYTES: &str = "llmrr_local_memory_bytes";
pub const MEMORY_BUDGET_BYTES: &str = "llmrr_local_memory_budget_bytes";
pub const MEMORY_PRESSURE: &str = "llmrr_local_memory_pressure";
pub const TTFT_SECONDS: &str = "llmrr_local_ttft_seconds";
pub const PREFILL_TPS: &str = "llmrr_local_prefill_tokens_per_second";
pub const DECODE_TPS: &str = "llmrr_local_decode_tokens_per_second";
pub const PROMPT_TOKENS: &str = "llmrr_local_prompt_tokens_total";
pub const GENERATED_TOKENS: &str = "llmrr_local_generated_tokens_total";
pub const ACTIVE_SEQUENCES: &str = "llmrr_local_active_sequences";
pub const KV_USED: &str = "llmrr_local_kv_cache_used_cells";
pub const KV_CAPACITY: &str = "llmrr_local_kv_cache_cells";
pub const EVICTIONS: &str = "llmrr_local_unloads_total";
pub const PROMPT_CACHE_ENTRIES: &str = "llmrr_local_prompt_cache_entries";
pub const PROMPT_CACHE_BYTES: &str = "llmrr_local_prompt_cache_bytes";
pub const CANCELLED: &str = "llmrr_local_cancelled_total";

/// Handles for one model, made once per load.
#[derive(Clone)]
pub(crate) struct ModelGauges {
    ttft: Histogram,
    prefill_tps: Gauge,
    decode_tps: Gauge,
    prompt_tokens: Counter,
    generated_tokens: Counter,
    active: Gauge,
    kv_used: Gauge,
    kv_capacity: Gauge,
    cancelled: Counter,
    prompt_cache_entries: Gauge,
    prompt_cache_bytes: Gauge,
}

impl ModelGauges {
    pub fn new(model: &str) -> Self {
        let m = model.to_owned();
        ModelGauges {
            ttft: histogram!(TTFT_SECONDS, "model" => m.clone()),
            prefill_tps: gauge!(PREFILL_TPS, "model" => m.clone()),
            decode_tps: gauge!(DECODE_TPS, "model" => m.clone()),
            prompt_tokens: counter!(PROMPT_TOKENS, "model" => m.clone()),
            generated_tokens: counter!(GENERATED_TOKENS, "model" => m.clone()),
            active: gauge!(ACTIVE_SEQUENCES, "model" => m.clone()),
            kv_used: gauge!(KV_USED, "model" => m.clone()),
            kv_capacity: gauge!(KV_CAPACITY, "model" => m.clone()),
            cancelled: counter!(CANCELLED, "model" => m.clone()),
            prompt_cache_entries: gauge!(PROMPT_CACHE_ENTRIES, "model" => m.clone()),
            prompt_cache_bytes: gauge!(PROMPT_CACHE_BYTES, "model" => m),
        }
    }

    /// Kept prompts held in memory beyond the slots, and their bytes.
    pub fn prompt_cache(&self, entries: usize, bytes: usize) {
        self.prompt_cache_entries.set(entries as f64);
        self.prompt_cache_bytes.set(bytes as f64);
    }

    pub fn ttft(&self, d: std::time::Duration) {
        self.ttft.record(d.as_secs_f64());
    }

    pub fn cancelled(&self) {
        self.cancelled.increment(1);
    }

    pub fn active(&self, n: usize) {
        self.active.set(n as f64);
    }

    pub fn kv_used(&self, cells: u64) {
        self.kv_used.set(cells as f64);
    }

    pub fn kv_capacity(&self, cells: u64) {
        self.kv_capacity.set(cells as f64);
    }

    /// Per-request rates of the last finished request.
    pub fn finished(&self, f: &Finished) {
        self.prompt_tokens.increment(f.prompt_tokens.into());
        self.generated_tokens.increment(f.completion_tokens.into());
        if f.prefill.as_secs_f64() > 0.0 {
            // Only the tokens prefilled: reused ones were not.
            self.prefill_tps.set(
                f.prompt_tokens.saturating_sub(f.cached_tokens) as f64 / f.prefill.as_secs_f64(),
            );
        }
        if f.completion_tokens > 1 && f.decode.as_secs_f64() > 0.0 {
            self.decode_tps
                .set((f.completion_tokens - 1) as f64 / f.decode.as_secs_f64());
        }
    }
}

pub(crate) fn model_loaded(model: &str, loaded: bool, bytes: u64, load_secs: Option<f64>) {
    gauge!(LOADED, "model" => model.to_owned()).set(if loaded { 1.0 } else { 0.0 });
    gauge!(MEMORY_BYTES, "model" => model.to_owned()).set(if loaded { bytes as f64 } else { 0.0 });
    if let Some(s) = load_secs {
        histogram!(LOAD_SECONDS, "model" => model.to_owned()).record(s);
    }
    if !loaded {
        counter!(EVICTIONS, "model" => model.to_owned()).increment(1);
    }
}

/// A model known but not loaded yet.
pub(crate) fn registered(model: &str) {
    gauge!(LOADED, "model" => model.to_owned()).set(0.0);
    gauge!(MEMORY_BYTES, "model" => model.to_owned()).set(0.0);
}

pub(crate) fn memory(budget: u64, pressure: u8) {
    gauge!(MEMORY_BUDGET_BYTES).set(budget as f64);
    gauge!(MEMORY_PRESSURE).set(f64::from(pressure));
}
