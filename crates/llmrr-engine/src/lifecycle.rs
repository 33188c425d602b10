//! The lifecycle manager: which local models are loaded, and when to load and unload them.
//!
//! - A model is loaded on first use; requests arriving meanwhile wait for that one load.
//! - Loads run in their own task, so a client that hangs up never leaves a model half-loaded.
//! - Memory is budgeted by estimate (weights + KV cache + compute buffer, from the GGUF
//!   header), corrected after each load by what the load was measured to add to the process's
//!   resident memory (the larger of the two counts, for the next load too). Loading a model that does not fit first unloads idle models, least recently used
//!   first; a model with requests in flight, or pinned, is never unloaded. If it still does not
//!   fit: a 503 that says what holds the memory.
//! - Pressure levels at 70 / 85 / 95 % of the budget are logged and exported; at 95 % idle
//!   unpinned models are unloaded.
//! - A reaper unloads models idle for longer than their `keep_alive`.

use crate::error::{Error, Result};
use crate::gguf::{GgufInfo, MemoryEstimate};
use crate::metrics;
use crate::worker::LoadedModel;
use llmrr_core::config::{LocalConfig, LocalModelSpec, MemoryBudget};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The in-process engine: every local model and the memory they share.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    budget: u64,
    state: Mutex<HashMap<Arc<str>, Slot>>,
    /// Woken whenever a load ends (well or not).
    loads: Notify,
}

struct Slot {
    spec: LocalModelSpec,
    estimate: MemoryEstimate,
    /// The resident memory the last load added, where measured.
    measured: Option<u64>,
    phase: Phase,
    in_flight: usize,
    last_used: Instant,
    loads: u64,
    last_load: Option<Duration>,
    last_error: Option<String>,
    /// Load attempts started, and the last one that failed.
    attempt: u64,
    failed_attempt: u64,
    /// The last request's own keep-alive (Ollama's `keep_alive`), over the spec's.
    keep_alive: Option<Duration>,
}

enum Phase {
    Unloaded,
    Loading,
    Loaded(Arc<LoadedModel>),
}

impl Slot {
    /// What the model is budgeted at: the larger of the estimate and the last measurement —
    /// compared without the prompt cache, which is empty when a load is measured.
    fn footprint(&self) -> u64 {
        let cache = self.estimate.prompt_cache;
        footprint(self.estimate.total() - cache, self.measured) + cache
    }

    /// What loading it needs: its footprint, or the estimate where a measurement alone is
    /// over the budget (the load is tried, and measured again, rather than refused for good).
    fn need(&self, budget: u64) -> u64 {
        match self.footprint() {
            f if f > budget => self.estimate.total(),
            f => f,
        }
    }

    fn holds_memory(&self) -> bool {
        !matches!(self.phase, Phase::Unloaded)
    }

    /// How long the model stays loaded once idle.
    fn keep_alive(&self) -> Duration {
        self.keep_alive.unwrap_or(self.spec.keep_alive)
    }

    fn evictable(&self) -> bool {
        matches!(self.phase, Phase::Loaded(_)) && self.in_flight == 0 && !self.spec.pinned
    }
}

/// A model in use: counted as in flight until dropped.
pub(crate) struct Lease {
    engine: Arc<Inner>,
    name: Arc<str>,
    pub model: Arc<LoadedModel>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.engine.lock();
        if let Some(slot) = state.get_mut(&self.name) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
            slot.last_used = Instant::now();
        }
    }
}

/// `/admin/models`' view of one local model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelStatus {
    pub path: String,
    pub state: &'static str,
    pub pinned: bool,
    pub in_flight: usize,
    pub memory_estimate_bytes: MemoryEstimate,
    pub memory_estimate_total_bytes: u64,
    /// The resident memory the last load added (measured after a warm-up token).
    pub memory_measured_bytes: Option<u64>,
    /// What the budget counts: the larger of the estimate and the measurement.
    pub memory_budgeted_bytes: u64,
    pub last_load_ms: Option<u64>,
    pub loads: u64,
    pub idle_secs: f64,
    pub keep_alive_secs: f64,
    pub last_error: Option<String>,
}

/// Growth of the process's resident memory during a load that is not told apart from other
/// activity (requests, other models): a measurement counts only past the estimate plus this
/// or a tenth of the estimate, whichever is larger.
const MEASURE_NOISE: u64 = 32 << 20;

/// The bytes a model is budgeted at: its estimate, or the measurement where that is clearly
/// (beyond [`MEASURE_NOISE`]) larger.
fn footprint(estimate: u64, measured: Option<u64>) -> u64 {
    match measured {
        Some(m) if m > estimate + MEASURE_NOISE.max(estimate / 10) => m,
        _ => estimate,
    }
}

/// How full the budget is: 0 below 70 %, 1 from 70 %, 2 from 85 %, 3 from 95 %.
fn pressure(used: u64, budget: u64) -> u8 {
    let pct = used as f64 / budget.max(1) as f64 * 100.0;
    match pct {
        p if p >= 95.0 => 3,
        p if p >= 85.0 => 2,
        p if p >= 70.0 => 1,
        _ => 0,
    }
}

fn mib(b: u64) -> u64 {
    b.div_ceil(1 << 20)
}

/// Total RAM, from /proc/meminfo (8 GiB where it cannot be read).
fn system_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(8 << 30, |kb| kb * 1024)
}

/// The bytes the local models may take together, by the config's budget.
pub fn memory_budget_bytes(config: &LocalConfig) -> u64 {
    match config.memory_budget {
        MemoryBudget::Bytes(b) => b,
        MemoryBudget::FractionOfRam(f) => (system_memory() as f64 * f) as u64,
    }
}

impl Engine {
    /// Must be called within a tokio runtime (it starts the idle reaper).
    pub fn new(config: &LocalConfig) -> Engine {
        let budget = memory_budget_bytes(config);
        metrics::memory(budget, 0);
        let engine = Engine {
            inner: Arc::new(Inner {
                budget,
                state: Mutex::new(HashMap::new()),
                loads: Notify::new(),
            }),
        };
        tokio::spawn(reap(Arc::downgrade(&engine.inner)));
        engine
    }

    /// Registers a model; its file's header is read now (for the memory estimate) and
    /// returned.
    pub fn register(&self, name: &str, spec: &LocalModelSpec) -> Result<GgufInfo> {
        let info = GgufInfo::read(&spec.path).map_err(|e| Error::File {
            path: spec.path.display().to_string(),
            message: e.to_string(),
        })?;
        // A quantized cache stores each head in 32-element blocks.
        let (k, v) = info.head_dims();
        let quantized = spec.kv_type != llmrr_core::config::KvType::F16 && spec.pooling.is_none();
        if quantized && (k % 32 != 0 || v % 32 != 0) {
            return Err(Error::File {
                path: spec.path.display().to_string(),
                message: format!(
                    "kv_type {:?} needs attention heads of a multiple of 32 dimensions; this \
                     model's are {k} (keys) and {v} (values): use kv_type = \"f16\"",
                    spec.kv_type
                ),
            });
        }
        let estimate = estimate(&info, spec);
        self.inner.lock().insert(
            Arc::from(name),
            Slot {
                spec: spec.clone(),
                estimate,
                measured: None,
                phase: Phase::Unloaded,
                in_flight: 0,
                last_used: Instant::now(),
                loads: 0,
                last_load: None,
                last_error: None,
                attempt: 0,
                failed_attempt: 0,
                keep_alive: None,
            },
        );
        metrics::registered(name);
        if spec.pinned {
            let engine = self.clone();
            let name = name.to_owned();
            tokio::spawn(async move {
                match engine.acquire(&name).await {
                    Ok(_) => tracing::info!(model = %name, "pinned model loaded at start"),
                    Err(e) => {
                        tracing::error!(model = %name, error = %e, "pinned model failed to load")
                    }
                }
            });
        }
        Ok(info)
    }

    pub fn status(&self, name: &str) -> Option<ModelStatus> {
        let state = self.inner.lock();
        let s = state.get(name)?;
        Some(ModelStatus {
            path: s.spec.path.display().to_string(),
            state: match s.phase {
                Phase::Unloaded => "unloaded",
                Phase::Loading => "loading",
                Phase::Loaded(_) => "loaded",
            },
            pinned: s.spec.pinned,
            in_flight: s.in_flight,
            memory_estimate_bytes: s.estimate,
            memory_estimate_total_bytes: s.estimate.total(),
            memory_measured_bytes: s.measured,
            memory_budgeted_bytes: s.footprint(),
            last_load_ms: s.last_load.map(|d| d.as_millis() as u64),
            loads: s.loads,
            idle_secs: if s.in_flight > 0 {
                0.0
            } else {
                s.last_used.elapsed().as_secs_f64()
            },
            keep_alive_secs: s.keep_alive().as_secs_f64(),
            last_error: s.last_error.clone(),
        })
    }

    /// Keep the model loaded for `keep` once idle (`None`: its configured keep-alive again;
    /// `Duration::MAX`: until the gateway stops or memory is needed); `load` loads it now.
    /// A zero keep-alive unloads it as soon as nothing uses it.
    pub async fn keep_alive(&self, name: &str, keep: Option<Duration>, load: bool) -> Result<()> {
        {
            let mut state = self.inner.lock();
            let slot = state.get_mut(name).ok_or_else(|| Error::Load {
                model: name.to_owned(),
                message: "not a registered local model".into(),
            })?;
            slot.keep_alive = keep;
            slot.last_used = Instant::now();
        }
        if load {
            drop(self.acquire(name).await?);
        }
        if keep == Some(Duration::ZERO) {
            let out = {
                let mut state = self.inner.lock();
                let idle = state.get(name).is_some_and(Slot::evictable);
                let keys = if idle {
                    vec![Arc::from(name)]
                } else {
                    Vec::new()
                };
                self.inner.take_out(&mut state, keys)
            };
            shut_down(out).await;
        }
        Ok(())
    }

    /// The model, loaded (waiting for its load if needed), counted in flight until the lease
    /// is dropped.
    pub(crate) async fn acquire(&self, name: &str) -> Result<Lease> {
        // The load attempt this call waits for: if it fails, so does the call.
        let mut waiting_on = None;
        loop {
            let notified = self.inner.loads.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.inner.lock();
                let (key, slot) = state.get_key_value(name).ok_or_else(|| Error::Load {
                    model: name.to_owned(),
                    message: "not a registered local model".into(),
                })?;
                let key = key.clone();
                match &slot.phase {
                    Phase::Loaded(m) => {
                        let model = m.clone();
                        if let Some(slot) = state.get_mut(&key) {
                            slot.in_flight += 1;
                            slot.last_used = Instant::now();
                        }
                        return Ok(Lease {
                            engine: self.inner.clone(),
                            name: key,
                            model,
                        });
                    }
                    Phase::Loading => waiting_on = Some(slot.attempt),
                    Phase::Unloaded if waiting_on == Some(slot.failed_attempt) => {
                        return Err(Error::Load {
                            model: name.to_owned(),
                            message: slot.last_error.clone().unwrap_or_default(),
                        });
                    }
                    Phase::Unloaded => {
                        let victims = self.inner.make_room(&mut state, &key)?;
                        if let Some(slot) = state.get_mut(&key) {
                            slot.phase = Phase::Loading;
                            slot.attempt += 1;
                            waiting_on = Some(slot.attempt);
                        }
                        tokio::spawn(load(self.inner.clone(), key, victims));
                    }
                }
            }
            notified.await;
        }
    }
}

/// The memory a model takes when loaded with `spec`: its KV cells and batch size are the ones
/// `worker::context_params` gives llama.cpp.
pub fn estimate(info: &GgufInfo, spec: &LocalModelSpec) -> MemoryEstimate {
    let kv = spec.kv_type.bytes_per_element();
    match spec.pooling {
        // Embedding models keep an f16 cache (see `worker::context_params`).
        Some(_) => info.estimate_memory(spec.context_size as u64, spec.context_size as u64),
        None => {
            let mut e = info.estimate_memory_with(
                spec.context_size as u64 * spec.parallel as u64,
                (spec.prefill_chunk + spec.parallel) as u64,
                kv,
            );
            // A model whose prefixes cannot be reused gets none (nothing could come back).
            if info.reuses_prefixes() {
                e.prompt_cache = prompt_cache_bytes(spec, e.kv_cache);
            }
            e
        }
    }
}

/// The memory for kept prompts beyond the slots: `prompt_cache_mb`, or as much as the KV
/// cache (as many tokens again as the slots hold) when unset.
pub fn prompt_cache_bytes(spec: &LocalModelSpec, kv_cache: u64) -> u64 {
    match spec.prompt_cache_mb {
        Some(mb) => mb.saturating_mul(1 << 20),
        None => kv_cache,
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Slot>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn used(state: &HashMap<Arc<str>, Slot>) -> u64 {
        state
            .values()
            .filter(|s| s.holds_memory())
            .map(Slot::footprint)
            .sum()
    }

    /// The models that may be unloaded, least recently used first, with their memory.
    fn idle_lru(state: &HashMap<Arc<str>, Slot>) -> Vec<(Arc<str>, u64)> {
        let mut idle: Vec<(&Arc<str>, &Slot)> =
            state.iter().filter(|(_, s)| s.evictable()).collect();
        idle.sort_by_key(|(_, s)| s.last_used);
        idle.into_iter()
            .map(|(k, s)| (k.clone(), s.footprint()))
            .collect()
    }

    /// Takes idle models out (least recently used first) until `key` fits; they are shut
    /// down by the caller, outside the lock.
    fn make_room(
        &self,
        state: &mut HashMap<Arc<str>, Slot>,
        key: &Arc<str>,
    ) -> Result<Vec<(Arc<str>, Arc<LoadedModel>)>> {
        let need = state.get(key).map_or(0, |s| s.need(self.budget));
        let used = Self::used(state);
        if used + need <= self.budget {
            return Ok(Vec::new());
        }
        let mut freed = 0;
        let mut chosen = Vec::new();
        for (k, bytes) in Self::idle_lru(state) {
            if used - freed + need <= self.budget {
                break;
            }
            freed += bytes;
            chosen.push(k);
        }
        if used - freed + need > self.budget {
            let busy: Vec<String> = state
                .iter()
                .filter(|(_, s)| s.holds_memory() && !s.evictable())
                .map(|(k, s)| {
                    let why = if s.spec.pinned { "pinned" } else { "in use" };
                    format!("{k}: {} MiB, {why}", mib(s.footprint()))
                })
                .collect();
            return Err(Error::NoMemory {
                model: key.to_string(),
                need_mb: mib(need),
                budget_mb: mib(self.budget),
                busy_mb: mib(used - freed),
                busy: if busy.is_empty() {
                    "none: the model alone is larger than the budget".into()
                } else {
                    busy.join(", ")
                },
            });
        }
        Ok(self.take_out(state, chosen))
    }

    fn take_out(
        &self,
        state: &mut HashMap<Arc<str>, Slot>,
        keys: Vec<Arc<str>>,
    ) -> Vec<(Arc<str>, Arc<LoadedModel>)> {
        let mut out = Vec::new();
        for k in keys {
            if let Some(slot) = state.get_mut(&k) {
                if let Phase::Loaded(m) = std::mem::replace(&mut slot.phase, Phase::Unloaded) {
                    metrics::model_loaded(&k, false, 0, None);
                    out.push((k, m));
                }
            }
        }
        out
    }

    /// Logs and exports the pressure level; at 95 % unloads idle unpinned models.
    fn check_pressure(
        &self,
        state: &mut HashMap<Arc<str>, Slot>,
    ) -> Vec<(Arc<str>, Arc<LoadedModel>)> {
        let used = Self::used(state);
        let level = pressure(used, self.budget);
        metrics::memory(self.budget, level);
        if level >= 1 {
            tracing::warn!(
                used_mb = mib(used),
                budget_mb = mib(self.budget),
                level,
                "local model memory pressure"
            );
        }
        if level < 3 {
            return Vec::new();
        }
        let mut now_used = used;
        let mut chosen = Vec::new();
        for (k, bytes) in Self::idle_lru(state) {
            if pressure(now_used, self.budget) < 3 {
                break;
            }
            now_used -= bytes;
            chosen.push(k);
        }
        self.take_out(state, chosen)
    }
}

async fn shut_down(models: Vec<(Arc<str>, Arc<LoadedModel>)>) {
    for (name, model) in models {
        tracing::info!(model = %name, "unloading local model");
        let _ = tokio::task::spawn_blocking(move || model.shutdown()).await;
    }
}

async fn load(inner: Arc<Inner>, key: Arc<str>, victims: Vec<(Arc<str>, Arc<LoadedModel>)>) {
    shut_down(victims).await;
    let spec = inner.lock().get(&key).map(|s| s.spec.clone());
    let result = match spec {
        Some(spec) => LoadedModel::start(&key, &spec).await,
        None => return,
    };
    let extra = {
        let mut state = inner.lock();
        if let Some(slot) = state.get_mut(&key) {
            match result {
                Ok(model) => {
                    slot.loads += 1;
                    slot.last_load = Some(model.load_time);
                    slot.last_error = None;
                    slot.last_used = Instant::now();
                    slot.measured = model.measured_bytes;
                    let estimate = slot.estimate.total();
                    if slot.footprint() > estimate {
                        tracing::warn!(model = %key, estimate_mb = mib(estimate),
                            budgeted_mb = mib(slot.footprint()),
                            "the model took more memory than estimated: budgeted by the measurement");
                    }
                    metrics::model_loaded(
                        &key,
                        true,
                        slot.footprint(),
                        Some(model.load_time.as_secs_f64()),
                    );
                    slot.phase = Phase::Loaded(model);
                }
                Err(e) => {
                    tracing::error!(model = %key, error = %e, "local model failed to load");
                    slot.last_error = Some(match e {
                        Error::Load { message, .. } => message,
                        other => other.to_string(),
                    });
                    slot.failed_attempt = slot.attempt;
                    slot.phase = Phase::Unloaded;
                }
            }
        }
        // The model that was just loaded is not idle yet: it has waiters.
        let mut extra = inner.check_pressure(&mut state);
        extra.retain(|(k, _)| *k != key);
        extra
    };
    inner.loads.notify_waiters();
    // Waiters of a failed attempt get its error; later requests try a new load.
    shut_down(extra).await;
}

/// Unloads models idle for longer than their keep_alive.
async fn reap(inner: Weak<Inner>) {
    let tick = Duration::from_millis(100);
    loop {
        tokio::time::sleep(tick).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let idle = {
            let mut state = inner.lock();
            let keys: Vec<Arc<str>> = state
                .iter()
                .filter(|(_, s)| s.evictable() && s.last_used.elapsed() >= s.keep_alive())
                .map(|(k, _)| k.clone())
                .collect();
            let out = inner.take_out(&mut state, keys);
            if !out.is_empty() {
                inner.check_pressure(&mut state);
            }
            out
        };
        shut_down(idle).await;
    }
}

#[cfg(test)]
mod tests {
    use super::{footprint, pressure};

    #[test]
    fn a_clearly_larger_measurement_overrides_the_estimate() {
        const MIB: u64 = 1 << 20;
        // Within the noise: the estimate.
        assert_eq!(footprint(100 * MIB, Some(120 * MIB)), 100 * MIB);
        assert_eq!(footprint(100 * MIB, Some(10 * MIB)), 100 * MIB);
        assert_eq!(footprint(100 * MIB, None), 100 * MIB);
        // Past it: the measurement.
        assert_eq!(footprint(100 * MIB, Some(140 * MIB)), 140 * MIB);
        // A tenth of a large estimate is the margin.
        assert_eq!(footprint(4096 * MIB, Some(4400 * MIB)), 4096 * MIB);
        assert_eq!(footprint(4096 * MIB, Some(4600 * MIB)), 4600 * MIB);
    }

    #[test]
    fn pressure_levels_at_70_85_95_percent() {
        let levels: Vec<u8> = [0, 69, 70, 84, 85, 94, 95, 120]
            .iter()
            .map(|p| pressure(*p, 100))
            .collect();
        assert_eq!(levels, vec![0, 0, 1, 1, 2, 2, 3, 3]);
    }
}
