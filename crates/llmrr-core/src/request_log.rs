//! The request-log writer: rows are queued on a bounded channel and written by one task in
//! batches (by size, or after a short interval), off the request path. A flush command makes
//! every row queued before it durable — used at shutdown and by tests.

use crate::config::StoreConfig;
use crate::store::{LogRow, Store};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

enum Command {
    Row(Box<LogRow>),
    Flush(oneshot::Sender<()>),
}

/// A cloneable handle to the writer.
#[derive(Clone)]
pub struct RequestLog {
    tx: mpsc::Sender<Command>,
}

impl RequestLog {
    /// Start the writer task on the current runtime.
    pub fn start(store: Store, config: &StoreConfig) -> RequestLog {
        // Bounded: when the database falls behind, requests wait here rather than memory
        // growing without limit.
        let (tx, rx) = mpsc::channel(config.log_queue_capacity);
        let writer = Writer {
            store,
            batch: config.log_batch_size,
            interval: config.log_flush_interval,
            pending: Vec::with_capacity(config.log_batch_size),
        };
        tokio::spawn(writer.run(rx));
        RequestLog { tx }
    }

    pub async fn append(&self, row: LogRow) {
        if self.tx.send(Command::Row(Box::new(row))).await.is_err() {
            tracing::error!("request log writer has stopped; a row was not written");
            metrics::counter!(crate::telemetry::LOG_ROWS_DROPPED).increment(1);
        }
    }

    /// Wait until every row appended before this call is written (or has failed for good).
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Command::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

struct Writer {
    store: Store,
    batch: usize,
    interval: Duration,
    pending: Vec<LogRow>,
}

/// Rows kept for retry while the database is unreachable, at most.
const MAX_RETAINED_BATCHES: usize = 16;

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Row(row)) => {
                        self.pending.push(*row);
                        if self.pending.len() >= self.batch {
                            self.write().await;
                        }
                    }
                    Some(Command::Flush(ack)) => {
                        self.write().await;
                        let _ = ack.send(());
                    }
                    None => {
                        self.write().await;
                        return;
                    }
                },
                _ = tick.tick(), if !self.pending.is_empty() => self.write().await,
            }
        }
    }

    async fn write(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        for attempt in 0..3u32 {
            match self.store.insert_log_rows(&self.pending).await {
                Ok(()) => {
                    metrics::counter!(crate::telemetry::LOG_ROWS_WRITTEN)
                        .increment(self.pending.len() as u64);
                    self.pending.clear();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, rows = self.pending.len(), attempt, "request log write failed");
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
            }
        }
        metrics::counter!(crate::telemetry::LOG_WRITE_ERRORS).increment(1);
        // Keep the rows for the next try, within a bound.
        let cap = self.batch * MAX_RETAINED_BATCHES;
        if self.pending.len() > cap {
            let dropped = self.pending.len() - cap;
            self.pending.drain(..dropped);
            tracing::error!(
                dropped,
                "request log rows dropped: the store is unreachable"
            );
            metrics::counter!(crate::telemetry::LOG_ROWS_DROPPED).increment(dropped as u64);
        }
    }
}
