//! The global cap on work in flight in this process: requests, and the request bytes they
//! hold. Past either, a new request is refused at once (the server answers 503 with
//! Retry-After before reading its body), so that the requests already admitted keep their
//! latency and memory stays bounded under any load.

use crate::telemetry;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct InFlight {
    max: usize,
    max_bytes: u64,
    count: AtomicUsize,
    bytes: AtomicU64,
    shed: AtomicU64,
}

/// One admitted request; its share is given back when dropped.
#[derive(Debug)]
pub struct InFlightGuard {
    of: Arc<InFlight>,
    bytes: u64,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.of.count.fetch_sub(1, Ordering::AcqRel);
        self.of.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// What `/admin/queues` shows of the global cap.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InFlightSnapshot {
    pub in_flight: usize,
    pub max_in_flight: usize,
    pub buffered_bytes: u64,
    pub max_buffered_bytes: u64,
    pub shed: u64,
}

impl InFlight {
    pub fn new(max: usize, max_bytes: u64) -> Arc<InFlight> {
        Arc::new(InFlight {
            max,
            max_bytes,
            count: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            shed: AtomicU64::new(0),
        })
    }

    /// Admit a request that will hold `bytes` (its declared body size), or `None`: shed it.
    pub fn try_enter(self: &Arc<Self>, bytes: u64) -> Option<InFlightGuard> {
        let count = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        let held = self.bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        let guard = InFlightGuard {
            of: self.clone(),
            bytes,
        };
        if count > self.max || held > self.max_bytes {
            drop(guard);
            self.shed.fetch_add(1, Ordering::Relaxed);
            let reason = if count > self.max {
                "in_flight"
            } else {
                "bytes"
            };
            metrics::counter!(telemetry::SHED, "reason" => reason).increment(1);
            return None;
        }
        Some(guard)
    }

    pub fn snapshot(&self) -> InFlightSnapshot {
        InFlightSnapshot {
            in_flight: self.count.load(Ordering::Relaxed),
            max_in_flight: self.max,
            buffered_bytes: self.bytes.load(Ordering::Relaxed),
            max_buffered_bytes: self.max_bytes,
            shed: self.shed.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_past_either_cap_and_gives_back_on_drop() {
        let f = InFlight::new(2, 100);
        let a = f.try_enter(10).expect("first");
        let b = f.try_enter(10).expect("second");
        assert!(f.try_enter(0).is_none());
        drop(b);
        assert!(f.try_enter(91).is_none(), "bytes over the cap");
        let c = f.try_enter(90).expect("fits");
        assert_eq!(f.snapshot().buffered_bytes, 100);
        drop((a, c));
        assert_eq!(f.snapshot().in_flight, 0);
        assert_eq!(f.snapshot().shed, 2);
    }
}
