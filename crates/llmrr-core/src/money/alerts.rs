//! Budget alerts: a log line, a metric, and a webhook POST (JSON), signed with HMAC-SHA256
//! (`x-llmrr-signature: sha256=<hex of HMAC(secret, "<timestamp>.<body>")>`, with the
//! timestamp in `x-llmrr-timestamp`), retried with backoff.

use crate::config::MoneyConfig;
use crate::secret::Secret;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::time::Duration;

const RETRIES: [Duration; 5] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

#[derive(Debug, Clone, Serialize)]
pub struct AlertEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub budget_id: String,
    pub scope: String,
    pub period: &'static str,
    pub threshold_percent: u32,
    pub spent_usd: String,
    pub limit_usd: Option<String>,
    pub spent_tokens: i64,
    pub limit_tokens: Option<u64>,
    pub action: &'static str,
    pub period_start: String,
    pub resets_at: Option<String>,
    pub at: String,
}

pub(super) struct Alerts {
    url: Option<String>,
    secret: Option<Secret>,
    client: reqwest::Client,
}

/// `sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>").
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail here.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Alerts {
    pub(super) fn new(config: &MoneyConfig) -> Self {
        Alerts {
            url: config.alert_webhook_url.clone(),
            secret: config.alert_webhook_secret.clone(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    pub(super) fn fire(&self, event: AlertEvent) {
        tracing::warn!(budget = %event.budget_id, scope = %event.scope, period = event.period,
            threshold = event.threshold_percent, spent_usd = %event.spent_usd,
            limit_usd = ?event.limit_usd, "budget alert");
        metrics::counter!(crate::telemetry::BUDGET_ALERTS,
            "period" => event.period, "threshold" => event.threshold_percent.to_string())
        .increment(1);
        let Some(url) = self.url.clone() else { return };
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let secret = self.secret.clone();
        let client = self.client.clone();
        tokio::spawn(async move {
            let mut waits = RETRIES.iter();
            loop {
                let timestamp = jiff::Timestamp::now().as_second().to_string();
                let mut req = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-llmrr-timestamp", &timestamp)
                    .body(body.clone());
                if let Some(s) = &secret {
                    req = req.header(
                        "x-llmrr-signature",
                        signature(s.expose(), &timestamp, &body),
                    );
                }
                let failure = match req.send().await {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) => format!("status {}", r.status().as_u16()),
                    Err(e) => e.without_url().to_string(),
                };
                match waits.next() {
                    Some(wait) => tokio::time::sleep(*wait).await,
                    None => {
                        tracing::error!(error = %failure, "budget alert webhook failed; giving up");
                        return;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Known answer: HMAC-SHA256("key", "1.{}") computed independently (Python hmac).
        assert_eq!(
            super::signature("key", "1", b"{}"),
            "sha256=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
    }
}
