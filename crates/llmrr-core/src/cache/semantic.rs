//! The semantic tier: a request whose last user turn means the same as one answered before
//! (cosine similarity of their embeddings ≥ the rule's threshold) and whose other parts are
//! identical (same context key: model or route, namespace, system prompt and earlier turns,
//! parameters) gets that earlier answer.
//!
//! One HNSW index per namespace (`hnsw_rs`: maintained, pure Rust, incremental inserts,
//! filtered search — a search only considers entries of the same context). Bounded: a full
//! index is rebuilt from its newest half. Vectors are kept with L2 when it is on, and loaded
//! from it at start, so the tier survives a restart with the answers it points to.

use super::key::CacheKey;
use hnsw_rs::prelude::{DistCosine, Hnsw};
use std::collections::HashMap;
use std::sync::Mutex;

/// A stored prompt and where its answer is.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The exact key of the answer.
    pub key: CacheKey,
    /// The key of everything but the last user turn.
    pub context: CacheKey,
    /// The last user turn (the start of it), for explanations.
    pub prompt: String,
    pub vector: Vec<f32>,
}

/// The nearest earlier prompt, when close enough.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub key: CacheKey,
    pub similarity: f32,
    pub prompt: String,
}

/// HNSW settings: links per node, candidates while building and searching.
const LINKS: usize = 16;
const EF_BUILD: usize = 200;
const EF_SEARCH: usize = 64;
const LAYERS: usize = 16;
/// Prompts kept for explanations, at most (characters).
pub const PROMPT_CHARS: usize = 200;

struct Shelf {
    index: Hnsw<'static, f32, DistCosine>,
    items: Vec<Item>,
}

impl Shelf {
    fn new(capacity: usize) -> Shelf {
        Shelf {
            index: Hnsw::new(LINKS, capacity, LAYERS, EF_BUILD, DistCosine {}),
            items: Vec::new(),
        }
    }
}

pub struct SemanticIndex {
    shelves: Mutex<HashMap<String, Shelf>>,
    /// Entries per namespace, at most.
    capacity: usize,
}

impl SemanticIndex {
    pub fn new(capacity: usize) -> Self {
        SemanticIndex {
            shelves: Mutex::default(),
            capacity: capacity.max(2),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Shelf>> {
        self.shelves.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The closest earlier prompt of `context` in `namespace`, if its similarity reaches
    /// `threshold`.
    pub fn search(
        &self,
        namespace: &str,
        context: &CacheKey,
        vector: &[f32],
        threshold: f32,
    ) -> Option<Match> {
        let shelves = self.lock();
        let shelf = shelves.get(namespace)?;
        let same_context = |id: &usize| shelf.items.get(*id).is_some_and(|i| i.context == *context);
        let found = shelf
            .index
            .search_filter(vector, 1, EF_SEARCH, Some(&same_context));
        let best = found.first()?;
        let item = shelf.items.get(best.d_id)?;
        let similarity = 1.0 - best.distance;
        (similarity >= threshold && item.context == *context).then(|| Match {
            key: item.key,
            similarity,
            prompt: item.prompt.clone(),
        })
    }

    /// Index `item` in `namespace`; a full index keeps its newest half first.
    pub fn add(&self, namespace: &str, item: Item) {
        if item.vector.is_empty() || item.vector.iter().all(|x| *x == 0.0) {
            return;
        }
        let mut shelves = self.lock();
        let shelf = shelves
            .entry(namespace.to_owned())
            .or_insert_with(|| Shelf::new(self.capacity));
        if shelf.items.len() >= self.capacity {
            let keep = shelf.items.split_off(shelf.items.len() - self.capacity / 2);
            *shelf = Shelf::new(self.capacity);
            for item in keep {
                insert(shelf, item);
            }
        }
        insert(shelf, item);
    }

    /// Drop the namespaces `drop` selects (a purge); returns the items dropped.
    pub fn remove_namespaces(&self, drop: impl Fn(&str) -> bool) -> u64 {
        let mut shelves = self.lock();
        let mut n = 0;
        shelves.retain(|ns, shelf| {
            let gone = drop(ns);
            if gone {
                n += shelf.items.len() as u64;
            }
            !gone
        });
        n
    }

    pub fn len(&self) -> usize {
        self.lock().values().map(|s| s.items.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn insert(shelf: &mut Shelf, item: Item) {
    let id = shelf.items.len();
    shelf.index.insert((&item.vector, id));
    shelf.items.push(item);
}

/// Vectors as stored with L2 (little-endian f32s).
pub fn vector_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn vector_of(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: u8, context: u8, v: &[f32]) -> Item {
        Item {
            key: CacheKey::from_bytes([key; 32]),
            context: CacheKey::from_bytes([context; 32]),
            prompt: format!("prompt {key}"),
            vector: v.to_vec(),
        }
    }

    #[test]
    fn the_nearest_prompt_of_the_same_context_above_the_threshold_matches() {
        let index = SemanticIndex::new(100);
        index.add("ns", item(1, 9, &[1.0, 0.0, 0.0]));
        index.add("ns", item(2, 9, &[0.0, 1.0, 0.0]));
        index.add("ns", item(3, 8, &[0.99, 0.1, 0.0]));
        let ctx = CacheKey::from_bytes([9; 32]);
        let m = index.search("ns", &ctx, &[0.98, 0.05, 0.0], 0.95).unwrap();
        assert_eq!(
            m.key,
            CacheKey::from_bytes([1; 32]),
            "not item 3: another context"
        );
        assert!(m.similarity > 0.99);
        assert_eq!(m.prompt, "prompt 1");
        assert!(
            index.search("ns", &ctx, &[0.7, 0.7, 0.0], 0.95).is_none(),
            "too far"
        );
        assert!(
            index.search("other", &ctx, &[1.0, 0.0, 0.0], 0.5).is_none(),
            "namespace"
        );
    }

    #[test]
    fn a_full_index_keeps_its_newest_half_and_vectors_round_trip() {
        let index = SemanticIndex::new(4);
        for k in 0..5u8 {
            index.add("ns", item(k, 1, &[1.0, f32::from(k), 0.5]));
        }
        assert_eq!(index.len(), 3, "2 kept + the new one");
        let v = vec![0.25f32, -1.5, 3.0];
        assert_eq!(vector_of(&vector_bytes(&v)), v);
        assert_eq!(index.remove_namespaces(|ns| ns == "ns"), 3);
        assert!(index.is_empty());
    }
}
