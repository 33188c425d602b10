//! A circuit breaker per model, as a small state machine:
//!
//! - **closed**: calls pass. It opens after `consecutive_failures` failures in a row, or when
//!   the failure ratio over `window` reaches `failure_ratio` with at least `min_requests` calls.
//! - **open**: calls are refused until `cooldown` has passed.
//! - **half-open**: up to `half_open_probes` calls at a time go through as probes; after
//!   `close_after` successful probes it closes, a failed probe opens it again.
//!
//! Only failures that say something about the model's health count (5xx, timeouts, connection
//! and protocol errors) — not a client's bad request or a rate limit.

use super::window::OutcomeWindow;
use crate::config::routing::BreakerConfig;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// For the `llmrr_breaker_state` gauge.
    pub fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { consecutive: u32 },
    Open { until: Instant },
    HalfOpen { probing: u32, successes: u32 },
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed { probe: bool },
    Refused { retry_in: Duration },
}

#[derive(Debug)]
struct Inner {
    state: State,
    window: OutcomeWindow,
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
    /// Mirrors "the state is closed", so the common case is answered without the lock.
    closed: AtomicBool,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            inner: Mutex::new(Inner {
                state: State::Closed { consecutive: 0 },
                window: OutcomeWindow::new(config.window.as_secs().max(1), Instant::now()),
            }),
            config,
            closed: AtomicBool::new(true),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        let g = self.lock();
        match g.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// `None` when a call would be admitted now; else how long until one may be. (No side
    /// effects: for ranking and explanations.)
    pub fn refused_for(&self) -> Option<Duration> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let now = Instant::now();
        let g = self.lock();
        match g.state {
            State::Closed { .. } => None,
            State::Open { until } => (now < until).then(|| until - now),
            State::HalfOpen { probing, .. } => {
                (probing >= self.config.half_open_probes).then_some(Duration::ZERO)
            }
        }
    }

    /// Ask to make a call. An `Allowed { probe: true }` must be followed by `record(.., true)`.
    pub fn admit(&self) -> Admission {
        if self.closed.load(Ordering::Acquire) {
            return Admission::Allowed { probe: false };
        }
        let now = Instant::now();
        let mut g = self.lock();
        match g.state {
            State::Closed { .. } => Admission::Allowed { probe: false },
            State::Open { until } if now < until => Admission::Refused {
                retry_in: until - now,
            },
            State::Open { .. } => {
                g.state = State::HalfOpen {
                    probing: 1,
                    successes: 0,
                };
                Admission::Allowed { probe: true }
            }
            State::HalfOpen {
                ref mut probing, ..
            } => {
                if *probing < self.config.half_open_probes {
                    *probing += 1;
                    Admission::Allowed { probe: true }
                } else {
                    Admission::Refused {
                        retry_in: Duration::ZERO,
                    }
                }
            }
        }
    }

    /// For an admitted call that may be abandoned before its outcome is known (the client
    /// hung up, the server stops): unless disarmed, the guard gives a probe's place back on
    /// drop, so a half-open breaker is never left waiting for a probe that will not report.
    pub fn abandon_guard(&self, probe: bool) -> ProbeGuard<'_> {
        ProbeGuard {
            breaker: self,
            armed: probe,
        }
    }

    /// Report the outcome of an admitted call. `counts`: whether a failure says something
    /// about the model's health (see the module doc). `Some(cooldown)` when this outcome
    /// opened the breaker (what other replicas are told).
    pub fn record(&self, success: bool, counts: bool, probe: bool) -> Option<Duration> {
        let now = Instant::now();
        let c = self.config;
        let mut guard = self.lock();
        let inner = &mut *guard;
        if counts || success {
            inner.window.record(now, success);
        }
        let next = match (&mut inner.state, probe) {
            (State::HalfOpen { probing, successes }, true) => {
                *probing = probing.saturating_sub(1);
                if success {
                    *successes += 1;
                    (*successes >= c.close_after).then_some(State::Closed { consecutive: 0 })
                } else if counts {
                    Some(State::Open {
                        until: now + c.cooldown,
                    })
                } else {
                    None
                }
            }
            (State::Closed { consecutive }, _) => {
                if success {
                    *consecutive = 0;
                    None
                } else if counts {
                    *consecutive += 1;
                    let (ok, failed) = inner.window.totals(now);
                    let total = ok + failed;
                    let ratio_trips = total >= u64::from(c.min_requests)
                        && failed as f64 / total as f64 >= c.failure_ratio;
                    (*consecutive >= c.consecutive_failures || ratio_trips).then_some(State::Open {
                        until: now + c.cooldown,
                    })
                } else {
                    None
                }
            }
            // Calls admitted before the breaker opened: they do not move it.
            _ => None,
        };
        let state = next?;
        let closed = matches!(state, State::Closed { .. });
        let opened = matches!(state, State::Open { .. });
        if closed {
            inner.window.clear();
        }
        inner.state = state;
        self.closed.store(closed, Ordering::Release);
        opened.then_some(c.cooldown)
    }

    /// Another replica opened its breaker of this model for `remaining` more (at most our
    /// own cooldown: the replicas' clocks may differ): open here too, until then. A later
    /// cooldown of our own stands, and a half-open breaker keeps probing on its own (its
    /// probes in flight decide; a failed one opens — and shares — again).
    pub fn adopt_open(&self, remaining: Duration) {
        let until = Instant::now() + remaining.min(self.config.cooldown);
        let mut g = self.lock();
        match g.state {
            State::HalfOpen { .. } => return,
            State::Open { until: mine } if mine >= until => return,
            _ => {}
        }
        g.state = State::Open { until };
        self.closed.store(false, Ordering::Release);
    }

    /// Open at once (a health probe found the model down).
    pub fn trip(&self) {
        let mut g = self.lock();
        if let State::Closed { .. } = g.state {
            g.state = State::Open {
                until: Instant::now() + self.config.cooldown,
            };
            self.closed.store(false, Ordering::Release);
        }
    }
}

/// See [`Breaker::abandon_guard`].
pub struct ProbeGuard<'a> {
    breaker: &'a Breaker,
    armed: bool,
}

impl ProbeGuard<'_> {
    /// The outcome will be recorded: nothing to give back.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            // Neither a success nor a failure: only the probe's place is given back.
            self.breaker.record(false, false, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            failure_ratio: 0.5,
            window: Duration::from_secs(60),
            min_requests: 10,
            cooldown: Duration::from_secs(30),
            half_open_probes: 1,
            close_after: 2,
        }
    }

    fn call(b: &Breaker, success: bool) {
        match b.admit() {
            Admission::Allowed { probe } => {
                b.record(success, true, probe);
            }
            Admission::Refused { .. } => panic!("refused"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_outcome_that_opens_says_so_and_another_replicas_open_is_adopted() {
        let b = Breaker::new(config());
        assert_eq!(b.record(false, true, false), None);
        assert_eq!(b.record(false, true, false), None);
        assert_eq!(
            b.record(false, true, false),
            Some(Duration::from_secs(30)),
            "the third failure opens: its cooldown is shared"
        );
        // Adopting a shorter open keeps ours; a longer one replaces it.
        b.adopt_open(Duration::from_secs(5));
        assert!(
            matches!(b.admit(), Admission::Refused { retry_in } if retry_in == Duration::from_secs(30))
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        b.adopt_open(Duration::from_secs(600));
        assert!(
            matches!(b.admit(), Admission::Refused { retry_in } if retry_in == Duration::from_secs(30)),
            "a later open replaces ours, but never for longer than our cooldown"
        );
        // A closed breaker opens for what is left of the other's cooldown, then probes; a
        // half-open one keeps probing.
        let c = Breaker::new(config());
        c.adopt_open(Duration::from_secs(10));
        assert_eq!(c.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(c.admit(), Admission::Allowed { probe: true });
        c.adopt_open(Duration::from_secs(10));
        assert_eq!(c.state(), BreakerState::HalfOpen, "its probe decides");
        assert_eq!(c.record(true, true, true), None);
        assert_eq!(c.record(true, true, true), None, "a success never opens");
    }

    #[tokio::test(start_paused = true)]
    async fn issue15_an_abandoned_probe_gives_its_place_back() {
        let b = Breaker::new(config());
        for _ in 0..3 {
            call(&b, false);
        }
        tokio::time::advance(Duration::from_secs(30)).await;
        let Admission::Allowed { probe } = b.admit() else {
            panic!("a probe is let through");
        };
        assert!(probe);
        // The client hangs up mid-probe: the attempt's future is dropped with its guard.
        drop(b.abandon_guard(probe));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.admit(), Admission::Allowed { probe: true }, "not stuck");
        let guard = b.abandon_guard(true);
        b.record(true, true, true);
        guard.disarm();
        assert_eq!(b.admit(), Admission::Allowed { probe: true });
    }

    #[tokio::test(start_paused = true)]
    async fn closed_open_half_open_closed() {
        let b = Breaker::new(config());
        call(&b, false);
        call(&b, false);
        call(&b, true); // resets the run
        call(&b, false);
        call(&b, false);
        assert_eq!(b.state(), BreakerState::Closed);
        call(&b, false);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(
            matches!(b.admit(), Admission::Refused { retry_in } if retry_in == Duration::from_secs(30))
        );

        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.admit(), Admission::Allowed { probe: true });
        assert!(
            matches!(b.admit(), Admission::Refused { .. }),
            "one probe at a time"
        );
        b.record(false, true, true); // the probe fails: open again
        assert_eq!(b.state(), BreakerState::Open);

        tokio::time::advance(Duration::from_secs(30)).await;
        call(&b, true);
        assert_eq!(b.state(), BreakerState::HalfOpen, "needs two good probes");
        call(&b, true);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn failure_ratio_over_the_window_with_a_minimum() {
        let b = Breaker::new(config());
        for i in 0..9 {
            call(&b, i % 2 == 0); // never 3 failures in a row
        }
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "9 calls: below the minimum"
        );
        call(&b, false); // 10 calls, 5 failed: ratio 0.5
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trip_opens_at_once() {
        let b = Breaker::new(config());
        b.trip();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(matches!(b.admit(), Admission::Refused { .. }));
        assert!(b.refused_for().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn client_errors_and_rate_limits_do_not_count() {
        let b = Breaker::new(config());
        for _ in 0..10 {
            match b.admit() {
                Admission::Allowed { probe } => {
                    b.record(false, false, probe);
                }
                Admission::Refused { .. } => panic!("refused"),
            }
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
