//! Live statistics of one model: time-decayed EWMAs of latency, time to first token and
//! output speed, a peak-EWMA latency for power-of-two-choices balancing, the error rate over a
//! sliding window, and the number of calls in flight.
//!
//! A `std::sync::Mutex` guards the numbers: sections are a few arithmetic operations and never
//! cross an `.await`. The in-flight count is an atomic so that it can be read without the lock.

use super::window::OutcomeWindow;
use serde::Serialize;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// A time-decayed average: a sample taken after a long quiet spell weighs more.
#[derive(Debug, Clone, Copy)]
struct Ewma {
    value: Option<f64>,
    at: Option<Instant>,
}

impl Ewma {
    const EMPTY: Ewma = Ewma {
        value: None,
        at: None,
    };

    fn weight(half_life: Duration, since: Option<Instant>, now: Instant) -> f64 {
        let dt = since
            .map(|t| now.saturating_duration_since(t).as_secs_f64())
            .unwrap_or(f64::INFINITY);
        // At least 0.1 so that bursts of samples still move it.
        (1.0 - 0.5f64.powf(dt / half_life.as_secs_f64().max(1e-3))).max(0.1)
    }

    fn add(&mut self, sample: f64, half_life: Duration, now: Instant) {
        let w = Self::weight(half_life, self.at, now);
        self.value = Some(match self.value {
            None => sample,
            Some(v) => v + (sample - v) * w,
        });
        self.at = Some(now);
    }

    /// Peak-EWMA: jumps to a slower sample at once, decays towards faster ones.
    fn add_peak(&mut self, sample: f64, half_life: Duration, now: Instant) {
        match self.value {
            Some(v) if sample <= v => self.add(sample, half_life, now),
            _ => {
                self.value = Some(sample);
                self.at = Some(now);
            }
        }
    }
}

#[derive(Debug)]
struct Inner {
    latency: Ewma,
    ttft: Ewma,
    peak: Ewma,
    tokens_per_sec: Ewma,
    window: OutcomeWindow,
}

#[derive(Debug)]
pub struct ModelStats {
    inner: Mutex<Inner>,
    in_flight: AtomicU32,
    half_life: Duration,
}

/// A copy of the numbers, for ranking and display.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StatsSnapshot {
    /// Total latency of non-streamed calls (and of streams, to their end), ms.
    pub latency_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub peak_latency_ms: Option<f64>,
    pub output_tokens_per_sec: Option<f64>,
    /// Failures / calls in the window; 0 with no calls.
    pub error_rate: f64,
    pub requests_in_window: u64,
    pub in_flight: u32,
}

/// What one finished attempt measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub success: bool,
    pub latency: Option<Duration>,
    pub ttft: Option<Duration>,
    pub output_tokens: u64,
}

impl ModelStats {
    pub fn new(window: Duration, half_life: Duration) -> Self {
        ModelStats {
            inner: Mutex::new(Inner {
                latency: Ewma::EMPTY,
                ttft: Ewma::EMPTY,
                peak: Ewma::EMPTY,
                tokens_per_sec: Ewma::EMPTY,
                window: OutcomeWindow::new(window.as_secs().max(1), Instant::now()),
            }),
            in_flight: AtomicU32::new(0),
            half_life,
        }
    }

    /// Count a call in flight until [`ModelStats::leave`] (see `models::Flight`).
    pub fn enter(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn record(&self, s: Sample) {
        let now = Instant::now();
        let hl = self.half_life;
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.window.record(now, s.success);
        if !s.success {
            return;
        }
        if let Some(l) = s.latency {
            let ms = l.as_secs_f64() * 1000.0;
            g.latency.add(ms, hl, now);
            g.peak.add_peak(ms, hl, now);
        }
        if let Some(t) = s.ttft {
            g.ttft.add(t.as_secs_f64() * 1000.0, hl, now);
        }
        if let (Some(l), Some(t)) = (s.latency, s.ttft) {
            let gen = l.saturating_sub(t).as_secs_f64();
            if gen > 0.0 && s.output_tokens > 1 {
                g.tokens_per_sec.add(s.output_tokens as f64 / gen, hl, now);
            }
        }
    }

    /// The EWMAs and the in-flight count, without the error window (what ranking needs;
    /// `error_rate` and `requests_in_window` are left at 0).
    pub fn live(&self) -> StatsSnapshot {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        StatsSnapshot {
            latency_ms: g.latency.value,
            ttft_ms: g.ttft.value,
            peak_latency_ms: g.peak.value,
            output_tokens_per_sec: g.tokens_per_sec.value,
            error_rate: 0.0,
            requests_in_window: 0,
            in_flight: self.in_flight(),
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let now = Instant::now();
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (ok, failed) = g.window.totals(now);
        let total = ok + failed;
        StatsSnapshot {
            latency_ms: g.latency.value,
            ttft_ms: g.ttft.value,
            peak_latency_ms: g.peak.value,
            output_tokens_per_sec: g.tokens_per_sec.value,
            error_rate: if total == 0 {
                0.0
            } else {
                failed as f64 / total as f64
            },
            requests_in_window: total,
            in_flight: self.in_flight(),
        }
    }

    /// For tests and benches: set fixed numbers.
    pub fn seed(&self, latency_ms: f64, ttft_ms: f64) {
        let now = Instant::now();
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.latency = Ewma {
            value: Some(latency_ms),
            at: Some(now),
        };
        g.peak = Ewma {
            value: Some(latency_ms),
            at: Some(now),
        };
        g.ttft = Ewma {
            value: Some(ttft_ms),
            at: Some(now),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ewma_and_peak_and_error_rate() {
        let s = ModelStats::new(Duration::from_secs(60), Duration::from_secs(10));
        let ok = |ms: u64| Sample {
            success: true,
            latency: Some(Duration::from_millis(ms)),
            ttft: None,
            output_tokens: 0,
        };
        s.record(ok(100));
        assert_eq!(s.snapshot().latency_ms, Some(100.0));
        tokio::time::advance(Duration::from_secs(10)).await;
        s.record(ok(300)); // one half-life later: halfway
        let snap = s.snapshot();
        assert!(
            (snap.latency_ms.unwrap_or(0.0) - 200.0).abs() < 1e-6,
            "{snap:?}"
        );
        assert_eq!(snap.peak_latency_ms, Some(300.0), "peaks are taken at once");
        s.record(Sample {
            success: false,
            ..Default::default()
        });
        let snap = s.snapshot();
        assert_eq!((snap.requests_in_window, snap.error_rate), (3, 1.0 / 3.0));
        s.enter();
        assert_eq!(s.snapshot().in_flight, 1);
        s.leave();
        assert_eq!(s.in_flight(), 0);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(s.snapshot().requests_in_window, 0);
    }
}
