//! Step 4: usage -> cost -> request-log row, metrics.

use super::*;

/// What `finish` records about one request.
pub(super) struct Finish<'a> {
    pub(super) ctx: &'a RequestContext,
    pub(super) endpoint: Endpoint,
    pub(super) requested: &'a str,
    pub(super) entry: Option<&'a ModelEntry>,
    pub(super) stream: bool,
    pub(super) result: std::result::Result<(), (u16, &'static str)>,
    pub(super) usage: Usage,
    pub(super) usage_estimated: bool,
    /// Compute time, where the provider reports it (priced per compute-second).
    pub(super) compute: Option<Duration>,
    pub(super) ttft: Option<Duration>,
    pub(super) upstream: Option<Duration>,
}

impl<'a> Finish<'a> {
    /// Nothing known yet: no model, no usage, success until said otherwise.
    pub(super) fn new(ctx: &'a RequestContext, call: &'a Call, stream: bool) -> Self {
        Finish {
            ctx,
            endpoint: call.endpoint(),
            requested: call.model(),
            entry: None,
            stream,
            result: Ok(()),
            usage: Usage::default(),
            usage_estimated: false,
            compute: None,
            ttft: None,
            upstream: None,
        }
    }

    pub(super) fn failed(mut self, entry: Option<&'a ModelEntry>, e: &Error) -> Self {
        self.entry = entry;
        self.result = Err((e.status_code(), e.label()));
        self
    }
}

impl Gateway {
    /// Step 4: cost, metrics, request-log row. Returns the cost.
    pub(super) async fn finish(&self, f: Finish<'_>) -> Decimal {
        let total = f.ctx.started.elapsed();
        let cost = f
            .entry
            .map(|e| cost_of(&e.spec.pricing, &f.usage, f.compute))
            .unwrap_or(Decimal::ZERO);
        let (status, error) = match f.result {
            Ok(()) => (200, None),
            Err((status, label)) => (status, Some(label)),
        };
        match (f.entry, error) {
            (Some(e), None) => {
                let overhead = total.saturating_sub(f.upstream.unwrap_or_default());
                e.metrics
                    .success(f.endpoint, total.as_secs_f64(), overhead.as_secs_f64());
            }
            (Some(e), Some(label)) => {
                e.metrics
                    .failure(f.endpoint, status, label, total.as_secs_f64())
            }
            (None, Some(label)) => telemetry::failure(f.endpoint, None, status, label),
            (None, None) => {}
        }
        if let Some(e) = f.entry {
            if let Some(u) = f.upstream {
                e.metrics.upstream.record(u.as_secs_f64());
            }
            if let Some(t) = f.ttft {
                e.metrics.ttft.record(t.as_secs_f64());
            }
            e.metrics.input_tokens.increment(f.usage.prompt_tokens);
            e.metrics.output_tokens.increment(f.usage.completion_tokens);
        }
        let micros = |d: Duration| d.as_micros().min(i64::MAX as u128) as i64;
        let key = &f.ctx.key;
        self.inner.log.append(LogRow {
            id: f.ctx.id.clone(),
            created_at_ms: crate::store::now_ms(),
            endpoint: f.endpoint.as_str().to_owned(),
            key_id: key.key_id.clone(),
            user_id: key.user.clone(),
            team_id: key.team.clone(),
            requested_model: f.requested.to_owned(),
            model: f.entry.map(|e| e.spec.name.to_string()),
            provider: f.entry.map(|e| e.spec.provider.as_str().to_owned()),
            stream: f.stream,
            status: i64::from(status),
            error_type: error.map(str::to_owned),
            prompt_tokens: f.usage.prompt_tokens as i64,
            completion_tokens: f.usage.completion_tokens as i64,
            usage_estimated: f.usage_estimated,
            latency_us: micros(total),
            ttft_us: f.ttft.map(micros),
            upstream_us: f.upstream.map(micros),
            cost_usd: cost.normalize().to_string(),
        });
        cost
    }
}

/// The decision added to a JSON answer as `"llmrr": {...}` (only when asked: it costs a
/// parse and a re-encode).
pub(super) fn with_explanation(body: Bytes, decision: &Decision) -> Bytes {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.insert("llmrr".into(), serde_json::json!({ "route": decision }));
            serde_json::to_vec(&map).map(Bytes::from).unwrap_or(body)
        }
        _ => body,
    }
}
