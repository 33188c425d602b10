//! The requests `cache warm` can replay: one row per cache key, written when the cache keeps
//! an answer (the request's body after input guardrails, who asked, what it cost). How often
//! each was asked comes from the request log's `cache_key` column.

use super::{now_ms, Store};
use crate::error::Result;
use sqlx::Row;

/// A cacheable request as kept for warming.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheRequest {
    /// The cache key, hex.
    pub cache_key: String,
    /// `chat`, `completions` or `embeddings`.
    pub endpoint: String,
    pub stream: bool,
    /// The key that asked last (`None`: the master key or an anonymous caller).
    pub key_id: Option<String>,
    /// The request's JSON, as the gateway keyed it.
    pub body: String,
    /// The request's cache directives that shape its entry (JSON).
    pub directives: String,
    /// What its answer cost to make, last time (picodollars).
    pub cost_pusd: i64,
    /// The model had a price (else `cost_pusd` is 0 because it is unknown).
    pub priced: bool,
}

/// A request worth warming: how often it was asked in the window.
#[derive(Debug, Clone)]
pub struct WarmCandidate {
    pub request: CacheRequest,
    pub asked: i64,
}

impl Store {
    /// Keep (or refresh) the request of a cache key (its body is the key's: kept as first
    /// written).
    pub async fn remember_cache_request(&self, r: &CacheRequest) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO cache_requests (cache_key, endpoint, stream, key_id, body, directives, \
             cost_pusd, priced, created_at_ms, last_seen_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
             ON CONFLICT (cache_key) DO UPDATE SET key_id = excluded.key_id, \
             directives = excluded.directives, \
             cost_pusd = excluded.cost_pusd, priced = excluded.priced, \
             last_seen_ms = excluded.last_seen_ms",
        )
        .bind(&r.cache_key)
        .bind(&r.endpoint)
        .bind(r.stream as i64)
        .bind(&r.key_id)
        .bind(&r.body)
        .bind(&r.directives)
        .bind(r.cost_pusd)
        .bind(r.priced as i64)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forget the requests not kept again since `before_ms`; returns how many.
    pub async fn forget_cache_requests_before(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM cache_requests WHERE last_seen_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Forget the request of one cache key.
    pub async fn forget_cache_request(&self, cache_key: &str) -> Result<()> {
        sqlx::query("DELETE FROM cache_requests WHERE cache_key = $1")
            .bind(cache_key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The `limit` kept requests asked most often since `since_ms` (the costlier first among
    /// equals).
    pub async fn warm_candidates(&self, since_ms: i64, limit: i64) -> Result<Vec<WarmCandidate>> {
        let rows = sqlx::query(
            "SELECT c.cache_key, c.endpoint, c.stream, c.key_id, c.body, c.directives, \
             c.cost_pusd, c.priced, r.asked FROM cache_requests c JOIN \
             (SELECT cache_key, COUNT(*) AS asked FROM request_log \
              WHERE cache_key IS NOT NULL AND created_at_ms >= $1 GROUP BY cache_key) r \
             ON r.cache_key = c.cache_key \
             ORDER BY r.asked DESC, c.cost_pusd DESC, c.cache_key LIMIT $2",
        )
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WarmCandidate {
                    request: CacheRequest {
                        cache_key: r.try_get("cache_key")?,
                        endpoint: r.try_get("endpoint")?,
                        stream: r.try_get::<i64, _>("stream")? != 0,
                        key_id: r.try_get("key_id")?,
                        body: r.try_get("body")?,
                        directives: r.try_get("directives")?,
                        cost_pusd: r.try_get("cost_pusd")?,
                        priced: r.try_get::<i64, _>("priced")? != 0,
                    },
                    asked: r.try_get("asked")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LogRow;
    use std::time::Duration;

    fn request(key: &str, cost: i64) -> CacheRequest {
        CacheRequest {
            cache_key: key.into(),
            endpoint: "chat".into(),
            stream: false,
            key_id: Some("key_a".into()),
            body: "{}".into(),
            directives: "{}".into(),
            cost_pusd: cost,
            priced: true,
        }
    }

    fn asked(id: usize, key: &str, at_ms: i64) -> LogRow {
        LogRow {
            id: format!("req_{id}"),
            created_at_ms: at_ms,
            endpoint: "chat".into(),
            key_id: None,
            user_id: None,
            team_id: None,
            requested_model: "m".into(),
            model: None,
            provider: None,
            stream: false,
            status: 200,
            error_type: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            usage_estimated: false,
            latency_us: 1,
            ttft_us: None,
            upstream_us: None,
            cost_usd: "0".into(),
            unpriced: false,
            cache: Some("hit".into()),
            cache_key: Some(key.into()),
            difficulty: None,
            category: None,
            prompt: None,
            route: None,
            reason: None,
        }
    }

    #[tokio::test]
    async fn candidates_rank_by_how_often_they_were_asked_in_the_window() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .expect("connect");
        for (key, cost) in [("a", 5), ("b", 1), ("c", 9), ("never-asked", 100)] {
            store
                .remember_cache_request(&request(key, cost))
                .await
                .expect("remember");
        }
        // Kept again: one row, the newer values.
        let mut again = request("b", 2);
        again.key_id = None;
        store.remember_cache_request(&again).await.expect("again");
        let now = now_ms();
        let mut rows = Vec::new();
        for (i, (key, at)) in [
            ("a", now),
            ("b", now),
            ("b", now),
            ("b", now),
            ("c", now),
            ("a", now),
            // Outside the window: not counted.
            ("c", now - 10_000),
            ("c", now - 10_000),
            ("c", now - 10_000),
            // Asked, but no kept request: never a candidate.
            ("unknown", now),
        ]
        .into_iter()
        .enumerate()
        {
            rows.push(asked(i, key, at));
        }
        store
            .insert_log_rows(&rows, Duration::from_secs(10))
            .await
            .expect("log");
        let found = store.warm_candidates(now - 1000, 10).await.expect("read");
        let ranked: Vec<(&str, i64)> = found
            .iter()
            .map(|c| (c.request.cache_key.as_str(), c.asked))
            .collect();
        assert_eq!(ranked, [("b", 3), ("a", 2), ("c", 1)]);
        assert_eq!(found[0].request, again, "the row holds the last values");
        assert_eq!(
            store
                .warm_candidates(now - 1000, 1)
                .await
                .expect("top")
                .len(),
            1
        );
        assert_eq!(
            store
                .forget_cache_requests_before(now + 60_000)
                .await
                .expect("forget"),
            4
        );
        assert!(store
            .warm_candidates(0, 10)
            .await
            .expect("empty")
            .is_empty());
    }
}
