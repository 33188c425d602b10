//! The `llmrr` binary end to end: config check, in-process chat against the mock provider,
//! key management on a SQLite store.

#![expect(clippy::expect_used, reason = "test helpers fail the test loudly")]

use llmrr_testkit::MockProvider;
use std::path::Path;
use std::process::{Command, Output};

fn llmrr(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmrr"));
    cmd.current_dir(dir)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("llmrr runs")
}

async fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let (dir, args, env): (std::path::PathBuf, Vec<String>, Vec<(String, String)>) = (
        dir.to_owned(),
        args.iter().map(|s| s.to_string()).collect(),
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        llmrr(&dir, &args, &env)
    })
    .await
    .expect("joined")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write_config(dir: &Path, mock: &MockProvider) {
    let toml = format!(
        "[store]\nurl = \"sqlite://{}/cli.db\"\n\n[[models]]\nname = \"echo\"\nprovider = \"openai\"\n\
         base_url = \"{}\"\napi_key = \"env:UPSTREAM_KEY\"\nupstream_model = \"mock-ok\"\n\n\
         [[models]]\nname = \"claude\"\nprovider = \"anthropic\"\nbase_url = \"{}\"\n\
         api_key = \"env:UPSTREAM_KEY\"\nupstream_model = \"mock-ok\"\n",
        dir.display(),
        mock.base_url,
        mock.base_url
    );
    std::fs::write(dir.join("llmrr.toml"), toml).expect("write config");
}

#[tokio::test]
async fn config_check_masks_secrets_and_names_bad_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = MockProvider::start().await;
    write_config(dir.path(), &mock);
    let out = run(
        dir.path(),
        &["config", "check"],
        &[("UPSTREAM_KEY", "sk-very-secret-value")],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("\"echo\"") && stdout.contains("********"),
        "{stdout}"
    );
    assert!(!stdout.contains("very-secret"));

    let out = run(dir.path(), &["config", "check"], &[]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr)
            .contains("models[0].api_key: environment variable UPSTREAM_KEY is not set"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        dir.path(),
        &["config", "check", "--profile", "production"],
        &[("UPSTREAM_KEY", "k")],
    )
    .await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("LLMRR_MASTER_KEY"));
}

#[tokio::test]
async fn chat_in_process_streamed_and_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = MockProvider::start().await;
    write_config(dir.path(), &mock);
    let env = [("UPSTREAM_KEY", "k")];
    let out = run(dir.path(), &["chat", "hello from the cli"], &env).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "echo: hello from the cli");
    let out = run(
        dir.path(),
        &["chat", "-m", "claude", "--stream", "streamed words"],
        &env,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "echo: streamed words");
    assert!(
        text(&out.stderr).contains("3 completion tokens"),
        "{}",
        text(&out.stderr)
    );
    let out = run(dir.path(), &["chat", "-m", "nope", "hi"], &env).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("does not exist"));
    let out = run(dir.path(), &["models"], &env).await;
    assert!(text(&out.stdout).contains("claude"));
}

#[tokio::test]
async fn keys_create_list_revoke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = MockProvider::start().await;
    write_config(dir.path(), &mock);
    let env = [("UPSTREAM_KEY", "k")];
    let out = run(
        dir.path(),
        &[
            "keys", "create", "--name", "ci", "--team", "infra", "--model", "echo",
        ],
        &env,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let secret = text(&out.stdout).trim().to_owned();
    assert!(secret.starts_with("sk-llmrr-"));
    let id = text(&out.stderr)
        .split_whitespace()
        .nth(2)
        .expect("the id")
        .to_owned();
    let out = run(dir.path(), &["keys", "list"], &env).await;
    let listing = text(&out.stdout);
    assert!(listing.contains(&id) && listing.contains("active") && !listing.contains(&secret));
    assert!(!listing.contains("(admin)"));
    // An admin key (the dashboard and the admin API), marked as such.
    let out = run(
        dir.path(),
        &["keys", "create", "--name", "ops", "--admin"],
        &env,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&run(dir.path(), &["keys", "list"], &env).await.stdout);
    let ops = listing
        .lines()
        .find(|l| l.contains(" ops "))
        .expect("the admin key");
    assert!(ops.ends_with("active (admin)"), "{ops}");
    let out = run(dir.path(), &["keys", "revoke", &id], &env).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&run(dir.path(), &["keys", "list"], &env).await.stdout).contains("revoked"));
    assert!(!run(dir.path(), &["keys", "revoke", &id], &env)
        .await
        .status
        .success());
}

#[cfg(feature = "local")]
#[tokio::test]
async fn models_synth_inspect_and_chat_with_a_local_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        dir.path(),
        &["models", "synth", "--out", "m/tiny.gguf"],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(
        dir.path(),
        &["models", "inspect", "m/tiny.gguf", "--ctx", "1024"],
        &[],
    )
    .await;
    let report = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for want in [
        "architecture    llama",
        "quantization    F32",
        "context length  4096",
        "vocabulary      512 tokens (gpt2)",
        "<|im_start|>",
        "memory at ctx 1024",
    ] {
        assert!(report.contains(want), "{want:?} in\n{report}");
    }
    let out = run(dir.path(), &["models", "inspect", "llmrr.toml"], &[]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot read"),
        "{}",
        text(&out.stderr)
    );

    // A models directory: every GGUF becomes a model named after its file.
    let toml = format!(
        "[store]\nurl = \"sqlite://{}/cli.db\"\n[local]\nmodels_dir = \"m\"\n\
         input_cost_per_mtok = 0\noutput_cost_per_mtok = 0\nthreads = 1\n",
        dir.path().display()
    );
    std::fs::write(dir.path().join("llmrr.toml"), toml).expect("write");
    let out = run(
        dir.path(),
        &["chat", "-m", "tiny", "--max-tokens", "4", "hello"],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[cfg(feature = "local")]
#[tokio::test]
async fn models_pull_resumes_a_cut_download_and_verifies_the_checksum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = llmrr_testkit::hub::MockHub::start().await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    hub.publish(
        "org/repo/sub/model.gguf",
        data.clone(),
        Some(100_000),
        false,
    );
    let env = [("LLMRR_HUB_URL", hub.base_url.as_str())];
    let args = ["models", "pull", "org/repo/sub/model.gguf", "--dir", "dl"];
    let first = run(dir.path(), &args, &env).await;
    assert!(!first.status.success(), "the first download is cut");
    assert!(
        text(&first.stderr).contains("resume"),
        "{}",
        text(&first.stderr)
    );
    let part = std::fs::metadata(dir.path().join("dl/model.gguf.part")).expect("a part file");
    assert!(part.len() > 0 && part.len() < data.len() as u64);
    let second = run(dir.path(), &args, &env).await;
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(
        std::fs::read(dir.path().join("dl/model.gguf")).expect("file"),
        data
    );
    let ranges = hub.ranges.lock().expect("lock").clone();
    assert_eq!(ranges[0], None);
    assert_eq!(ranges[1], Some(format!("bytes={}-", part.len())));

    // A checksum that does not match is refused and nothing is kept.
    hub.publish("org/repo/bad.gguf", data, None, true);
    let bad = run(
        dir.path(),
        &["models", "pull", "org/repo/bad.gguf", "--dir", "dl"],
        &env,
    )
    .await;
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("checksum mismatch"),
        "{}",
        text(&bad.stderr)
    );
    assert!(!dir.path().join("dl/bad.gguf").exists());
    assert!(!dir.path().join("dl/bad.gguf.part").exists());
    // Not on the hub: the hub's status.
    let missing = run(dir.path(), &["models", "pull", "org/repo/none.gguf"], &env).await;
    assert!(
        text(&missing.stderr).contains("404"),
        "{}",
        text(&missing.stderr)
    );
}

#[tokio::test]
async fn issue16_the_cli_is_friendlier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = MockProvider::start().await;
    write_config(dir.path(), &mock);
    let config = std::fs::read_to_string(dir.path().join("llmrr.toml")).expect("config");
    std::fs::write(
        dir.path().join("llmrr.toml"),
        format!("{config}\n[[routes]]\nname = \"auto\"\nstrategy = \"quality-first\"\nmodels = [\"echo\", \"claude\"]\n"),
    )
    .expect("write config");

    // `keys` needs only the store: no upstream key in the environment.
    let out = run(dir.path(), &["keys", "list"], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // `models` in-process lists routes too; `route` prints a summary (`--json` the document).
    let env = [("UPSTREAM_KEY", "k")];
    let out = run(dir.path(), &["models"], &env).await;
    assert!(text(&out.stdout).contains("auto"), "{}", text(&out.stdout));
    let out = run(dir.path(), &["route", "hello"], &env).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = text(&out.stdout);
    assert!(
        summary.starts_with("auto -> ") && summary.contains("reason:"),
        "{summary}"
    );
    assert!(!summary.contains('{'), "{summary}");
    // The prompt's difficulty, for every strategy.
    assert!(
        summary.contains("prompt: difficulty 0.") && summary.contains("category chat"),
        "{summary}"
    );
    let out = run(dir.path(), &["route", "hello", "--json"], &env).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["route"], "auto");
    assert!(json["complexity"]["score"].is_number(), "{json}");

    // `config check` prints durations as seconds, not Rust structs.
    let out = run(dir.path(), &["config", "check"], &env).await;
    let checked = text(&out.stdout);
    assert!(!checked.contains("nanos"), "{checked}");
    assert!(checked.contains("\"max_total\": 600.0"), "{checked}");

    // `--url` with or without `/v1`; errors show the message, not the raw JSON.
    let gw = llmrr_testkit::TestGateway::start(
        &config.replace("[store]\n", "[store]\n# test\n"),
        &[
            ("UPSTREAM_KEY", "k"),
            ("LLMRR_MASTER_KEY", "sk-master-0123456789abcdef"),
        ],
        llmrr_testkit::harness::StoreChoice::Sqlite,
    )
    .await;
    let key = [("LLMRR_API_KEY", "sk-master-0123456789abcdef")];
    for url in [
        gw.url.clone(),
        format!("{}/v1", gw.url),
        format!("{}/v1/", gw.url),
    ] {
        let out = run(
            dir.path(),
            &["chat", "--url", &url, "-m", "echo", "hi"],
            &key,
        )
        .await;
        assert!(out.status.success(), "{url}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "echo: hi");
    }
    let out = run(
        dir.path(),
        &["chat", "--url", &gw.url, "-m", "nope", "hi"],
        &key,
    )
    .await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("404 Not Found: the model `nope` does not exist")
            && !stderr.contains("{\""),
        "{stderr}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn issue8_prices_teams_users_budgets_and_spend_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = MockProvider::start().await;
    write_config(dir.path(), &mock);
    let env = [("UPSTREAM_KEY", "sk-upstream")];
    let prices = run(dir.path(), &["prices"], &env).await;
    assert!(prices.status.success(), "{}", text(&prices.stderr));
    let out = text(&prices.stdout);
    assert!(
        out.contains("gpt-4o-mini") && out.contains("claude-sonnet-4-5"),
        "{out}"
    );
    for args in [
        &["teams", "set", "eng"][..],
        &["users", "set", "alice", "--team", "eng"],
        &[
            "budgets",
            "set",
            "--scope",
            "team:eng",
            "--period",
            "month",
            "--limit-usd",
            "50",
            "--action",
            "downgrade",
        ],
    ] {
        let o = run(dir.path(), args, &env).await;
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    }
    let list = run(dir.path(), &["budgets", "list", "--json"], &env).await;
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(v[0]["scope"], "team:eng");
    assert_eq!(v[0]["limit_usd"], "50");
    assert_eq!(v[0]["spent_usd"], "0");
    assert_eq!(v[0]["action"], "downgrade");
    // A bad scope is a clear error, not a panic.
    let bad = run(
        dir.path(),
        &["budgets", "set", "--scope", "org:x", "--limit-usd", "1"],
        &env,
    )
    .await;
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("not a budget scope"),
        "{}",
        text(&bad.stderr)
    );
    let spend = run(
        dir.path(),
        &["spend", "--by", "model", "--format", "csv"],
        &env,
    )
    .await;
    assert!(spend.status.success(), "{}", text(&spend.stderr));
    assert!(text(&spend.stdout).starts_with("group,requests,"));
    let rm = run(dir.path(), &["budgets", "rm", "team:eng"], &env).await;
    assert!(rm.status.success(), "{}", text(&rm.stderr));
}

#[tokio::test]
async fn issue10_cache_stats_warm_and_purge_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = MockProvider::start().await;
    let master = "sk-master-cli-0123456789";
    let toml = format!(
        "[cache]\nmode = \"exact\"\n\n[[models]]\nname = \"echo\"\nprovider = \"openai\"\n\
         base_url = \"{}\"\napi_key = \"env:UPSTREAM_KEY\"\nupstream_model = \"mock-ok\"\n\
         input_cost_per_mtok = 0.15\noutput_cost_per_mtok = 0.60\n",
        mock.base_url
    );
    let gw = llmrr_testkit::TestGateway::start(
        &toml,
        &[
            ("UPSTREAM_KEY", "sk-upstream"),
            ("LLMRR_MASTER_KEY", master),
        ],
        llmrr_testkit::harness::StoreChoice::Sqlite,
    )
    .await;
    let body = serde_json::json!({"model": "echo", "temperature": 0,
        "messages": [{"role": "user", "content": "cache me from the cli"}]});
    for _ in 0..2 {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(master)
            .json(&body)
            .send()
            .await
            .expect("answers");
        assert_eq!(r.status(), 200);
    }
    gw.flush_log().await;
    let env = [("LLMRR_MASTER_KEY", master)];
    let cli = |args: &'static [&'static str]| {
        let mut all = vec!["cache"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--url", &gw.url]);
        let all: Vec<String> = all.into_iter().map(str::to_owned).collect();
        let dir = dir.path().to_owned();
        async move {
            let args: Vec<&str> = all.iter().map(String::as_str).collect();
            run(&dir, &args, &env).await
        }
    };
    let stats = cli(&["stats"]).await;
    assert!(stats.status.success(), "{}", text(&stats.stderr));
    let out = text(&stats.stdout);
    assert!(out.contains("hits 1  misses 1"), "{out}");
    let warm = cli(&["warm", "--max-cost", "1", "--dry-run"]).await;
    assert!(warm.status.success(), "{}", text(&warm.stderr));
    let out = text(&warm.stdout);
    assert!(
        out.starts_with("would warm 0 of 1 (already cached 1"),
        "{out}"
    );
    let purge = cli(&["purge", "--route", "echo"]).await;
    assert!(purge.status.success(), "{}", text(&purge.stderr));
    let warm = cli(&["warm", "--max-cost", "1", "--json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&warm.stdout).expect("json");
    assert_eq!(report["warmed"], 1, "{report}");
    assert_eq!(
        mock.requests().len(),
        2,
        "the purged answer asked again once"
    );
    // A bad cap is the server's 400, said on stderr with a failing status.
    let bad = cli(&["warm", "--max-cost", "lots"]).await;
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("max_cost_usd"),
        "{}",
        text(&bad.stderr)
    );
    gw.stop().await;
}

#[tokio::test]
async fn router_train_is_reproducible_and_eval_and_score_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../training/routing/gsm8k.train.jsonl"
    ))
    .expect("the routing data");
    let rows: Vec<&str> = data.lines().take(200).collect();
    std::fs::write(dir.path().join("rows.jsonl"), rows.join("\n")).expect("write rows");

    for out in ["a.bin", "b.bin"] {
        let o = run(
            dir.path(),
            &["router", "train", "rows.jsonl", "--out", out],
            &[],
        )
        .await;
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(text(&o.stderr).contains("200 rows"), "{}", text(&o.stderr));
    }
    let a = std::fs::read(dir.path().join("a.bin")).expect("a");
    let b = std::fs::read(dir.path().join("b.bin")).expect("b");
    assert_eq!(a, b, "same rows, same weights");

    let o = run(dir.path(), &["router", "eval", "rows.jsonl", "--json"], &[]).await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(report[0]["rows"], 200);
    for router in ["scorer", "prompt_length", "random"] {
        let apgr = report[0][router]["apgr"].as_f64().expect("apgr");
        assert!((-1.0..=2.0).contains(&apgr), "{router}: {apgr}");
    }
    assert!((report[0]["random"]["apgr"].as_f64().expect("apgr") - 0.5).abs() < 1e-9);

    let o = run(
        dir.path(),
        &[
            "router",
            "score",
            "How many eggs are left?",
            "--weights",
            "a.bin",
        ],
        &[],
    )
    .await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).starts_with("score 0."),
        "{}",
        text(&o.stdout)
    );

    // A bad row is named by its line; a file that is not weights is refused.
    std::fs::write(
        dir.path().join("bad.jsonl"),
        "{\"prompt\": \"x\", \"weak\": 2, \"strong\": 1}\n",
    )
    .expect("write");
    let o = run(dir.path(), &["router", "train", "bad.jsonl"], &[]).await;
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("bad.jsonl:1"),
        "{}",
        text(&o.stderr)
    );
    let o = run(
        dir.path(),
        &["router", "score", "x", "--weights", "rows.jsonl"],
        &[],
    )
    .await;
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("not a llmrr difficulty weights file"),
        "{}",
        text(&o.stderr)
    );
}

#[cfg(feature = "local")]
#[tokio::test]
async fn models_pull_of_a_repository_picks_the_best_quantization_that_fits() {
    use llmrr_testkit::gguf::{synthesize, SynthSpec, TensorType};
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = llmrr_testkit::hub::MockHub::start().await;
    // One architecture in three quantizations: ~6 MiB (F32), ~3 MiB (F16), ~1.6 MiB (Q8_0).
    let mut sizes = Vec::new();
    for (ty, label) in [
        (TensorType::F32, "F32"),
        (TensorType::F16, "F16"),
        (TensorType::Q8_0, "Q8_0"),
    ] {
        let spec = SynthSpec {
            n_embd: 256,
            n_ff: 512,
            ty,
            ..SynthSpec::tiny()
        };
        let path = dir.path().join(format!("m-{label}.gguf"));
        synthesize(&spec, &path).expect("a model");
        let data = std::fs::read(&path).expect("read");
        sizes.push(data.len());
        hub.publish(&format!("org/repo/m-{label}.gguf"), data, None, false);
    }
    hub.publish("org/repo/mmproj-F16.gguf", vec![0; 10], None, false);
    hub.publish("org/repo/README.md", vec![b'#'; 10], None, false);
    assert!(sizes[0] > sizes[1] && sizes[1] > sizes[2], "{sizes:?}");
    // A budget the compute buffer, KV cache and prompt cache (~29 MiB at 1,024 tokens for
    // each of 4 sequences) plus the F16 file fit and the F32 file does not.
    let config = |budget_mb: u64| {
        format!(
            "[store]\nurl = \"sqlite://{}/cli.db\"\n[local]\nmemory_budget_mb = {budget_mb}\n",
            dir.path().display()
        )
    };
    let env = [("LLMRR_HUB_URL", hub.base_url.as_str())];
    std::fs::write(dir.path().join("llmrr.toml"), config(33)).expect("config");
    let args = [
        "models",
        "pull",
        "org/repo",
        "--context",
        "1024",
        "--dir",
        "dl",
    ];
    let out = run(dir.path(), &args, &env).await;
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("chose m-F16.gguf"), "{err}");
    assert!(err.contains("F32") && err.contains("too big"), "{err}");
    // Projectors and files that are not GGUF are not candidates.
    assert!(err.contains("3 GGUF file(s)"), "{err}");
    assert!(!err.contains("mmproj"), "projectors are not models: {err}");
    assert!(!err.contains("README"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("dl/m-F16.gguf"))
            .expect("downloaded")
            .len(),
        sizes[1]
    );

    // --quant overrides; --dry-run downloads nothing; a budget nothing fits says so.
    let out = run(
        dir.path(),
        &[
            "models",
            "pull",
            "org/repo",
            "--quant",
            "q8_0",
            "--dry-run",
            "--dir",
            "dl",
        ],
        &env,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("chose m-Q8_0.gguf"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("dl/m-Q8_0.gguf").exists());
    std::fs::write(dir.path().join("llmrr.toml"), config(1)).expect("config");
    let out = run(
        dir.path(),
        &["models", "pull", "org/repo", "--dry-run"],
        &env,
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("fits the memory budget"),
        "{}",
        text(&out.stderr)
    );
}

/// `llmrr serve` with `[telemetry] otlp_endpoint`: spans reach an OTLP/HTTP receiver as
/// protobuf, under the client's trace, with GenAI attributes and the service name; the JSON
/// log's access line names the same trace.
#[tokio::test]
async fn serve_exports_traces_over_otlp_http_and_logs_json_access_lines() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message;
    use std::io::BufRead;
    use std::sync::{Arc, Mutex};

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    // The receiver: every export's spans, decoded.
    let received: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
    let app = {
        let received = received.clone();
        axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let received = received.clone();
                async move {
                    let export = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                    received.lock().expect("lock").push(export);
                    axum::http::StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let collector = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let mock = MockProvider::start().await;
    write_config(dir.path(), &mock);
    let mut toml = std::fs::read_to_string(dir.path().join("llmrr.toml")).expect("config");
    toml.push_str(&format!(
        "\n[telemetry]\notlp_endpoint = \"http://{collector}\"\nservice_name = \"llmrr-e2e\"\n"
    ));
    std::fs::write(dir.path().join("llmrr.toml"), toml).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_llmrr"))
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("UPSTREAM_KEY", "k")
        .env("LLMRR_MASTER_KEY", "sk-master-e2e-0123456789")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("llmrr serve starts");
    // The log, line by line, from a thread; the listen address from "llmrr is serving".
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            // A line that is not JSON is kept as text, and fails the test below.
            let v = serde_json::from_str(&line)
                .unwrap_or_else(|_| serde_json::json!({ "not_json": line }));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let listen = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the server starts");
        log.push(line.clone());
        if line["message"] == "llmrr is serving" {
            assert_eq!(line["traces"], true);
            break line["listen"].as_str().expect("listen").to_owned();
        }
    };
    let resp = reqwest::Client::new()
        .post(format!("http://{listen}/v1/chat/completions"))
        .bearer_auth("sk-master-e2e-0123456789")
        .header("traceparent", format!("00-{TRACE}-b7ad6b7169203331-01"))
        .json(
            &serde_json::json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 200);
    resp.bytes().await.expect("body");

    // The spans arrive within the batch delay.
    let mut spans = Vec::new();
    for _ in 0..100 {
        spans = received
            .lock()
            .expect("lock")
            .iter()
            .flat_map(|e| e.resource_spans.iter())
            .flat_map(|r| {
                let service = r
                    .resource
                    .iter()
                    .flat_map(|res| res.attributes.iter())
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value.clone())
                    .and_then(|v| v.value);
                r.scope_spans
                    .iter()
                    .flat_map(|s| s.spans.iter())
                    .map(move |s| (service.clone(), s.clone()))
            })
            .collect::<Vec<_>>();
        if spans.iter().any(|(_, s)| s.name == "chat echo")
            && spans.iter().any(|(_, s)| s.name.starts_with("POST "))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();
    let find = |name: &str| {
        spans
            .iter()
            .find(|(_, s)| s.name == name)
            .unwrap_or_else(|| panic!("no span `{name}` among {names:?}"))
    };
    let attr = |s: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        s.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
            .and_then(|v| v.value)
    };
    let (service, call) = find("chat echo");
    assert_eq!(service, &Some(Any::StringValue("llmrr-e2e".into())));
    assert_eq!(hex::encode(&call.trace_id), TRACE);
    assert_eq!(
        attr(call, "gen_ai.request.model"),
        Some(Any::StringValue("echo".into()))
    );
    assert!(matches!(
        attr(call, "gen_ai.usage.output_tokens"),
        Some(Any::IntValue(n)) if n > 0
    ));
    let (_, attempt) = find("chat mock-ok");
    assert_eq!(attempt.parent_span_id, call.span_id);
    let (_, http) = find("POST /v1/chat/completions");
    assert_eq!(hex::encode(&http.parent_span_id), "b7ad6b7169203331");
    assert_eq!(call.parent_span_id, http.span_id);
    // The upstream was told the trace.
    let sent = mock.last_request();
    assert!(
        sent.headers
            .get("traceparent")
            .is_some_and(|t| t.contains(TRACE)),
        "{:?}",
        sent.headers
    );

    // SIGTERM: the server stops cleanly; the access line was logged with the trace.
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("joined")
        .expect("exit status");
    assert!(status.success(), "{status:?}");
    reader.join().expect("the log reader ends with the process");
    log.extend(rx.try_iter());
    assert!(log.iter().all(|l| l.get("not_json").is_none()), "{log:?}");
    let access: Vec<&serde_json::Value> = log
        .iter()
        .filter(|l| l["target"] == "llmrr::access")
        .collect();
    assert_eq!(access.len(), 1, "{log:?}");
    assert_eq!(access[0]["trace_id"], TRACE);
    assert_eq!(access[0]["model"], "echo");
    assert_eq!(access[0]["status"], 200);
    assert!(log.iter().all(|l| !l.to_string().contains("sk-master-e2e")));
}

/// `deploy/`: the kustomize base and production overlay render (with kubectl, where it is
/// installed), every metric the Grafana dashboard and the alert rules query is one llmrr
/// exports, and the Kubernetes config is a valid llmrr config for the production profile.
#[test]
fn deploy_manifests_render_and_name_real_metrics_and_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let deploy = root.join("deploy");

    // Every metric name the code declares (the source text holds each as a string literal).
    let mut declared = String::new();
    for dir in [
        "crates/llmrr-core/src",
        "crates/llmrr-server/src",
        "crates/llmrr-engine/src",
    ] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    declared.push_str(&std::fs::read_to_string(&p).expect("source"));
                }
            }
        }
    }
    let metric_names = |text: &str| -> std::collections::BTreeSet<String> {
        let bytes = text.as_bytes();
        let mut names = std::collections::BTreeSet::new();
        let mut i = 0;
        while let Some(at) = text[i..].find("llmrr_") {
            let start = i + at;
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
                end += 1;
            }
            let name = &text[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| !b.ends_with("_total")))
                .unwrap_or(name);
            names.insert(base.to_owned());
            i = end;
        }
        names
    };
    for file in ["grafana/llmrr-dashboard.json", "prometheus/alerts.yaml"] {
        let text = std::fs::read_to_string(deploy.join(file)).expect("deploy file");
        let names = metric_names(&text);
        assert!(names.len() > 10, "{file}: {names:?}");
        for name in names {
            // A histogram's base name, or the name itself.
            assert!(
                declared.contains(&format!("\"{name}\"")),
                "{file} queries `{name}`, which llmrr does not export"
            );
        }
    }
    serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(deploy.join("grafana/llmrr-dashboard.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");

    // The config the manifests mount loads for the production profile.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = llmrr(
        dir.path(),
        &[
            "config",
            "check",
            "--config",
            deploy.join("k8s/base/llmrr.toml").to_str().expect("path"),
            "--profile",
            "production",
        ],
        &[
            ("LLMRR_MASTER_KEY", "0123456789abcdef0123"),
            ("DATABASE_URL", "postgres://llmrr@db/llmrr"),
            ("REDIS_URL", "redis://redis:6379"),
            ("OPENAI_API_KEY", "k"),
            ("ANTHROPIC_API_KEY", "k"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let Ok(kubectl) = which_kubectl() else {
        eprintln!("kubectl is not installed: the kustomize renders are not checked here");
        return;
    };
    for target in ["k8s/base", "k8s/overlays/production"] {
        let out = Command::new(&kubectl)
            .args(["kustomize", deploy.join(target).to_str().expect("path")])
            .output()
            .expect("kubectl runs");
        assert!(out.status.success(), "{target}: {}", text(&out.stderr));
        let rendered = text(&out.stdout);
        for kind in [
            "kind: Deployment",
            "kind: Service",
            "kind: ConfigMap",
            "kind: PodDisruptionBudget",
            "kind: HorizontalPodAutoscaler",
            "path: /health/ready",
            "path: /health/live",
            "terminationGracePeriodSeconds",
        ] {
            assert!(rendered.contains(kind), "{target} renders no `{kind}`");
        }
    }
}

fn which_kubectl() -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
        .ok_or(())
}
