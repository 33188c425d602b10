//! Coalescing: identical cacheable requests in flight at once make one upstream call.
//!
//! The first request of a key leads: it calls the model and publishes what it gets on a
//! `watch` channel that no client owns: the chunks of a stream as they arrive, then the end
//! (the whole answer, or a failure). Followers subscribe and read from the first chunk, so
//! one that joins late still gets everything. The leader's call goes on while any follower
//! listens, even if the leader's own client has left ([`Lead::all_gone`] is what cancels it).
//! A leader that fails before any output lets its followers try again (one of them leads
//! the retry); a failure mid-stream reaches them as the stream's error event.

use super::entry::{Chunk, Entry};
use super::key::CacheKey;
use crate::answer::AnswerError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What a flight has published so far.
#[derive(Debug, Default)]
pub struct Progress {
    /// A stream's chunks so far.
    pub chunks: Vec<Chunk>,
    pub end: Option<End>,
}

#[derive(Debug, Clone)]
pub enum End {
    /// The whole answer.
    Done(Arc<Entry>),
    /// The call failed; with the error the stream ended with when some output had gone out.
    Failed(Option<AnswerError>),
}

type Sender = Arc<watch::Sender<Progress>>;

#[derive(Default)]
pub struct Flights {
    map: Mutex<HashMap<CacheKey, Sender>>,
}

pub enum Join {
    Lead(Lead),
    Follow(Follower),
}

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Sender>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follow the flight of `key` in the air, or lead a new one.
    pub fn join(self: &Arc<Self>, key: CacheKey) -> Join {
        let mut map = self.lock();
        if let Some(tx) = map.get(&key) {
            return Join::Follow(Follower {
                rx: tx.subscribe(),
                key,
            });
        }
        let (tx, _) = watch::channel(Progress::default());
        let tx = Arc::new(tx);
        map.insert(key, tx.clone());
        Join::Lead(Lead {
            key,
            tx,
            flights: self.clone(),
            ended: false,
        })
    }

    pub fn in_flight(&self) -> usize {
        self.lock().len()
    }
}

/// The request that makes the call for everyone. Dropped before an end: a failure.
pub struct Lead {
    key: CacheKey,
    tx: Sender,
    flights: Arc<Flights>,
    ended: bool,
}

impl std::fmt::Debug for Lead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lead({:?}, {} following)", self.key, self.followers())
    }
}

impl Lead {
    pub fn key(&self) -> CacheKey {
        self.key
    }

    pub fn followers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Resolves once no follower listens (at once when none ever did).
    pub fn all_gone(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let tx = self.tx.clone();
        async move { tx.closed().await }
    }

    /// A stream chunk, as the leader's client got it.
    pub fn push(&self, chunk: Chunk) {
        self.tx.send_modify(|p| p.chunks.push(chunk));
    }

    pub fn done(mut self, entry: Arc<Entry>) {
        self.end(End::Done(entry));
    }

    /// The call failed: `error_event` is the error the stream ended with when output had
    /// gone out.
    pub fn failed(mut self, error_event: Option<AnswerError>) {
        self.end(End::Failed(error_event));
    }

    fn end(&mut self, end: End) {
        if self.ended {
            return;
        }
        self.ended = true;
        {
            let mut map = self.flights.lock();
            if map
                .get(&self.key)
                .is_some_and(|tx| Arc::ptr_eq(tx, &self.tx))
            {
                map.remove(&self.key);
            }
        }
        self.tx.send_modify(|p| p.end = Some(end));
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        // A leader gone without an end (refused by its own limits or budget, its client
        // left, a panic): before any output the followers try again themselves; after
        // some, their streams end with an error.
        self.end(End::Failed(None));
    }
}

/// A request waiting on another's call.
pub struct Follower {
    rx: watch::Receiver<Progress>,
    key: CacheKey,
}

/// What a follower reads next.
pub enum Next {
    Chunks(Vec<Chunk>),
    End(End),
}

impl Follower {
    /// The key of the call it follows.
    pub fn key(&self) -> CacheKey {
        self.key
    }

    /// Wait for the whole answer; `None`: the leader failed, try again.
    pub async fn answer(mut self) -> Option<Arc<Entry>> {
        loop {
            match &self.rx.borrow_and_update().end {
                Some(End::Done(entry)) => return Some(entry.clone()),
                Some(End::Failed(_)) => return None,
                None => {}
            }
            self.rx.changed().await.ok()?;
        }
    }

    /// A stream: wait for its first chunk. False: it failed before any, try again.
    pub async fn opened(&mut self) -> bool {
        loop {
            {
                let p = self.rx.borrow_and_update();
                if !p.chunks.is_empty() {
                    return true;
                }
                match &p.end {
                    Some(End::Done(_)) => return true,
                    Some(End::Failed(_)) => return false,
                    None => {}
                }
            }
            if self.rx.changed().await.is_err() {
                return false;
            }
        }
    }

    /// The chunks after the first `seen`, or the end once every chunk was read.
    pub async fn next(&mut self, seen: usize) -> Next {
        loop {
            {
                let p = self.rx.borrow_and_update();
                if p.chunks.len() > seen {
                    return Next::Chunks(p.chunks[seen..].to_vec());
                }
                if let Some(end) = &p.end {
                    return Next::End(end.clone());
                }
            }
            if self.rx.changed().await.is_err() {
                return Next::End(End::Failed(None));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::{tests::entry, Body};
    use bytes::Bytes;

    fn chunk(s: &'static str) -> Chunk {
        Chunk {
            data: Bytes::from_static(s.as_bytes()),
            usage_only: false,
        }
    }

    #[tokio::test]
    async fn followers_get_every_chunk_and_the_end_even_after_the_leader_left() {
        let flights = Arc::new(Flights::default());
        let key = CacheKey::from_bytes([1; 32]);
        let Join::Lead(lead) = flights.join(key) else {
            panic!("first is the leader")
        };
        lead.push(chunk("a"));
        let Join::Follow(mut late) = flights.join(key) else {
            panic!("second follows")
        };
        lead.push(chunk("b"));
        assert!(late.opened().await);
        let Next::Chunks(c) = late.next(0).await else {
            panic!()
        };
        assert_eq!(c, vec![chunk("a"), chunk("b")]);
        let e = Arc::new(entry(Body::Stream(c)));
        lead.done(e.clone());
        assert_eq!(flights.in_flight(), 0);
        assert!(matches!(late.next(2).await, Next::End(End::Done(d)) if d == e));
        // A new request after the end leads a new flight.
        assert!(matches!(flights.join(key), Join::Lead(_)));
    }

    #[tokio::test]
    async fn a_leader_dropped_before_output_lets_followers_retry() {
        let flights = Arc::new(Flights::default());
        let key = CacheKey::from_bytes([2; 32]);
        let Join::Lead(lead) = flights.join(key) else {
            panic!()
        };
        let Join::Follow(f) = flights.join(key) else {
            panic!()
        };
        let gone = lead.all_gone();
        let waiting = tokio::spawn(f.answer());
        tokio::task::yield_now().await;
        drop(lead);
        assert!(waiting.await.unwrap().is_none());
        gone.await;
        assert!(matches!(flights.join(key), Join::Lead(_)));
    }
}
