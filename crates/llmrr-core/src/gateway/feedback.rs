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
        let mut owner = store.request_key(&f.request_id).await?;
        if owner.is_none() {
            // The row may still be queued: write what is queued, then look again.
            self.inner.log.flush(LOG_WAIT).await;
            owner = store.request_key(&f.request_id).await?;
        }
        let not_found = || Error::NotFound(format!("no request `{}`", f.request_id));
        let owner = owner.ok_or_else(not_found)?;
        if !key.is_master && owner != key.key_id {
            return Err(not_found());
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
