//! The cost-aware policy: what an answer cost to make sets how long it lives, the chance it is
//! admitted at all, and (with its hits and size) how late it is evicted.
//!
//! Eviction is GreedyDual-Size-Frequency: an entry's priority is `clock + hits × cost / KiB`;
//! the lowest goes first and the clock rises to it, so entries not hit since age out, and a
//! costly, often hit, small answer outlives a cheap, rarely hit, large one.

use crate::config::cache::CachePolicy;
use std::time::Duration;

/// Seconds of `base` TTL stretched by cost: `base × (1 + cost / ttl_cost_usd)`, at most
/// `max_ttl_factor × base`.
pub fn ttl(p: &CachePolicy, base: Duration, cost_usd: f64) -> Duration {
    let factor = if p.ttl_cost_usd > 0.0 {
        (1.0 + cost_usd.max(0.0) / p.ttl_cost_usd).min(p.max_ttl_factor)
    } else {
        p.max_ttl_factor
    };
    base.mul_f64(factor.max(1.0))
}

/// The chance that an answer costing `cost_usd` is admitted.
pub fn admission_chance(p: &CachePolicy, cost_usd: f64) -> f64 {
    if p.admit_full_usd <= 0.0 || cost_usd >= p.admit_full_usd {
        return 1.0;
    }
    (p.admit_floor + (1.0 - p.admit_floor) * cost_usd.max(0.0) / p.admit_full_usd).min(1.0)
}

/// Admit an answer costing `cost_usd`, given a uniform draw in [0, 1).
pub fn admit(p: &CachePolicy, cost_usd: f64, draw: f64) -> bool {
    draw < admission_chance(p, cost_usd)
}

/// GDSF priority of an entry.
pub fn priority(p: &CachePolicy, clock: f64, hits: u64, cost_usd: f64, bytes: u64) -> f64 {
    let kib = (bytes as f64 / 1024.0).max(0.25);
    clock + (1 + hits) as f64 * cost_usd.max(p.cost_floor_usd) / kib
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costly_answers_live_longer_up_to_the_cap() {
        let p = CachePolicy::default();
        let base = Duration::from_secs(100);
        assert_eq!(ttl(&p, base, 0.0), base);
        assert_eq!(ttl(&p, base, 0.01), Duration::from_secs(200));
        assert_eq!(ttl(&p, base, 10.0), Duration::from_secs(400));
    }

    #[test]
    fn admission_grows_with_cost() {
        let p = CachePolicy {
            admit_full_usd: 0.001,
            admit_floor: 0.2,
            ..CachePolicy::default()
        };
        assert!((admission_chance(&p, 0.0) - 0.2).abs() < 1e-9);
        assert!((admission_chance(&p, 0.0005) - 0.6).abs() < 1e-9);
        assert_eq!(admission_chance(&p, 0.002), 1.0);
        assert!(!admit(&p, 0.0, 0.5));
        assert!(admit(&p, 0.0, 0.1));
        // The default admits everything.
        assert_eq!(admission_chance(&CachePolicy::default(), 0.0), 1.0);
    }

    #[test]
    fn eviction_prefers_cheap_rarely_hit_large_entries() {
        let p = CachePolicy::default();
        let cheap = priority(&p, 0.0, 0, 0.0001, 4096);
        assert!(priority(&p, 0.0, 0, 0.01, 4096) > cheap, "cost");
        assert!(priority(&p, 0.0, 5, 0.0001, 4096) > cheap, "hits");
        assert!(priority(&p, 0.0, 0, 0.0001, 1024) > cheap, "size");
        assert!(priority(&p, 1.0, 0, 0.0001, 4096) > cheap, "age");
        assert!(priority(&p, 0.0, 3, 0.0, 1024) > priority(&p, 0.0, 0, 0.0, 1024));
    }
}
