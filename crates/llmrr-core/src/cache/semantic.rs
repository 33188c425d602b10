//! The semantic tier: a request whose last user turn means the same as one answered before
//! (cosine similarity of their embeddings ≥ the rule's threshold) and whose other parts are
//! identical gets that earlier answer.
//!
//! A match needs an identical context (model or route, namespace, system prompt and earlier
//! turns, parameters, and the embedding model — their hash is the context key), so the index is
//! one shelf per (namespace, context): an HNSW graph (`hnsw_rs`: maintained, pure Rust,
//! incremental inserts) over unit vectors of one dimension. Searching a shelf never walks
//! another context's points, and a vector of another dimension (the embedding model changed)
//! starts the shelf afresh instead of meeting the old ones. Each shelf has its own lock; the
//! map's lock is held only to find a shelf. Bounded: a full shelf keeps its newest half, and
//! past `MAX_SHELVES` the oldest shelf goes. Vectors are kept with L2 when it is on and loaded
//! from it at start.

use super::key::CacheKey;
use hnsw_rs::prelude::{DistCosine, Hnsw};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A stored prompt and where its answer is.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The exact key of the answer.
    pub key: CacheKey,
    /// The key of everything but the last user turn (the embedding model included).
    pub context: CacheKey,
    /// The last user turn (the start of it), for explanations.
    pub prompt: String,
    pub vector: Vec<f32>,
    /// When the answer expires (ms since the Unix epoch): the item is not matched after.
    pub expires_ms: i64,
}

/// The nearest earlier prompt, when close enough.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub key: CacheKey,
    pub similarity: f32,
    pub prompt: String,
}

/// HNSW settings: links per node, candidates while building and searching, neighbours read.
const LINKS: usize = 16;
const EF_BUILD: usize = 64;
const EF_SEARCH: usize = 32;
const LAYERS: usize = 16;
const NEIGHBOURS: usize = 4;
/// Points a new shelf allocates room for (it grows past this as needed).
const INITIAL_ROOM: usize = 256;
/// Shelves (namespace × context) at most; past it the oldest goes.
pub const MAX_SHELVES: usize = 10_000;
/// Prompts kept for explanations, at most (characters).
pub const PROMPT_CHARS: usize = 200;

struct Shelf {
    index: Hnsw<'static, f32, DistCosine>,
    items: Vec<Item>,
    dim: usize,
}

impl Shelf {
    fn new(dim: usize) -> Shelf {
        Shelf {
            index: Hnsw::new(LINKS, INITIAL_ROOM, LAYERS, EF_BUILD, DistCosine {}),
            items: Vec::new(),
            dim,
        }
    }

    fn insert(&mut self, item: Item) {
        let id = self.items.len();
        self.index.insert((&item.vector, id));
        self.items.push(item);
    }
}

type ShelfKey = (String, CacheKey);

#[derive(Default)]
struct Shelves {
    map: HashMap<ShelfKey, (u64, Arc<Mutex<Shelf>>)>,
    made: u64,
}

pub struct SemanticIndex {
    shelves: Mutex<Shelves>,
    /// Prompts per shelf, at most.
    capacity: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `v` scaled to length 1, or `None` when it has no direction (zero, tiny, not finite).
pub fn unit(v: &[f32]) -> Option<Vec<f32>> {
    if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    (norm.is_finite() && norm > 1e-6)
        .then(|| v.iter().map(|x| (f64::from(*x) / norm) as f32).collect())
}

impl SemanticIndex {
    pub fn new(capacity: usize) -> Self {
        SemanticIndex {
            shelves: Mutex::default(),
            capacity: capacity.max(2),
        }
    }

    fn shelf(&self, namespace: &str, context: &CacheKey) -> Option<Arc<Mutex<Shelf>>> {
        let shelves = lock(&self.shelves);
        shelves
            .map
            .get(&(namespace.to_owned(), *context))
            .map(|(_, s)| s.clone())
    }

    /// The closest earlier prompt of `context` in `namespace` whose answer has not expired
    /// by `now_ms`, if its similarity reaches `threshold`.
    pub fn search(
        &self,
        namespace: &str,
        context: &CacheKey,
        vector: &[f32],
        threshold: f32,
        now_ms: i64,
    ) -> Option<Match> {
        let query = unit(vector)?;
        let shelf = self.shelf(namespace, context)?;
        let shelf = lock(&shelf);
        if shelf.dim != query.len() || shelf.items.is_empty() {
            return None;
        }
        let found = shelf.index.search(&query, NEIGHBOURS, EF_SEARCH);
        found.iter().find_map(|n| {
            let item = shelf.items.get(n.d_id)?;
            let similarity = 1.0 - n.distance;
            (similarity >= threshold && item.expires_ms > now_ms).then(|| Match {
                key: item.key,
                similarity,
                prompt: item.prompt.clone(),
            })
        })
    }

    /// Index `item` in `namespace`: a full shelf keeps its newest half first; a vector of
    /// another dimension starts the shelf afresh.
    pub fn add(&self, namespace: &str, mut item: Item) {
        let Some(v) = unit(&item.vector) else {
            return;
        };
        item.vector = v;
        let shelf = {
            let mut shelves = lock(&self.shelves);
            let key = (namespace.to_owned(), item.context);
            if !shelves.map.contains_key(&key) && shelves.map.len() >= MAX_SHELVES {
                let oldest = shelves
                    .map
                    .iter()
                    .min_by_key(|(_, (made, _))| *made)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    shelves.map.remove(&k);
                }
            }
            shelves.made += 1;
            let made = shelves.made;
            let dim = item.vector.len();
            shelves
                .map
                .entry(key)
                .or_insert_with(|| (made, Arc::new(Mutex::new(Shelf::new(dim)))))
                .1
                .clone()
        };
        let mut shelf = lock(&shelf);
        if shelf.dim != item.vector.len() {
            *shelf = Shelf::new(item.vector.len());
        }
        if shelf.items.iter().any(|i| i.key == item.key) {
            return;
        }
        if shelf.items.len() >= self.capacity {
            let from = shelf.items.len() - self.capacity / 2;
            let keep = shelf.items.split_off(from);
            *shelf = Shelf::new(item.vector.len());
            for kept in keep {
                shelf.insert(kept);
            }
        }
        shelf.insert(item);
    }

    /// Drop the shelves of the namespaces `drop` selects (a purge); returns the items dropped.
    pub fn remove_namespaces(&self, drop: impl Fn(&str) -> bool) -> u64 {
        let mut shelves = lock(&self.shelves);
        let mut n = 0;
        shelves.map.retain(|(ns, _), (_, shelf)| {
            let gone = drop(ns);
            if gone {
                n += lock(shelf).items.len() as u64;
            }
            !gone
        });
        n
    }

    pub fn len(&self) -> usize {
        let shelves = lock(&self.shelves);
        shelves.map.values().map(|(_, s)| lock(s).items.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
            expires_ms: 1_000,
        }
    }

    #[test]
    fn the_nearest_live_prompt_of_the_same_context_above_the_threshold_matches() {
        let index = SemanticIndex::new(100);
        index.add("ns", item(1, 9, &[2.0, 0.0, 0.0]));
        index.add("ns", item(2, 9, &[0.0, 1.0, 0.0]));
        index.add("ns", item(3, 8, &[0.99, 0.1, 0.0]));
        let ctx = CacheKey::from_bytes([9; 32]);
        let m = index
            .search("ns", &ctx, &[0.98, 0.05, 0.0], 0.95, 0)
            .unwrap();
        assert_eq!(
            m.key,
            CacheKey::from_bytes([1; 32]),
            "not item 3: another context"
        );
        assert!(m.similarity > 0.99);
        assert_eq!(m.prompt, "prompt 1");
        assert!(
            index
                .search("ns", &ctx, &[0.7, 0.7, 0.0], 0.95, 0)
                .is_none(),
            "too far"
        );
        assert!(
            index
                .search("other", &ctx, &[1.0, 0.0, 0.0], 0.5, 0)
                .is_none(),
            "namespace"
        );
        assert!(
            index
                .search("ns", &ctx, &[1.0, 0.0, 0.0], 0.5, 1_000)
                .is_none(),
            "expired"
        );
        // Degenerate queries match nothing; another dimension neither (nor panics).
        assert!(index.search("ns", &ctx, &[0.0, 0.0, 0.0], 0.0, 0).is_none());
        assert!(index
            .search("ns", &ctx, &[f32::NAN, 1.0, 0.0], 0.0, 0)
            .is_none());
        assert!(index.search("ns", &ctx, &[1.0, 0.0], 0.0, 0).is_none());
        index.add("ns", item(4, 9, &[1.0, 0.0]));
        let m = index.search("ns", &ctx, &[1.0, 0.01], 0.95, 0).unwrap();
        assert_eq!(m.key, CacheKey::from_bytes([4; 32]), "a new model's shelf");
    }

    #[test]
    fn a_full_shelf_keeps_its_newest_half_and_vectors_round_trip() {
        let index = SemanticIndex::new(4);
        for k in 0..5u8 {
            index.add("ns", item(k, 1, &[1.0, f32::from(k), 0.5]));
        }
        assert_eq!(index.len(), 3, "2 kept + the new one");
        index.add("ns", item(4, 1, &[1.0, 4.0, 0.5]));
        assert_eq!(index.len(), 3, "a key is indexed once");
        let v = vec![0.25f32, -1.5, 3.0];
        assert_eq!(vector_of(&vector_bytes(&v)), v);
        assert_eq!(index.remove_namespaces(|ns| ns == "ns"), 3);
        assert!(index.is_empty());
    }
}
