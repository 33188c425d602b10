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
    let out = run(dir.path(), &["keys", "revoke", &id], &env).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&run(dir.path(), &["keys", "list"], &env).await.stdout).contains("revoked"));
    assert!(!run(dir.path(), &["keys", "revoke", &id], &env)
        .await
        .status
        .success());
}
