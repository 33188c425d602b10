//! The dashboard over HTTP: its page and assets, sign-in sessions (cookie, CSRF, roles,
//! revocation, replicas), and the admin endpoints it reads (`/admin/requests`,
//! `/admin/overview`, a key's own spend). The browser itself: `ui_browser`.

use crate::{chat_body, client, create_key, get_json, post, replica, start, MASTER};
use llmrr_core::auth::NewKey;
use llmrr_testkit::TestGateway;
use reqwest::header;
use serde_json::{json, Value};
use std::time::Duration;

/// A signed-in session: its cookie and CSRF token.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
    pub who: Value,
}

pub async fn sign_in(gw: &TestGateway, key: &str) -> Session {
    let resp = client()
        .post(format!("{}/ui/login", gw.url))
        .json(&json!({"key": key}))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 200, "sign-in with a good key");
    let set = resp
        .headers()
        .get(header::SET_COOKIE)
        .expect("a cookie")
        .to_str()
        .expect("text")
        .to_owned();
    let body: Value = resp.json().await.expect("json");
    Session {
        cookie: set.split(';').next().expect("name=value").to_owned(),
        csrf: body["csrf_token"]
            .as_str()
            .expect("a csrf token")
            .to_owned(),
        who: body["who"].clone(),
    }
}

/// A virtual key, an admin key when `admin`.
async fn key(gw: &TestGateway, name: &str, admin: bool) -> llmrr_core::auth::CreatedKey {
    create_key(
        gw,
        NewKey {
            name: name.into(),
            admin,
            ..Default::default()
        },
    )
    .await
}

fn ui_get(gw: &TestGateway, path: &str, s: &Session) -> reqwest::RequestBuilder {
    client()
        .get(format!("{}/ui/api/{path}", gw.url))
        .header(header::COOKIE, &s.cookie)
}

fn ui_post(gw: &TestGateway, path: &str, s: &Session, body: Value) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}/ui/api/{path}", gw.url))
        .header(header::COOKIE, &s.cookie)
        .header("x-csrf-token", &s.csrf)
        .json(&body)
}

/// The spend report once the ledger holds `requests` rows (ledger rows are written off the
/// answer's path).
pub async fn spend_with(req: impl Fn() -> reqwest::RequestBuilder, requests: i64) -> Value {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r: Value = req()
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json");
        if r["totals"]["requests"] == requests || std::time::Instant::now() > until {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_page_and_assets_are_public_embedded_and_locked_down() {
    let (gw, _mock) = start().await;
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("{}/ui", gw.url))
        .send()
        .await
        .expect("answers");
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()[header::LOCATION], "ui/");
    let page = client()
        .get(format!("{}/ui/", gw.url))
        .send()
        .await
        .expect("answers");
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert!(h[header::CONTENT_TYPE]
        .to_str()
        .expect("text")
        .starts_with("text/html"));
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().expect("text");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let html = page.text().await.expect("text");
    // Nothing is fetched from another host, and nothing runs inline.
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("<script>") && !html.contains("style="));
    for asset in ["app.js", "app.css", "icon.svg"] {
        let resp = client()
            .get(format!("{}/ui/assets/{asset}", gw.url))
            .send()
            .await
            .expect("answers");
        assert_eq!(resp.status(), 200, "{asset}");
        let etag = resp.headers()[header::ETAG].clone();
        let body = resp.text().await.expect("text");
        assert!(
            !body.contains("https://") || asset == "icon.svg",
            "{asset} names no other host"
        );
        let again = client()
            .get(format!("{}/ui/assets/{asset}", gw.url))
            .header(header::IF_NONE_MATCH, etag)
            .send()
            .await
            .expect("answers");
        assert_eq!(again.status(), 304, "{asset} revalidates");
    }
    let missing = client()
        .get(format!("{}/ui/assets/nope.js", gw.url))
        .send()
        .await
        .expect("answers");
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn sign_in_gives_a_strict_http_only_session_and_writes_need_its_csrf_token() {
    let (gw, _mock) = start().await;
    // A wrong key: 401 and no cookie.
    let bad = client()
        .post(format!("{}/ui/login", gw.url))
        .json(&json!({"key": "sk-llmrr-not-a-key"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(bad.status(), 401);
    assert!(bad.headers().get(header::SET_COOKIE).is_none());
    // Another site's page cannot sign a browser in.
    let cross = client()
        .post(format!("{}/ui/login", gw.url))
        .header(header::ORIGIN, "https://evil.example")
        .json(&json!({"key": MASTER}))
        .send()
        .await
        .expect("answers");
    assert_eq!(cross.status(), 403);

    let resp = client()
        .post(format!("{}/ui/login", gw.url))
        .header("x-forwarded-proto", "https")
        .json(&json!({"key": MASTER}))
        .send()
        .await
        .expect("answers");
    let cookie = resp.headers()[header::SET_COOKIE]
        .to_str()
        .expect("text")
        .to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Secure"] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    let s = sign_in(&gw, MASTER).await;
    assert_eq!(s.who["role"], "admin");
    assert!(!s.cookie.contains(MASTER), "the cookie is not the key");

    let who: Value = ui_get(&gw, "session", &s)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(who["csrf_token"], s.csrf.as_str());
    // The dashboard's API reads the admin API's data…
    let keys = ui_get(&gw, "keys", &s).send().await.expect("answers");
    assert_eq!(keys.status(), 200);
    // …takes no Bearer key in place of a session…
    let bearer = client()
        .get(format!("{}/ui/api/keys", gw.url))
        .bearer_auth(MASTER)
        .send()
        .await
        .expect("answers");
    assert_eq!(bearer.status(), 401);
    // …and writes only with the session's CSRF token.
    let no_token = client()
        .post(format!("{}/ui/api/keys", gw.url))
        .header(header::COOKIE, &s.cookie)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(no_token.status(), 403);
    let wrong = client()
        .post(format!("{}/ui/api/keys", gw.url))
        .header(header::COOKIE, &s.cookie)
        .header("x-csrf-token", "0".repeat(64))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(wrong.status(), 403);
    let made = ui_post(&gw, "keys", &s, json!({"name": "from-ui"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(made.status(), 201);
    // The admin API stays Bearer-only: a session cookie is not a key there.
    let admin_by_cookie = client()
        .get(format!("{}/admin/keys", gw.url))
        .header(header::COOKIE, &s.cookie)
        .send()
        .await
        .expect("answers");
    assert_eq!(admin_by_cookie.status(), 401);

    // Signing out ends the session.
    let out = ui_post(&gw, "logout", &s, json!({}))
        .send()
        .await
        .expect("answers");
    assert_eq!(out.status(), 200);
    assert!(out.headers()[header::SET_COOKIE]
        .to_str()
        .expect("text")
        .contains("Max-Age=0"));
    let after = ui_get(&gw, "keys", &s).send().await.expect("answers");
    assert_eq!(after.status(), 401);
}

#[tokio::test]
async fn an_admin_key_administers_a_user_key_sees_only_its_own_spend_and_revoking_ends_sessions() {
    let (gw, _mock) = start().await;
    let admin = key(&gw, "ops", true).await;
    assert!(admin.row.admin);
    // An admin key uses the admin API with its Bearer key…
    let listed = client()
        .get(format!("{}/admin/keys", gw.url))
        .bearer_auth(&admin.key)
        .send()
        .await
        .expect("answers");
    assert_eq!(listed.status(), 200);
    // …and signs in to the whole dashboard.
    assert_eq!(sign_in(&gw, &admin.key).await.who["role"], "admin");

    let alice = key(&gw, "alice", false).await;
    let bob = key(&gw, "bob", false).await;
    for (key, n) in [(&alice.key, 2), (&bob.key, 3)] {
        for i in 0..n {
            let r = post(
                &gw,
                "/v1/chat/completions",
                Some(key),
                chat_body("o-ok", &format!("hi {i}")),
            )
            .await;
            assert_eq!(r.status(), 200);
        }
    }
    // A plain key may not use the admin API…
    let refused = client()
        .get(format!("{}/admin/keys", gw.url))
        .bearer_auth(&alice.key)
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), 403);
    // …but reads its own spend, and only its own, through the API and the dashboard.
    let own = spend_with(
        || {
            client()
                .get(format!("{}/admin/spend?group_by=key", gw.url))
                .bearer_auth(&alice.key)
        },
        2,
    )
    .await;
    assert_eq!(own["totals"]["requests"], 2, "{own}");
    assert_eq!(own["scope"], format!("key:{}", alice.row.id));
    let groups = own["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["group"], alice.row.id.as_str());
    assert!(
        own["top_keys"]
            .as_array()
            .expect("top")
            .iter()
            .all(|g| g["group"] == alice.row.id.as_str()),
        "no other key's spend: {own}"
    );
    let other = client()
        .get(format!("{}/admin/spend?scope=key:{}", gw.url, bob.row.id))
        .bearer_auth(&alice.key)
        .send()
        .await
        .expect("answers");
    assert_eq!(other.status(), 403);
    let everything = client()
        .get(format!("{}/admin/spend?scope=global", gw.url))
        .bearer_auth(&alice.key)
        .send()
        .await
        .expect("answers");
    assert_eq!(everything.status(), 403);

    let s = sign_in(&gw, &alice.key).await;
    assert_eq!(s.who["role"], "user");
    let mine = spend_with(|| ui_get(&gw, "spend?group_by=model", &s), 2).await;
    assert_eq!(mine["totals"]["requests"], 2);
    let all = spend_with(
        || {
            client()
                .get(format!("{}/admin/spend", gw.url))
                .bearer_auth(MASTER)
        },
        5,
    )
    .await;
    assert_eq!(
        all["totals"]["requests"], 5,
        "the master key sees everyone's"
    );
    let forecast: Value = ui_get(&gw, "spend/forecast", &s)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(forecast["scope"], format!("key:{}", alice.row.id));
    for page in [
        "keys", "budgets", "models", "requests", "overview", "cache", "users",
    ] {
        let r = ui_get(&gw, page, &s).send().await.expect("answers");
        assert_eq!(r.status(), 403, "a user key's session may not read {page}");
    }

    // Revoking the key ends its sessions at once.
    let revoked = client()
        .delete(format!("{}/admin/keys/{}", gw.url, alice.row.id))
        .bearer_auth(MASTER)
        .send()
        .await
        .expect("answers");
    assert_eq!(revoked.status(), 200);
    let after = ui_get(&gw, "spend", &s).send().await.expect("answers");
    assert_eq!(after.status(), 401);
}

#[tokio::test]
async fn a_session_made_on_one_replica_works_on_another_and_ends_on_both() {
    let db = llmrr_testkit::harness::SharedDatabase::create().await;
    let prefix = llmrr_testkit::harness::unique_prefix();
    let mock = llmrr_testkit::MockProvider::start().await;
    let models = crate::models_toml(&mock);
    let a = replica(&models, &db.url, &prefix).await;
    let b = replica(&models, &db.url, &prefix).await;
    let s = sign_in(&a, MASTER).await;
    let on_b = ui_get(&b, "keys", &s).send().await.expect("answers");
    assert_eq!(on_b.status(), 200, "the session is in the shared store");
    let out = ui_post(&b, "logout", &s, json!({}))
        .send()
        .await
        .expect("answers");
    assert_eq!(out.status(), 200);
    let on_a = ui_get(&a, "keys", &s).send().await.expect("answers");
    assert_eq!(on_a.status(), 401, "signed out on B ends it on A");
}

#[tokio::test]
async fn recent_requests_carry_their_routing_explanation_and_filter() {
    let (gw, _mock) = crate::start_routed(
        "[[routes]]\nname = \"fast\"\nstrategy = \"balanced\"\nmodels = [\"o-ok\", \"a-ok\"]\n",
    )
    .await;
    for body in [
        chat_body("fast", "hello"),
        chat_body("o-ok", "direct"),
        chat_body("o-500", "fails"),
    ] {
        post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    }
    crate::rows_once(&gw, 3).await;
    let all = get_json(&gw, "/admin/requests").await;
    let data = all["data"].as_array().expect("list");
    assert_eq!(data.len(), 3);
    let routed = data
        .iter()
        .find(|r| r["requested_model"] == "fast")
        .expect("the routed one");
    assert_eq!(routed["route"], "fast");
    let reason = routed["reason"].as_str().expect("an explanation");
    assert!(reason.starts_with("balanced: "), "{reason}");
    let failed = get_json(&gw, "/admin/requests?status=error").await;
    let failed = failed["data"].as_array().expect("list");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["requested_model"], "o-500");
    let by_route = get_json(&gw, "/admin/requests?route=fast&limit=1").await;
    assert_eq!(by_route["data"].as_array().expect("list").len(), 1);
    let by_model = get_json(&gw, "/admin/requests?model=o-ok").await;
    let by_model = by_model["data"].as_array().expect("list");
    assert!(!by_model.is_empty());
    assert!(by_model
        .iter()
        .all(|r| r["model"] == "o-ok" || r["requested_model"] == "o-ok"));
    // Paging: nothing is older than the oldest row.
    let oldest = data.last().expect("a row")["created_at_ms"]
        .as_i64()
        .expect("ms");
    let page = get_json(&gw, &format!("/admin/requests?before={oldest}")).await;
    assert_eq!(page["data"].as_array().expect("list").len(), 0);
    for bad in [
        "status=maybe",
        "limit=0",
        "limit=501",
        "colour=red",
        "before=soon",
        "before_id=req_1",
    ] {
        let r = client()
            .get(format!("{}/admin/requests?{bad}", gw.url))
            .bearer_auth(MASTER)
            .send()
            .await
            .expect("answers");
        assert_eq!(r.status(), 400, "{bad}");
    }

    let o = get_json(&gw, "/admin/overview?window=60").await;
    let t = &o["traffic"];
    assert_eq!(t["requests"], 3, "{o}");
    assert_eq!(t["errors"], 1);
    assert!((t["error_rate"].as_f64().expect("rate") - 1.0 / 3.0).abs() < 1e-9);
    assert!((t["requests_per_sec"].as_f64().expect("rps") - 3.0 / 60.0).abs() < 1e-9);
    assert!(t["latency_p50_ms"].as_f64().expect("p50") > 0.0);
    assert!(o["spend"]["month_usd"].as_str().is_some(), "{o}");
    let bad = client()
        .get(format!("{}/admin/overview?window=5", gw.url))
        .bearer_auth(MASTER)
        .send()
        .await
        .expect("answers");
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn remote_models_do_not_load_or_unload() {
    let (gw, _mock) = start().await;
    let r = crate::post_as_master(&gw, "/admin/models/load", &[], json!({"model": "o-ok"})).await;
    assert_eq!(r.status(), 400);
    let r = crate::post_as_master(&gw, "/admin/models/unload", &[], json!({"model": "nope"})).await;
    assert_eq!(r.status(), 404);
    let r =
        crate::post_as_master(&gw, "/admin/models/explode", &[], json!({"model": "o-ok"})).await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_rotation_ends_the_keys_sessions_and_cross_site_writes_are_refused() {
    let (gw, _mock) = start().await;
    let admin = key(&gw, "ops", true).await;
    let s = sign_in(&gw, &admin.key).await;
    // A write with the right token but from another site's page: refused.
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let r = client()
            .delete(format!("{}/ui/api/keys/nope", gw.url))
            .header(header::COOKIE, &s.cookie)
            .header("x-csrf-token", &s.csrf)
            .header(name, value)
            .send()
            .await
            .expect("answers");
        assert_eq!(r.status(), 403, "{name}: {value}");
    }
    // DELETE needs the token like any write.
    let r = client()
        .delete(format!("{}/ui/api/keys/nope", gw.url))
        .header(header::COOKIE, &s.cookie)
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 403);
    // The dashboard's answers are not cached.
    let r = ui_get(&gw, "session", &s).send().await.expect("answers");
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    // Two session cookies: none counts.
    let r = client()
        .get(format!("{}/ui/api/keys", gw.url))
        .header(
            header::COOKIE,
            format!("llmrr_session=planted; {}", s.cookie),
        )
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 401);
    // Rotating the key (grace or not) ends the sessions it signed in.
    let rotated = client()
        .post(format!("{}/admin/keys/{}/rotate", gw.url, admin.row.id))
        .bearer_auth(MASTER)
        .json(&json!({"grace_secs": 600}))
        .send()
        .await
        .expect("answers");
    assert_eq!(rotated.status(), 200);
    let after = ui_get(&gw, "keys", &s).send().await.expect("answers");
    assert_eq!(after.status(), 401, "the old secret's session ended");
    // The old secret still calls models during its grace, but signs in no more.
    let old = client()
        .post(format!("{}/ui/login", gw.url))
        .json(&json!({"key": admin.key}))
        .send()
        .await
        .expect("answers");
    assert_eq!(old.status(), 401);
    let said: Value = old.json().await.expect("json");
    assert!(
        said["error"]["message"]
            .as_str()
            .expect("message")
            .contains("rotated"),
        "{said}"
    );
    let new_secret: Value = rotated.json().await.expect("json");
    let again = sign_in(&gw, new_secret["key"].as_str().expect("secret")).await;
    assert_eq!(
        ui_get(&gw, "keys", &again)
            .send()
            .await
            .expect("answers")
            .status(),
        200
    );
}

#[tokio::test]
async fn admin_keys_are_the_master_keys_to_make_and_manage() {
    let (gw, _mock) = start().await;
    let ops = key(&gw, "ops", true).await;
    let peer = key(&gw, "peer", true).await;
    let as_ops = |method: reqwest::Method, path: &str| {
        client()
            .request(method, format!("{}{path}", gw.url))
            .bearer_auth(&ops.key)
    };
    let r = as_ops(reqwest::Method::POST, "/admin/keys")
        .json(&json!({"name": "more", "admin": true}))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 403, "an admin key mints no admin keys");
    for (method, path, body) in [
        (
            reqwest::Method::DELETE,
            format!("/admin/keys/{}", peer.row.id),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("/admin/keys/{}/rotate", peer.row.id),
            None,
        ),
        (
            reqwest::Method::PATCH,
            format!("/admin/keys/{}", peer.row.id),
            Some(json!({"expires_in_secs": 60})),
        ),
    ] {
        let mut req = as_ops(method.clone(), &path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("answers");
        assert_eq!(r.status(), 403, "{method} {path}");
    }
    // Nor limits or budgets of another admin key.
    let r = as_ops(
        reqwest::Method::PUT,
        &format!("/admin/limits/key:{}", peer.row.id),
    )
    .json(&json!({"rpm": 1}))
    .send()
    .await
    .expect("answers");
    assert_eq!(r.status(), 403, "no throttling another admin");
    let r = as_ops(reqwest::Method::POST, "/admin/budgets")
        .json(&json!({
            "scope": format!("key:{}/model:o-ok", peer.row.id),
            "period": "day",
            "limit_usd": 1
        }))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 403);
    // Plain keys are an admin key's to manage.
    let r = as_ops(reqwest::Method::POST, "/admin/keys")
        .json(&json!({"name": "plain"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 201);
    let plain: Value = r.json().await.expect("json");
    let r = as_ops(
        reqwest::Method::DELETE,
        &format!("/admin/keys/{}", plain["id"].as_str().expect("id")),
    )
    .send()
    .await
    .expect("answers");
    assert_eq!(r.status(), 200);
    // The master key manages admin keys.
    let r = client()
        .delete(format!("{}/admin/keys/{}", gw.url, peer.row.id))
        .bearer_auth(MASTER)
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_users_key_reads_its_users_spend_and_pages_of_requests_lose_no_row() {
    let (gw, _mock) = start().await;
    let make = |name: &str, user: Option<&str>| NewKey {
        name: name.into(),
        user: user.map(str::to_owned),
        ..Default::default()
    };
    let first = create_key(&gw, make("laptop", Some("ann"))).await;
    let second = create_key(&gw, make("phone", Some("ann"))).await;
    let other = create_key(&gw, make("bob", Some("bob"))).await;
    for key in [&first.key, &second.key, &second.key, &other.key] {
        let r = post(
            &gw,
            "/v1/chat/completions",
            Some(key),
            chat_body("o-ok", "hi"),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    let own = spend_with(
        || {
            client()
                .get(format!("{}/admin/spend?group_by=key", gw.url))
                .bearer_auth(&first.key)
        },
        3,
    )
    .await;
    assert_eq!(own["scope"], "user:ann", "{own}");
    assert_eq!(
        own["totals"]["requests"], 3,
        "both of ann's keys, not bob's: {own}"
    );
    let keys: Vec<&str> = own["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["group"].as_str().expect("key"))
        .collect();
    assert!(!keys.contains(&other.row.id.as_str()), "{keys:?}");

    // Pages of one row each walk every row exactly once, rows of one millisecond included.
    crate::rows_once(&gw, 4).await;
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get_json(&gw, &format!("/admin/requests?limit=1{cursor}")).await;
        let data = page["data"].as_array().expect("list");
        let Some(row) = data.first() else { break };
        let (ms, id) = (
            row["created_at_ms"].as_i64().expect("ms"),
            row["id"].as_str().expect("id").to_owned(),
        );
        cursor = format!("&before={ms}&before_id={id}");
        seen.push(id);
        assert!(seen.len() <= 4, "a row came twice: {seen:?}");
    }
    let mut all: Vec<String> = crate::rows(&gw).await.into_iter().map(|r| r.id).collect();
    all.sort();
    seen.sort();
    assert_eq!(seen, all);
}
