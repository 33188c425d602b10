//! Smart routing through the real server and the mock: the difficulty router (`complexity`),
//! its explanation and log columns, a held share of strong calls, feedback and training from
//! the log, and `cascade` escalation on each of its checks.

use super::*;
use llmrr_core::routing::difficulty::{self, ChatText, Difficulty};
use serde_json::json;

/// A cheap and a strong model (different qualities and prices) in every mode the tests need.
fn models(mock: &str) -> String {
    let mut t = String::new();
    for (name, quality, price, mode) in [
        ("cheap", 0.5, 0.1, "ok"),
        ("strong", 0.9, 10.0, "ok"),
        ("cheap-empty", 0.5, 0.1, "empty"),
        ("cheap-refuse", 0.5, 0.1, "refuse"),
        ("cheap-length", 0.5, 0.1, "length"),
        ("cheap-unsure", 0.5, 0.1, "unsure"),
        ("strong-json", 0.9, 10.0, "json"),
        ("strong-down", 0.9, 10.0, "500"),
        ("mid", 0.7, 1.0, "ok"),
        ("strong-slow", 0.9, 10.0, "slow-3000"),
    ] {
        t.push_str(&format!(
            "[[models]]\nname = \"{name}\"\nprovider = \"openai\"\nbase_url = \"{mock}\"\n\
             upstream_model = \"{name}-mock-{mode}\"\nquality = {quality}\n\
             input_cost_per_mtok = {price}\noutput_cost_per_mtok = {price}\n\n"
        ));
    }
    t
}

fn score_of(text: &str) -> f32 {
    let req = serde_json::from_value(chat_body("auto", text)).expect("a chat request");
    Difficulty::of_chat(&difficulty::shipped(), &req).score
}

const EASY: &str = "hi";
const MEDIUM: &str = "What is the capital of France?";
const HARD: &str = "Janet's ducks lay 16 eggs per day. She eats three for breakfast every \
    morning and bakes muffins for her friends every day with four. She sells the remainder at \
    the farmers' market daily for $2 per fresh duck egg. How much in dollars does she make \
    every day at the farmers' market?";

async fn answered_by(gw: &TestGateway, key: &str, route: &str, text: &str) -> (String, String) {
    let resp = post(
        gw,
        "/v1/chat/completions",
        Some(key),
        chat_body(route, text),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let header = resp.headers()["x-llmrr-route"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body: Value = resp.json().await.expect("json");
    (body["model"].as_str().unwrap_or("").to_owned(), header)
}

#[tokio::test]
async fn complexity_sends_hard_prompts_to_the_strong_model_and_explains_each_choice() {
    let (easy, hard) = (score_of(EASY), score_of(HARD));
    assert!(easy < hard, "the shipped scorer: easy {easy}, hard {hard}");
    let threshold = (easy + hard) / 2.0;
    let extra = format!(
        "{}\n[[routes]]\nname = \"auto\"\nstrategy = \"complexity\"\nmodels = [\"strong\", \"cheap\"]\n\
         thresholds = [{threshold}]\n\
         [[routes]]\nname = \"plain\"\nstrategy = \"balanced\"\nmodels = [\"cheap\", \"strong\"]\n",
        models("{mock}")
    );
    let (gw, _mock) = start_routed(&extra).await;

    let (model, header) = answered_by(&gw, MASTER, "auto", EASY).await;
    assert_eq!(model, "cheap-mock-ok", "{header}");
    assert!(header.contains("strategy=complexity"), "{header}");
    assert!(
        header.contains(&format!("difficulty={easy:.3}")),
        "{header}"
    );
    assert!(header.contains("category=chat"), "{header}");
    assert!(
        header.contains(&format!("threshold={threshold:.3}")),
        "{header}"
    );
    let (model, header) = answered_by(&gw, MASTER, "auto", HARD).await;
    assert_eq!(model, "strong-mock-ok", "{header}");
    assert!(header.contains("category=math"), "{header}");

    // The explanation, also for a strategy that does not use the score.
    let d: Value = post(&gw, "/v1/route", Some(MASTER), chat_body("auto", HARD))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(d["model"], "strong", "{d}");
    assert_eq!(d["plan"], json!(["strong", "cheap"]), "{d}");
    assert!((d["complexity"]["score"].as_f64().expect("score") - f64::from(hard)).abs() < 1e-3);
    assert_eq!(d["complexity"]["category"], "math");
    assert!(
        d["reason"]
            .as_str()
            .is_some_and(|r| r.contains(">= threshold")),
        "{d}"
    );
    let d: Value = post(&gw, "/v1/route", Some(MASTER), chat_body("plain", EASY))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(d["strategy"], "balanced");
    assert!(d["complexity"]["score"].is_number(), "{d}");
    assert!(d["complexity"].get("threshold").is_none(), "{d}");

    // The request log keeps score and category of the routed requests.
    let logged = rows_once(&gw, 2).await;
    let mut by_category: Vec<(Option<String>, Option<i64>)> = logged
        .iter()
        .map(|r| (r.category.clone(), r.difficulty))
        .collect();
    by_category.sort();
    assert_eq!(
        by_category,
        vec![
            (
                Some("chat".into()),
                Some((f64::from(easy) * 10_000.0).round() as i64)
            ),
            (
                Some("math".into()),
                Some((f64::from(hard) * 10_000.0).round() as i64)
            ),
        ]
    );
    assert!(
        logged.iter().all(|r| r.prompt.is_none()),
        "not logged unless asked"
    );
}

#[tokio::test]
async fn strong_share_is_held_on_live_traffic() {
    let extra = format!(
        "{}\n[[routes]]\nname = \"auto\"\nstrategy = \"complexity\"\nmodels = [\"cheap\", \"strong\"]\n\
         strong_share = 0.25\n",
        models("{mock}")
    );
    let (gw, mock) = start_routed(&extra).await;
    // Prompts of every kind and size, so that their scores spread.
    let subjects = [
        "apples",
        "the Roman empire",
        "a sorting algorithm",
        "tax law",
        "poetry",
    ];
    let mut prompts = Vec::new();
    for i in 0..160 {
        let subject = subjects[i % subjects.len()];
        let numbers: Vec<String> = (0..i % 7).map(|k| format!("{}", k * 37 + i)).collect();
        prompts.push(format!(
            "{} {subject}? {} {}",
            [
                "Tell me about",
                "Explain why",
                "How much is",
                "Compute",
                "hi,"
            ][i % 5],
            numbers.join(" + "),
            "and more detail ".repeat(i % 11)
        ));
    }
    for p in &prompts {
        let resp = post(
            &gw,
            "/v1/chat/completions",
            Some(MASTER),
            chat_body("auto", p),
        )
        .await;
        assert_eq!(resp.status(), 200);
    }
    // After the warm-up, the window's quantile holds the share.
    let strong = mock
        .requests()
        .iter()
        .skip(60)
        .filter(|r| r.body["model"] == "strong-mock-ok")
        .count();
    let share = strong as f64 / (prompts.len() - 60) as f64;
    assert!((0.15..=0.35).contains(&share), "strong share {share}");
}

#[tokio::test]
async fn feedback_is_kept_from_the_key_that_asked_and_trains_weights_from_the_log() {
    let extra = format!(
        "{}\n[[routes]]\nname = \"auto\"\nstrategy = \"complexity\"\nmodels = [\"cheap\", \"strong\"]\n\
         thresholds = [0.99]\nlog_prompts = true\n",
        models("{mock}")
    );
    let (gw, _mock) = start_routed(&extra).await;
    let new = |name: &str| serde_json::from_value(json!({ "name": name })).expect("a new key");
    let key = create_key(&gw, new("a")).await.key;
    let other = create_key(&gw, new("b")).await.key;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(&key),
        chat_body("auto", HARD),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-llmrr-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();

    // Right after the answer: the row may still be queued; feedback waits for it.
    let fb = |score: Value| json!({"request_id": id, "thumbs": score});
    let ok: Value = post(&gw, "/v1/feedback", Some(&key), fb(json!("down")))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        ok,
        json!({"object": "feedback", "request_id": id, "score": 0.0})
    );
    // Another key cannot see the request; nor can anyone rate a request never made.
    error_body(
        post(&gw, "/v1/feedback", Some(&other), fb(json!("up"))).await,
        404,
    )
    .await;
    let unknown = json!({"request_id": "req_nope", "score": 1});
    error_body(post(&gw, "/v1/feedback", Some(&key), unknown).await, 404).await;
    for (bad, param) in [
        (json!({"request_id": id, "score": 1.5}), "score"),
        (json!({"request_id": id, "thumbs": "sideways"}), "thumbs"),
        (json!({"request_id": id}), "score"),
        (
            json!({"request_id": id, "score": 1, "thumbs": "up"}),
            "thumbs",
        ),
        (json!({"request_id": "", "score": 1}), "request_id"),
    ] {
        let e = error_body(post(&gw, "/v1/feedback", Some(&key), bad).await, 400).await;
        assert_eq!(e["error"]["param"], param, "{e}");
    }
    error_body(post(&gw, "/v1/feedback", None, fb(json!("up"))).await, 401).await;

    // The prompt was kept (what the scorer reads), with the feedback: a row that needed the
    // strong model (the cheap one answered badly).
    let store = gw.state.gateway.store();
    let strongest = |_: &str| Some("strong".to_owned());
    let rows = llmrr_core::routing::feedback::labelled_from_log(store, Some("auto"), strongest)
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].weak, rows[0].strong), (0.0, 1.0));
    assert_eq!(rows[0].text.text, HARD);
    // The master key may rate any request; a new score replaces the old one.
    post(&gw, "/v1/feedback", Some(MASTER), fb(json!("up"))).await;
    let rows = llmrr_core::routing::feedback::labelled_from_log(store, Some("auto"), strongest)
        .await
        .expect("rows");
    assert_eq!((rows[0].weak, rows[0].strong), (1.0, 1.0));
    // Rows of another route are not read for this one.
    let none = llmrr_core::routing::feedback::labelled_from_log(store, Some("other"), strongest)
        .await
        .expect("rows");
    assert!(none.is_empty());

    // Training on them gives weights a route can load, the same each time.
    let examples: Vec<_> = rows.iter().map(|r| r.example()).collect();
    let params = llmrr_core::routing::difficulty::train::TrainParams::default();
    let a = llmrr_core::routing::difficulty::train::train(&examples, &params).to_bytes();
    let b = llmrr_core::routing::difficulty::train::train(&examples, &params).to_bytes();
    assert_eq!(a, b);
    let read = ChatText::of(&serde_json::from_value(chat_body("x", HARD)).expect("req"));
    assert_eq!(read.text, rows[0].text.text);
}

#[tokio::test]
async fn cascade_escalates_on_each_check_and_costs_and_logs_every_step() {
    let mut routes = String::new();
    for (name, cheap, strong) in [
        ("c-empty", "cheap-empty", "strong"),
        ("c-refuse", "cheap-refuse", "strong"),
        ("c-length", "cheap-length", "strong"),
        ("c-json", "cheap", "strong-json"),
        ("c-ok", "cheap", "strong"),
    ] {
        routes.push_str(&format!(
            "[[routes]]\nname = \"{name}\"\nstrategy = \"cascade\"\nmodels = [\"{strong}\", \"{cheap}\"]\n"
        ));
    }
    routes.push_str(
        "[[routes]]\nname = \"c-unsure\"\nstrategy = \"cascade\"\nmodels = [\"strong\", \"cheap-unsure\"]\n\
         cascade = { min_mean_logprob = -1.0 }\n",
    );
    let (gw, mock) = start_routed(&format!("{}\n{routes}", models("{mock}"))).await;

    let cases = [
        (
            "c-empty",
            json!({}),
            "the answer is empty",
            "strong-mock-ok",
        ),
        ("c-refuse", json!({}), "refusal", "strong-mock-ok"),
        ("c-length", json!({}), "length limit", "strong-mock-ok"),
        (
            "c-json",
            json!({"response_format": {"type": "json_object"}}),
            "not JSON",
            "strong-json-mock-json",
        ),
        (
            "c-unsure",
            json!({"logprobs": true}),
            "log-probability -2.500",
            "strong-mock-ok",
        ),
    ];
    for (route, extra, why, answered) in cases {
        let mut body = chat_body(route, "What is the capital of France?");
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body["llmrr"] = json!({"explain": true});
        let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
        assert_eq!(resp.status(), 200, "{route}");
        let header = resp.headers()["x-llmrr-route"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let id = resp.headers()["x-llmrr-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let answer: Value = resp.json().await.expect("json");
        assert_eq!(answer["model"], answered, "{route}: {answer}");
        assert!(
            header.contains("cascade: escalated from"),
            "{route}: {header}"
        );
        let steps = &answer["llmrr"]["route"]["cascade"];
        assert_eq!(steps[0]["accepted"], false, "{route}: {steps}");
        assert!(
            steps[0]["failed_check"]
                .as_str()
                .is_some_and(|w| w.contains(why)),
            "{route}: {steps}"
        );
        assert_eq!(steps[1]["accepted"], true, "{route}: {steps}");
        assert!(
            steps[0]["cost_usd"].as_str().is_some_and(|c| c != "0"),
            "{steps}"
        );

        // Both calls are in the log, each with its cost; the step is marked escalated.
        let logged = rows_once(&gw, 1).await;
        let step = logged
            .iter()
            .find(|r| r.id == format!("{id}.1"))
            .unwrap_or_else(|| panic!("{route}: the escalated step's row"));
        assert_eq!(step.error_type.as_deref(), Some("cascade_escalated"));
        assert_eq!(step.status, 200);
        assert!(step.cost_usd != "0");
        let last = logged
            .iter()
            .find(|r| r.id == id)
            .expect("the request's row");
        assert_eq!(last.error_type, None);
        assert!(last
            .model
            .as_deref()
            .is_some_and(|m| m.starts_with("strong")));
    }

    // A good first answer is accepted: one call.
    let before = mock.requests().len();
    let resp = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        chat_body("c-ok", "hello"),
    )
    .await;
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(answer["model"], "cheap-mock-ok");
    assert_eq!(mock.requests().len(), before + 1);
    // Streams are not held back for the checks: the cheapest model streams its answer.
    let mut body = chat_body("c-empty", "hello");
    body["stream"] = json!(true);
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    assert_eq!(resp.status(), 200);
    let data = sse_data(resp).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(
        mock.requests().last().expect("a call").body["model"],
        "cheap-empty-mock-empty"
    );
}

#[tokio::test]
async fn complexity_over_three_models_picks_the_step_each_prompt_reaches() {
    let (easy, medium, hard) = (score_of(EASY), score_of(MEDIUM), score_of(HARD));
    assert!(easy < medium && medium < hard, "{easy} {medium} {hard}");
    let (t1, t2) = ((easy + medium) / 2.0, (medium + hard) / 2.0);
    let extra = format!(
        "{}\n[[routes]]\nname = \"auto\"\nstrategy = \"complexity\"\n\
         models = [\"strong\", \"cheap\", \"mid\"]\nthresholds = [{t1}, {t2}]\n",
        models("{mock}")
    );
    let (gw, _mock) = start_routed(&extra).await;
    for (text, model, shown) in [
        (EASY, "cheap-mock-ok", t1),
        (MEDIUM, "mid-mock-ok", t1),
        (HARD, "strong-mock-ok", t2),
    ] {
        let (answered, header) = answered_by(&gw, MASTER, "auto", text).await;
        assert_eq!(answered, model, "{header}");
        assert!(
            header.contains(&format!("threshold={shown:.3}")),
            "{header}"
        );
    }
    // The plan escalates upwards first, then goes down.
    let d: Value = post(&gw, "/v1/route", Some(MASTER), chat_body("auto", MEDIUM))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(d["plan"], json!(["mid", "strong", "cheap"]), "{d}");
    // A config that gives the wrong number of thresholds is refused with the reason.
    let bad = format!(
        "{}\n[[routes]]\nname = \"auto\"\nstrategy = \"complexity\"\n\
         models = [\"strong\", \"cheap\", \"mid\"]\nthresholds = [0.5]\n",
        models("http://127.0.0.1:9")
    );
    let err = crate::config_of(&bad).expect_err("refused");
    assert!(err.to_string().contains("thresholds"), "{err}");
}

#[tokio::test]
async fn a_cascade_whose_later_models_fail_answers_with_what_it_got() {
    let extra = format!(
        "{}\n[routing]\nretry_max_attempts = 1\n\
         [[routes]]\nname = \"keep\"\nstrategy = \"cascade\"\nmodels = [\"strong-down\", \"cheap-empty\"]\n",
        models("{mock}")
    );
    let (gw, mock) = start_routed(&extra).await;
    let mut body = chat_body("keep", "hello");
    body["llmrr"] = json!({"explain": true});
    let resp = post(&gw, "/v1/chat/completions", Some(MASTER), body).await;
    assert_eq!(resp.status(), 200);
    let header = resp.headers()["x-llmrr-route"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(answer["model"], "cheap-empty-mock-empty");
    assert!(header.contains("its answer stands"), "{header}");
    let steps = &answer["llmrr"]["route"]["cascade"];
    assert_eq!(steps.as_array().map(Vec::len), Some(1), "{steps}");
    assert_eq!(steps[0]["accepted"], true);
    assert!(steps[0]["failed_check"]
        .as_str()
        .is_some_and(|c| c.contains("empty")));
    let models: Vec<Value> = mock
        .requests()
        .iter()
        .map(|r| r.body["model"].clone())
        .collect();
    assert_eq!(
        models,
        vec![
            json!("cheap-empty-mock-empty"),
            json!("strong-down-mock-500")
        ]
    );
    // One row: the request, answered by the cheap model.
    let logged = rows_once(&gw, 1).await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].status, 200);
    assert_eq!(logged[0].model.as_deref(), Some("cheap-empty"));
}

#[tokio::test]
async fn a_cascade_spends_every_step_on_its_budgets() {
    let extra = format!(
        "{}\n[[routes]]\nname = \"c\"\nstrategy = \"cascade\"\nmodels = [\"strong\", \"cheap-empty\"]\n",
        models("{mock}")
    );
    let (gw, _mock) = start_routed(&extra).await;
    let resp = post(
        &gw,
        "/admin/budgets",
        Some(MASTER),
        json!({"scope": "team:eng", "period": "month", "limit_usd": "5"}),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let key = create_key(
        &gw,
        serde_json::from_value(json!({"name": "k", "team": "eng"})).expect("a new key"),
    )
    .await
    .key;
    let mut body = chat_body("c", "hello");
    body["llmrr"] = json!({"explain": true});
    let answer: Value = post(&gw, "/v1/chat/completions", Some(&key), body)
        .await
        .json()
        .await
        .expect("json");
    let steps = answer["llmrr"]["route"]["cascade"]
        .as_array()
        .cloned()
        .expect("steps");
    assert_eq!(steps.len(), 2, "{steps:?}");
    let total: rust_decimal::Decimal = steps
        .iter()
        .map(|s| {
            s["cost_usd"]
                .as_str()
                .expect("cost")
                .parse::<rust_decimal::Decimal>()
                .expect("decimal")
        })
        .sum();
    // Both calls are spent on the team's budget, and nothing stays reserved.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let budget = loop {
        let all = get_json(&gw, "/admin/budgets").await;
        let b = all["data"][0].clone();
        if b["reserved_usd"] == "0" || std::time::Instant::now() > until {
            break b;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(budget["reserved_usd"], "0", "{budget}");
    let spent: rust_decimal::Decimal = budget["spent_usd"]
        .as_str()
        .expect("spent")
        .parse()
        .expect("decimal");
    // The budget counts nano-USD rounded up per call.
    let nanos = rust_decimal::Decimal::new(1, 9);
    assert!(
        spent >= total && spent <= total + nanos * rust_decimal::Decimal::from(2),
        "{spent} vs {total}"
    );
}

#[tokio::test]
async fn a_client_that_leaves_mid_cascade_still_has_every_paid_step_logged() {
    let extra = format!(
        "{}\n[[routes]]\nname = \"c\"\nstrategy = \"cascade\"\nmodels = [\"strong-slow\", \"cheap-empty\"]\n",
        models("{mock}")
    );
    let (gw, mock) = start_routed(&extra).await;
    let gone = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(500))
        .build()
        .expect("client")
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(MASTER)
        .json(&chat_body("c", "hello"))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up");
    let logged = rows_once(&gw, 2).await;
    let step = logged
        .iter()
        .find(|r| r.error_type.as_deref() == Some("cascade_escalated"))
        .unwrap_or_else(|| panic!("the paid step's row: {logged:?}"));
    assert_eq!(step.model.as_deref(), Some("cheap-empty"));
    assert!(step.cost_usd != "0");
    let request = step.id.trim_end_matches(".1");
    let last = logged
        .iter()
        .find(|r| r.id == request)
        .expect("the request's row");
    assert_eq!(last.status, 499);
    assert_eq!(mock.requests().len(), 2);
}
