//! The access line: one `llmrr::access` log event per request, from its request-log row —
//! ids, model, status, tokens, cost and timings (`--log-format json` makes each a JSON object).
//! The prompt only where the route keeps prompts (`log_prompts`); never a key, only its id.

use crate::store::LogRow;

/// The target of access lines (`RUST_LOG=llmrr::access=off` silences them).
pub const TARGET: &str = "llmrr::access";

/// Log `row` as an access line; `client_request_id` is the client's own `x-request-id`,
/// `trace_id` the request's trace when traces are on.
pub fn line(row: &LogRow, client_request_id: Option<&str>, trace_id: Option<&str>) {
    let ms = |us: i64| us as f64 / 1000.0;
    tracing::info!(
        target: TARGET,
        request_id = %row.id,
        client_request_id,
        trace_id,
        endpoint = %row.endpoint,
        key_id = row.key_id.as_deref(),
        user_id = row.user_id.as_deref(),
        team_id = row.team_id.as_deref(),
        // Quoted in the text log: a client's model name cannot forge fields.
        requested_model = row.requested_model.as_str(),
        model = row.model.as_deref(),
        provider = row.provider.as_deref(),
        stream = row.stream,
        status = row.status,
        error = row.error_type.as_deref(),
        prompt_tokens = row.prompt_tokens,
        completion_tokens = row.completion_tokens,
        usage_estimated = row.usage_estimated,
        cost_usd = %row.cost_usd,
        unpriced = row.unpriced,
        cache = row.cache.as_deref(),
        latency_ms = ms(row.latency_us),
        ttft_ms = row.ttft_us.map(ms),
        upstream_ms = row.upstream_us.map(ms),
        difficulty = row.difficulty.map(|d| d as f64 / 10_000.0),
        category = row.category.as_deref(),
        prompt = row.prompt.as_deref(),
        "request"
    );
}

/// The access line of a request that made no model call: refused before one (a bad key, a
/// malformed body, a limit) or not a model call at all (the admin API, `/v1/models`).
pub fn without_call(
    request_id: &str,
    client_request_id: Option<&str>,
    method: &str,
    route: &str,
    status: u16,
    key_id: Option<&str>,
    latency_ms: f64,
) {
    tracing::info!(
        target: TARGET,
        request_id,
        client_request_id,
        method,
        route,
        key_id,
        status,
        latency_ms,
        "request"
    );
}
