//! The same behaviour suite on both shared-state backends: in-process and a real Redis
//! (`LLMRR_TEST_REDIS_URL`, default redis://127.0.0.1:6379; each run under its own prefix).

#![expect(clippy::expect_used, reason = "tests fail loudly")]

use llmrr_core::shared::{Hold, Rate, Reserve, SharedState, Usage};
use std::time::Duration;

fn hold(key: &str, limit: i64, amount: i64) -> Hold {
    Hold {
        key: key.into(),
        limit: Some(limit),
        amount,
        ttl: Some(Duration::from_secs(60)),
    }
}

fn rate(key: &str, limit: u64, cost: i64) -> Rate {
    Rate {
        key: key.into(),
        limit,
        period: Duration::from_secs(60),
        cost,
    }
}

/// GCRA limits: a full burst, then refused with the time to wait; all or none across limits;
/// a settle gives units back.
async fn rates(s: &SharedState) {
    for i in 0..3 {
        let c = s.rate(&[rate("rpm", 3, 1)]).await.expect("rate");
        assert_eq!(c.refused, None, "request {i}");
        assert_eq!(c.states[0].remaining, 2 - i);
    }
    let refused = s.rate(&[rate("rpm", 3, 1)]).await.expect("rate");
    assert_eq!(refused.refused, Some(0));
    let wait = refused.retry_after.expect("a retry");
    assert!(
        wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
        "{wait:?}"
    );
    assert!(refused.states[0].reset > Duration::from_secs(59));
    // The second limit refuses: the first takes nothing.
    assert_eq!(
        s.rate(&[rate("wide", 5, 1), rate("rpm", 3, 1)])
            .await
            .expect("rate")
            .refused,
        Some(1)
    );
    assert_eq!(
        s.rate(&[rate("wide", 5, 5)]).await.expect("rate").refused,
        None
    );
    // Tokens: reserve 800 of 1000, settle at 300 -> 700 free.
    assert_eq!(
        s.rate(&[rate("tpm", 1000, 800)])
            .await
            .expect("rate")
            .refused,
        None
    );
    assert_eq!(
        s.rate(&[rate("tpm", 1000, 700)])
            .await
            .expect("rate")
            .refused,
        Some(0)
    );
    s.rate_adjust(&rate("tpm", 1000, -500))
        .await
        .expect("adjust");
    let c = s.rate(&[rate("tpm", 1000, 700)]).await.expect("rate");
    assert_eq!(c.refused, None);
    assert_eq!(c.states[0].remaining, 0);
    // A cost above the limit never fits.
    let never = s.rate(&[rate("small", 10, 11)]).await.expect("rate");
    assert_eq!((never.refused, never.retry_after), (Some(0), None));
}

/// Values with a TTL (the L3 cache): set, get, head, match by pattern, delete, expire.
async fn values(s: &SharedState) {
    let v = bytes::Bytes::from_static(b"LLC1 value bytes");
    s.set("e:ns1:r1:aa", v.clone(), Duration::from_secs(60))
        .await
        .expect("set");
    s.set("e:ns1:r2:bb", v.clone(), Duration::from_secs(60))
        .await
        .expect("set");
    s.set("e:ns2:r1:cc", v.clone(), Duration::from_millis(50))
        .await
        .expect("set");
    assert_eq!(s.get("e:ns1:r1:aa").await.expect("get"), Some(v.clone()));
    assert_eq!(s.get("e:none").await.expect("get"), None);
    assert_eq!(
        s.head("e:ns1:r1:aa", 4).await.expect("head").as_deref(),
        Some(&b"LLC1"[..])
    );
    let mut ns1 = s.keys_matching("e:ns1:*").await.expect("match");
    ns1.sort();
    assert_eq!(ns1, vec!["e:ns1:r1:aa", "e:ns1:r2:bb"]);
    let mut r1 = s.keys_matching("e:*:r1:*").await.expect("match");
    r1.sort();
    assert_eq!(r1, vec!["e:ns1:r1:aa", "e:ns2:r1:cc"]);
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(s.get("e:ns2:r1:cc").await.expect("get"), None, "expired");
    assert_eq!(s.delete(&ns1).await.expect("delete"), 2);
    assert!(s.keys_matching("e:*").await.expect("match").is_empty());
}

async fn behaviour(s: SharedState) {
    values(&s).await;
    rates(&s).await;
    let h = Duration::from_secs(60);
    s.rebuild(&[], true).await.expect("mark complete");
    // All or none, within every limit.
    assert_eq!(
        s.reserve("a", &[hold("k", 10, 6), hold("t", 100, 6)], h)
            .await
            .expect("reserve"),
        Reserve::Held
    );
    assert_eq!(
        s.reserve("b", &[hold("t", 100, 6), hold("k", 10, 6)], h)
            .await
            .expect("reserve"),
        Reserve::Full { index: 1, used: 6 }
    );
    assert_eq!(
        s.read(&["t".into()]).await.expect("read")[0],
        Usage { spent: 0, held: 6 }
    );
    // Settling replaces the held amount by the real one.
    let after = s
        .settle("a", &[hold("k", 10, 2), hold("t", 100, 2)])
        .await
        .expect("settle");
    assert_eq!(after[0], Usage { spent: 2, held: 0 });
    assert_eq!(
        s.reserve("b", &[hold("k", 10, 8)], h)
            .await
            .expect("reserve"),
        Reserve::Held
    );
    assert!(matches!(
        s.reserve("c", &[hold("k", 10, 1)], h)
            .await
            .expect("reserve"),
        Reserve::Full { index: 0, used: 10 }
    ));
    // A release is a settle to zero.
    s.settle("b", &[hold("k", 10, 0)]).await.expect("release");
    assert_eq!(
        s.read(&["k".into()]).await.expect("read")[0],
        Usage { spent: 2, held: 0 }
    );
    // A hold of a replica that died expires.
    assert_eq!(
        s.reserve("x", &[hold("e", 10, 10)], Duration::from_millis(50))
            .await
            .expect("reserve"),
        Reserve::Held
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        s.reserve("y", &[hold("e", 10, 10)], h)
            .await
            .expect("reserve"),
        Reserve::Held
    );
    // Counted but never refused.
    let counted = Hold {
        limit: None,
        ..hold("n", 0, 1_000)
    };
    assert_eq!(
        s.reserve("z", &[counted], h).await.expect("reserve"),
        Reserve::Held
    );
    // Once per key.
    assert!(s.claim_once("alert-1", h).await.expect("claim"));
    assert!(!s.claim_once("alert-1", h).await.expect("claim"));
    // A rebuild keeps live counters unless it overwrites; it never touches what is held.
    s.rebuild(&[hold("k", 0, 7)], false).await.expect("rebuild");
    assert_eq!(
        s.read(&["k".into()]).await.expect("read")[0],
        Usage { spent: 2, held: 0 }
    );
    s.rebuild(&[hold("k", 0, 7)], true).await.expect("rebuild");
    assert_eq!(
        s.read(&["k".into()]).await.expect("read")[0],
        Usage { spent: 7, held: 0 }
    );
}

#[tokio::test]
async fn in_process() {
    behaviour(SharedState::memory()).await;
}

#[tokio::test]
async fn redis_and_lost_data() {
    let url = std::env::var("LLMRR_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("llmrr-test-{}", uuid::Uuid::now_v7().simple());
    let s = SharedState::redis(&url, &prefix)
        .await
        .unwrap_or_else(|e| panic!("Redis is not reachable at {url}: {e}"));
    // Nothing there yet: the data is not known to be complete.
    assert_eq!(
        s.reserve("a", &[hold("k", 10, 1)], Duration::from_secs(1))
            .await
            .expect("reserve"),
        Reserve::Lost
    );
    behaviour(s).await;
}
