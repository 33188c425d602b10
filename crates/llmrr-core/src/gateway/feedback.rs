//! `POST /v1/feedback`: an outcome stored with a logged request, from the key that made it.

use super::*;
use crate::routing::feedback::Feedback;

/// How long feedback waits for its request's log row (rows are written in batches).
const LOG_WAIT: Duration = Duration::from_secs(5);

impl Gateway {
    /// Stores `f` with its request; returns the score in [0, 1]. A request of another key (or
    /// one never logged) is not found: keys do not learn about each other's requests. The
    /// master key may rate any request; without keys (an open gateway), keyless requests.
    pub async fn feedback(&self, key: &KeyContext, f: &Feedback) -> Result<f64> {
        let score = f.score_bp()?;
        let store = &self.inner.store;
        // Another key's request reads as unknown, and takes the same path (no timing tells).
        let whose = (!key.is_master).then_some(key.key_id.as_deref());
        let mut found = store.request_visible(&f.request_id, whose).await?;
        if !found {
            // The row may still be queued: write what is queued, then look again.
            let _one_at_a_time = self.inner.feedback_flush.lock().await;
            // The flush before this one may have written it.
            found = store.request_visible(&f.request_id, whose).await?;
            if !found {
                self.inner.log.flush(LOG_WAIT).await;
                found = store.request_visible(&f.request_id, whose).await?;
            }
        }
        if !found {
            return Err(Error::NotFound(format!("no request `{}`", f.request_id)));
        }
        store
            .record_feedback(
                &f.request_id,
                key.key_id.as_deref(),
                score,
                f.comment.as_deref(),
            )
            .await?;
        Ok(score as f64 / 10_000.0)
    }
}
