//! GCRA (the generic cell rate algorithm): a rate limit of `limit` per `period` kept as ONE
//! number per limited thing, its theoretical arrival time (TAT). Each unit of cost moves the
//! TAT by `period / limit`; a request is allowed while the TAT it would leave is at most one
//! `period` ahead of now, so a full `limit` may arrive at once and then one unit every
//! `period / limit`. The in-process backend runs this function; the Redis script is the same
//! arithmetic in Lua (`redis.rs`), on Redis's clock.

/// What a check found, for one limit. Times are microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The TAT to store when every limit of the check allows.
    pub new_tat: i64,
    /// Units left after this request (allowed) or now (refused).
    pub remaining: u64,
    /// Until the limit is whole again.
    pub reset_us: i64,
    /// Refused: how long until this cost would be allowed; `None` when it never fits (a cost
    /// above the limit itself).
    pub retry_us: Option<i64>,
}

fn interval(limit: u64, period_us: i64) -> f64 {
    period_us as f64 / limit.max(1) as f64
}

/// Check `cost` units against `limit` per `period_us` at `now_us`, the stored TAT being `tat`.
pub fn check(now_us: i64, tat: Option<i64>, limit: u64, period_us: i64, cost: u64) -> Verdict {
    let t = interval(limit, period_us);
    let base = tat.unwrap_or(now_us).max(now_us);
    let new_tat = base + (cost as f64 * t).ceil() as i64;
    let left =
        |tat: i64| (((now_us + period_us - tat) as f64 / t).floor().max(0.0) as u64).min(limit);
    if cost > limit {
        return Verdict {
            allowed: false,
            new_tat: base,
            remaining: left(base),
            reset_us: base - now_us,
            retry_us: None,
        };
    }
    let allow_at = new_tat - period_us;
    if allow_at > now_us {
        Verdict {
            allowed: false,
            new_tat: base,
            remaining: left(base),
            reset_us: base - now_us,
            retry_us: Some(allow_at - now_us),
        }
    } else {
        Verdict {
            allowed: true,
            new_tat,
            remaining: left(new_tat),
            reset_us: new_tat - now_us,
            retry_us: None,
        }
    }
}

/// The TAT after `delta` units were added (a settle above the estimate) or given back
/// (below it); `None` when nothing is left to remember.
pub fn adjust(
    now_us: i64,
    tat: Option<i64>,
    limit: u64,
    period_us: i64,
    delta: i64,
) -> Option<i64> {
    let base = tat?.max(now_us);
    let new = base + (delta as f64 * interval(limit, period_us)).round() as i64;
    (new > now_us).then_some(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    #[test]
    fn a_full_burst_then_one_per_interval() {
        let mut tat = None;
        for i in 0..10 {
            let v = check(0, tat, 10, MIN, 1);
            assert!(v.allowed, "request {i}");
            assert_eq!(v.remaining, 9 - i);
            tat = Some(v.new_tat);
        }
        let refused = check(0, tat, 10, MIN, 1);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_us, Some(6_000_000));
        assert_eq!(refused.reset_us, MIN);
        // One interval later, exactly one more.
        assert!(check(6_000_000, tat, 10, MIN, 1).allowed);
        assert!(!check(5_999_999, tat, 10, MIN, 1).allowed);
    }

    #[test]
    fn weighted_costs_and_settles() {
        let v = check(0, None, 1000, MIN, 800);
        assert!(v.allowed);
        assert_eq!(v.remaining, 200);
        assert!(!check(0, Some(v.new_tat), 1000, MIN, 300).allowed);
        // The answer used 500 fewer tokens than reserved: they are free again.
        let tat = adjust(0, Some(v.new_tat), 1000, MIN, -500);
        assert!(check(0, tat, 1000, MIN, 300).allowed);
        // A cost above the limit never fits.
        assert_eq!(check(0, None, 1000, MIN, 1001).retry_us, None);
        assert_eq!(adjust(0, Some(10), 1000, MIN, -1000), None);
    }
}
