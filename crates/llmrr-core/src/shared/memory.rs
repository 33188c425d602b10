//! In-process shared state: one replica, one lock. The same semantics as the Redis scripts.

use super::{gcra, Hold, Rate, RateCheck, RateState, Reserve, Usage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Counter {
    spent: i64,
    held: i64,
    /// Reservation id -> (amount, expiry).
    holds: HashMap<String, (i64, Instant)>,
    /// Dropped after this (the end of its period).
    expires: Option<Instant>,
}

impl Counter {
    fn purge(&mut self, now: Instant) {
        let held = &mut self.held;
        self.holds.retain(|_, (amount, until)| {
            let keep = *until > now;
            if !keep {
                *held -= *amount;
            }
            keep
        });
    }
}

#[derive(Default)]
struct State {
    counters: HashMap<String, Counter>,
    claims: HashMap<String, Instant>,
}

impl State {
    /// The live counter at `key` (an expired one starts again from zero).
    fn counter(&mut self, key: &str, now: Instant) -> &mut Counter {
        if !self.counters.contains_key(key) {
            self.counters.insert(key.to_owned(), Counter::default());
        }
        let Some(c) = self.counters.get_mut(key) else {
            unreachable!("inserted above")
        };
        if c.expires.is_some_and(|t| t <= now) {
            *c = Counter::default();
        }
        c.purge(now);
        c
    }

    fn forget_expired(&mut self, now: Instant) {
        self.counters
            .retain(|_, c| c.expires.is_none_or(|t| t > now) || !c.holds.is_empty());
        self.claims.retain(|_, t| *t > now);
    }
}

#[derive(Clone)]
pub struct Memory {
    state: Arc<Mutex<State>>,
    /// Rate limits: key -> TAT (µs since `origin`). On tokio's clock, so that tests with
    /// paused time can move it.
    rates: Arc<Mutex<HashMap<String, i64>>>,
    /// Values with a time to live (cache entries), on tokio's clock.
    blobs: Arc<Mutex<HashMap<String, (bytes::Bytes, tokio::time::Instant)>>>,
    origin: tokio::time::Instant,
}

impl Default for Memory {
    fn default() -> Self {
        Memory {
            state: Arc::default(),
            rates: Arc::default(),
            blobs: Arc::default(),
            origin: tokio::time::Instant::now(),
        }
    }
}

/// Past this many rate keys, the ones whose TAT has passed (whole limits) are forgotten.
const RATE_SWEEP_AT: usize = 4096;

fn micros(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}

impl Memory {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain numbers behind: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn reserve(&self, id: &str, holds: &[Hold], hold: Duration) -> Reserve {
        let now = Instant::now();
        let mut s = self.lock();
        for (index, h) in holds.iter().enumerate() {
            let c = s.counter(&h.key, now);
            let used = c.spent.saturating_add(c.held);
            if h.limit
                .is_some_and(|limit| used.saturating_add(h.amount) > limit)
            {
                return Reserve::Full { index, used };
            }
        }
        for h in holds {
            let c = s.counter(&h.key, now);
            c.held = c.held.saturating_add(h.amount);
            if let Some((old, _)) = c.holds.insert(id.to_owned(), (h.amount, now + hold)) {
                c.held = c.held.saturating_sub(old);
            }
            if let Some(ttl) = h.ttl {
                c.expires = Some(now + ttl);
            }
        }
        if s.counters.len() > 4096 {
            s.forget_expired(now);
        }
        Reserve::Held
    }

    pub fn settle(&self, id: &str, actual: &[Hold]) -> Vec<Usage> {
        let now = Instant::now();
        let mut s = self.lock();
        actual
            .iter()
            .map(|h| {
                if h.amount == 0 && !s.counters.contains_key(&h.key) {
                    // Releasing on a counter that is gone: nothing to do, nothing to create.
                    return Usage::default();
                }
                let c = s.counter(&h.key, now);
                if let Some((amount, _)) = c.holds.remove(id) {
                    c.held -= amount;
                }
                c.spent = c.spent.saturating_add(h.amount);
                if let Some(ttl) = h.ttl {
                    c.expires = Some(now + ttl);
                }
                Usage {
                    spent: c.spent,
                    held: c.held,
                }
            })
            .collect()
    }

    pub fn read(&self, keys: &[String]) -> Vec<Usage> {
        let now = Instant::now();
        let mut s = self.lock();
        keys.iter()
            .map(|k| {
                let c = s.counter(k, now);
                Usage {
                    spent: c.spent,
                    held: c.held,
                }
            })
            .collect()
    }

    pub fn rebuild(&self, spent: &[Hold], overwrite: bool) {
        let now = Instant::now();
        let mut s = self.lock();
        for h in spent {
            let fresh = !s.counters.contains_key(&h.key);
            let c = s.counter(&h.key, now);
            if !(overwrite || fresh) {
                continue;
            }
            c.spent = h.amount;
            if let Some(ttl) = h.ttl {
                c.expires = Some(now + ttl);
            }
        }
    }

    fn now_us(&self) -> i64 {
        micros(tokio::time::Instant::now().saturating_duration_since(self.origin))
    }

    pub fn rate(&self, rates: &[Rate]) -> RateCheck {
        let now = self.now_us();
        let mut tats = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let verdicts: Vec<gcra::Verdict> = rates
            .iter()
            .map(|r| {
                let cost = r.cost.max(0) as u64;
                gcra::check(
                    now,
                    tats.get(&r.key).copied(),
                    r.limit,
                    micros(r.period),
                    cost,
                )
            })
            .collect();
        let refused = verdicts.iter().position(|v| !v.allowed);
        if refused.is_none() {
            for (r, v) in rates.iter().zip(&verdicts) {
                if let Some(t) = tats.get_mut(&r.key) {
                    *t = v.new_tat;
                } else {
                    tats.insert(r.key.clone(), v.new_tat);
                }
            }
            if tats.len() > RATE_SWEEP_AT {
                tats.retain(|_, tat| *tat > now);
            }
        }
        check_of(refused, &verdicts)
    }

    pub fn rate_adjust(&self, rate: &Rate) {
        let now = self.now_us();
        let mut tats = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let old = tats.get(&rate.key).copied();
        match gcra::adjust(now, old, rate.limit, micros(rate.period), rate.cost) {
            Some(tat) => {
                tats.insert(rate.key.clone(), tat);
            }
            None => {
                tats.remove(&rate.key);
            }
        }
    }

    pub fn claim_once(&self, key: &str, ttl: Duration) -> bool {
        let now = Instant::now();
        let mut s = self.lock();
        match s.claims.get(key) {
            Some(until) if *until > now => false,
            _ => {
                s.claims.insert(key.to_owned(), now + ttl);
                true
            }
        }
    }
}

impl Memory {
    fn blobs(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (bytes::Bytes, tokio::time::Instant)>> {
        self.blobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<bytes::Bytes> {
        let now = tokio::time::Instant::now();
        let mut blobs = self.blobs();
        match blobs.get(key) {
            Some((v, until)) if *until > now => Some(v.clone()),
            Some(_) => {
                blobs.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn set(&self, key: &str, value: bytes::Bytes, ttl: Duration) {
        let now = tokio::time::Instant::now();
        let mut blobs = self.blobs();
        if blobs.len() >= RATE_SWEEP_AT {
            blobs.retain(|_, (_, until)| *until > now);
        }
        blobs.insert(key.to_owned(), (value, now + ttl));
    }

    pub fn keys_matching(&self, pattern: &str) -> Vec<String> {
        let now = tokio::time::Instant::now();
        self.blobs()
            .iter()
            .filter(|(k, (_, until))| *until > now && super::glob_match(pattern, k))
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn delete(&self, keys: &[String]) -> u64 {
        let mut blobs = self.blobs();
        keys.iter().filter(|k| blobs.remove(*k).is_some()).count() as u64
    }
}

/// The check's answer from each limit's verdict (states as before the check when refused).
pub(super) fn check_of(refused: Option<usize>, verdicts: &[gcra::Verdict]) -> RateCheck {
    let us = |v: i64| Duration::from_micros(v.max(0) as u64);
    RateCheck {
        refused,
        retry_after: refused.and_then(|i| verdicts[i].retry_us).map(us),
        states: verdicts
            .iter()
            .map(|v| RateState {
                remaining: v.remaining,
                reset: us(v.reset_us),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(key: &str, limit: i64, amount: i64) -> Hold {
        Hold {
            key: key.into(),
            limit: Some(limit),
            amount,
            ttl: None,
        }
    }

    #[test]
    fn all_or_none_within_every_limit() {
        let m = Memory::default();
        let h = Duration::from_secs(60);
        assert_eq!(
            m.reserve("a", &[hold("k", 10, 6), hold("t", 100, 6)], h),
            Reserve::Held
        );
        // The second counter has room, the first does not: nothing is held.
        assert_eq!(
            m.reserve("b", &[hold("t", 100, 6), hold("k", 10, 6)], h),
            Reserve::Full { index: 1, used: 6 }
        );
        assert_eq!(m.read(&["t".into()])[0], Usage { spent: 0, held: 6 });
        // Settle to less than held: the rest is free again.
        let after = m.settle("a", &[hold("k", 10, 2), hold("t", 100, 2)]);
        assert_eq!(after[0], Usage { spent: 2, held: 0 });
        assert_eq!(m.reserve("b", &[hold("k", 10, 8)], h), Reserve::Held);
        assert!(matches!(
            m.reserve("c", &[hold("k", 10, 1)], h),
            Reserve::Full { .. }
        ));
        // A release is a settle to zero.
        m.settle("b", &[hold("k", 10, 0)]);
        assert_eq!(m.read(&["k".into()])[0], Usage { spent: 2, held: 0 });
    }

    fn rate(key: &str, limit: u64, cost: i64) -> Rate {
        Rate {
            key: key.into(),
            limit,
            period: Duration::from_secs(60),
            cost,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rates_refill_as_time_passes() {
        let m = Memory::default();
        assert_eq!(m.rate(&[rate("rpm", 2, 1)]).refused, None);
        assert_eq!(m.rate(&[rate("rpm", 2, 1)]).refused, None);
        let refused = m.rate(&[rate("rpm", 2, 1)]);
        assert_eq!(refused.retry_after, Some(Duration::from_secs(30)));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(m.rate(&[rate("rpm", 2, 1)]).refused, Some(0));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(m.rate(&[rate("rpm", 2, 1)]).refused, None);
        // Tokens: 1000 per minute; 900 now leaves 100; a minute later all of it is back.
        assert_eq!(m.rate(&[rate("tpm", 1000, 900)]).states[0].remaining, 100);
        assert_eq!(m.rate(&[rate("tpm", 1000, 200)]).refused, Some(0));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(m.rate(&[rate("tpm", 1000, 1000)]).refused, None);
    }

    #[test]
    fn expired_holds_and_counters_free_their_room() {
        let m = Memory::default();
        assert_eq!(
            m.reserve("a", &[hold("k", 10, 10)], Duration::from_millis(1)),
            Reserve::Held
        );
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            m.reserve("b", &[hold("k", 10, 10)], Duration::from_secs(9)),
            Reserve::Held
        );
        let short = Hold {
            ttl: Some(Duration::from_millis(1)),
            ..hold("p", 5, 0)
        };
        m.settle(
            "x",
            &[Hold {
                amount: 5,
                ..short.clone()
            }],
        );
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(m.read(&["p".into()])[0], Usage::default());
        assert!(m.claim_once("alert", Duration::from_secs(9)));
        assert!(!m.claim_once("alert", Duration::from_secs(9)));
    }
}
