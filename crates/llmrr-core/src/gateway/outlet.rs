//! Where a streamed call's pump sends its client's items: straight to the client's stream,
//! or — for the leader of a coalesced flight — through a queue, so that a slow client of the
//! leader's own does not pace the followers.

use crate::answer::{AnswerError, StreamItem};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
    /// `None` once the client was cut off.
    tx: Mutex<Option<mpsc::UnboundedSender<StreamItem>>>,
    /// Bytes queued that the client's stream has not taken yet.
    bytes: Arc<AtomicUsize>,
    /// Cancelled once the client has left or was cut off.
    gone: CancellationToken,
}

fn size(item: &StreamItem) -> usize {
    match item {
        StreamItem::Chunk(b) | StreamItem::Explain(b) => b.len(),
        StreamItem::Done | StreamItem::Error(_) => 0,
    }
}

/// What a client cut off as too slow reads last.
fn too_slow() -> AnswerError {
    AnswerError {
        status: 408,
        kind: "invalid_request_error".into(),
        message: format!(
            "the stream was read more than {} MiB behind the model: it ends here for this \
             client (identical requests sharing the answer go on)",
            QUEUE_CAP / (1024 * 1024)
        ),
        param: None,
        code: Some("client_too_slow".into()),
        retry_after: None,
    }
}

impl Outlet {
    /// A queue in front of `frames`. Its task hands the items on as the client reads them, and
    /// ends once the queue is empty and closed, or as soon as the client leaves (even while
    /// nothing is queued).
    pub(super) fn queued(frames: mpsc::Sender<StreamItem>) -> Outlet {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let bytes = Arc::new(AtomicUsize::new(0));
        let gone = CancellationToken::new();
        let (queued, left) = (bytes.clone(), gone.clone());
        tokio::spawn(async move {
            let _left = left.drop_guard();
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
            }
        });
        Outlet::Queued(Queue {
            tx: Mutex::new(Some(tx)),
            bytes,
            gone,
        })
    }

    /// Send `item` to the client; `Err` once it has left. A queued client more than
    /// `QUEUE_CAP` behind is cut off instead of being waited for (its followers would wait
    /// too) or the answer held for it: it gets what it was sent so far, then a
    /// `client_too_slow` error, and counts as gone from then on.
    pub(super) async fn send(&self, item: StreamItem) -> std::result::Result<(), ()> {
        let q = match self {
            Outlet::Direct(frames) => return frames.send(item).await.map_err(drop),
            Outlet::Queued(q) => q,
        };
        let n = size(&item);
        let mut tx = q.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sender) = tx.as_ref() else {
            return Err(());
        };
        if n > 0 && q.bytes.load(Ordering::Acquire) > QUEUE_CAP {
            let _ = sender.send(StreamItem::Error(too_slow()));
            *tx = None;
            q.gone.cancel();
            return Err(());
        }
        q.bytes.fetch_add(n, Ordering::AcqRel);
        sender.send(item).map_err(drop)
    }

    /// Resolves once the client has left (or was cut off).
    pub(super) async fn closed(&self) {
        match self {
            Outlet::Direct(frames) => frames.closed().await,
            Outlet::Queued(q) => q.gone.cancelled().await,
        }
    }
}
