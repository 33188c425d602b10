//! The one task that writes the request log: batches rows (at most `log_batch_size` per
//! transaction), retries failed batches with backoff (rows kept within a bound), and isolates
//! rows the database refuses by halving the batch that holds them.

use super::{Command, WriterHealth};
use crate::config::StoreConfig;
use crate::error::Error;
use crate::store::{LogRow, Store};
use crate::telemetry;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// One write may take this long before it counts as failed (a store that hangs must not hang
/// the writer); its connection is closed then.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Backoff between writes while the store fails: doubling from the first to the last.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(super) struct Writer {
    store: Store,
    batch: usize,
    interval: Duration,
    /// Rows kept while the store is down, at most; past it the oldest are dropped.
    max_pending: usize,
    pending: VecDeque<LogRow>,
    health: Arc<WriterHealth>,
    backoff: Duration,
    /// Set while the store fails: no write before then (a flush still tries at once).
    retry_at: Option<Instant>,
}

impl Writer {
    pub(super) fn new(store: Store, config: &StoreConfig, health: Arc<WriterHealth>) -> Writer {
        Writer {
            store,
            batch: config.log_batch_size,
            interval: config.log_flush_interval,
            max_pending: config.log_queue_capacity.max(config.log_batch_size),
            pending: VecDeque::with_capacity(config.log_batch_size),
            health,
            backoff: Duration::ZERO,
            retry_at: None,
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let retry_at = self.retry_at;
            let waiting = retry_at.is_some();
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Row(row)) => {
                        self.keep(*row);
                        if self.pending.len() >= self.batch && !waiting {
                            self.write().await;
                        }
                    }
                    Some(Command::Flush(ack)) => {
                        self.write().await;
                        let _ = ack.send(self.pending.len());
                    }
                    Some(Command::Close(ack)) => {
                        // Shutdown: every row the queue still holds (whatever else is queued
                        // between them), then one last write; every waiter gets its answer.
                        let mut acks = vec![ack];
                        while let Ok(cmd) = rx.try_recv() {
                            match cmd {
                                Command::Row(row) => self.keep(*row),
                                Command::Flush(ack) | Command::Close(ack) => acks.push(ack),
                            }
                        }
                        self.write().await;
                        let left = self.pending.len();
                        self.drop_pending("shutdown");
                        for ack in acks {
                            let _ = ack.send(left);
                        }
                        return;
                    }
                    None => {
                        self.write().await;
                        self.drop_pending("shutdown");
                        return;
                    }
                },
                _ = tick.tick(), if !self.pending.is_empty() && !waiting => self.write().await,
                () = sleep_until(retry_at), if waiting => self.write().await,
            }
        }
    }

    fn keep(&mut self, row: LogRow) {
        if self.pending.len() >= self.max_pending {
            self.pending.pop_front();
            self.health.dropped_rows(1, "store_unavailable");
        }
        self.pending.push_back(row);
    }

    fn drop_pending(&mut self, reason: &'static str) {
        self.health.dropped_rows(self.pending.len() as u64, reason);
        self.pending.clear();
    }

    /// Write every pending row, a batch per transaction; on a store failure keep what is left
    /// and schedule the next try.
    async fn write(&mut self) {
        while !self.pending.is_empty() {
            let n = self.pending.len().min(self.batch);
            let rows: Vec<LogRow> = self.pending.drain(..n).collect();
            match self.write_isolating(rows).await {
                Ok(()) => {}
                Err((e, unwritten)) => {
                    for row in unwritten.into_iter().rev() {
                        self.pending.push_front(row);
                    }
                    self.failed(&e);
                    return;
                }
            }
        }
        self.recovered();
    }

    /// Write `rows`; a batch the database refuses because of a row in it is halved until the
    /// refused rows stand alone, and those are dropped. On a store failure, the rows not yet
    /// written come back with the error.
    async fn write_isolating(
        &mut self,
        rows: Vec<LogRow>,
    ) -> std::result::Result<(), (Error, Vec<LogRow>)> {
        let mut parts = vec![rows];
        while let Some(part) = parts.pop() {
            match self.store.insert_log_rows(&part, WRITE_TIMEOUT).await {
                Ok(written) => {
                    metrics::counter!(telemetry::LOG_ROWS_WRITTEN).increment(written);
                }
                Err(e) if self.store.is_data_error(&e) && part.len() > 1 => {
                    let mut left = part;
                    let right = left.split_off(left.len() / 2);
                    parts.push(right);
                    parts.push(left);
                }
                Err(e) if self.store.is_data_error(&e) => {
                    let id = part.first().map(|r| r.id.as_str()).unwrap_or("-");
                    tracing::error!(request_id = %id, error = %e, "request log row refused by the store; dropped");
                    self.health.dropped_rows(1, "refused_by_store");
                }
                Err(e) => {
                    let unwritten = parts.into_iter().rev().flatten();
                    let unwritten: Vec<LogRow> = part.into_iter().chain(unwritten).collect();
                    return Err((e, unwritten));
                }
            }
        }
        Ok(())
    }

    fn recovered(&mut self) {
        self.backoff = Duration::ZERO;
        self.retry_at = None;
        self.health.succeeded();
    }

    fn failed(&mut self, e: &Error) {
        metrics::counter!(telemetry::LOG_WRITE_ERRORS).increment(1);
        self.health.failed(e.label());
        self.backoff = if self.backoff.is_zero() {
            FIRST_BACKOFF
        } else {
            (self.backoff * 2).min(MAX_BACKOFF)
        };
        self.retry_at = Some(Instant::now() + self.backoff);
        tracing::warn!(error = %e, rows = self.pending.len(), retry_in = ?self.backoff, "request log write failed");
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
