//! A revoke reaches every running server within [`REVOCATION_POLL`]: each server asks the
//! store, once a poll, for the keys revoked (or rotated, or given a new expiry) since its last
//! look, and forgets them. The same watch writes when keys were last used. A revoke
//! through this server's admin API clears its cache at once; one made elsewhere (another
//! replica, `llmrr keys revoke`) is seen at the next poll.

use super::Authenticator;
use std::sync::Arc;
use std::time::Duration;

pub const REVOCATION_POLL: Duration = Duration::from_millis(500);
/// Looks back this far past the last poll, so that clocks a little apart between replicas
/// (each stamps its own revokes) miss nothing. Forgetting a key twice costs nothing.
const CLOCK_MARGIN_MS: i64 = 10_000;

pub(super) fn spawn_watch(auth: &Authenticator) {
    let weak = Arc::downgrade(&auth.inner);
    tokio::spawn(async move {
        let mut since = crate::store::now_ms() - CLOCK_MARGIN_MS;
        let mut tick = tokio::time::interval(REVOCATION_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inner) = weak.upgrade() else { return };
            let now = crate::store::now_ms();
            match inner.store.changed_keys_since(since).await {
                Ok(ids) => {
                    for id in &ids {
                        inner.cache.forget_key(id);
                    }
                    since = now - CLOCK_MARGIN_MS;
                }
                Err(e) => tracing::debug!(error = %e, "revocation watch: the store did not answer"),
            }
            // After the revocations (they must not wait for this): when keys were last used.
            let used = (super::Authenticator {
                inner: inner.clone(),
            })
            .take_used();
            if !used.is_empty() {
                let write = inner.store.touch_keys(&used);
                match tokio::time::timeout(REVOCATION_POLL, write).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, "keys: last-used times not written"),
                    Err(_) => tracing::debug!("keys: last-used times not written in time"),
                }
            }
        }
    });
}
