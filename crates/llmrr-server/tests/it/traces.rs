//! Traces and access lines: the request path's spans with their GenAI attributes (through the
//! production layer into an in-memory exporter), a client's `traceparent` continued and sent
//! upstream, a fallback's failed attempt, a stream's usage, and the JSON access line.
//!
//! The subscriber is this thread's default, so these tests run on a current-thread runtime:
//! the server, the gateway's tasks and the client all run on the test's thread.

use crate::*;
use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
use opentelemetry::Value as OtelValue;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer as _;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_PARENT: &str = "00f067aa0ba902b7";

/// Log lines written by the JSON log layer.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lines").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn json(&self) -> Vec<Value> {
        let bytes = self.0.lock().expect("lines").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }
}

struct Traced {
    exporter: InMemorySpanExporter,
    lines: Lines,
    _provider: SdkTracerProvider,
    _default: tracing::subscriber::DefaultGuard,
}

/// This thread's subscriber: the production trace layer into memory, and the JSON log.
fn traced() -> Traced {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let lines = Lines::default();
    let writer = {
        let lines = lines.clone();
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || lines.clone())
    };
    let log =
        llmrr_server::telemetry::log_layer(llmrr_core::config::LogFormat::Json, writer, false)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("llmrr::access", tracing::Level::INFO),
            );
    let subscriber = tracing_subscriber::registry()
        .with(log)
        .with(llmrr_server::telemetry::layer(provider.tracer("test")));
    Traced {
        exporter,
        lines,
        _provider: provider,
        _default: tracing::subscriber::set_default(subscriber),
    }
}

impl Traced {
    /// The finished spans once one named `name` is among them (spans end as their tasks do).
    async fn spans_with(&self, name: &str) -> Vec<SpanData> {
        for _ in 0..100 {
            let spans = self.exporter.get_finished_spans().expect("spans");
            if spans.iter().any(|s| s.name == name) {
                return spans;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let names: Vec<String> = self
            .exporter
            .get_finished_spans()
            .expect("spans")
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        panic!("no span `{name}` among {names:?}");
    }
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one span `{name}`");
    found[0]
}

fn attr(span: &SpanData, key: &str) -> Option<OtelValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn text(span: &SpanData, key: &str) -> String {
    match attr(span, key) {
        Some(v) => v.as_str().into_owned(),
        None => panic!("`{}` has no `{key}`: {:?}", span.name, span.attributes),
    }
}

fn int(span: &SpanData, key: &str) -> i64 {
    match attr(span, key) {
        Some(OtelValue::I64(n)) => n,
        other => panic!("`{}`: `{key}` is {other:?}", span.name),
    }
}

fn float(span: &SpanData, key: &str) -> f64 {
    match attr(span, key) {
        Some(OtelValue::F64(n)) => n,
        other => panic!("`{}`: `{key}` is {other:?}", span.name),
    }
}

fn child_of(child: &SpanData, parent: &SpanData) -> bool {
    child.parent_span_id == parent.span_context.span_id()
}

#[tokio::test(flavor = "current_thread")]
async fn a_call_is_traced_with_genai_attributes_under_the_clients_trace() {
    let traced = traced();
    let (gw, mock) = start().await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(MASTER)
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_PARENT}-01"))
        .header("x-request-id", "client-req-7")
        .json(&json!({
            "model": "o-ok",
            "messages": [{"role": "user", "content": "trace me"}],
            "temperature": 0.3,
            "max_tokens": 20
        }))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-llmrr-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    resp.bytes().await.expect("body");
    // The call's span ends with its task, the request's with the answer.
    traced.spans_with("chat o-ok").await;
    let spans = traced.spans_with("POST /v1/chat/completions").await;

    for s in &spans {
        assert_eq!(
            s.span_context.trace_id().to_string(),
            TRACE_ID,
            "{}",
            s.name
        );
    }
    let http = one(&spans, "POST /v1/chat/completions");
    assert_eq!(http.span_kind, SpanKind::Server);
    assert_eq!(http.parent_span_id.to_string(), CLIENT_PARENT);
    assert_eq!(int(http, "http.response.status_code"), 200);
    assert_eq!(text(http, "http.route"), "/v1/chat/completions");
    assert_eq!(text(http, "client.request_id"), "client-req-7");
    assert_eq!(text(http, "llmrr.request_id"), request_id);
    assert!(child_of(one(&spans, "llmrr.auth"), http));

    let call = one(&spans, "chat o-ok");
    assert!(child_of(call, http));
    assert_eq!(text(call, "gen_ai.operation.name"), "chat");
    assert_eq!(text(call, "gen_ai.request.model"), "o-ok");
    assert_eq!(text(call, "gen_ai.response.model"), "o-ok");
    assert_eq!(text(call, "gen_ai.provider.name"), "openai");
    assert!(int(call, "gen_ai.usage.input_tokens") > 0);
    assert!(int(call, "gen_ai.usage.output_tokens") > 0);
    assert!(float(call, "llmrr.cost_usd") > 0.0);
    assert_eq!(int(call, "llmrr.status"), 200);
    assert_eq!(text(call, "llmrr.request_id"), request_id);
    assert_eq!(call.status, Status::Unset);

    let plan = one(&spans, "llmrr.plan");
    assert!(child_of(plan, call));
    assert_eq!(text(plan, "llmrr.model"), "o-ok");
    assert!(!text(plan, "llmrr.reason").is_empty());
    for step in ["llmrr.limits", "llmrr.finish"] {
        assert!(child_of(one(&spans, step), call), "{step}");
    }

    let attempt = one(&spans, "chat mock-ok");
    assert!(child_of(attempt, call));
    assert_eq!(attempt.span_kind, SpanKind::Client);
    assert_eq!(text(attempt, "gen_ai.request.model"), "mock-ok");
    assert_eq!(text(attempt, "gen_ai.provider.name"), "openai");
    assert_eq!(float(attempt, "gen_ai.request.temperature"), 0.3);
    assert_eq!(int(attempt, "gen_ai.request.max_tokens"), 20);
    assert_eq!(text(attempt, "server.address"), "127.0.0.1");
    assert_eq!(
        int(attempt, "gen_ai.usage.output_tokens"),
        int(call, "gen_ai.usage.output_tokens")
    );

    // The upstream got the trace, with the attempt as its parent.
    let sent = mock.last_request();
    let traceparent = sent.headers.get("traceparent").expect("traceparent sent");
    assert_eq!(
        traceparent,
        &format!("00-{TRACE_ID}-{}-01", attempt.span_context.span_id())
    );

    // The access line: ids, the trace, the model, status, tokens and cost — never the key.
    let lines = traced.lines.json();
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "llmrr::access")
        .collect();
    assert_eq!(access.len(), 1, "{lines:?}");
    let a = access[0];
    assert_eq!(a["request_id"], request_id.as_str());
    assert_eq!(a["client_request_id"], "client-req-7");
    assert_eq!(a["trace_id"], TRACE_ID);
    assert_eq!(a["model"], "o-ok");
    assert_eq!(a["status"], 200);
    assert_eq!(a["endpoint"], "chat");
    assert!(a["completion_tokens"].as_i64() > Some(0));
    assert!(
        a["cost_usd"]
            .as_str()
            .expect("cost")
            .parse::<f64>()
            .expect("a number")
            > 0.0
    );
    assert!(a["latency_ms"].as_f64().is_some());
    assert!(
        a.get("prompt").is_none(),
        "no prompt unless the route logs prompts"
    );
    assert!(!a.to_string().contains(MASTER));
}

#[tokio::test(flavor = "current_thread")]
async fn a_fallback_and_a_stream_are_traced_attempt_by_attempt() {
    let traced = traced();
    let (gw, _mock) = start_routed(
        "[[routes]]\nname = \"next\"\nstrategy = \"capability-match\"\nmodels = [\"o-401\", \"o-ok\"]\n",
    )
    .await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("next", "hi"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.expect("body");
    let spans = traced.spans_with("chat next").await;
    let call = one(&spans, "chat next");
    assert_eq!(text(call, "gen_ai.response.model"), "o-ok");
    let failed = one(&spans, "chat mock-401");
    let answered = one(&spans, "chat mock-ok");
    assert!(child_of(failed, call) && child_of(answered, call));
    assert_eq!(int(failed, "llmrr.attempt"), 1);
    assert_eq!(int(answered, "llmrr.attempt"), 2);
    assert!(
        matches!(failed.status, Status::Error { .. }),
        "{:?}",
        failed.status
    );
    assert!(!text(failed, "error.type").is_empty());
    assert!(attr(answered, "error.type").is_none());
    let plan = one(&spans, "llmrr.plan");
    assert_eq!(text(plan, "llmrr.route"), "next");

    // A stream: the call's and the attempt's spans carry the usage reported at its end.
    let mut body = chat_body("o-ok", "stream me");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    assert_eq!(resp.status(), 200);
    let data = sse_data(resp).await;
    let usage: Value = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|c| c["usage"].is_object())
        .expect("a usage chunk")["usage"]
        .clone();
    let spans = traced.spans_with("chat o-ok").await;
    let call = one(&spans, "chat o-ok");
    assert_eq!(attr(call, "llmrr.stream"), Some(OtelValue::Bool(true)));
    assert_eq!(
        int(call, "gen_ai.usage.output_tokens"),
        usage["completion_tokens"].as_i64().expect("tokens")
    );
    let attempts: Vec<&SpanData> = named(&spans, "chat mock-ok")
        .into_iter()
        .filter(|s| child_of(s, call))
        .collect();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        int(attempts[0], "gen_ai.usage.input_tokens"),
        usage["prompt_tokens"].as_i64().expect("tokens")
    );

    // A refused request is a call span with the error and no attempt.
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("nope", "x"),
    )
    .await;
    assert_eq!(resp.status(), 404);
    let spans = traced.spans_with("chat nope").await;
    let call = one(&spans, "chat nope");
    assert_eq!(int(call, "llmrr.status"), 404);
    assert!(!text(call, "error.type").is_empty());
}

/// One access line per request, whatever answers it: a refused key, a stream (when it ends),
/// a cache hit, the models list; a cache hit's call span says so.
#[tokio::test(flavor = "current_thread")]
async fn every_request_gets_one_access_line() {
    let traced = traced();
    let (gw, _mock) = start_with("[cache]\nmode = \"exact\"\n", ENV).await;
    let access = |traced: &Traced| -> Vec<Value> {
        traced
            .lines
            .json()
            .into_iter()
            .filter(|l| l["target"] == "llmrr::access")
            .collect()
    };

    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some("sk-not-a-key-0000000000"),
        chat_body("o-ok", "x"),
    )
    .await;
    assert_eq!(resp.status(), 401);
    let lines = access(&traced);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["status"], 401);
    assert_eq!(lines[0]["route"], "/v1/chat/completions");
    assert_eq!(lines[0]["method"], "POST");
    assert!(!lines[0].to_string().contains("sk-not-a-key"));

    let mut body = chat_body("o-ok", "stream once");
    body["stream"] = json!(true);
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    sse_data(resp).await;
    rows_once(&gw, 1).await;
    let lines = access(&traced);
    assert_eq!(
        lines.len(),
        2,
        "a stream is one line, when it ends: {lines:?}"
    );
    assert_eq!(lines[1]["stream"], true);
    assert_eq!(lines[1]["status"], 200);

    let mut det = chat_body("o-ok", "cache me");
    det["temperature"] = json!(0);
    for _ in 0..2 {
        let resp = post(&gw, "/v1/chat/completions", Some(MASTER), det.clone()).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.expect("body");
    }
    rows_once(&gw, 3).await;
    let lines = access(&traced);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[2]["cache"], "miss");
    assert_eq!(lines[3]["cache"], "hit");
    assert_eq!(lines[3]["cost_usd"], "0");
    let spans = traced.spans_with("chat o-ok").await;
    let hit = spans
        .iter()
        .filter(|s| s.name == "chat o-ok")
        .find(|s| attr(s, "llmrr.cache").is_some_and(|v| v.as_str() == "hit"))
        .expect("the hit's call span");
    assert_eq!(int(hit, "llmrr.status"), 200);

    let models = client()
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth(MASTER)
        .send()
        .await
        .expect("models");
    assert_eq!(models.status(), 200);
    let lines = access(&traced);
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[4]["route"], "/v1/models");
}
