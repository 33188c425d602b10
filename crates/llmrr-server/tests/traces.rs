//! Traces and access lines: the request path's spans with their GenAI attributes (through the
//! production layer into an in-memory exporter), a client's `traceparent` continued and sent
//! upstream, a fallback's failed attempt, a stream's usage, and one JSON access line per
//! request.
//!
//! Its own test binary: the subscriber is the process's global one (a thread's default
//! subscriber is not reliable while other tests' threads hit the same callsites). Tests run in
//! parallel and share it, so each finds its spans by the trace id its requests send, and its
//! access lines by request id.

#![expect(clippy::expect_used, reason = "test helpers fail the test loudly")]

use llmrr_testkit::harness::StoreChoice;
use llmrr_testkit::{MockProvider, TestGateway};
use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
use opentelemetry::Value as OtelValue;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, OnceLock};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer as _;

const MASTER: &str = "sk-master-test-0123456789";
const ENV: &[(&str, &str)] = &[
    ("UPSTREAM_KEY", "sk-upstream-secret"),
    ("LLMRR_MASTER_KEY", MASTER),
];

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

struct Traced {
    exporter: InMemorySpanExporter,
    lines: Lines,
    _provider: SdkTracerProvider,
}

/// The process's subscriber, once: the production trace layer into memory, and the JSON log's
/// access lines.
fn traced() -> &'static Traced {
    static TRACED: OnceLock<Traced> = OnceLock::new();
    TRACED.get_or_init(|| {
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
        tracing::subscriber::set_global_default(subscriber).expect("the one subscriber");
        Traced {
            exporter,
            lines,
            _provider: provider,
        }
    })
}

impl Traced {
    /// The finished spans of trace `trace` once one named `name` is among them (spans end as
    /// their tasks do).
    async fn spans_with(&self, trace: &str, name: &str) -> Vec<SpanData> {
        let of_trace = || -> Vec<SpanData> {
            self.exporter
                .get_finished_spans()
                .expect("spans")
                .into_iter()
                .filter(|s| s.span_context.trace_id().to_string() == trace)
                .collect()
        };
        for _ in 0..250 {
            let spans = of_trace();
            if spans.iter().any(|s| s.name == name) {
                return spans;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let names: Vec<String> = of_trace().iter().map(|s| s.name.to_string()).collect();
        panic!("no span `{name}` in trace {trace} among {names:?}");
    }

    /// The access lines of request `id`.
    fn access(&self, id: &str) -> Vec<Value> {
        let bytes = self.lines.0.lock().expect("lines").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("each line is JSON"))
            .filter(|l| l["target"] == "llmrr::access" && l["request_id"] == id)
            .collect()
    }

    /// The access lines of `id` once there are `n` (a stream's comes when it ends).
    async fn access_once(&self, id: &str, n: usize) -> Vec<Value> {
        for _ in 0..250 {
            let lines = self.access(id);
            if lines.len() >= n {
                return lines;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.access(id)
    }
}

/// A gateway on a fresh mock: `extra` config, and models `o-<mode>` for the modes used here.
async fn start(extra: &str) -> (TestGateway, MockProvider) {
    let mock = MockProvider::start().await;
    let mut toml = format!("{extra}\n");
    for mode in ["ok", "401"] {
        toml.push_str(&format!(
            "[[models]]\nname = \"o-{mode}\"\nprovider = \"openai\"\nbase_url = \"{url}\"\n\
             api_key = \"env:UPSTREAM_KEY\"\nupstream_model = \"mock-{mode}\"\n\
             input_cost_per_mtok = 0.15\noutput_cost_per_mtok = 0.60\ntimeout_secs = 1.5\n\n",
            url = mock.base_url
        ));
    }
    // A cheaper model whose answers are empty: a cascade escalates from it.
    toml.push_str(&format!(
        "[[models]]\nname = \"cheap-empty\"\nprovider = \"openai\"\nbase_url = \"{url}\"\n\
         api_key = \"env:UPSTREAM_KEY\"\nupstream_model = \"mock-empty\"\n\
         input_cost_per_mtok = 0.01\noutput_cost_per_mtok = 0.01\n\n",
        url = mock.base_url
    ));
    (
        TestGateway::start(&toml, ENV, StoreChoice::Sqlite).await,
        mock,
    )
}

/// A new trace id, and the `traceparent` that starts it (parent span `00f067aa0ba902b7`).
fn new_trace() -> (String, String) {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let header = format!("00-{id}-00f067aa0ba902b7-01");
    (id, header)
}

/// POST `body` as `key` under the trace `traceparent`; the response and our request id.
async fn send(
    gw: &TestGateway,
    path: &str,
    key: &str,
    traceparent: &str,
    body: Value,
) -> (reqwest::Response, String) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", gw.url))
        .bearer_auth(key)
        .header("traceparent", traceparent)
        .header("x-request-id", "client-req-7")
        .json(&body)
        .send()
        .await
        .expect("the gateway answers");
    let id = resp.headers()["x-llmrr-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    (resp, id)
}

/// A chat to `model` under a new trace, answered 200 and read: its trace id and request id.
async fn chat_ok(gw: &TestGateway, model: &str) -> (String, String) {
    let (trace, parent) = new_trace();
    let body = chat_body(model, "hi");
    let (resp, id) = send(gw, "/v1/chat/completions", MASTER, &parent, body).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.expect("body");
    (trace, id)
}

fn chat_body(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
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

#[tokio::test]
async fn a_call_is_traced_with_genai_attributes_under_the_clients_trace() {
    let traced = traced();
    let (gw, mock) = start("").await;
    let (trace, parent) = new_trace();
    let body = json!({
        "model": "o-ok",
        "messages": [{"role": "user", "content": "trace me"}],
        "temperature": 0.3,
        "max_tokens": 20
    });
    let (resp, request_id) = send(&gw, "/v1/chat/completions", MASTER, &parent, body).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.expect("body");
    // The call's span ends with its task, the request's with the answer.
    traced.spans_with(&trace, "chat o-ok").await;
    let spans = traced.spans_with(&trace, "POST /v1/chat/completions").await;

    let http = one(&spans, "POST /v1/chat/completions");
    assert_eq!(http.span_kind, SpanKind::Server);
    assert_eq!(http.parent_span_id.to_string(), "00f067aa0ba902b7");
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
        &format!("00-{trace}-{}-01", attempt.span_context.span_id())
    );

    // The access line: ids, the trace, the model, status, tokens and cost — never the key.
    let access = traced.access_once(&request_id, 1).await;
    assert_eq!(access.len(), 1, "{access:?}");
    let a = &access[0];
    assert_eq!(a["client_request_id"], "client-req-7");
    assert_eq!(a["trace_id"], trace.as_str());
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

#[tokio::test]
async fn a_fallback_and_a_stream_are_traced_attempt_by_attempt() {
    let traced = traced();
    let (gw, _mock) = start(
        "[[routes]]\nname = \"next\"\nstrategy = \"capability-match\"\nmodels = [\"o-401\", \"o-ok\"]\n",
    )
    .await;
    let (trace, _) = chat_ok(&gw, "next").await;
    let spans = traced.spans_with(&trace, "chat next").await;
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
    assert!(attr(call, "error.type").is_none(), "the call succeeded");
    let plan = one(&spans, "llmrr.plan");
    assert_eq!(text(plan, "llmrr.route"), "next");

    // A stream: the call's and the attempt's spans carry the usage reported at its end.
    let (trace, parent) = new_trace();
    let mut body = chat_body("o-ok", "stream me");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (resp, _) = send(&gw, "/v1/chat/completions", MASTER, &parent, body).await;
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.expect("a complete body");
    let usage: Value = String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|c| c["usage"].is_object())
        .expect("a usage chunk")["usage"]
        .clone();
    let spans = traced.spans_with(&trace, "chat o-ok").await;
    let call = one(&spans, "chat o-ok");
    assert_eq!(attr(call, "llmrr.stream"), Some(OtelValue::Bool(true)));
    assert_eq!(
        int(call, "gen_ai.usage.output_tokens"),
        usage["completion_tokens"].as_i64().expect("tokens")
    );
    let attempt = one(&spans, "chat mock-ok");
    assert!(child_of(attempt, call));
    assert_eq!(
        int(attempt, "gen_ai.usage.input_tokens"),
        usage["prompt_tokens"].as_i64().expect("tokens")
    );

    // A refused request is a call span with the error and no attempt.
    let (trace, parent) = new_trace();
    let (resp, _) = send(
        &gw,
        "/v1/chat/completions",
        MASTER,
        &parent,
        chat_body("nope", "x"),
    )
    .await;
    assert_eq!(resp.status(), 404);
    let spans = traced.spans_with(&trace, "chat nope").await;
    let call = one(&spans, "chat nope");
    assert_eq!(int(call, "llmrr.status"), 404);
    assert!(!text(call, "error.type").is_empty());
}

/// One access line per request, whatever answers it: a refused key, a stream (when it ends),
/// a cache hit, the models list; a cache hit's call span says so.
#[tokio::test]
async fn every_request_gets_one_access_line() {
    let traced = traced();
    let (gw, _mock) = start("[cache]\nmode = \"exact\"\n").await;
    let (_, parent) = new_trace();

    let (resp, id) = send(
        &gw,
        "/v1/chat/completions",
        "sk-not-a-key-0000000000",
        &parent,
        chat_body("o-ok", "x"),
    )
    .await;
    assert_eq!(resp.status(), 401);
    let lines = traced.access_once(&id, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["status"], 401);
    assert_eq!(lines[0]["route"], "/v1/chat/completions");
    assert_eq!(lines[0]["method"], "POST");
    assert!(!lines[0].to_string().contains("sk-not-a-key"));

    let mut body = chat_body("o-ok", "stream once");
    body["stream"] = json!(true);
    let (resp, id) = send(&gw, "/v1/chat/completions", MASTER, &parent, body).await;
    resp.bytes().await.expect("the stream");
    let lines = traced.access_once(&id, 1).await;
    assert_eq!(
        lines.len(),
        1,
        "a stream is one line, when it ends: {lines:?}"
    );
    assert_eq!(lines[0]["stream"], true);
    assert_eq!(lines[0]["status"], 200);

    let mut det = chat_body("o-ok", "cache me");
    det["temperature"] = json!(0);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (trace, parent) = new_trace();
        let (resp, id) = send(&gw, "/v1/chat/completions", MASTER, &parent, det.clone()).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.expect("body");
        let lines = traced.access_once(&id, 1).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        seen.push((trace, lines[0].clone()));
    }
    assert_eq!(seen[0].1["cache"], "miss");
    assert_eq!(seen[1].1["cache"], "hit");
    assert_eq!(seen[1].1["cost_usd"], "0");
    let spans = traced.spans_with(&seen[1].0, "chat o-ok").await;
    let hit = one(&spans, "chat o-ok");
    assert_eq!(text(hit, "llmrr.cache"), "hit");
    assert_eq!(int(hit, "llmrr.status"), 200);

    let models = reqwest::Client::new()
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth(MASTER)
        .send()
        .await
        .expect("models");
    assert_eq!(models.status(), 200);
    let id = models.headers()["x-llmrr-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let lines = traced.access_once(&id, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["route"], "/v1/models");

    // A cascade that escalates: its step's row is in the request log, but the request has one
    // access line, and its call span no error.
    let (gw, _mock) = start(
        "[[routes]]\nname = \"c\"\nstrategy = \"cascade\"\nmodels = [\"o-ok\", \"cheap-empty\"]\n",
    )
    .await;
    let (trace, id) = chat_ok(&gw, "c").await;
    let spans = traced.spans_with(&trace, "chat c").await;
    let call = one(&spans, "chat c");
    assert_eq!(text(call, "gen_ai.response.model"), "o-ok");
    assert!(attr(call, "error.type").is_none(), "{:?}", call.attributes);
    gw.flush_log().await;
    let rows = gw
        .state
        .gateway
        .store()
        .recent_requests(10)
        .await
        .expect("rows");
    assert!(
        rows.iter().any(|r| r.id == format!("{id}.1")),
        "the step's row: {rows:?}"
    );
    let lines = traced.access_once(&id, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["model"], "o-ok");
    let all = String::from_utf8_lossy(&traced.lines.0.lock().expect("lines")).into_owned();
    assert!(
        !all.contains(&format!("{id}.1")),
        "no access line for the step"
    );
}
