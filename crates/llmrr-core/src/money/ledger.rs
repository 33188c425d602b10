//! The ledger writer: group commit. Each request's row is acknowledged only once the
//! transaction holding it has committed (its reservation is settled after that), and rows that
//! arrive while a batch is being written go together in the next one: one commit for many
//! requests instead of one each (measured: a commit per request cut the gateway's throughput
//! to 0.29x on SQLite; group commit brought it to 0.68x of the build without a ledger).

use crate::store::{LedgerRow, Store};
use tokio::sync::{mpsc, oneshot};

/// Rows per transaction at most.
const BATCH: usize = 512;
/// How long the writer gathers rows after the first before it commits: commits stay few under
/// load (each costs thread wake-ups and page writes), and a settlement waits this much longer
/// — off the answer's path.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);
/// Rows waiting for the writer; a full queue makes `append` wait (it runs off the answer's
/// path).
const QUEUE: usize = 8192;
/// Waits between write attempts of a batch before its rows are given up.
const RETRIES: [std::time::Duration; 4] = [
    std::time::Duration::from_millis(100),
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(5),
];

pub(super) struct LedgerWriter {
    tx: mpsc::Sender<(LedgerRow, oneshot::Sender<bool>)>,
}

impl LedgerWriter {
    pub(super) fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, rx));
        LedgerWriter { tx }
    }

    /// Write `row`; true once it is committed, false if it could not be.
    pub(super) async fn append(&self, row: LedgerRow) -> bool {
        let (done, committed) = oneshot::channel();
        if self.tx.send((row, done)).await.is_err() {
            return false;
        }
        committed.await.unwrap_or(false)
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<(LedgerRow, oneshot::Sender<bool>)>) {
    let mut rows = Vec::with_capacity(BATCH);
    let mut acks = Vec::with_capacity(BATCH);
    while let Some((row, ack)) = rx.recv().await {
        rows.push(row);
        acks.push(ack);
        let until = tokio::time::Instant::now() + LINGER;
        while rows.len() < BATCH {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some((row, ack))) => {
                    rows.push(row);
                    acks.push(ack);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let written = write(&store, &rows).await;
        for (ack, ok) in acks.drain(..).zip(written) {
            let _ = ack.send(ok);
        }
        rows.clear();
    }
}

/// Write a batch, retrying what the store may accept later; a batch the store refuses for
/// its data is written row by row, so that one bad row costs only itself.
async fn write(store: &Store, rows: &[LedgerRow]) -> Vec<bool> {
    let mut waits = RETRIES.iter();
    loop {
        match store.append_ledger(rows).await {
            Ok(()) => return vec![true; rows.len()],
            Err(e) if store.is_data_error(&e) && rows.len() > 1 => {
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    out.push(Box::pin(write(store, std::slice::from_ref(r))).await[0]);
                }
                return out;
            }
            Err(e) => match waits.next() {
                Some(wait) if !store.is_data_error(&e) => {
                    tracing::warn!(error = %e, rows = rows.len(), "ledger write failed; retrying");
                    tokio::time::sleep(*wait).await;
                }
                _ => {
                    metrics::counter!(crate::telemetry::LEDGER_WRITE_FAILURES)
                        .increment(rows.len() as u64);
                    let cost: i64 = rows.iter().map(|r| r.cost_pusd).sum();
                    tracing::error!(error = %e, rows = rows.len(), cost_pusd = cost,
                        "ledger rows lost: their spend is counted in budgets but not recorded");
                    return vec![false; rows.len()];
                }
            },
        }
    }
}
