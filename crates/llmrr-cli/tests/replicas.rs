//! Three `llmrr serve` processes on one Postgres database and one Redis, behind a test load
//! balancer (round robin per connection, skipping a replica that refuses connections), behave
//! as one gateway: one rate limit, one budget (never overspent), one response cache (L3), a
//! revoke effective everywhere, an open breaker shared, a rollout in force everywhere; then
//! one replica is stopped mid-load (SIGTERM, as Kubernetes does) and every request that was
//! answered still has its ledger row, and the limits still hold on the two left.

#![expect(clippy::expect_used, reason = "test helpers fail the test loudly")]

use llmrr_testkit::harness::{redis_url, unique_prefix, SharedDatabase};
use llmrr_testkit::MockProvider;
use serde_json::{json, Value};
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MASTER: &str = "sk-master-replicas-0123456789";

/// One `llmrr serve` process.
struct Replica {
    child: Child,
    addr: SocketAddr,
}

impl Replica {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGTERM: drain, write what is pending, exit.
    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exited = self.child.wait().expect("the replica exits");
        assert!(exited.success(), "a clean exit after SIGTERM: {exited}");
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(
    dir: &std::path::Path,
    db: &str,
    prefix: &str,
    mock: &MockProvider,
) -> std::path::PathBuf {
    let model = |name: &str, provider: &str, upstream: &str, extra: &str| {
        format!(
            "[[models]]\nname = \"{name}\"\nprovider = \"{provider}\"\nbase_url = \"{}\"\n\
             api_key = \"env:UPSTREAM_KEY\"\nupstream_model = \"{upstream}\"\n\
             input_cost_per_mtok = 0.15\noutput_cost_per_mtok = 0.60\n{extra}\n",
            mock.base_url
        )
    };
    let toml = format!(
        "[store]\nurl = \"{db}\"\n\n[shared]\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"\n\n\
         [routing]\nretry_max_attempts = 1\nbreaker_consecutive_failures = 2\n\
         breaker_cooldown_secs = 600\n\n\
         [[routes]]\nname = \"r\"\nstrategy = \"capability-match\"\nmodels = [\"o-500\", \"o-ok\"]\n\n\
         [[routes]]\nname = \"auto\"\nstrategy = \"capability-match\"\nmodels = [\"o-ok\", \"a-ok\"]\n\n\
         {}{}{}{}{}",
        redis_url(),
        model("o-ok", "openai", "mock-ok", ""),
        model("a-ok", "anthropic", "mock-ok", ""),
        model("o-500", "openai", "mock-500", ""),
        model("cached", "openai", "mock-ok", "cache = { mode = \"exact\" }"),
        model("slow", "openai", "mock-slow-2000", "timeout_secs = 10"),
    );
    let path = dir.join("llmrr.toml");
    std::fs::write(&path, toml).expect("config written");
    path
}

/// Start a replica and wait for its "llmrr is serving" line; its log keeps draining.
fn start(dir: &std::path::Path, config: &std::path::Path) -> Replica {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llmrr"))
        .current_dir(dir)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--config",
        ])
        .arg(config)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("UPSTREAM_KEY", "k")
        .env("LLMRR_MASTER_KEY", MASTER)
        .stderr(Stdio::piped())
        .spawn()
        .expect("llmrr serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v["message"] == "llmrr is serving" {
                let _ = tx.send(v["listen"].as_str().unwrap_or_default().to_owned());
            }
        }
    });
    let listen = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the replica starts");
    Replica {
        child,
        addr: listen.parse().expect("an address"),
    }
}

/// A round-robin TCP load balancer: each client connection goes to the next replica that
/// accepts it. `served[i]`: connections given to replica i.
struct Balancer {
    url: String,
    served: Arc<Vec<AtomicU64>>,
}

async fn balancer(backends: Vec<SocketAddr>) -> Balancer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let served: Arc<Vec<AtomicU64>> =
        Arc::new(backends.iter().map(|_| AtomicU64::new(0)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let counts = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let (backends, next, counts) = (backends.clone(), next.clone(), counts.clone());
            tokio::spawn(async move {
                for _ in 0..backends.len() {
                    let i = next.fetch_add(1, Ordering::Relaxed) % backends.len();
                    if let Ok(mut upstream) = tokio::net::TcpStream::connect(backends[i]).await {
                        counts[i].fetch_add(1, Ordering::Relaxed);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        return;
                    }
                }
            });
        }
    });
    Balancer { url, served }
}

/// A client that opens a connection per request, so the balancer spreads them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

async fn chat(url: &str, key: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("an answer")
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

async fn admin(method: reqwest::Method, url: &str, path: &str, body: Option<Value>) -> Value {
    let mut req = client()
        .request(method, format!("{url}{path}"))
        .bearer_auth(MASTER);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("answers");
    let status = resp.status();
    let v: Value = resp.json().await.expect("json");
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

async fn new_key(url: &str, name: &str, limits: Option<Value>) -> (String, String) {
    let mut body = json!({"name": name});
    if let Some(l) = limits {
        body["limits"] = l;
    }
    let k = admin(reqwest::Method::POST, url, "/admin/keys", Some(body)).await;
    (
        k["key"].as_str().expect("secret").to_owned(),
        k["id"].as_str().expect("id").to_owned(),
    )
}

fn upstream_calls(mock: &MockProvider, upstream: &str, text: Option<&str>) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.body["model"] == upstream)
        .filter(|r| text.is_none_or(|t| r.body.to_string().contains(t)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_behind_a_balancer_behave_as_one() {
    let db = SharedDatabase::create().await;
    let prefix = unique_prefix();
    let mock = MockProvider::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &db.url, &prefix, &mock);
    let mut replicas: Vec<Replica> = (0..3).map(|_| start(dir.path(), &cfg)).collect();
    let lb = balancer(replicas.iter().map(|r| r.addr).collect()).await;
    let url = lb.url.clone();

    // One rate limit: 6 a minute for the key, across the three.
    let (limited, _) = new_key(&url, "limited", Some(json!({"rpm": 6}))).await;
    let before: Vec<u64> = lb
        .served
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    let mut ok = 0;
    let mut limited_429 = 0;
    for i in 0..12 {
        match chat(&url, &limited, ask("o-ok", &format!("rate {i}")))
            .await
            .status()
            .as_u16()
        {
            200 => ok += 1,
            429 => limited_429 += 1,
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!((ok, limited_429), (6, 6), "one limit, not one per replica");
    for (i, n) in lb.served.iter().enumerate() {
        assert_eq!(
            n.load(Ordering::Relaxed) - before[i],
            4,
            "replica {i} served a third of them"
        );
    }

    // One budget, never overspent. A budget of 2,200 tokens a day holds two requests' worst
    // cases at once (each reserves its prompt bound plus a provider's overhead of 1,024 tokens
    // plus max_tokens: 1,093 here): with slow answers, nine requests at once through three
    // replicas get exactly two answers between them — not two per replica.
    let (spender, spender_id) = new_key(&url, "spender", None).await;
    admin(
        reqwest::Method::POST,
        &url,
        "/admin/budgets",
        Some(json!({"scope": format!("key:{spender_id}"), "period": "day", "limit_tokens": 2200})),
    )
    .await;
    // Budget changes reach the other replicas within 2 s (DEPLOY.md).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let answers = futures_join(9, |i| {
        let (url, spender) = (url.clone(), spender.clone());
        async move {
            let mut body = ask("slow", &format!("budget {i}"));
            body["max_tokens"] = json!(3);
            let resp = chat(&url, &spender, body).await;
            (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            )
        }
    })
    .await;
    let accepted = answers.iter().filter(|(s, _)| *s == 200).count();
    let refused = answers.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!(
        (accepted, refused),
        (2, 7),
        "one budget across replicas: {answers:?}"
    );
    let store = llmrr_core::store::Store::connect(&db.url)
        .await
        .expect("the store");
    let spent = poll(|| async {
        let rows = store.ledger_rows(0).await.expect("ledger");
        let mine: Vec<_> = rows
            .iter()
            .filter(|r| r.key_id.as_deref() == Some(&spender_id))
            .cloned()
            .collect();
        (mine.len() == accepted).then_some(mine)
    })
    .await;
    let tokens: i64 = spent
        .iter()
        .map(|r| r.prompt_tokens + r.completion_tokens)
        .sum();
    assert!(tokens <= 2200, "the budget was overspent: {tokens} tokens");

    // One response cache: the same deterministic request through every replica, one call.
    let cached = || {
        let mut body = ask("cached", "what is cached?");
        body["temperature"] = json!(0);
        body
    };
    assert_eq!(chat(&url, MASTER, cached()).await.status(), 200);
    // The answer reaches Redis just after the client has it.
    poll(|| async {
        let stats = admin(reqwest::Method::GET, &url, "/admin/cache", None).await;
        let tiers = stats["process"]["tiers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        tiers
            .iter()
            .any(|t| t["tier"] == "l3" && t["entries"].as_u64() >= Some(1))
            .then_some(())
    })
    .await;
    for _ in 0..5 {
        assert_eq!(chat(&url, MASTER, cached()).await.status(), 200);
    }
    assert_eq!(
        upstream_calls(&mock, "mock-ok", Some("what is cached?")),
        1,
        "L3 answered the other replicas"
    );

    // A revoke on one replica is in force on all (within 0.5 s: DEPLOY.md).
    let (revoked, revoked_id) = new_key(&url, "soon revoked", None).await;
    assert_eq!(
        chat(&url, &revoked, ask("o-ok", "before")).await.status(),
        200
    );
    admin(
        reqwest::Method::DELETE,
        &replicas[0].url(),
        &format!("/admin/keys/{revoked_id}"),
        None,
    )
    .await;
    for r in &replicas {
        poll(|| async {
            let status = chat(&r.url(), &revoked, ask("o-ok", "after"))
                .await
                .status();
            (status == 401).then_some(())
        })
        .await;
    }

    // A breaker opened on one replica keeps the others off the failing model.
    for _ in 0..2 {
        assert_eq!(
            chat(&replicas[0].url(), MASTER, ask("r", "breaker"))
                .await
                .status(),
            200
        );
    }
    let failed = upstream_calls(&mock, "mock-500", None);
    assert_eq!(failed, 2);
    for r in &replicas[1..] {
        poll(|| async {
            let m = admin(reqwest::Method::GET, &r.url(), "/admin/models", None).await;
            let models = m["models"].as_array().cloned().unwrap_or_default();
            models
                .iter()
                .any(|m| m["model"] == "o-500" && m["breaker"] == "open")
                .then_some(())
        })
        .await;
        let resp = chat(&r.url(), MASTER, ask("r", "breaker")).await;
        assert_eq!(resp.headers()["x-llmrr-model"], "o-ok");
    }
    assert_eq!(
        upstream_calls(&mock, "mock-500", None),
        failed,
        "no replica called it again"
    );

    // A rollout started on one replica is in force on all.
    admin(
        reqwest::Method::POST,
        &replicas[1].url(),
        "/admin/rollouts",
        Some(json!({"route": "auto", "to": "a-ok", "stages": [100], "stage_minutes": 10})),
    )
    .await;
    for r in &replicas {
        poll(|| async {
            let resp = chat(&r.url(), MASTER, ask("auto", "rollout")).await;
            (resp.headers()["x-llmrr-model"] == "a-ok").then_some(())
        })
        .await;
    }

    // Load, and one replica stopped in the middle of it: every answered request is in the
    // ledger.
    let (loader, loader_id) = new_key(&url, "loader", None).await;
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (url, loader, done) = (url.clone(), loader.clone(), done.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..25 {
                    let resp = client()
                        .post(format!("{url}/v1/chat/completions"))
                        .bearer_auth(&loader)
                        .json(&ask("o-ok", &format!("load {w} {i}")))
                        .send()
                        .await;
                    done.fetch_add(1, Ordering::Relaxed);
                    let Ok(resp) = resp else { continue };
                    if resp.status() == 200 {
                        let id = resp.headers()["x-llmrr-request-id"]
                            .to_str()
                            .expect("id")
                            .to_owned();
                        if resp.bytes().await.is_ok() {
                            acked.push(id);
                        }
                    }
                }
                acked
            })
        })
        .collect();
    while done.load(Ordering::Relaxed) < 30 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stopped = tokio::task::spawn_blocking({
        let mut victim = replicas.pop().expect("a replica");
        move || {
            victim.terminate();
            victim
        }
    });
    let mut acked = Vec::new();
    for w in workers {
        acked.extend(w.await.expect("worker"));
    }
    let _victim = stopped.await.expect("stopped");
    assert!(
        acked.len() >= 90,
        "the two left answered the rest: {} of 100",
        acked.len()
    );
    poll(|| async {
        let rows = store.ledger_rows(0).await.expect("ledger");
        let ids: std::collections::HashSet<String> = rows
            .iter()
            .filter(|r| r.key_id.as_deref() == Some(&loader_id))
            .map(|r| r.id.clone())
            .collect();
        acked.iter().all(|id| ids.contains(id)).then_some(())
    })
    .await;

    // The limits still hold on the two left.
    let (after, _) = new_key(&url, "after", Some(json!({"rpm": 4}))).await;
    let mut ok = 0;
    for i in 0..8 {
        if chat(&url, &after, ask("o-ok", &format!("after {i}")))
            .await
            .status()
            == 200
        {
            ok += 1;
        }
    }
    assert_eq!(ok, 4, "one limit across the two replicas left");

    drop(replicas);
    store.close().await;
    db.drop().await;
}

/// `n` futures made by `f`, run at once; their outputs in order.
async fn futures_join<F, Fut, T>(n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(f(i))).collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.expect("joined"));
    }
    out
}

/// Poll `check` until it gives a value (10 s at most: the ledger is written off the answer's
/// path).
async fn poll<T, F, Fut>(check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < until, "never came true");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
