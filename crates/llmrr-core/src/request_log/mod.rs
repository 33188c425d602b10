//! The request-log writer: rows go on a bounded queue and one task writes them in batches (by
//! size, or after a short interval), off the request path.
//!
//! The request path never waits on the log: [`RequestLog::append`] only enqueues, and when the
//! queue is full (the store has been down longer than the queue lasts) the row is dropped and
//! counted (`llmrr_request_log_rows_dropped_total{reason="queue_full"}`). The writer
//! ([`writer`]) keeps failed batches for retry within a bound, backs off while the store is
//! down, recovers by itself on a fresh connection when it returns, and sets aside a row the
//! database refuses (a bad value) instead of retrying it forever. [`WriterHealth`] tells
//! readiness whether writes are failing. A flush makes every row queued before it durable
//! (or failed for good) — used at shutdown, within its grace, and by tests.

pub mod access;
mod writer;

use crate::config::StoreConfig;
use crate::store::{LogRow, Store};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

enum Command {
    Row(Box<LogRow>),
    /// Write what is queued; answers how many rows are still unwritten (the store failing).
    Flush(oneshot::Sender<usize>),
    /// Write what is queued, drop (and count) what cannot be written, and stop; answers how
    /// many were dropped.
    Close(oneshot::Sender<usize>),
}

/// A cloneable handle to the writer.
#[derive(Clone)]
pub struct RequestLog {
    tx: mpsc::Sender<Command>,
    health: Arc<WriterHealth>,
}

/// Whether the writer's last write failed, and why; read by readiness.
#[derive(Debug, Default)]
pub struct WriterHealth {
    /// The failing write's error label; `None` while writes succeed (touched once a batch).
    failing: Mutex<Option<&'static str>>,
    /// Unix ms of the last "row dropped" warning, to log at most one a second.
    last_drop_warning_ms: AtomicI64,
    dropped: AtomicU64,
}

impl WriterHealth {
    /// `Some(why)` while the writer cannot write.
    pub fn failing(&self) -> Option<String> {
        let label = (*self.failing.lock().ok()?)?;
        Some(format!("the request log cannot be written ({label})"))
    }

    /// Rows dropped since the start, for every reason.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn succeeded(&self) {
        if let Ok(mut f) = self.failing.lock() {
            if f.take().is_some() {
                tracing::info!("request log: the store accepts writes again");
            }
        }
    }

    fn failed(&self, label: &'static str) {
        if let Ok(mut f) = self.failing.lock() {
            *f = Some(label);
        }
    }

    fn dropped_rows(&self, rows: u64, reason: &'static str) {
        if rows == 0 {
            return;
        }
        self.dropped.fetch_add(rows, Ordering::Relaxed);
        metrics::counter!(crate::telemetry::LOG_ROWS_DROPPED, "reason" => reason).increment(rows);
        let now = crate::store::now_ms();
        let last = self.last_drop_warning_ms.load(Ordering::Relaxed);
        if now - last >= 1000
            && self
                .last_drop_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(rows, reason, "request log rows dropped");
        }
    }
}

impl RequestLog {
    /// Start the writer task on the current runtime.
    pub fn start(store: Store, config: &StoreConfig) -> RequestLog {
        let (tx, rx) = mpsc::channel(config.log_queue_capacity);
        let health = Arc::new(WriterHealth::default());
        let writer = writer::Writer::new(store, config, health.clone());
        tokio::spawn(writer.run(rx));
        RequestLog { tx, health }
    }

    /// Queue a row (already [`LogRow::sanitized`]); never waits. A full queue drops the row
    /// (counted and logged).
    pub fn append(&self, row: LogRow) {
        match self.tx.try_send(Command::Row(Box::new(row))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.health.dropped_rows(1, "queue_full"),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.health.dropped_rows(1, "writer_stopped")
            }
        }
    }

    /// Try to write every row appended before this call, waiting at most `limit`. `Some(n)`:
    /// the try is over and `n` rows are still unwritten (the store fails; they are kept and
    /// retried); `None`: the limit ran out first.
    pub async fn flush(&self, limit: Duration) -> Option<usize> {
        self.ask(Command::Flush, limit).await
    }

    /// The last flush, at shutdown: write what can be written within `limit`, then stop the
    /// writer. `Some(n)`: `n` rows could not be written and are dropped (counted with reason
    /// `shutdown`); `None`: the limit ran out first (the rows still queued are lost).
    pub async fn close(&self, limit: Duration) -> Option<usize> {
        self.ask(Command::Close, limit).await
    }

    async fn ask(
        &self,
        command: impl FnOnce(oneshot::Sender<usize>) -> Command,
        limit: Duration,
    ) -> Option<usize> {
        let (ack, done) = oneshot::channel();
        tokio::time::timeout(limit, async {
            self.tx.send(command(ack)).await.ok()?;
            done.await.ok()
        })
        .await
        .ok()
        .flatten()
    }

    pub fn health(&self) -> &WriterHealth {
        &self.health
    }
}
