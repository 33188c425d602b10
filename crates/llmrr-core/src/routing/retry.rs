//! Retry delays: exponential backoff with full jitter (a delay drawn uniformly from zero to
//! `min(max_delay, base_delay * 2^attempt)`), which spreads retries of many clients apart.

use crate::config::routing::RetryPolicy;
use rand::Rng;
use std::time::Duration;

/// The delay before retry number `retry` (0 for the first retry).
pub fn backoff(policy: &RetryPolicy, retry: u32, rng: &mut impl Rng) -> Duration {
    let cap = policy
        .base_delay
        .saturating_mul(2u32.saturating_pow(retry.min(20)))
        .min(policy.max_delay);
    if cap.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(rng.gen_range(0.0..=cap.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn full_jitter_under_an_exponential_cap() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_total: Duration::from_secs(10),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for retry in 0..8 {
            let cap = Duration::from_millis((100u64 << retry).min(1000));
            let delays: Vec<Duration> = (0..200).map(|_| backoff(&p, retry, &mut rng)).collect();
            assert!(delays.iter().all(|d| *d <= cap), "retry {retry}");
            let max = delays.iter().max().copied().unwrap_or_default();
            assert!(
                max > cap / 2,
                "jitter spans the range: retry {retry}, max {max:?}"
            );
        }
    }
}
