//! Optional periodic health probes (`routing.health_probe_interval_secs`): a cheap request to
//! each model's API (its model list); a failure opens the model's breaker before a client's
//! request finds it down, a success counts as one.

use crate::models::ModelRegistry;
use std::sync::Arc;
use std::time::Duration;

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn spawn_probes(models: &ModelRegistry, every: Duration) {
    let entries: Vec<_> = models.all().iter().map(Arc::clone).collect();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for e in &entries {
                let ok = matches!(
                    tokio::time::timeout(PROBE_TIMEOUT, e.provider.probe()).await,
                    Ok(Ok(()))
                );
                if ok {
                    e.breaker.record(true, false, false);
                } else {
                    tracing::warn!(model = %e.spec.name, "health probe failed: opening the breaker");
                    e.breaker.trip();
                }
            }
        }
    });
}
