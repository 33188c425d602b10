//! Admission in front of one model: at most `max_concurrent` calls at once, and a bounded
//! queue of the others, served by priority class, then deadline, then arrival.
//!
//! A request that cannot start before its deadline is refused at once (the wait is estimated
//! from how long this model's calls hold a slot and how many waiters are ahead); one that
//! would wait longer than its latency constraint is refused so that its route can fall back;
//! a full queue sheds its lowest waiter when a higher one arrives, else the newcomer. A slot
//! is handed from the call that frees it straight to the next waiter (no thundering herd);
//! a waiter that has gone (its client left) passes it on.

use super::Priority;
use crate::telemetry;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Waiters per model when `max_queue` is not set.
pub const DEFAULT_MAX_QUEUE: u32 = 256;

/// Why a request was not given a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The queue is full of requests that rank at least as high (429).
    Full,
    /// It cannot start before its deadline; `wait` is the estimated wait (503).
    Deadline { wait: Duration },
    /// The estimated wait is above the request's latency constraint (the route falls back).
    TooSlow { wait: Duration },
    /// A higher request took its place in a full queue (429).
    Evicted,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Full => "queue_full",
            Refusal::Deadline { .. } => "deadline",
            Refusal::TooSlow { .. } => "too_slow",
            Refusal::Evicted => "evicted",
        }
    }
}

struct Waiter {
    class: Priority,
    deadline: Instant,
    seq: u64,
    since: Instant,
    tx: oneshot::Sender<Slot>,
}

impl Waiter {
    fn rank(&self) -> (Priority, std::cmp::Reverse<Instant>, std::cmp::Reverse<u64>) {
        (
            self.class,
            std::cmp::Reverse(self.deadline),
            std::cmp::Reverse(self.seq),
        )
    }
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

#[derive(Default)]
struct State {
    running: u32,
    waiting: BinaryHeap<Waiter>,
    seq: u64,
    /// When each running slot was taken (slot id -> start): the wait estimate reads when
    /// each should free.
    started: std::collections::BTreeMap<u64, Instant>,
}

/// What `/admin/queues` shows of one model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GateSnapshot {
    pub model: String,
    pub max_concurrent: u32,
    pub running: u32,
    pub max_queue: u32,
    /// Waiters per class.
    pub waiting: std::collections::BTreeMap<&'static str, u32>,
    pub oldest_wait_ms: Option<u64>,
    /// How long a call holds a slot (moving average), ms.
    pub slot_hold_ms: Option<f64>,
    pub served: u64,
    pub shed: std::collections::BTreeMap<&'static str, u64>,
}

pub struct Gate {
    model: Arc<str>,
    cap: u32,
    max_queue: u32,
    state: Mutex<State>,
    /// Moving average of a slot's hold time, µs (0: none yet)…
    hold_us: AtomicU64,
    /// …and of its deviation from that average: the estimate plans for a slow call (mean +
    /// 2 deviations), so that a request admitted to the queue rarely meets its deadline there.
    hold_dev_us: AtomicU64,
    served: AtomicU64,
    shed: [AtomicU64; 4],
}

/// A slot on a model; freed (or handed to the next waiter) when dropped.
pub struct Slot {
    gate: Option<Arc<Gate>>,
    since: Instant,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.observe_hold(self.since.elapsed());
            gate.release(self.id);
        }
    }
}

impl Gate {
    pub fn new(model: Arc<str>, cap: u32, max_queue: u32) -> Arc<Gate> {
        Arc::new(Gate {
            model,
            cap: cap.max(1),
            max_queue,
            state: Mutex::new(State::default()),
            hold_us: AtomicU64::new(0),
            hold_dev_us: AtomicU64::new(0),
            served: AtomicU64::new(0),
            shed: Default::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new slot, counted as started now (under the state lock).
    fn slot(self: &Arc<Self>, s: &mut State) -> Slot {
        self.served.fetch_add(1, AtomicOrdering::Relaxed);
        let now = Instant::now();
        let id = s.seq;
        s.seq += 1;
        s.started.insert(id, now);
        Slot {
            gate: Some(self.clone()),
            since: now,
            id,
        }
    }

    fn observe_hold(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128 / 8) as u64;
        let old = self.hold_us.load(AtomicOrdering::Relaxed);
        let new = if old == 0 {
            us.max(1)
        } else {
            (old * 7 + us) / 8
        };
        self.hold_us.store(new.max(1), AtomicOrdering::Relaxed);
        if old > 0 {
            let dev = self.hold_dev_us.load(AtomicOrdering::Relaxed);
            self.hold_dev_us
                .store((dev * 7 + us.abs_diff(old)) / 8, AtomicOrdering::Relaxed);
        }
    }

    /// The estimated wait of a request with `ahead` waiters before it: each running call is
    /// expected to end a hold time after it started, then each freed slot serves the next
    /// waiter for a hold time more. Unknown before the first call finished.
    fn estimate(&self, s: &State, now: Instant, ahead: u32) -> Option<Duration> {
        let hold = self.hold_us.load(AtomicOrdering::Relaxed);
        if hold == 0 {
            return None;
        }
        let dev = self.hold_dev_us.load(AtomicOrdering::Relaxed);
        let hold = Duration::from_micros(hold.saturating_add(dev.saturating_mul(2)));
        let mut frees: Vec<Instant> = s.started.values().map(|t| *t + hold).collect();
        frees.sort();
        let cap = frees.len().max(1);
        let k = ahead as usize;
        let first = frees.get(k % cap).copied().unwrap_or(now);
        let rounds = (k / cap) as u32;
        Some((first + hold * rounds).saturating_duration_since(now))
    }

    fn shed(&self, class: Priority, why: Refusal) {
        self.shed[class as usize].fetch_add(1, AtomicOrdering::Relaxed);
        metrics::counter!(telemetry::QUEUE_SHED, "model" => self.model.to_string(),
            "class" => class.as_str(), "reason" => why.reason())
        .increment(1);
    }

    fn gauge(&self, s: &State) {
        for class in Priority::ALL {
            let n = s.waiting.iter().filter(|w| w.class == class).count();
            metrics::gauge!(telemetry::QUEUE_DEPTH, "model" => self.model.to_string(),
                "class" => class.as_str())
            .set(n as f64);
        }
    }

    /// Wait for a slot until `deadline`; refuse at once when that cannot work out.
    pub async fn acquire(
        self: &Arc<Self>,
        class: Priority,
        deadline: Instant,
        latency_limit: Option<Duration>,
    ) -> Result<Slot, Refusal> {
        let now = Instant::now();
        if deadline <= now {
            let why = Refusal::Deadline {
                wait: Duration::ZERO,
            };
            self.shed(class, why);
            return Err(why);
        }
        let rx = {
            let mut s = self.lock();
            if s.running < self.cap {
                s.running += 1;
                return Ok(self.slot(&mut s));
            }
            let seq = s.seq;
            s.seq += 1;
            let (tx, rx) = oneshot::channel();
            let waiter = Waiter {
                class,
                deadline,
                seq,
                since: now,
                tx,
            };
            let ahead = s.waiting.iter().filter(|w| **w > waiter).count() as u32;
            if let Some(wait) = self.estimate(&s, now, ahead) {
                if now + wait > deadline {
                    drop(s);
                    let why = Refusal::Deadline { wait };
                    self.shed(class, why);
                    return Err(why);
                }
                if latency_limit.is_some_and(|l| wait > l) {
                    drop(s);
                    let why = Refusal::TooSlow { wait };
                    self.shed(class, why);
                    return Err(why);
                }
            }
            if s.waiting.len() >= self.max_queue as usize {
                let mut all = std::mem::take(&mut s.waiting).into_vec();
                let lowest = all
                    .iter()
                    .enumerate()
                    .min_by(|a, b| a.1.cmp(b.1))
                    .map(|(i, _)| i);
                // Only a higher class takes a place: a short deadline does not evict its peers.
                match lowest {
                    Some(i) if all[i].class < waiter.class => {
                        // Its sender dropped: that waiter wakes up refused.
                        let evicted = all.swap_remove(i);
                        self.shed(evicted.class, Refusal::Evicted);
                    }
                    _ => {
                        s.waiting = all.into();
                        drop(s);
                        self.shed(class, Refusal::Full);
                        return Err(Refusal::Full);
                    }
                }
                s.waiting = all.into();
            }
            s.waiting.push(waiter);
            self.gauge(&s);
            (rx, seq)
        };
        let (mut rx, seq) = rx;
        let mut leave = Leave {
            gate: self,
            seq,
            armed: true,
        };
        let got = tokio::time::timeout_at(deadline, &mut rx).await;
        let waited = now.elapsed();
        let result = match got {
            Ok(Ok(slot)) => Ok(slot),
            // Dropped from the queue: past its deadline (a freed slot skipped it), or evicted.
            Ok(Err(_)) if Instant::now() >= deadline => {
                self.shed(class, Refusal::Deadline { wait: waited });
                Err(Refusal::Deadline { wait: waited })
            }
            Ok(Err(_)) => Err(Refusal::Evicted),
            Err(_) => {
                // Gone from the queue already: the slot came at the last moment (take it),
                // or it was evicted.
                if leave.remove() {
                    self.shed(class, Refusal::Deadline { wait: waited });
                    Err(Refusal::Deadline { wait: waited })
                } else {
                    // Dropped by a freed slot as expired (or evicted just now): past its
                    // deadline either way.
                    rx.try_recv()
                        .map_err(|_| Refusal::Deadline { wait: waited })
                }
            }
        };
        leave.armed = false;
        if result.is_ok() {
            metrics::histogram!(telemetry::QUEUE_WAIT, "model" => self.model.to_string(),
                "class" => class.as_str())
            .record(waited.as_secs_f64());
        }
        result
    }

    /// Slot `id` is free: hand it to the best waiter still there, else count it free.
    fn release(self: &Arc<Self>, id: u64) {
        let mut s = self.lock();
        s.started.remove(&id);
        let now = Instant::now();
        while let Some(w) = s.waiting.pop() {
            if w.deadline <= now || w.tx.is_closed() {
                continue;
            }
            let slot = self.slot(&mut s);
            let next = slot.id;
            match w.tx.send(slot) {
                Ok(()) => {
                    self.gauge(&s);
                    return;
                }
                Err(mut slot) => {
                    // The waiter left meanwhile: this slot is not a new one.
                    slot.gate = None;
                    s.started.remove(&next);
                    self.served.fetch_sub(1, AtomicOrdering::Relaxed);
                }
            }
        }
        s.running = s.running.saturating_sub(1);
        self.gauge(&s);
    }

    pub fn snapshot(&self) -> GateSnapshot {
        let s = self.lock();
        let now = Instant::now();
        let mut waiting = std::collections::BTreeMap::new();
        for class in Priority::ALL {
            let n = s.waiting.iter().filter(|w| w.class == class).count() as u32;
            waiting.insert(class.as_str(), n);
        }
        let hold = self.hold_us.load(AtomicOrdering::Relaxed);
        GateSnapshot {
            model: self.model.to_string(),
            max_concurrent: self.cap,
            running: s.running,
            max_queue: self.max_queue,
            waiting,
            oldest_wait_ms: s
                .waiting
                .iter()
                .map(|w| now.saturating_duration_since(w.since).as_millis() as u64)
                .max(),
            slot_hold_ms: (hold > 0).then(|| hold as f64 / 1000.0),
            served: self.served.load(AtomicOrdering::Relaxed),
            shed: Priority::ALL
                .into_iter()
                .map(|c| {
                    (
                        c.as_str(),
                        self.shed[c as usize].load(AtomicOrdering::Relaxed),
                    )
                })
                .collect(),
        }
    }
}

/// Takes a waiter out of the queue when its wait ends without a slot (its client left).
struct Leave<'a> {
    gate: &'a Arc<Gate>,
    seq: u64,
    armed: bool,
}

impl Leave<'_> {
    /// Remove the waiter; false when it was not there any more.
    fn remove(&mut self) -> bool {
        let mut s = self.gate.lock();
        let before = s.waiting.len();
        let seq = self.seq;
        s.waiting.retain(|w| w.seq != seq);
        let removed = s.waiting.len() < before;
        self.gate.gauge(&s);
        removed
    }
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if self.armed {
            // A slot already sent to this waiter is dropped with its receiver and passed on.
            self.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[tokio::test(start_paused = true)]
    async fn slots_go_by_class_then_deadline_then_arrival() {
        let gate = Gate::new("m".into(), 1, 16);
        let first = gate
            .acquire(Priority::Normal, far(), None)
            .await
            .expect("a slot");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        let waiters = [
            ("low", Priority::Low, 60),
            ("normal-late", Priority::Normal, 60),
            ("normal-soon", Priority::Normal, 30),
            ("critical", Priority::Critical, 60),
            ("normal-late-2", Priority::Normal, 60),
        ];
        for (name, class, secs) in waiters {
            let (gate, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(secs);
                let slot = gate.acquire(class, deadline, None).await.expect("served");
                order.lock().expect("lock").push(name);
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(slot);
            }));
            tokio::task::yield_now().await;
        }
        drop(first);
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(
            *order.lock().expect("lock"),
            [
                "critical",
                "normal-soon",
                "normal-late",
                "normal-late-2",
                "low"
            ]
        );
        assert_eq!(gate.snapshot().running, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_full_queues_and_eviction() {
        let gate = Gate::new("m".into(), 1, 1);
        // Teach the gate that a call holds its slot for 1 s.
        let held = gate
            .acquire(Priority::Normal, far(), None)
            .await
            .expect("slot");
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(held);
        let held = gate
            .acquire(Priority::Normal, far(), None)
            .await
            .expect("slot");
        // Cannot start within 500 ms: refused at once, not after waiting.
        let soon = Instant::now() + Duration::from_millis(500);
        let refused = gate.acquire(Priority::Normal, soon, None).await;
        assert!(
            matches!(refused, Err(Refusal::Deadline { .. })),
            "{:?}",
            refused.err()
        );
        // Above the latency constraint: refused so that the route can fall back.
        let slow = gate
            .acquire(Priority::Normal, far(), Some(Duration::from_millis(100)))
            .await;
        assert!(matches!(slow, Err(Refusal::TooSlow { .. })));
        // One waiter fills the queue; a lower newcomer is shed, a higher one evicts it.
        let g = gate.clone();
        let normal =
            tokio::spawn(async move { g.acquire(Priority::Normal, far(), None).await.map(|_| ()) });
        tokio::task::yield_now().await;
        assert_eq!(
            gate.acquire(Priority::Low, far(), None).await.err(),
            Some(Refusal::Full)
        );
        let g = gate.clone();
        let high =
            tokio::spawn(async move { g.acquire(Priority::High, far(), None).await.map(|_| ()) });
        tokio::task::yield_now().await;
        assert_eq!(normal.await.expect("task"), Err(Refusal::Evicted));
        drop(held);
        assert_eq!(high.await.expect("task"), Ok(()));
        // A waiter whose deadline passes while queued is refused then.
        let held = gate
            .acquire(Priority::Normal, far(), None)
            .await
            .expect("slot");
        let g = gate.clone();
        let late = tokio::spawn(async move {
            g.acquire(
                Priority::Normal,
                Instant::now() + Duration::from_secs(3),
                None,
            )
            .await
            .map(|_| ())
        });
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(matches!(
            late.await.expect("task"),
            Err(Refusal::Deadline { .. })
        ));
        drop(held);
        assert_eq!(gate.snapshot().running, 0);
        assert!(gate.snapshot().waiting.values().all(|n| *n == 0));
    }
}
