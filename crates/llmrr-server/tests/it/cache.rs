//! Issue 10: the response cache over HTTP — hits at $0 with their savings logged, eligibility
//! and per-request directives, tenant isolation, coalescing of identical requests (streams
//! included, with the first client hanging up), stream replay, the disk tier across a
//! restart, the shared tier across two replicas and with its Redis stopped, and the admin API.

use super::*;
use llmrr_core::auth::NewKey;
use llmrr_testkit::harness::{unique_prefix, SharedDatabase, StoreChoice};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const CACHE_ON: &str = "[cache]\nmode = \"exact\"\n";

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A deterministic chat request (temperature 0).
fn det(model: &str, text: &str) -> Value {
    let mut b = chat_body(model, text);
    b["temperature"] = 0.into();
    b
}

async fn send(
    gw: &TestGateway,
    key: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("the gateway answers")
}

fn chat_calls(mock: &MockProvider) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions") || r.path.ends_with("/messages"))
        .count()
}

#[tokio::test]
async fn issue10_a_repeated_request_is_answered_from_memory_at_zero_cost_with_its_saving_logged() {
    let (gw, mock) = start_with(CACHE_ON, ENV).await;
    let first = send(&gw, MASTER, &det("o-ok", "cache me"), &[]).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-llmrr-cache"), Some("miss"));
    let cost = header(&first, "x-llmrr-cost-usd")
        .expect("a cost")
        .to_owned();
    let first_body = first.text().await.unwrap();
    let second = send(&gw, MASTER, &det("o-ok", "cache me"), &[]).await;
    assert_eq!(second.status(), 200);
    assert_eq!(header(&second, "x-llmrr-cache"), Some("hit"));
    assert_eq!(header(&second, "x-llmrr-cache-tier"), Some("l1"));
    assert_eq!(header(&second, "x-llmrr-cost-usd"), Some("0"));
    assert_eq!(
        header(&second, "x-llmrr-cache-saved-usd"),
        Some(cost.as_str())
    );
    assert_eq!(header(&second, "x-llmrr-model"), Some("o-ok"));
    assert_eq!(second.text().await.unwrap(), first_body, "the same answer");
    assert_eq!(chat_calls(&mock), 1, "one upstream call for two requests");

    gw.state.gateway.flush_log().await;
    let rows = rows_once(&gw, 2).await;
    let mut caches: Vec<_> = rows.iter().map(|r| r.cache.clone()).collect();
    caches.sort();
    assert_eq!(caches, vec![Some("hit".into()), Some("miss".into())]);
    let hit = rows
        .iter()
        .find(|r| r.cache.as_deref() == Some("hit"))
        .unwrap();
    assert_eq!((hit.cost_usd.as_str(), hit.status), ("0", 200));
    assert!(hit.prompt_tokens > 0, "the tokens it served");
    // The ledger: the hit at $0 with the first answer's cost as its saving (its row is written
    // off the answer's path: give it a moment).
    let mut stats = get_json(&gw, "/admin/cache").await;
    for _ in 0..100 {
        if stats["ledger"]["hits"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        stats = get_json(&gw, "/admin/cache").await;
    }
    assert_eq!(stats["enabled"], true);
    let ledger = &stats["ledger"];
    assert_eq!(ledger["hits"], 1, "{stats}");
    assert_eq!(ledger["saved_usd"].as_str(), Some(cost.as_str()), "{stats}");
    let process = &stats["process"];
    assert_eq!(
        (process["hits"].as_u64(), process["misses"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(process["tiers"][0]["entries"], 1);
    let spend = get_json(&gw, "/admin/spend?group_by=model").await;
    assert!(
        spend.to_string().contains(&cost),
        "savings in the report: {spend}"
    );
    let metrics = metrics_text(&gw).await;
    assert!(
        metrics.contains("llmrr_cache_hits_total{tier=\"l1\"} 1"),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn issue10_only_deterministic_requests_by_default_and_cache_control_is_obeyed() {
    let (gw, mock) = start_with(CACHE_ON, ENV).await;
    // No temperature: not repeatable, not cached.
    for _ in 0..2 {
        let r = send(&gw, MASTER, &chat_body("o-ok", "free"), &[]).await;
        assert_eq!(header(&r, "x-llmrr-cache"), Some("bypass"));
    }
    assert_eq!(chat_calls(&mock), 2);
    // A seed makes it repeatable.
    let mut seeded = chat_body("o-ok", "seeded");
    seeded["seed"] = 7.into();
    send(&gw, MASTER, &seeded, &[]).await;
    let r = send(&gw, MASTER, &seeded, &[]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("hit"));
    assert_eq!(chat_calls(&mock), 3);
    // no-store: answered, not kept.
    let body = det("o-ok", "not kept");
    let r = send(&gw, MASTER, &body, &[("cache-control", "no-store")]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("miss"));
    let r = send(&gw, MASTER, &body, &[]).await;
    assert_eq!(
        header(&r, "x-llmrr-cache"),
        Some("miss"),
        "no-store kept nothing"
    );
    assert_eq!(chat_calls(&mock), 5);
    // no-cache: a fresh answer (it refreshes the entry).
    let r = send(&gw, MASTER, &body, &[("cache-control", "no-cache")]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("bypass"));
    assert_eq!(chat_calls(&mock), 6);
    let r = send(&gw, MASTER, &body, &[]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("hit"));
    assert_eq!(chat_calls(&mock), 6);
    // A partition of the caller's namespace reads only its own entries.
    let r = send(&gw, MASTER, &body, &[("x-llmrr-cache-namespace", "exp-1")]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("miss"));
    // A per-request TTL: gone after it.
    let short = det("o-ok", "short-lived");
    send(&gw, MASTER, &short, &[("x-llmrr-cache-ttl", "0.3")]).await;
    let r = send(&gw, MASTER, &short, &[]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("hit"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = send(&gw, MASTER, &short, &[]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("miss"), "expired");
    // Bad directives are a 400 naming the header.
    let r = send(&gw, MASTER, &short, &[("x-llmrr-cache-ttl", "soon")]).await;
    let e = error_body(r, 400).await;
    assert_eq!(e["error"]["param"], "x-llmrr-cache-ttl");
    gw.stop().await;
}

#[tokio::test]
async fn issue10_tenants_never_read_each_others_answers() {
    let (gw, mock) = start_with(CACHE_ON, ENV).await;
    let key = |name: &str, team: Option<&str>| NewKey {
        name: name.into(),
        team: team.map(str::to_owned),
        ..Default::default()
    };
    let a1 = create_key(&gw, key("a1", Some("team-a"))).await.key;
    let a2 = create_key(&gw, key("a2", Some("team-a"))).await.key;
    let b1 = create_key(&gw, key("b1", Some("team-b"))).await.key;
    let loner = create_key(&gw, key("loner", None)).await.key;
    let loner2 = create_key(&gw, key("loner2", None)).await.key;
    let body = det("o-ok", "secret plans");
    let r = send(&gw, &a1, &body, &[]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("miss"));
    let r = send(&gw, &a2, &body, &[]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("hit"), "same team");
    for other in [&b1, &loner, &loner2, &MASTER.to_owned()] {
        let r = send(&gw, other, &body, &[]).await;
        assert_eq!(header(&r, "x-llmrr-cache"), Some("miss"), "another tenant");
    }
    assert_eq!(chat_calls(&mock), 5);
    gw.stop().await;
}

#[tokio::test]
async fn issue10_fifty_identical_requests_make_one_upstream_call() {
    let (gw, mock) = start_routed(&format!(
        "{CACHE_ON}[[models]]\nname = \"slow\"\nprovider = \"openai\"\nbase_url = \"{{mock}}\"\n\
         api_key = \"env:UPSTREAM_KEY\"\nupstream_model = \"mock-slow-400\"\n\
         input_cost_per_mtok = 1\noutput_cost_per_mtok = 2\n"
    ))
    .await;
    let body = det("slow", "everyone asks this");
    let calls = (0..50).map(|_| send(&gw, MASTER, &body, &[]));
    let answers = futures_util::future::join_all(calls).await;
    assert_eq!(chat_calls(&mock), 1, "ONE upstream call");
    let mut tiers = std::collections::BTreeMap::new();
    let mut bodies = std::collections::BTreeSet::new();
    for a in answers {
        assert_eq!(a.status(), 200);
        *tiers
            .entry(
                header(&a, "x-llmrr-cache-tier")
                    .unwrap_or("none")
                    .to_owned(),
            )
            .or_insert(0) += 1;
        bodies.insert(a.text().await.unwrap());
    }
    assert_eq!(bodies.len(), 1, "the same answer for all");
    assert_eq!(tiers.get("none"), Some(&1), "one leader: {tiers:?}");
    assert_eq!(tiers.values().sum::<i32>(), 50);
    gw.stop().await;
}

#[tokio::test]
async fn issue10_streams_coalesce_survive_the_leader_hanging_up_and_replay_byte_compatibly() {
    let (gw, mock) = start_routed(&format!(
        "{CACHE_ON}[[models]]\nname = \"drip\"\nprovider = \"openai\"\nbase_url = \"{{mock}}\"\n\
         api_key = \"env:UPSTREAM_KEY\"\nupstream_model = \"mock-drip-60\"\n\
         input_cost_per_mtok = 1\noutput_cost_per_mtok = 2\n"
    ))
    .await;
    let mut body = det("drip", "stream this to everyone");
    body["stream"] = true.into();
    body["stream_options"] = serde_json::json!({"include_usage": true});
    // The leader: read its first bytes, then hang up.
    let leader = send(&gw, MASTER, &body, &[]).await;
    assert_eq!(header(&leader, "x-llmrr-cache"), Some("miss"));
    let mut leader_stream = leader.bytes_stream();
    use futures_util::StreamExt;
    let first = leader_stream.next().await.expect("a first chunk").unwrap();
    assert!(first.starts_with(b"data: "));
    // Followers join while the stream is under way.
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let followers: Vec<_> = (0..49)
        .map(|_| {
            let (url, body, started) = (gw.url.clone(), body.clone(), started.clone());
            tokio::spawn(async move {
                let r = client()
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(MASTER)
                    .json(&body)
                    .send()
                    .await
                    .expect("answers");
                // Headers arrive once the follower has joined the stream under way.
                started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                assert_eq!(r.status(), 200);
                let tier = header(&r, "x-llmrr-cache-tier").map(str::to_owned);
                (tier, sse_data(r).await)
            })
        })
        .collect();
    for _ in 0..500 {
        if started.load(std::sync::atomic::Ordering::SeqCst) == 49 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        started.load(std::sync::atomic::Ordering::SeqCst),
        49,
        "all joined"
    );
    // The leader's client hangs up mid-stream: the call goes on for the followers.
    drop(leader_stream);
    let mut results = Vec::new();
    for f in followers {
        results.push(f.await.expect("a follower"));
    }
    assert_eq!(chat_calls(&mock), 1, "ONE upstream call for 50 streams");
    let text = streamed_text(&results[0].1);
    assert!(!text.is_empty());
    for (tier, data) in &results {
        assert!(tier.is_some(), "a follower or a hit");
        assert_eq!(
            streamed_text(data),
            text,
            "every follower got the whole stream"
        );
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
        assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
        assert_eq!(usage["llmrr"]["cost_usd"], "0");
    }
    // Later: a replay from the cache, chunk for chunk the same shape.
    let replay = send(&gw, MASTER, &body, &[]).await;
    assert_eq!(header(&replay, "x-llmrr-cache"), Some("hit"));
    assert_eq!(header(&replay, "x-llmrr-cache-tier"), Some("l1"));
    assert_eq!(
        header(&replay, "content-type"),
        Some("text/event-stream"),
        "SSE"
    );
    let raw = replay.text().await.unwrap();
    assert!(raw.ends_with("data: [DONE]\n\n"), "{raw}");
    let data: Vec<&str> = raw
        .split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| f.strip_prefix("data: ").expect("only data frames"))
        .collect();
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("JSON chunks"))
        .collect();
    let id = chunks[0]["id"].clone();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id, "one id");
    }
    let last = chunks.last().unwrap();
    assert!(last["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(last["llmrr"]["cache"], "hit");
    assert!(last["llmrr"]["saved_usd"].as_str().is_some());
    let replayed: Vec<String> = data.iter().map(|d| d.to_string()).collect();
    assert_eq!(streamed_text(&replayed), text);
    // Without include_usage, no usage chunk.
    body["stream_options"] = serde_json::json!({"include_usage": false});
    let r = send(&gw, MASTER, &body, &[]).await;
    let plain = sse_data(r).await;
    assert!(
        plain.iter().all(|d| !d.contains("\"usage\":{")),
        "{plain:?}"
    );
    assert_eq!(chat_calls(&mock), 1);
    gw.stop().await;
}

#[tokio::test]
async fn issue10_the_disk_tier_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let disk = format!(
        "{CACHE_ON}disk_path = \"{}\"\n",
        dir.path().join("cache.sqlite").display()
    );
    let (gw, mock) = start_with(&disk, ENV).await;
    let body = det("o-ok", "remember me");
    let r = send(&gw, MASTER, &body, &[]).await;
    let first = r.text().await.unwrap();
    gw.stop().await;
    let toml = format!("{disk}\n{}", models_toml(&mock));
    let gw = TestGateway::start(&toml, ENV, StoreChoice::Sqlite).await;
    let r = send(&gw, MASTER, &body, &[]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("hit"));
    assert_eq!(header(&r, "x-llmrr-cache-tier"), Some("l2"));
    assert_eq!(r.text().await.unwrap(), first);
    // An L2 hit filled L1.
    let r = send(&gw, MASTER, &body, &[]).await;
    assert_eq!(header(&r, "x-llmrr-cache-tier"), Some("l1"));
    assert_eq!(chat_calls(&mock), 1);
    gw.stop().await;
}

#[tokio::test]
async fn issue10_a_replica_down_during_a_purge_applies_it_to_its_disk_tier_when_it_starts() {
    let mock = MockProvider::start().await;
    let db = SharedDatabase::create().await;
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    // Memory and disk only (no L3): only the disk file can remember the answer.
    let with_disk = format!(
        "{CACHE_ON}shared = false\ndisk_path = \"{}\"\n{}",
        dir.path().join("cache.sqlite").display(),
        models_toml(&mock)
    );
    let body = det("o-ok", "purged while away");
    let a = replica(&with_disk, &db.url, &prefix).await;
    assert_eq!(
        header(&send(&a, MASTER, &body, &[]).await, "x-llmrr-cache"),
        Some("miss")
    );
    a.stop().await;
    // While A was down, long ago (older than the minute a running replica reads back), another
    // replica purged the route.
    use sqlx::Executor;
    let store = llmrr_core::store::Store::connect(&db.url).await.unwrap();
    let ten_minutes_ago = llmrr_core::store::now_ms() - 600_000;
    store
        .pool()
        .execute(
            format!(
                "INSERT INTO cache_purges (id, created_at_ms, namespace, route, key_id) \
                 VALUES ('purge_old', {ten_minutes_ago}, NULL, 'o-ok', NULL)"
            )
            .as_str(),
        )
        .await
        .unwrap();
    store.close().await;
    // A restarts on the same disk file: the purge reaches its L2 before it is read.
    let a = replica(&with_disk, &db.url, &prefix).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = send(&a, MASTER, &body, &[]).await;
    assert_eq!(
        header(&r, "x-llmrr-cache"),
        Some("miss"),
        "the purged answer is gone"
    );
    assert_eq!(chat_calls(&mock), 2);
    a.stop().await;
    db.drop().await;
}

#[tokio::test]
async fn issue10_replicas_share_answers_through_redis_and_purges_reach_it() {
    let mock = MockProvider::start().await;
    let db = SharedDatabase::create().await;
    let prefix = unique_prefix();
    let models = format!("{CACHE_ON}\n{}", models_toml(&mock));
    let a = replica(&models, &db.url, &prefix).await;
    let b = replica(&models, &db.url, &prefix).await;
    let body = det("o-ok", "shared answer");
    let r = send(&a, MASTER, &body, &[]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("miss"));
    let first = r.text().await.unwrap();
    // The L3 write is off the answer's path: give it a moment.
    let mut tier = None;
    for _ in 0..50 {
        let r = send(&b, MASTER, &body, &[]).await;
        if header(&r, "x-llmrr-cache") == Some("hit") {
            tier = header(&r, "x-llmrr-cache-tier").map(str::to_owned);
            assert_eq!(r.text().await.unwrap(), first);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tier.as_deref(), Some("l3"), "replica B read A's answer");
    let upstream = chat_calls(&mock);
    assert!(
        upstream <= 2,
        "at most B's first try raced the write: {upstream}"
    );
    let b_stats = get_json(&b, "/admin/cache").await;
    assert_eq!(
        b_stats["process"]["tiers"][0]["entries"], 1,
        "B keeps a copy"
    );
    // Purge by route on A: gone from A's memory and from Redis at once, and from B's own
    // memory within about a second (B applies the purges recorded in the shared store).
    let resp = client()
        .delete(format!("{}/admin/cache?route=o-ok", a.url))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    let purged: Value = resp.json().await.unwrap();
    assert_eq!(purged["purged"]["l3"], 1, "{purged}");
    assert_eq!(purged["purged"]["l1"], 1, "{purged}");
    let r = send(&a, MASTER, &body, &[]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("miss"));
    let purged_at = std::time::Instant::now();
    let mut b_missed = false;
    while purged_at.elapsed() < Duration::from_secs(4) {
        // Looked at, never refreshed: no request of B's names the entry meanwhile.
        let stats = get_json(&b, "/admin/cache").await;
        if stats["process"]["tiers"][0]["entries"] == 0 {
            b_missed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(b_missed, "B's memory copy purged within 4 s");
    a.stop().await;
    b.stop().await;
    db.drop().await;
}

/// A private Redis server this test may stop.
struct OwnRedis {
    child: std::process::Child,
    port: u16,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("a free port: {e}"))
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (the machine runs Redis, so it has the binary)");
        OwnRedis { child, port }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn issue10_requests_still_succeed_when_the_shared_tier_stops() {
    let mut redis = OwnRedis::start();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", redis.port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mock = MockProvider::start().await;
    let toml = format!(
        "{CACHE_ON}[shared]\nredis_url = \"redis://127.0.0.1:{}\"\nkey_prefix = \"{}\"\n\
         [limits]\non_shared_outage = \"allow\"\n{}",
        redis.port,
        unique_prefix(),
        models_toml(&mock)
    );
    let gw = TestGateway::start(&toml, ENV, StoreChoice::Sqlite).await;
    let r = send(&gw, MASTER, &det("o-ok", "before"), &[]).await;
    assert_eq!(r.status(), 200);
    redis.child.kill().unwrap();
    redis.child.wait().unwrap();
    for i in 0..3 {
        let r = send(&gw, MASTER, &det("o-ok", &format!("during {i}")), &[]).await;
        assert_eq!(r.status(), 200, "Redis down: the tier is skipped");
        assert_eq!(header(&r, "x-llmrr-cache"), Some("miss"));
    }
    // L1 still answers.
    let r = send(&gw, MASTER, &det("o-ok", "during 0"), &[]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("hit"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = metrics_text(&gw).await;
    assert!(
        metrics.contains("llmrr_cache_tier_errors_total{tier=\"l3\""),
        "{metrics}"
    );
    gw.stop().await;
}

/// Routes with the semantic tier over the mock's embeddings (a text holding `vec[…]` gets that
/// vector).
const SEMANTIC: &str = "[[routes]]\nname = \"faq\"\nmodels = [\"o-ok\"]\n\
    cache = { mode = \"semantic\", embedding_model = \"o-ok\", similarity = 0.95 }\n";

#[tokio::test]
async fn issue10_semantic_hits_need_a_close_meaning_and_the_same_everything_else() {
    let (gw, mock) = start_routed(SEMANTIC).await;
    let ask = |text: &str| det("faq", text);
    let r = send(
        &gw,
        MASTER,
        &ask("how do I reset my password? vec[1,0,0]"),
        &[],
    )
    .await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("miss"));
    let first = r.text().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Close in meaning (cosine ≈ 0.995): the earlier answer.
    let r = send(
        &gw,
        MASTER,
        &ask("password reset, how? vec[0.99,0.1,0]"),
        &[],
    )
    .await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("semantic-hit"));
    let sim: f64 = header(&r, "x-llmrr-cache-similarity")
        .unwrap()
        .parse()
        .unwrap();
    assert!(sim > 0.99 && sim <= 1.0, "{sim}");
    assert_eq!(header(&r, "x-llmrr-cost-usd"), Some("0"));
    assert_eq!(r.text().await.unwrap(), first);
    // Far in meaning (cosine ≈ 0.71): a miss.
    let r = send(
        &gw,
        MASTER,
        &ask("what are your prices? vec[0.7,0.7,0]"),
        &[],
    )
    .await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("miss"));
    // Close in meaning but another system prompt: a miss (the rest must be identical).
    let mut other = ask("password reset, how? vec[0.99,0.1,0]");
    other["messages"].as_array_mut().unwrap().insert(
        0,
        serde_json::json!({"role": "system", "content": "Answer in French."}),
    );
    let r = send(&gw, MASTER, &other, &[]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("miss"));
    // Close in meaning but another tenant: a miss.
    let k = create_key(
        &gw,
        NewKey {
            name: "other".into(),
            team: Some("t2".into()),
            ..Default::default()
        },
    )
    .await;
    let r = send(
        &gw,
        &k.key,
        &ask("password reset, how? vec[0.99,0.1,0]"),
        &[],
    )
    .await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("miss"));
    // The explanation names the prompt that matched.
    let mut explained = ask("reset password please vec[0.995,0.05,0]");
    explained["llmrr"] = serde_json::json!({"explain": true});
    let r = send(&gw, MASTER, &explained, &[]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("semantic-hit"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["llmrr"]["cache"]["matched_prompt"],
        "how do I reset my password? vec[1,0,0]"
    );
    // A turn with an image is never matched by its text alone.
    let mut image = ask("x");
    image["messages"][0]["content"] = serde_json::json!([
        {"type": "text", "text": "password reset, how? vec[0.99,0.1,0]"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    ]);
    let r = send(&gw, MASTER, &image, &[]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("miss"));
    let chats = chat_calls(&mock);
    assert_eq!(
        chats, 5,
        "first, far, other system prompt, other tenant, image"
    );
    gw.state.gateway.flush_log().await;
    let logged = rows(&gw).await;
    let semantic = logged
        .iter()
        .filter(|r| r.cache.as_deref() == Some("semantic-hit"))
        .count();
    assert_eq!(semantic, 2, "semantic hits are logged as such");
    // Each embedding the tier asked for is a call of the request's own: logged and priced,
    // to the same key, under the request's id with `_embed`.
    let embeds: Vec<_> = logged.iter().filter(|r| r.id.ends_with("_embed")).collect();
    let embeddings_calls = mock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/embeddings"))
        .count();
    assert!(embeddings_calls >= 6, "{embeddings_calls}");
    assert_eq!(embeds.len(), embeddings_calls);
    for e in &embeds {
        assert_eq!((e.endpoint.as_str(), e.status), ("embeddings", 200));
        assert_eq!(e.model.as_deref(), Some("o-ok"));
        assert!(logged.iter().any(|r| format!("{}_embed", r.id) == e.id));
        assert!(e.prompt_tokens > 0 && e.cost_usd != "0", "{e:?}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn issue10_cache_warm_replays_the_most_frequent_requests_within_a_cost_cap() {
    // On Postgres (the store's unit test runs the same queries on SQLite).
    let mock = MockProvider::start().await;
    let toml = format!("{CACHE_ON}\n{}", models_toml(&mock));
    let gw = TestGateway::start(&toml, ENV, StoreChoice::Postgres).await;
    let key = |name: &str| NewKey {
        name: name.into(),
        team: Some("warm-team".into()),
        ..Default::default()
    };
    let alice = create_key(&gw, key("alice")).await;
    let leaver = create_key(&gw, key("leaver")).await;
    // Asked: "often" 3 times, "twice" 2 (streamed), "once" 1; "gone" by a key revoked later.
    let often = det("o-ok", "often asked");
    let mut twice = det("o-ok", "asked twice, streamed");
    twice["stream"] = true.into();
    let once = det("o-ok", "asked once and rather longer than the others");
    let mut cost_of_often = String::new();
    for (body, times) in [(&often, 3), (&twice, 2), (&once, 1)] {
        for _ in 0..times {
            let r = send(&gw, &alice.key, body, &[]).await;
            assert_eq!(r.status(), 200);
            if body == &often && header(&r, "x-llmrr-cache") == Some("miss") {
                cost_of_often = header(&r, "x-llmrr-cost-usd").unwrap().to_owned();
            }
            r.text().await.unwrap();
        }
    }
    let r = send(&gw, &leaver.key, &det("o-ok", "gone"), &[]).await;
    assert_eq!(r.status(), 200);
    gw.state
        .gateway
        .auth()
        .revoke_key(&leaver.row.id)
        .await
        .unwrap();
    assert_eq!(chat_calls(&mock), 4, "one call per distinct request");
    rows_once(&gw, 7).await;
    let gw_ref = &gw;
    let warm = |body: Value| async move {
        let r = post_as_master(gw_ref, "/admin/cache/warm", &[], body).await;
        let status = r.status();
        (status, r.json::<Value>().await.unwrap())
    };

    // Everything is still cached: nothing to do.
    let (status, report) = warm(json!({"max_cost_usd": "1"})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (
            report["considered"].as_u64(),
            report["already_cached"].as_u64(),
            report["key_gone"].as_u64()
        ),
        (Some(4), Some(3), Some(1)),
        "{report}"
    );
    let purged = client()
        .delete(format!("{}/admin/cache", gw.url))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200);

    // A dry run spends nothing; the most asked comes first.
    let (_, report) = warm(json!({"max_cost_usd": 1, "dry_run": true})).await;
    assert_eq!(report["warmed"], 3, "{report}");
    assert_eq!(report["key_gone"], 1, "{report}");
    assert_eq!(report["requests"][0]["asked"], 3, "{report}");
    assert_eq!(report["requests"][0]["outcome"], "would_warm", "{report}");
    assert_eq!(chat_calls(&mock), 4, "a dry run calls nothing");

    // A cap of exactly what the most asked cost: it alone is replayed.
    let (_, report) = warm(json!({"max_cost_usd": cost_of_often, "top": 10})).await;
    assert_eq!(report["warmed"], 1, "{report}");
    assert_eq!(report["over_cost_cap"], 2, "{report}");
    assert_eq!(report["spent_usd"].as_str(), Some(cost_of_often.as_str()));
    assert_eq!(chat_calls(&mock), 5);
    // The replay made the very entry the request keys to.
    let r = send(&gw, &alice.key, &often, &[]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("hit"));
    assert_eq!(chat_calls(&mock), 5);

    // The rest, the stream included; the revoked key's request is left alone.
    let (_, report) = warm(json!({"max_cost_usd": "1.00"})).await;
    assert_eq!(
        (
            report["warmed"].as_u64(),
            report["already_cached"].as_u64(),
            report["key_gone"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{report}"
    );
    assert_eq!(chat_calls(&mock), 7);
    let r = send(&gw, &alice.key, &twice, &[]).await;
    assert_eq!(
        header(&r, "x-llmrr-cache"),
        Some("hit"),
        "the stream is cached"
    );
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    assert_eq!(chat_calls(&mock), 7);

    // Replays are logged as `warm`, as the key that asked, and are not counted as asked.
    let rows = rows_once(&gw, 12).await;
    assert_eq!(rows.len(), 12);
    let warmed: Vec<_> = rows
        .iter()
        .filter(|r| r.cache.as_deref() == Some("warm"))
        .collect();
    assert_eq!(warmed.len(), 3);
    assert!(warmed
        .iter()
        .all(|r| r.cache_key.is_none() && r.key_id.as_deref() == Some(alice.row.id.as_str())));

    // Bad requests: 400 in OpenAI's envelope; other keys may not warm.
    for bad in [
        json!({}),
        json!({"max_cost_usd": "-1"}),
        json!({"max_cost_usd": "lots"}),
        json!({"max_cost_usd": 1, "since_hours": 0}),
        json!({"max_cost_usd": 1, "extra": true}),
    ] {
        let (status, body) = warm(bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let r = client()
        .post(format!("{}/admin/cache/warm", gw.url))
        .bearer_auth(&alice.key)
        .json(&json!({"max_cost_usd": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    gw.stop().await;
}

#[tokio::test]
async fn issue10_no_request_is_kept_for_warming_when_its_retention_is_zero() {
    let (gw, _mock) = start_with("[cache]\nmode = \"exact\"\nwarm_retention_days = 0\n", ENV).await;
    let r = send(&gw, MASTER, &det("o-ok", "keep nothing"), &[]).await;
    assert_eq!(header(&r, "x-llmrr-cache"), Some("miss"));
    rows_once(&gw, 1).await;
    // A kept request would be written off the answer's path: give it the time it would take.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kept = gw
        .state
        .gateway
        .store()
        .warm_candidates(0, 10)
        .await
        .unwrap();
    assert!(kept.is_empty(), "{kept:?}");
    let r = post_as_master(&gw, "/admin/cache/warm", &[], json!({"max_cost_usd": 1})).await;
    assert_eq!(r.status(), 400);
    gw.stop().await;
}

/// A gateway with the cache on and `wide`: the mock streaming 32 MiB (2,048 chunks of
/// 16 KiB, a pause after the first).
async fn start_wide() -> (TestGateway, MockProvider) {
    start_routed(&format!(
        "{CACHE_ON}[[models]]\nname = \"wide\"\nprovider = \"openai\"\nbase_url = \"{{mock}}\"\n\
         api_key = \"env:UPSTREAM_KEY\"\nupstream_model = \"mock-wide-2048\"\n\
         input_cost_per_mtok = 1\noutput_cost_per_mtok = 2\ntimeout_secs = 60\n\
         idle_timeout_secs = 60\n"
    ))
    .await
}

/// A client with a tiny receive buffer that has sent `body` (one request, then the
/// connection closes) and reads nothing yet.
async fn slow_reader(gw: &TestGateway, body: &Value) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = gw.url.trim_start_matches("http://").to_owned();
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    let mut client = socket
        .connect(addr.parse().expect("an address"))
        .await
        .expect("connects");
    let json = body.to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {MASTER}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
        json.len()
    );
    client.write_all(request.as_bytes()).await.expect("sends");
    client
}

/// A flight's leader whose own client stops reading does not pace its followers: the
/// follower gets the whole stream (32 MiB, far past every socket and channel buffer) while
/// the leader's client reads nothing (it is cut off as too slow once 4 MiB behind).
#[tokio::test]
async fn issue10_a_stalled_leader_client_does_not_hold_back_its_followers() {
    use tokio::io::AsyncReadExt;
    let (gw, mock) = start_wide().await;
    let mut body = det("wide", "a wide answer");
    body["stream"] = true.into();
    // The leader: reads its headers, then nothing.
    let mut leader = slow_reader(&gw, &body).await;
    // Its headers (and the first chunk; the mock pauses after it), a byte at a time.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        leader
            .read_exact(&mut byte)
            .await
            .expect("reads its headers");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("x-llmrr-cache: miss"), "the leader: {head}");
    // A follower joins and reads everything, while the leader's client still reads nothing.
    let follower = tokio::time::timeout(Duration::from_secs(30), async {
        let r = send(&gw, MASTER, &body, &[]).await;
        assert_eq!(header(&r, "x-llmrr-cache-tier"), Some("coalesced"));
        sse_data(r).await
    })
    .await
    .expect("the follower is not held back by the leader's client");
    assert_eq!(follower.last().map(String::as_str), Some("[DONE]"));
    let text = streamed_text(&follower);
    assert_eq!(text.len(), 2048 * 16 * 1024, "the whole answer");
    assert_eq!(chat_calls(&mock), 1);
    drop(leader);
    gw.stop().await;
}

/// A flight's leader whose client leaves while the upstream is quiet, with no follower: the
/// call is cancelled at once (not at the upstream's next chunk) and logged 499.
#[tokio::test]
async fn issue10_a_leader_whose_client_leaves_between_chunks_is_cancelled_at_once() {
    let (gw, _mock) = start_routed(&format!(
        "{CACHE_ON}[[models]]\nname = \"drip\"\nprovider = \"openai\"\nbase_url = \"{{mock}}\"\n\
         api_key = \"env:UPSTREAM_KEY\"\nupstream_model = \"mock-drip-1500\"\n\
         input_cost_per_mtok = 1\noutput_cost_per_mtok = 2\ntimeout_secs = 30\n"
    ))
    .await;
    let mut body = det("drip", "one two three four");
    body["stream"] = true.into();
    let leader = send(&gw, MASTER, &body, &[]).await;
    assert_eq!(header(&leader, "x-llmrr-cache"), Some("miss"));
    use futures_util::StreamExt;
    let mut stream = leader.bytes_stream();
    let first = stream.next().await.expect("a chunk").expect("bytes");
    assert!(first.starts_with(b"data: "));
    // Gone 1.5 s before the upstream's next chunk.
    drop(stream);
    let rows = rows_once(&gw, 1).await;
    let row = rows.first().expect("a row");
    assert_eq!(row.status, 499, "{row:?}");
    // The first token came after two pauses (3 s); the next would have come at 4.5 s.
    assert!(
        row.latency_us < 4_000_000,
        "cancelled at once, not at the next chunk: {} µs",
        row.latency_us
    );
    gw.stop().await;
}

/// A flight's leader whose client falls more than 4 MiB behind, with no follower: it is cut
/// off (its stream ends with a `client_too_slow` error event after what was queued), the
/// upstream call stops, and the request is logged as gone.
#[tokio::test]
async fn issue10_a_leader_client_far_behind_is_cut_off_with_an_error_event() {
    use tokio::io::AsyncReadExt;
    let (gw, _mock) = start_wide().await;
    let mut body = det("wide", "too much for a slow reader");
    body["stream"] = true.into();
    let mut leader = slow_reader(&gw, &body).await;
    // It reads nothing while the upstream answers: the call stops once it is 4 MiB behind.
    let rows = rows_once(&gw, 1).await;
    let row = rows.first().expect("a row");
    assert_eq!(row.status, 499, "{row:?}");
    // Then it reads: what was queued, then the error event, then the end.
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), leader.read_to_end(&mut got))
        .await
        .expect("the stream ends")
        .expect("reads");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("client_too_slow"),
        "ends with the error event"
    );
    assert!(!text.contains("[DONE]"), "not as a complete answer");
    assert!(
        got.len() < 16 * 1024 * 1024,
        "not the whole answer: {}",
        got.len()
    );
    gw.stop().await;
}
