//! One thread per loaded model. It owns the llama.cpp context (which must stay on one thread)
//! and runs the continuous-batching loop:
//!
//! 1. admit queued jobs into free sequence slots (blocking only when nothing is running);
//! 2. drop sequences whose client has gone, freeing their KV cells at once;
//! 3. build one batch: the next token of every generating sequence, then up to
//!    `prefill_chunk` prompt tokens of the sequences still reading their prompt (so a long
//!    prompt is read over several steps while the others keep generating);
//! 4. decode it, sample a token for every sequence that asked for logits, stream the text.
//!
//! Every sequence has its own id, positions and sampler; they share the weights and one
//! unified KV cache, and nothing else.

use crate::chat::template::JinjaTemplate;
use crate::chat::tools::ToolSyntax;
use crate::embed::{self, EmbedJob};
use crate::error::{Error, Result};
use crate::metrics::ModelGauges;
use crate::prompt_cache::{self, PromptCache};
use crate::sampling::SamplingParams;
use crate::text::{Piece, TextOut};
use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::LlamaStateSeqFlags;
use llmrr_core::config::{KvType, LocalModelSpec, Pooling};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc as tmpsc, oneshot};

/// Requests waiting for a free slot, at most, per model.
pub(crate) const QUEUE: usize = 256;

pub(crate) enum Job {
    Generate(GenerateJob),
    Embed(EmbedJob),
}

pub(crate) struct GenerateJob {
    pub prompt: Vec<LlamaToken>,
    /// Special tokens are written out as their text (a tool call's opening can be one).
    pub render_special: bool,
    pub params: SamplingParams,
    /// Generated tokens at most (the context size caps it anyway).
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    /// Bounded: sized by [`GenerateJob::events_needed`], so the worker's `try_send` never
    /// finds it full.
    pub events: tmpsc::Sender<Event>,
}

impl GenerateJob {
    /// Events one job can send at most: a text piece per generated token (at most
    /// `max_tokens`, and never more than the context holds), the held-back tail, and the end.
    pub fn events_needed(max_tokens: Option<u32>, context_size: u32) -> usize {
        max_tokens.map_or(context_size, |m| m.min(context_size)) as usize + 3
    }
}

#[derive(Debug)]
pub(crate) enum Event {
    Text(String),
    Done(Finished),
    Failed(Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FinishReason {
    Stop,
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Finished {
    pub reason: FinishReason,
    pub prompt_tokens: u32,
    /// Prompt tokens whose KV came from an earlier request's (prefix reuse), not prefilled.
    pub cached_tokens: u32,
    pub completion_tokens: u32,
    pub prefill: Duration,
    pub decode: Duration,
}

/// A model loaded on its own thread. Dropping the last handle ends the thread.
pub(crate) struct LoadedModel {
    pub model: Arc<LlamaModel>,
    /// The GGUF's chat template, read once at load (None: chat requests are refused).
    pub chat_template: Option<LlamaChatTemplate>,
    /// The same template run as Jinja, for chats with tools; and the syntax of its tool calls
    /// (`None`: tools are refused).
    pub jinja: Option<Arc<JinjaTemplate>>,
    pub tool_syntax: Option<ToolSyntax>,
    jobs: SyncSender<Job>,
    pub load_time: Duration,
    /// The resident memory the load added (`None`: not readable on this platform).
    pub measured_bytes: Option<u64>,
    /// Tokens of context per sequence.
    pub context_size: u32,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The model's chat template for tools as Jinja, with its token texts, and its tool syntax. A template
/// that does not compile here only costs tools: plain chats use llama.cpp's formats.
fn jinja_of(model: &LlamaModel) -> (Option<Arc<JinjaTemplate>>, Option<ToolSyntax>) {
    let Ok(source) = model
        .meta_val_str(crate::chat::TOOL_TEMPLATE_KEY)
        .or_else(|_| model.meta_val_str("tokenizer.chat_template"))
    else {
        return (None, None);
    };
    let vocab = model.vocab();
    // A model without a BOS or EOS token has -1 there, which llama.cpp must not be asked for.
    let text = |t: LlamaToken| {
        (0..vocab.n_tokens())
            .contains(&t.0)
            .then(|| vocab.text(t))
            .flatten()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    match JinjaTemplate::new(&source, &text(vocab.bos()), &text(vocab.eos())) {
        Ok(t) => {
            let syntax = crate::chat::tool_support(&source, &t);
            (Some(Arc::new(t)), syntax)
        }
        Err(e) => {
            tracing::debug!(error = %e, "the chat template does not compile as Jinja: no tools");
            (None, None)
        }
    }
}

impl LoadedModel {
    /// Loads the model on a new thread; resolves when it is ready to take jobs.
    pub async fn start(name: &str, spec: &LocalModelSpec) -> Result<Arc<LoadedModel>> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (jobs, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let spec2 = spec.clone();
        let name2 = name.to_owned();
        let gauges = ModelGauges::new(name);
        let thread = std::thread::Builder::new()
            .name(format!("llmrr-model-{name}"))
            // llama.cpp's std::regex (lazy grammar triggers) recurses per character.
            .stack_size(16 << 20)
            .spawn(move || run(name2, spec2, rx, ready_tx, gauges))
            .map_err(|e| Error::Load {
                model: name.to_owned(),
                message: format!("cannot start a thread: {e}"),
            })?;
        let (model, load_time, measured_bytes) = ready_rx.await.map_err(|_| Error::Load {
            model: name.to_owned(),
            message: "the model thread ended while loading".into(),
        })??;
        let (jinja, tool_syntax) = jinja_of(&model);
        Ok(Arc::new(LoadedModel {
            chat_template: model.chat_template(None).ok(),
            jinja,
            tool_syntax,
            model,
            jobs,
            load_time,
            measured_bytes,
            context_size: spec.context_size,
            thread: std::sync::Mutex::new(Some(thread)),
        }))
    }

    /// Queues a job; refused when the queue is full.
    pub fn submit(&self, name: &str, job: Job) -> Result<()> {
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => Error::Overloaded {
                model: name.to_owned(),
                queued: QUEUE,
            },
            mpsc::TrySendError::Disconnected(_) => Error::Inference {
                model: name.to_owned(),
                message: "the model thread has stopped".into(),
            },
        })
    }

    /// Ends the thread (after its running jobs) and waits for it: memory is free on return.
    /// Only called when no one else holds the model.
    pub fn shutdown(self: Arc<Self>) {
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        drop(self);
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// The model, its load time, and the resident memory the load added (where it can be read).
type Ready = oneshot::Sender<Result<(Arc<LlamaModel>, Duration, Option<u64>)>>;

/// Loads in progress, and a count of every load's start and end and every unload: a load's
/// memory is measured only when nothing else loaded or unloaded meanwhile.
static LOADING: AtomicUsize = AtomicUsize::new(0);
static LOAD_EVENTS: AtomicU64 = AtomicU64::new(0);

/// The process's resident memory in bytes (Linux's `/proc/self/status`; `None` elsewhere).
pub(crate) fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// One token through the model, then the cache cleared, as llama.cpp's server does after a
/// load: every weight is read once, so what the model takes is resident when measured
/// (llama.cpp maps the weights, and a mapped page costs memory only once read) and the first
/// request does not pay for the page faults.
fn warm_up(name: &str, model: &LlamaModel, ctx: &mut LlamaContext) {
    let vocab = model.vocab();
    let token = match vocab.bos() {
        t if (0..vocab.n_tokens()).contains(&t.0) => t,
        _ => LlamaToken(0),
    };
    let mut batch = LlamaBatch::new(1, 1);
    if batch.add(token, 0, &[0], true).is_ok() {
        if let Err(e) = ctx.decode(&mut batch) {
            tracing::debug!(model = %name, error = %e, "warm-up decode failed");
        }
    }
    ctx.clear_kv_cache();
}

fn run(name: String, spec: LocalModelSpec, rx: Receiver<Job>, ready: Ready, gauges: ModelGauges) {
    let started = Instant::now();
    let alone = LOADING.fetch_add(1, Ordering::SeqCst) == 0;
    let events = LOAD_EVENTS.fetch_add(1, Ordering::SeqCst) + 1;
    let resident_before = resident_bytes();
    let cached_before = crate::prompt_cache::HELD.load(Ordering::Relaxed);
    // Every way out of the load below ends it here.
    let loading = LoadEnd;
    let loaded = load(&name, &spec);
    let (model, params) = match loaded {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let backend = match crate::backend::backend() {
        Ok(b) => b,
        Err(message) => {
            let _ = ready.send(Err(Error::Load {
                model: name,
                message,
            }));
            return;
        }
    };
    let mut ctx = match model.new_context(backend, params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(Error::Load {
                model: name,
                message: format!("cannot create a context: {e}"),
            }));
            return;
        }
    };
    if spec.pooling.is_none() {
        warm_up(&name, &model, &mut ctx);
    }
    let load_time = started.elapsed();
    // What the load added to the process: the lifecycle manager budgets by the larger of this
    // and the estimate. Another model loading or growing meanwhile inflates it (the safe side).
    let undisturbed = alone && LOAD_EVENTS.load(Ordering::SeqCst) == events;
    // Less what the other models' prompt caches grew by meanwhile.
    let cached_growth = crate::prompt_cache::HELD
        .load(Ordering::Relaxed)
        .saturating_sub(cached_before);
    let measured = resident_before
        .zip(resident_bytes())
        .filter(|_| undisturbed)
        .map(|(before, after)| after.saturating_sub(before).saturating_sub(cached_growth));
    drop(loading);
    if ready
        .send(Ok((model.clone(), load_time, measured)))
        .is_err()
    {
        return;
    }
    tracing::info!(model = %name, load_ms = load_time.as_millis() as u64, "local model loaded");
    if spec.context_size > model.n_ctx_train() {
        tracing::warn!(
            model = %name,
            context_size = spec.context_size,
            trained = model.n_ctx_train(),
            "context_size is larger than the model's training context; quality may drop past it"
        );
    }
    if spec.pooling.is_some() {
        embed::serve(&name, ctx, rx);
    } else {
        Scheduler::new(&name, &spec, &model, ctx, gauges).serve(rx);
    }
    LOAD_EVENTS.fetch_add(1, Ordering::SeqCst);
    tracing::info!(model = %name, "local model unloaded");
}

/// Ends a load in the counts above, however it ends.
struct LoadEnd;

impl Drop for LoadEnd {
    fn drop(&mut self) {
        LOADING.fetch_sub(1, Ordering::SeqCst);
        LOAD_EVENTS.fetch_add(1, Ordering::SeqCst);
    }
}

fn load(name: &str, spec: &LocalModelSpec) -> Result<(Arc<LlamaModel>, LlamaContextParams)> {
    let backend = crate::backend::backend().map_err(|message| Error::Load {
        model: name.to_owned(),
        message,
    })?;
    let model_params = LlamaModelParams::default().with_n_gpu_layers(spec.gpu_layers);
    let model = LlamaModel::load_from_file(backend, &spec.path, &model_params).map_err(|e| {
        Error::Load {
            model: name.to_owned(),
            message: format!("{}: {e}", spec.path.display()),
        }
    })?;
    Ok((Arc::new(model), context_params(spec)))
}

pub(crate) fn context_params(spec: &LocalModelSpec) -> LlamaContextParams {
    let threads = spec.threads as i32;
    let mut base = LlamaContextParams::default()
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    // Embedding models (pooling) read each input once: their cache stays f16.
    let kv = match spec.kv_type {
        _ if spec.pooling.is_some() => None,
        KvType::F16 => None,
        KvType::Q8_0 => Some(KvCacheType::Q8_0),
        KvType::Q4_0 => Some(KvCacheType::Q4_0),
    };
    if let Some(kv) = kv {
        // llama.cpp keeps a quantized V cache only with flash attention.
        base = base
            .with_type_k(kv)
            .with_type_v(kv)
            .with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED);
    }
    match spec.pooling {
        // Embeddings: each input is read whole in one step, alone (embed.rs says why), so
        // one sequence has the whole context.
        Some(pooling) => base
            .with_n_ctx(NonZeroU32::new(spec.context_size))
            .with_n_batch(spec.context_size)
            .with_n_ubatch(spec.context_size)
            .with_n_seq_max(1)
            .with_embeddings(true)
            .with_pooling_type(match pooling {
                Pooling::Mean => LlamaPoolingType::Mean,
                Pooling::Cls => LlamaPoolingType::Cls,
                Pooling::Last => LlamaPoolingType::Last,
            }),
        None => {
            let batch = spec.prefill_chunk + spec.parallel;
            base.with_n_ctx(NonZeroU32::new(spec.context_size * spec.parallel))
                .with_n_batch(batch)
                .with_n_ubatch(batch)
                .with_n_seq_max(spec.parallel)
                .with_kv_unified(true)
        }
    }
}

struct Seq {
    id: i32,
    job: GenerateJob,
    sampler: LlamaSampler,
    /// Prompt tokens already in the KV cache.
    fed: usize,
    /// Of them, the ones reused from the slot's previous sequence.
    reused: usize,
    /// Generated tokens fed back (in the KV cache after the prompt).
    fed_generated: Vec<LlamaToken>,
    /// The KV position of the next token.
    pos: i32,
    /// The token to feed next, once the prompt is read.
    next: Option<LlamaToken>,
    generated: u32,
    text: TextOut,
    /// Index in the current batch whose logits this sequence samples from.
    logits_at: Option<i32>,
    admitted: Instant,
    first_token: Option<Instant>,
}

/// Sampling under a grammar: the chain picks the token, then accepting it is checked. A lazy
/// grammar (tool calls under `tool_choice: "auto"`) can be handed text it rejects — the token
/// that completes a call's opening may carry more than the grammar allows — which llama.cpp
/// reports by throwing; llama-cpp-2's C++ shim (`common`) catches it, and the sequence goes on
/// without its grammar (the call is then given back as the text it was). A grammar that leaves
/// no token at all ends the sequence.
fn sample_guarded(
    name: &str,
    model: &LlamaModel,
    ctx: &LlamaContext<'_>,
    at: i32,
    seq: &mut Seq,
) -> Option<LlamaToken> {
    let mut data = ctx.token_data_array_ith(at);
    data.apply_sampler(&mut seq.sampler);
    // Nothing the grammar allows (every logit masked): the sequence ends, and the token is
    // not offered to a sampler that would abort on it.
    let chosen = data
        .selected
        .and_then(|i| data.data.get(i))
        .filter(|d| d.logit() > f32::NEG_INFINITY)
        .map(|d| d.id());
    let token = chosen?;
    if let Err(e) = seq.sampler.try_accept(token) {
        tracing::warn!(model = %name, error = ?e,
            "the grammar rejected the model's text: the answer goes on without it");
        seq.job.params.grammar = None;
        // A fresh chain: the penalties see the answer so far again, and the draws go on from
        // another seed (the old one would repeat the answer's first draws).
        // (u32::MAX would be llama.cpp's "random seed".)
        seq.job.params.seed = seq
            .job
            .params
            .seed
            .wrapping_add(seq.fed_generated.len() as u32 + 1)
            % u32::MAX;
        match seq.job.params.sampler(model) {
            Ok(s) => seq.sampler = s.with_tokens(seq.fed_generated.iter().chain([&token])),
            Err(e) => {
                tracing::warn!(model = %name, error = %e, "cannot rebuild the sampler");
                return None;
            }
        }
    }
    Some(token)
}

struct Scheduler<'m> {
    name: &'m str,
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    slots: Vec<Option<Seq>>,
    /// The tokens whose KV each slot's sequence id still holds from its last finished
    /// request: the next request in that slot skips the prefill of their common prefix.
    cached: Vec<Vec<LlamaToken>>,
    /// When each slot's tokens were kept (a counter): the least recent go first.
    kept_at: Vec<u64>,
    keeps: u64,
    /// The cells finished sequences may keep together (`prefix_cache_share` of the cache):
    /// kept cells lengthen every decode step's attention in a unified cache.
    keep_limit: usize,
    /// Kept prompts copied out of the slots, for requests that come back to them later.
    prompt_cache: PromptCache,
    batch: LlamaBatch<'static>,
    prefill_chunk: usize,
    context_size: u32,
    gauges: ModelGauges,
    piece: Vec<u8>,
}

impl Drop for Scheduler<'_> {
    fn drop(&mut self) {
        // The prompt cache goes with the model.
        self.gauges.prompt_cache(0, 0);
    }
}

impl<'m> Scheduler<'m> {
    fn new(
        name: &'m str,
        spec: &LocalModelSpec,
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        gauges: ModelGauges,
    ) -> Self {
        let batch_size = (spec.prefill_chunk + spec.parallel) as usize;
        gauges.kv_capacity(spec.context_size as u64 * spec.parallel as u64);
        Scheduler {
            name,
            model,
            ctx,
            slots: (0..spec.parallel).map(|_| None).collect(),
            cached: (0..spec.parallel).map(|_| Vec::new()).collect(),
            kept_at: vec![0; spec.parallel as usize],
            keeps: 0,
            keep_limit: (spec.prefix_cache_share
                * f64::from(spec.context_size)
                * f64::from(spec.parallel))
            .floor() as usize,
            // The size the lifecycle manager budgets for it (from the file's header again).
            prompt_cache: PromptCache::new(
                crate::gguf::GgufInfo::read(&spec.path)
                    .map(|info| crate::lifecycle::estimate(&info, spec).prompt_cache as usize)
                    .unwrap_or(0),
            ),
            batch: LlamaBatch::new(batch_size, 1),
            prefill_chunk: spec.prefill_chunk as usize,
            context_size: spec.context_size,
            gauges,
            piece: Vec::with_capacity(32),
        }
    }

    fn active(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    fn serve(mut self, rx: Receiver<Job>) {
        loop {
            if self.active() == 0 {
                match rx.recv() {
                    Ok(job) => self.admit(job),
                    Err(_) => return,
                }
            }
            while self.active() < self.slots.len() {
                match rx.try_recv() {
                    Ok(job) => self.admit(job),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) if self.active() == 0 => return,
                    Err(TryRecvError::Disconnected) => break,
                }
            }
            self.drop_cancelled();
            if self.active() > 0 {
                self.step();
            }
            self.gauges.active(self.active());
        }
    }

    fn admit(&mut self, job: Job) {
        let job = match job {
            Job::Generate(g) => g,
            Job::Embed(e) => {
                let _ = e.reply.send(Err(Error::Unsupported {
                    model: self.name.to_owned(),
                    what: "is not loaded for embeddings (set `pooling` to serve /v1/embeddings)"
                        .into(),
                }));
                return;
            }
        };
        if job.events.is_closed() {
            return;
        }
        let sampler = match job.params.sampler(self.model) {
            Ok(s) => s,
            Err(e) => {
                let _ = job.events.try_send(Event::Failed(e));
                return;
            }
        };
        // The free slot whose kept KV shares the longest prefix with this prompt (the least
        // to prefill); at least one prompt token is read anew, for the first logits.
        let shared = |cached: &[LlamaToken]| {
            cached
                .iter()
                .zip(&job.prompt)
                .take_while(|(a, b)| a == b)
                .count()
                .min(job.prompt.len().saturating_sub(1))
        };
        let shared_max = |n: usize| n.min(job.prompt.len().saturating_sub(1));
        // Ties (nothing shared, say) go to the slot keeping the least, so that a useful
        // prefix is not thrown away while an empty slot is free.
        let Some(free) = (0..self.slots.len())
            .filter(|i| self.slots[*i].is_none())
            .max_by_key(|i| {
                (
                    shared(&self.cached[*i]),
                    std::cmp::Reverse(self.cached[*i].len()),
                    std::cmp::Reverse(*i),
                )
            })
        else {
            // Callers admit only with a slot free; never drop a job without an answer.
            let _ = job.events.try_send(Event::Failed(Error::Overloaded {
                model: self.name.to_owned(),
                queued: QUEUE,
            }));
            return;
        };
        // A kept prompt in memory sharing clearly more than the slot does is copied into a
        // slot — the one keeping least, so that no useful prefix is copied out for it — and
        // what that slot keeps is copied to memory first.
        let from_memory = |cache: &PromptCache, in_slot: usize| {
            cache
                .best(&job.prompt)
                .filter(|&(_, n)| shared_max(n) >= in_slot + prompt_cache::MIN_TOKENS)
        };
        let mut free = free;
        if from_memory(&self.prompt_cache, shared(&self.cached[free])).is_some() {
            if let Some(emptiest) = (0..self.slots.len())
                .filter(|i| self.slots[*i].is_none())
                .min_by_key(|i| self.cached[*i].len())
            {
                free = emptiest;
            }
        }
        let in_slot = shared(&self.cached[free]);
        // A prompt used (nearly) whole leaves the cache before the slot's content is stored
        // (which could push it out); one used in part is marked recent and stays, for whoever
        // shares the rest.
        let mut whole = None;
        let target = from_memory(&self.prompt_cache, in_slot);
        if let Some((i, n)) = target {
            if n + prompt_cache::MIN_TOKENS > self.prompt_cache.tokens(i).len() {
                whole = Some(self.prompt_cache.take(i));
            } else {
                self.prompt_cache.touch(i);
            }
        }
        // What the slot keeps is copied out when it is replaced, or when this request uses
        // less than half of it (a request continuing it does not).
        let kept = self.cached[free].len();
        if target.is_some() || (kept >= in_slot + prompt_cache::MIN_TOKENS && in_slot * 2 < kept) {
            self.stash(free);
        }
        // Looked up again (storing may have moved entries) before the slot is cleared: a
        // prompt that storing pushed out leaves the slot as it was.
        let partial = match (&whole, target) {
            (None, Some(_)) => from_memory(&self.prompt_cache, in_slot).map(|(i, _)| i),
            _ => None,
        };
        if whole.is_some() || partial.is_some() {
            let _ = self.ctx.clear_kv_cache_seq(Some(free as u32), None, None);
            self.cached[free].clear();
            let restored = match (whole, partial) {
                (Some(entry), _) => match self.ctx.state_seq_set(&entry.state, free as i32) {
                    Ok(()) => Ok(entry.tokens),
                    Err(e) => {
                        // Not lost: back to the cache.
                        self.prompt_cache.insert(entry.tokens, entry.state);
                        Err(e)
                    }
                },
                (None, Some(i)) => {
                    let entry = self.prompt_cache.touch(i);
                    self.ctx
                        .state_seq_set(&entry.state, free as i32)
                        .map(|()| entry.tokens.clone())
                }
                (None, None) => Ok(Vec::new()),
            };
            match restored {
                Ok(tokens) => self.cached[free] = tokens,
                Err(e) => {
                    tracing::warn!(model = %self.name, error = %e, "a kept prompt did not restore");
                    let _ = self.ctx.clear_kv_cache_seq(Some(free as u32), None, None);
                }
            }
            self.gauges
                .prompt_cache(self.prompt_cache.len(), self.prompt_cache.bytes());
        }
        let mut reused = shared(&self.cached[free]);
        // A sliding-window cache may have dropped the prefix's oldest cells: reuse only a
        // sequence whose cells still start at 0.
        if reused > 0 && self.ctx.kv_cache_seq_pos_min(free as i32) != 0 {
            reused = 0;
        }
        // Drop what the slot holds past the shared prefix (all of it when nothing is shared);
        // a memory that cannot cut a sequence short (recurrent models) starts it afresh.
        let cut = self
            .ctx
            .clear_kv_cache_seq(Some(free as u32), Some(reused as u32), None);
        if !matches!(cut, Ok(true)) {
            let _ = self.ctx.clear_kv_cache_seq(Some(free as u32), None, None);
            self.cached[free].clear();
        }
        let reused = reused.min(self.cached[free].len());
        self.cached[free].clear();
        self.slots[free] = Some(Seq {
            id: free as i32,
            job,
            sampler,
            fed: reused,
            reused,
            fed_generated: Vec::new(),
            pos: reused as i32,
            next: None,
            generated: 0,
            text: TextOut::default(),
            logits_at: None,
            admitted: Instant::now(),
            first_token: None,
        });
        if let Some(seq) = self.slots[free].as_mut() {
            seq.text = TextOut::new(std::mem::take(&mut seq.job.stop));
        }
    }

    /// Ends the slot's sequence: a failed or cancelled one's KV is dropped.
    fn free(&mut self, slot: usize) {
        if let Some(seq) = self.slots[slot].take() {
            let _ = self.ctx.clear_kv_cache_seq(Some(seq.id as u32), None, None);
            self.cached[slot].clear();
        }
    }

    /// Ends a finished sequence, keeping its KV and the tokens it holds for the next request
    /// in the slot (prefix reuse: the next turn of a chat, a shared system prompt).
    fn keep(&mut self, slot: usize) {
        if let Some(mut seq) = self.slots[slot].take() {
            let mut tokens = std::mem::take(&mut seq.job.prompt);
            tokens.truncate(seq.fed);
            tokens.extend(seq.fed_generated);
            self.cached[slot] = tokens;
            self.keeps += 1;
            self.kept_at[slot] = self.keeps;
            self.trim_kept();
        }
    }

    /// Copies what `slot` keeps to the prompt cache (when it is on, and the kept tokens are
    /// enough to be worth it and still start at position 0).
    fn stash(&mut self, slot: usize) {
        if !self.prompt_cache.enabled()
            || self.cached[slot].len() < prompt_cache::MIN_TOKENS
            || self.ctx.kv_cache_seq_pos_min(slot as i32) != 0
            || !self.prompt_cache.fits(
                self.ctx
                    .state_seq_get_size_ext(slot as i32, LlamaStateSeqFlags::empty()),
            )
        {
            return;
        }
        match self
            .ctx
            .state_seq_get(slot as i32, LlamaStateSeqFlags::empty())
        {
            Ok(state) => {
                self.prompt_cache.insert(self.cached[slot].clone(), state);
                self.gauges
                    .prompt_cache(self.prompt_cache.len(), self.prompt_cache.bytes());
            }
            Err(e) => tracing::debug!(model = %self.name, error = %e, "cannot copy a kept prompt"),
        }
    }

    /// Drops the least recently kept prefixes until the kept cells fit `keep_limit`.
    fn trim_kept(&mut self) {
        loop {
            let idle: Vec<usize> = (0..self.slots.len())
                .filter(|&i| self.slots[i].is_none() && !self.cached[i].is_empty())
                .collect();
            let kept: usize = idle.iter().map(|&i| self.cached[i].len()).sum();
            if kept <= self.keep_limit {
                return;
            }
            let Some(oldest) = idle.into_iter().min_by_key(|&i| self.kept_at[i]) else {
                return;
            };
            self.stash(oldest);
            let _ = self.ctx.clear_kv_cache_seq(Some(oldest as u32), None, None);
            self.cached[oldest].clear();
        }
    }

    fn drop_cancelled(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i]
                .as_ref()
                .is_some_and(|s| s.job.events.is_closed())
            {
                self.free(i);
                self.gauges.cancelled();
            }
        }
    }

    /// One decode over every active sequence.
    fn step(&mut self) {
        self.batch.clear();
        let mut n = 0i32;
        // Generating sequences first: one token each.
        for seq in self.slots.iter_mut().flatten() {
            seq.logits_at = None;
            if let Some(tok) = seq.next {
                if self.batch.add(tok, seq.pos, &[seq.id], true).is_ok() {
                    seq.logits_at = Some(n);
                    n += 1;
                }
            }
        }
        // Then prompt tokens, oldest request first, within the prefill budget. Positions
        // move only once the decode has succeeded.
        let mut budget = self.prefill_chunk;
        let mut order: Vec<usize> = (0..self.slots.len())
            .filter(|i| self.slots[*i].as_ref().is_some_and(|s| s.next.is_none()))
            .collect();
        order.sort_by_key(|i| self.slots[*i].as_ref().map(|s| s.admitted));
        let mut reads: Vec<(usize, usize)> = Vec::new();
        for i in order {
            if budget == 0 {
                break;
            }
            let Some(seq) = self.slots[i].as_mut() else {
                continue;
            };
            let take = (seq.job.prompt.len() - seq.fed).min(budget);
            for k in 0..take {
                let last = seq.fed + k + 1 == seq.job.prompt.len();
                let token = seq.job.prompt[seq.fed + k];
                if self
                    .batch
                    .add(token, seq.pos + k as i32, &[seq.id], last)
                    .is_err()
                {
                    break;
                }
                if last {
                    seq.logits_at = Some(n);
                }
                n += 1;
            }
            reads.push((i, take));
            budget -= take;
        }
        if n == 0 {
            return;
        }
        if let Err(e) = self.ctx.decode(&mut self.batch) {
            self.fail_newest(format!("decode: {e}"));
            return;
        }
        for (i, take) in reads {
            if let Some(seq) = self.slots[i].as_mut() {
                seq.fed += take;
                seq.pos += take as i32;
            }
        }
        let now = Instant::now();
        for i in 0..self.slots.len() {
            let Some(seq) = self.slots[i].as_mut() else {
                continue;
            };
            if let Some(fed) = seq.next {
                seq.pos += 1;
                seq.fed_generated.push(fed);
            }
            let Some(at) = seq.logits_at else {
                continue;
            };
            // `None`: the grammar left no token (or the sampler could not be rebuilt): the end.
            let sampled = match seq.job.params.grammar {
                None => Some(seq.sampler.sample(&self.ctx, at)),
                Some(_) => sample_guarded(self.name, self.model, &self.ctx, at, seq),
            };
            let token = sampled.unwrap_or_else(|| self.model.vocab().eos());
            seq.generated += 1;
            if seq.first_token.is_none() {
                seq.first_token = Some(now);
                self.gauges.ttft(now - seq.admitted);
            }
            let vocab = self.model.vocab();
            let outcome =
                if sampled.is_none() || (vocab.is_eog(token) && !seq.job.params.ignore_eos) {
                    Some((FinishReason::Stop, String::new()))
                } else {
                    self.piece.clear();
                    let special = seq.job.render_special;
                    vocab.token_to_piece_into(token, &mut self.piece, special, None);
                    match seq.text.push(&self.piece) {
                        Piece::Stop(text) => Some((FinishReason::Stop, text)),
                        Piece::Text(text) => {
                            if !text.is_empty() {
                                let _ = seq.job.events.try_send(Event::Text(text));
                            }
                            let full = seq.pos as u32 + 1 >= self.context_size;
                            let max = seq.job.max_tokens.is_some_and(|m| seq.generated >= m);
                            (full || max).then(|| (FinishReason::Length, seq.text.finish()))
                        }
                    }
                };
            match outcome {
                Some((reason, tail)) => {
                    if !tail.is_empty() {
                        let _ = seq.job.events.try_send(Event::Text(tail));
                    }
                    let first = seq.first_token.unwrap_or(now);
                    let done = Finished {
                        reason,
                        prompt_tokens: seq.job.prompt.len() as u32,
                        cached_tokens: seq.reused as u32,
                        completion_tokens: seq.generated,
                        prefill: first - seq.admitted,
                        decode: now - first,
                    };
                    self.gauges.finished(&done);
                    let _ = seq.job.events.try_send(Event::Done(done));
                    self.keep(i);
                }
                None => seq.next = Some(token),
            }
        }
        self.gauges.kv_used(
            self.slots
                .iter()
                .flatten()
                .map(|s| s.pos.max(0) as u64)
                .sum(),
        );
    }

    /// A failed decode (the KV cache could not place the batch): the most recent sequence
    /// is answered with an error and freed, so the others can go on.
    fn fail_newest(&mut self, message: String) {
        let newest = (0..self.slots.len())
            .filter(|i| self.slots[*i].is_some())
            .max_by_key(|i| self.slots[*i].as_ref().map(|s| s.admitted));
        if let Some(i) = newest {
            if let Some(seq) = self.slots[i].as_ref() {
                let _ = seq.job.events.try_send(Event::Failed(Error::Inference {
                    model: self.name.to_owned(),
                    message: message.clone(),
                }));
            }
            self.free(i);
        }
        tracing::warn!(model = self.name, %message, "local decode failed");
    }
}
