//! Breaker cooldowns shared by replicas (`[shared] redis_url`): when a model's breaker opens
//! on one replica, it writes until when (Unix ms, expiring with the cooldown) under
//! `breakers:{model}`; every replica reads these about twice a second and opens its own
//! breaker of the model until then. So a model that failed on one replica stops getting calls
//! from all of them, and every replica probes it again when the cooldown ends. Half-open
//! probing and closing stay each replica's own (a probe that fails opens — and shares —
//! again). Without Redis there is one replica: nothing to share.

use crate::error::Result;
use crate::models::ModelRegistry;
use crate::shared::SharedState;
use std::time::Duration;

/// How often the others' opened breakers are read.
pub const BREAKER_POLL: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct BreakerSync {
    shared: SharedState,
}

impl BreakerSync {
    /// Over `shared` when it is Redis; `None` in process (a single replica).
    pub fn new(shared: &SharedState) -> Option<BreakerSync> {
        matches!(shared, SharedState::Redis(_)).then(|| BreakerSync {
            shared: shared.scoped("breakers"),
        })
    }

    /// Tell the others that `model`'s breaker opened here for `cooldown` (off the caller's
    /// path; a failed write is logged: each replica's breaker still works on its own).
    pub fn publish(&self, model: &str, cooldown: Duration) {
        let until = crate::store::now_ms() + cooldown.as_millis() as i64;
        let shared = self.shared.clone();
        let model = model.to_owned();
        tokio::spawn(async move {
            let value = bytes::Bytes::from(until.to_string());
            if let Err(e) = shared.set(&model, value, cooldown).await {
                tracing::warn!(model, error = %e, "breaker: could not share an open breaker");
            }
        });
    }

    /// Open here every breaker another replica has opened (and whose cooldown has not ended).
    pub async fn refresh(&self, models: &ModelRegistry) -> Result<()> {
        let now = crate::store::now_ms();
        for entry in models.all() {
            let Some(value) = self.shared.get(&entry.spec.name).await? else {
                continue;
            };
            let until = std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok());
            if let Some(until) = until.filter(|u| *u > now) {
                entry
                    .breaker
                    .adopt_open(Duration::from_millis((until - now) as u64));
            }
        }
        Ok(())
    }
}
