//! Where a streamed call's pump sends its client's items: straight to the client's stream,
//! or — for the leader of a coalesced flight — through a queue, so that a slow client of the
//! leader's own does not pace the followers.

use crate::answer::StreamItem;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};

/// The most a leader's client may lag behind the upstream, in bytes queued for it.
const QUEUE_CAP: usize = 4 * 1024 * 1024;

pub(super) enum Outlet {
    /// Straight to the client's stream: the pump waits while the client does not read (the
    /// upstream is read as fast as the client reads).
    Direct(mpsc::Sender<StreamItem>),
    /// Through a queue emptied into the client's stream by a task of its own.
    Queued(Queue),
}

pub(super) struct Queue {
    tx: mpsc::UnboundedSender<StreamItem>,
    /// Bytes queued that the client's stream has not taken yet.
    bytes: Arc<AtomicUsize>,
    /// Told whenever the client's stream takes an item.
    taken: Arc<Notify>,
}

fn size(item: &StreamItem) -> usize {
    match item {
        StreamItem::Chunk(b) | StreamItem::Explain(b) => b.len(),
        StreamItem::Done | StreamItem::Error(_) => 0,
    }
}

impl Outlet {
    /// A queue in front of `frames`. Its task ends once the queue is empty and closed, or as
    /// soon as the client leaves (even while nothing is queued): the queue closes then, and
    /// the pump sees the client gone.
    pub(super) fn queued(frames: mpsc::Sender<StreamItem>) -> Outlet {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let bytes = Arc::new(AtomicUsize::new(0));
        let taken = Arc::new(Notify::new());
        let (queued, told) = (bytes.clone(), taken.clone());
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    item = rx.recv() => item,
                    () = frames.closed() => None,
                };
                let Some(item) = item else { return };
                let n = size(&item);
                if frames.send(item).await.is_err() {
                    return;
                }
                queued.fetch_sub(n, Ordering::AcqRel);
                told.notify_waiters();
            }
        });
        Outlet::Queued(Queue { tx, bytes, taken })
    }

    /// Send `item` to the client; `Err` once it has left. A queued client more than
    /// `QUEUE_CAP` behind is waited for when nobody else listens (as a direct one is), and
    /// dropped as too slow when `others_wait` (followers): the stream ends for it there,
    /// rather than the answer being held for it, or the followers held back.
    pub(super) async fn send(
        &self,
        item: StreamItem,
        others_wait: bool,
    ) -> std::result::Result<(), ()> {
        let q = match self {
            Outlet::Direct(frames) => return frames.send(item).await.map_err(drop),
            Outlet::Queued(q) => q,
        };
        while q.bytes.load(Ordering::Acquire) > QUEUE_CAP {
            if others_wait {
                return Err(());
            }
            let taken = q.taken.notified();
            tokio::pin!(taken);
            taken.as_mut().enable();
            if q.bytes.load(Ordering::Acquire) <= QUEUE_CAP {
                break;
            }
            tokio::select! {
                () = taken => {}
                () = q.tx.closed() => return Err(()),
            }
        }
        q.bytes.fetch_add(size(&item), Ordering::AcqRel);
        q.tx.send(item).map_err(drop)
    }

    /// Resolves once the client has left.
    pub(super) async fn closed(&self) {
        match self {
            Outlet::Direct(frames) => frames.closed().await,
            Outlet::Queued(q) => q.tx.closed().await,
        }
    }
}
