//! Kept prompts beyond the slots: when a request takes a slot whose kept KV it cannot use, that
//! KV (llama.cpp's state of the sequence) is copied to memory first, and a later request that
//! shares its prefix has it copied back into a slot instead of prefilling it — the next turn of
//! a conversation finds its history even when other requests used its slot meanwhile (more
//! conversations than slots). Bounded by bytes (`prompt_cache_mb`, counted in the model's
//! memory estimate); the least recently used entries go first.

use llama_cpp_2::context::session::SeqState;
use llama_cpp_2::token::LlamaToken;
use std::sync::atomic::{AtomicU64, Ordering};

/// The bytes held by every model's prompt cache together: a load's memory measurement leaves
/// out what they grew by meanwhile.
pub(crate) static HELD: AtomicU64 = AtomicU64::new(0);

/// Fewer tokens than this are not worth a copy (a prefill of them is about as quick).
pub(crate) const MIN_TOKENS: usize = 64;

pub(crate) struct Entry {
    pub tokens: Vec<LlamaToken>,
    pub state: SeqState,
    used_at: u64,
}

pub(crate) struct PromptCache {
    entries: Vec<Entry>,
    bytes: usize,
    limit: usize,
    clock: u64,
}

/// How many leading tokens `a` and `b` share.
pub(crate) fn shared(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PromptCache {
    pub fn new(limit_bytes: usize) -> PromptCache {
        PromptCache {
            entries: Vec::new(),
            bytes: 0,
            limit: limit_bytes,
            clock: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.limit > 0
    }

    /// The entry sharing the longest prefix with `prompt`, and how long.
    pub fn best(&self, prompt: &[LlamaToken]) -> Option<(usize, usize)> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, shared(&e.tokens, prompt)))
            .max_by_key(|&(i, n)| (n, self.entries[i].used_at))
            .filter(|&(_, n)| n > 0)
    }

    /// Takes entry `i` out (it goes into a slot; it is stored again when that slot is taken).
    pub fn take(&mut self, i: usize) -> Entry {
        let e = self.entries.swap_remove(i);
        self.bytes -= e.state.byte_len();
        HELD.fetch_sub(e.state.byte_len() as u64, Ordering::Relaxed);
        e
    }

    /// Entry `i`, marked as just used (it is copied into a slot and stays here too).
    pub fn touch(&mut self, i: usize) -> &Entry {
        self.clock += 1;
        self.entries[i].used_at = self.clock;
        &self.entries[i]
    }

    /// The tokens of entry `i`.
    pub fn tokens(&self, i: usize) -> &[LlamaToken] {
        &self.entries[i].tokens
    }

    /// Whether a sequence of `bytes` could be stored at all.
    pub fn fits(&self, bytes: usize) -> bool {
        bytes <= self.limit
    }

    /// Stores a sequence's state; entries it makes redundant (their tokens a prefix of its)
    /// and then the least recently used go to make room. One larger than the whole cache is
    /// not stored.
    pub fn insert(&mut self, tokens: Vec<LlamaToken>, state: SeqState) {
        let size = state.byte_len();
        if size > self.limit || tokens.len() < MIN_TOKENS {
            return;
        }
        // Already covered by a longer entry: that one is marked recent instead.
        if let Some(i) = (0..self.entries.len())
            .find(|&i| shared(&self.entries[i].tokens, &tokens) == tokens.len())
        {
            self.touch(i);
            return;
        }
        let mut i = 0;
        while i < self.entries.len() {
            let e = &self.entries[i];
            if e.tokens.len() <= tokens.len() && shared(&e.tokens, &tokens) == e.tokens.len() {
                self.take(i);
            } else {
                i += 1;
            }
        }
        while self.bytes + size > self.limit {
            let Some(oldest) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].used_at)
            else {
                break;
            };
            self.take(oldest);
        }
        self.clock += 1;
        self.bytes += size;
        HELD.fetch_add(size as u64, Ordering::Relaxed);
        self.entries.push(Entry {
            tokens,
            state,
            used_at: self.clock,
        });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for PromptCache {
    fn drop(&mut self) {
        HELD.fetch_sub(self.bytes as u64, Ordering::Relaxed);
    }
}
