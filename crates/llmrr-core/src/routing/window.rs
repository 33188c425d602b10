//! A sliding window of successes and failures in one-second buckets.

use tokio::time::Instant;

#[derive(Debug)]
pub struct OutcomeWindow {
    /// (second since `origin`, successes, failures), indexed by second modulo the length.
    buckets: Vec<(u64, u32, u32)>,
    origin: Instant,
}

impl OutcomeWindow {
    pub fn new(seconds: u64, origin: Instant) -> Self {
        OutcomeWindow {
            buckets: vec![(u64::MAX, 0, 0); seconds.clamp(1, 3600) as usize],
            origin,
        }
    }

    fn bucket(&mut self, now: Instant) -> &mut (u64, u32, u32) {
        let sec = now.saturating_duration_since(self.origin).as_secs();
        let len = self.buckets.len() as u64;
        let b = &mut self.buckets[(sec % len) as usize];
        if b.0 != sec {
            *b = (sec, 0, 0);
        }
        b
    }

    pub fn record(&mut self, now: Instant, success: bool) {
        let b = self.bucket(now);
        if success {
            b.1 += 1;
        } else {
            b.2 += 1;
        }
    }

    /// (successes, failures) within the window ending at `now`.
    pub fn totals(&self, now: Instant) -> (u64, u64) {
        let sec = now.saturating_duration_since(self.origin).as_secs();
        let len = self.buckets.len() as u64;
        self.buckets
            .iter()
            .filter(|b| b.0 != u64::MAX && b.0 <= sec && sec - b.0 < len)
            .fold((0, 0), |(s, f), b| (s + u64::from(b.1), f + u64::from(b.2)))
    }

    pub fn clear(&mut self) {
        self.buckets.iter_mut().for_each(|b| *b = (u64::MAX, 0, 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn old_buckets_fall_out() {
        let t0 = Instant::now();
        let mut w = OutcomeWindow::new(10, t0);
        w.record(t0, false);
        w.record(t0 + Duration::from_secs(5), true);
        assert_eq!(w.totals(t0 + Duration::from_secs(5)), (1, 1));
        assert_eq!(w.totals(t0 + Duration::from_secs(12)), (1, 0));
        assert_eq!(w.totals(t0 + Duration::from_secs(30)), (0, 0));
    }
}
