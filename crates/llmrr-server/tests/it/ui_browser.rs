//! The dashboard in a real browser: Debian's headless Chromium driven through ChromeDriver
//! (WebDriver, with `fantoccini`). Signs in with the keyboard, reads seeded spend in the spend
//! chart and checks it against the ledger, creates a key (used at once) and revokes it (refused
//! at once), visits every page at desktop and phone width, and writes a screenshot of each to
//! `target/ui-screenshots/` (or `$LLMRR_SCREENSHOTS`). `scripts/ensure-test-deps.sh` installs
//! Chromium and ChromeDriver; `LLMRR_CHROMIUM` / `LLMRR_CHROMEDRIVER` name others.

use crate::{chat_body, client, get_json, post, start, MASTER};
use fantoccini::{Client, ClientBuilder, Locator};
use llmrr_testkit::TestGateway;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn binary(var: &str, default: &str) -> String {
    let path = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: the dashboard's browser tests need Chromium and ChromeDriver \
         (run ./scripts/ensure-test-deps.sh, or set {var})"
    );
    path
}

/// ChromeDriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn driver() -> Driver {
    let exe = binary("LLMRR_CHROMEDRIVER", "/usr/bin/chromedriver");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(exe)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let until = std::time::Instant::now() + WAIT;
    while client().get(format!("{url}/status")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < until,
            "chromedriver never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Driver {
        child,
        url,
        _profile: tempfile::tempdir().expect("a profile folder"),
    }
}

async fn browser(d: &Driver) -> Client {
    let chromium = binary("LLMRR_CHROMIUM", "/usr/bin/chromium");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            // Headless, and nothing reaches out to the network by itself.
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1280,900",
                format!("--user-data-dir={}", d._profile.path().display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&d.url)
        .await
        .expect("a browser session")
}

fn screenshots() -> PathBuf {
    let dir = std::env::var_os("LLMRR_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots")
        });
    std::fs::create_dir_all(&dir).expect("the screenshot folder");
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name}: a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).expect("written");
}

/// Open `#/page` and wait until it has drawn (its container says `data-ready`).
async fn open(c: &Client, gw: &TestGateway, page: &str) {
    c.goto(&format!("{}/ui/#/{page}", gw.url))
        .await
        .expect("navigates");
    let id = page.split('?').next().unwrap_or(page);
    wait_for(
        c,
        &format!("[data-page=\"{id}\"][data-ready=\"true\"]"),
        &format!("{page} drawn"),
    )
    .await;
    // A page that failed to load says so in an alert.
    let failed = c
        .find_all(Locator::Css("main [role=alert]"))
        .await
        .expect("query");
    for f in failed {
        let text = f.text().await.unwrap_or_default();
        assert!(text.is_empty(), "{page}: {text}");
    }
}

/// Wait for `css`; failing, keep the page's screenshot and source next to the others.
async fn wait_for(c: &Client, css: &str, what: &str) -> fantoccini::elements::Element {
    match c.wait().at_most(WAIT).for_element(Locator::Css(css)).await {
        Ok(e) => e,
        Err(e) => {
            let source = c.source().await.unwrap_or_default();
            let _ = std::fs::write(screenshots().join("failed.html"), &source);
            if let Ok(png) = c.screenshot().await {
                let _ = std::fs::write(screenshots().join("failed.png"), png);
            }
            panic!("{what} ({css}): {e}\n{source}");
        }
    }
}

async fn text_of(c: &Client, css: &str) -> String {
    wait_for(c, css, css).await.text().await.expect("text")
}

#[tokio::test]
async fn the_dashboard_in_chromium_signs_in_charts_spend_and_manages_keys() {
    let (gw, _mock) = start().await;
    // Seed spend on two models of different prices.
    for (model, n) in [("o-ok", 3), ("a-ok", 2)] {
        for i in 0..n {
            let r = post(
                &gw,
                "/v1/chat/completions",
                Some(MASTER),
                chat_body(model, &format!("seed {i}")),
            )
            .await;
            assert_eq!(r.status(), 200);
        }
    }
    let ledger = crate::ui::spend_with(
        || {
            client()
                .get(format!("{}/admin/spend?from=30d&group_by=model", gw.url))
                .bearer_auth(MASTER)
        },
        5,
    )
    .await;
    assert_eq!(ledger["totals"]["requests"], 5, "{ledger}");

    let d = driver().await;
    let c = browser(&d).await;

    // Signed out: the sign-in form, with focus in the key field; Enter submits.
    c.goto(&format!("{}/ui/", gw.url)).await.expect("navigates");
    wait_for(&c, "form#login", "the sign-in form").await;
    shot(&c, "00-sign-in").await;
    let focused: Value = c
        .execute(
            "return document.activeElement && document.activeElement.id",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(focused, "key", "the key field has focus");
    let field = c.find(Locator::Css("#key")).await.expect("the key field");
    field.send_keys("sk-llmrr-wrong-key").await.expect("typed");
    field.send_keys("\u{E007}").await.expect("Enter");
    let error = text_of(&c, "#login-error:not(:empty)").await;
    assert!(
        error.contains("invalid") || error.contains("key"),
        "{error}"
    );
    let field = c.find(Locator::Css("#key")).await.expect("the key field");
    field.clear().await.expect("cleared");
    field.send_keys(MASTER).await.expect("typed");
    field.send_keys("\u{E007}").await.expect("Enter");
    wait_for(
        &c,
        "[data-page=\"overview\"][data-ready=\"true\"]",
        "the overview after sign-in",
    )
    .await;
    // The cards say what the admin API says: 5 requests in the window, today's spend.
    let requests = text_of(&c, "[data-metric=rps] .note").await;
    assert_eq!(requests, "5 requests");
    let overview = get_json(&gw, "/admin/overview?window=300").await;
    let today: f64 = overview["spend"]["today_usd"]
        .as_str()
        .expect("usd")
        .parse()
        .expect("number");
    assert!(today > 0.0, "{overview}");
    let shown = text_of(&c, "[data-metric=spend_today] .value").await;
    let shown: f64 = shown
        .trim_start_matches('$')
        .parse()
        .unwrap_or_else(|_| panic!("a dollar amount: {shown}"));
    assert!(
        (shown - today).abs() <= today * 0.01,
        "the card shows {shown}, the ledger {today}"
    );
    shot(&c, "01-overview").await;

    // The spend chart shows what the ledger holds, per model.
    open(&c, &gw, "spend?from=30d&group_by=model").await;
    let bars = c
        .find_all(Locator::Css("svg.chart rect.bar"))
        .await
        .expect("bars");
    let mut drawn = std::collections::HashMap::new();
    for b in &bars {
        let label = b.attr("data-label").await.expect("attr").expect("a label");
        let value: f64 = b
            .attr("data-value")
            .await
            .expect("attr")
            .expect("a value")
            .parse()
            .expect("a number");
        drawn.insert(label, value);
    }
    let groups = ledger["groups"].as_array().expect("groups");
    assert_eq!(drawn.len(), groups.len(), "one bar per model: {drawn:?}");
    for g in groups {
        let model = g["group"].as_str().expect("model");
        let cost: f64 = g["cost_usd"]
            .as_str()
            .expect("cost")
            .parse()
            .expect("number");
        assert!(cost > 0.0);
        let bar = drawn
            .get(model)
            .unwrap_or_else(|| panic!("no bar for {model}"));
        assert!(
            (bar - cost).abs() < 1e-12,
            "{model}: bar {bar} vs ledger {cost}"
        );
    }
    let total = text_of(&c, "[data-metric=spend_total] .value").await;
    assert!(total.starts_with('$'), "{total}");
    shot(&c, "02-spend").await;

    // Create a key: its secret is shown once, and works at once.
    open(&c, &gw, "keys").await;
    let name = c
        .find(Locator::Css("form.inline input[name=name]"))
        .await
        .expect("name");
    name.send_keys("browser-key").await.expect("typed");
    c.find(Locator::Css("form.inline button[type=submit]"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("clicked");
    let secret = text_of(&c, "#new-secret .secret").await;
    assert!(secret.starts_with("sk-llmrr-"), "{secret}");
    let works = post(
        &gw,
        "/v1/chat/completions",
        Some(&secret),
        chat_body("o-ok", "new key"),
    )
    .await;
    assert_eq!(works.status(), 200, "the key made in the browser works");
    shot(&c, "03-keys-created").await;

    // Revoke it (the button asks again); it stops working.
    let keys = get_json(&gw, "/admin/keys").await;
    let id = keys["data"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == "browser-key")
        .expect("the new key")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let revoke = format!("[data-key=\"{id}\"] button[data-action=revoke]");
    c.find(Locator::Css(&revoke))
        .await
        .expect("revoke")
        .click()
        .await
        .expect("clicked");
    assert_eq!(text_of(&c, &revoke).await, "Confirm revoke");
    c.find(Locator::Css(&revoke))
        .await
        .expect("confirm")
        .click()
        .await
        .expect("clicked");
    let until = std::time::Instant::now() + WAIT;
    loop {
        let refused = post(
            &gw,
            "/v1/chat/completions",
            Some(&secret),
            chat_body("o-ok", "revoked?"),
        )
        .await;
        if refused.status() == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the revoked key still works"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The list is drawn again: the key says revoked, and has no revoke button.
    wait_for(
        &c,
        "[data-page=keys][data-ready=true] .badge.bad",
        "the revoked key in the redrawn list",
    )
    .await;
    assert!(
        c.find_all(Locator::Css(&revoke))
            .await
            .expect("query")
            .is_empty(),
        "a revoked key has no revoke button"
    );
    shot(&c, "04-keys-revoked").await;

    // Every other page draws, at desktop and at phone width (no sideways scrolling).
    let pages = ["budgets", "models", "users", "teams", "cache", "requests"];
    for (i, page) in pages.iter().enumerate() {
        open(&c, &gw, page).await;
        shot(&c, &format!("{:02}-{page}", i + 5)).await;
    }
    let routed = text_of(&c, "[data-page=requests] table tbody tr td:nth-child(3)").await;
    assert!(!routed.is_empty());
    c.set_window_size(390, 844).await.expect("phone width");
    for page in ["overview", "spend", "keys", "requests"] {
        open(&c, &gw, page).await;
        let overflow: Value = c
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
                vec![],
            )
            .await
            .expect("script");
        assert!(
            overflow.as_i64().expect("px") <= 0,
            "{page} scrolls sideways at phone width"
        );
        shot(&c, &format!("phone-{page}")).await;
    }

    // Sign out: back to the form, and the session no longer opens pages.
    c.find(Locator::Css("#signout"))
        .await
        .expect("sign out")
        .click()
        .await
        .expect("clicked");
    wait_for(&c, "form#login", "the sign-in form again").await;
    c.goto(&format!("{}/ui/#/keys", gw.url))
        .await
        .expect("navigates");
    wait_for(&c, "form#login", "still signed out").await;
    c.close().await.expect("the browser closes");
}
