use super::*;

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::Map(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn load_text(toml: &str, profile: Option<&str>, env: &Env) -> Result<Config> {
    load(
        ConfigSource::Text {
            name: "test.toml",
            toml,
        },
        profile,
        env,
    )
}

fn config_error(toml: &str, env: &Env) -> (String, String) {
    match load_text(toml, None, env) {
        Err(Error::Config { path, message }) => (path, message),
        other => panic!("expected a config error, got {other:?}"),
    }
}

const BASE: &str = r#"
[server]
listen = "127.0.0.1:9000"
[store]
url = "sqlite://data/test.db"
[[models]]
name = "gpt-4o-mini"
provider = "openai"
base_url = "http://127.0.0.1:1/v1/"
api_key = "env:OPENAI_API_KEY"
input_cost_per_mtok = 0.15
output_cost_per_mtok = "0.60"
context_window = 128000
quality = 0.82

[profiles.production.server]
listen = "0.0.0.0:8080"

[profiles.cheap]
models = []
"#;

#[test]
fn resolves_the_documented_shape() {
    let c = load_text(BASE, None, &env(&[("OPENAI_API_KEY", "sk-test")])).expect("loads");
    let m = &c.models[0];
    assert_eq!(&*m.name, "gpt-4o-mini");
    assert_eq!(m.upstream_model, "gpt-4o-mini");
    assert_eq!(m.base_url, "http://127.0.0.1:1/v1");
    assert_eq!(m.api_key.as_ref().map(|k| k.expose()), Some("sk-test"));
    assert_eq!(m.pricing.input_per_mtok.to_string(), "0.15");
    assert_eq!(m.pricing.output_per_mtok.to_string(), "0.60");
    assert_eq!(c.server.listen.port(), 9000);
    assert!(c.server.master_key.is_none());
}

#[test]
fn production_profile_overlays_and_requires_a_master_key() {
    let without = load_text(BASE, Some("production"), &env(&[("OPENAI_API_KEY", "k")]));
    match without {
        Err(Error::Config { path, message }) => {
            assert_eq!(path, "server.master_key");
            assert!(message.contains("LLMRR_MASTER_KEY"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let e = env(&[
        ("OPENAI_API_KEY", "k"),
        ("LLMRR_MASTER_KEY", "sk-master-0123456789"),
    ]);
    let c = load_text(BASE, Some("production"), &e).expect("loads");
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.profile.as_deref(), Some("production"));
    // Arrays are replaced by the overlay, tables merged.
    let c = load_text(BASE, Some("cheap"), &e).expect("loads");
    assert!(c.models.is_empty());
    assert_eq!(c.server.listen.port(), 9000);
}

#[test]
fn profile_from_the_environment() {
    let e = env(&[("OPENAI_API_KEY", "k"), ("LLMRR_PROFILE", "cheap")]);
    let c = load_text(BASE, None, &e).expect("loads");
    assert!(c.models.is_empty());
    let (path, msg) = match load_text(BASE, Some("nope"), &e) {
        Err(Error::Config { path, message }) => (path, message),
        other => panic!("{other:?}"),
    };
    assert_eq!(path, "profiles.nope");
    assert!(msg.contains("not defined"), "{msg}");
}

#[test]
fn each_validation_error_names_its_key_path() {
    let e = env(&[("OPENAI_API_KEY", "k")]);
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"[server]
listen = "nowhere""#,
            "server.listen",
            "`nowhere` is not an address",
        ),
        (
            r#"[server]
listen = "0.0.0.0:80""#,
            "server.listen",
            "not a loopback address",
        ),
        (
            r#"[server]
lisen = "x""#,
            "server.lisen",
            "unknown field `lisen`",
        ),
        (
            r#"[store]
url = "mysql://x""#,
            "store.url",
            "must start with sqlite://",
        ),
        (
            r#"[[models]]
name = "a"
provider = "bedrock""#,
            "models[0].provider",
            "`bedrock` is not a provider",
        ),
        (
            r#"[[models]]
name = "a"
provider = "openai"
api_key = "sk-literal""#,
            "models[0].api_key",
            "env:NAME",
        ),
        (
            r#"[[models]]
name = "a"
provider = "openai"
api_key = "env:MISSING_VAR""#,
            "models[0].api_key",
            "MISSING_VAR is not set",
        ),
        (
            r#"[[models]]
name = "a"
provider = "openai"
quality = 1.5"#,
            "models[0].quality",
            "between 0 and 1",
        ),
        (
            r#"[[models]]
name = "a"
provider = "openai"
input_cost_per_mtok = -1"#,
            "models[0].input_cost_per_mtok",
            "non-negative",
        ),
        (
            r#"[[models]]
name = "a"
provider = "openai"
[[models]]
name = "a"
provider = "openai""#,
            "models[1].name",
            "defined twice",
        ),
        (
            r#"[[models]]
name = "a"
provider = "openai"
context_window = "big""#,
            "models[0].context_window",
            "invalid type",
        ),
        (
            r#"[[models]]
name = "a"
provider = "openai"
timeout_secs = 0"#,
            "models[0].timeout_secs",
            "positive number of seconds",
        ),
        ("[server", "test.toml", "invalid TOML"),
    ];
    for (toml, want_path, want_msg) in cases {
        let (path, msg) = config_error(toml, &e);
        assert_eq!(&path, want_path, "for {toml}: {msg}");
        assert!(
            msg.contains(want_msg),
            "for {toml}: `{msg}` lacks `{want_msg}`"
        );
    }
}

#[test]
fn defaults_register_providers_whose_keys_are_set() {
    let c = load(ConfigSource::Defaults, None, &env(&[])).expect("loads");
    assert!(c.models.is_empty());
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.store.display_url, "sqlite://data/llmrr.db");
    let c = load(
        ConfigSource::Defaults,
        None,
        &env(&[
            ("ANTHROPIC_API_KEY", "a"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/v1"),
        ]),
    )
    .expect("loads");
    assert!(c
        .models
        .iter()
        .all(|m| m.provider == ProviderKind::Anthropic));
    assert!(c.models.iter().any(|m| &*m.name == "claude-haiku-4-5"));
    assert_eq!(c.models[0].base_url, "http://127.0.0.1:9/v1");
}

#[test]
fn secrets_are_masked_when_printed() {
    let c = load_text(BASE, None, &env(&[("OPENAI_API_KEY", "sk-topsecret")])).expect("loads");
    let json = serde_json::to_string(&c).expect("serializes");
    let debug = format!("{c:?}");
    assert!(!json.contains("topsecret") && !debug.contains("topsecret"));
    assert_eq!(
        redact_url("postgres://u:hunter2@localhost/db"),
        "postgres://u:****@localhost/db"
    );
}

#[test]
fn issue15_model_timeouts_default_to_the_request_timeout_and_stalls_always_end() {
    let toml = format!("{BASE}\n[server]\nrequest_timeout_secs = 45\n");
    let toml = toml.replacen("[server]\nlisten = \"127.0.0.1:9000\"\n", "", 1);
    let c = load_text(&toml, None, &env(&[("OPENAI_API_KEY", "k")])).expect("loads");
    let m = &c.models[0];
    assert_eq!(m.timeout, std::time::Duration::from_secs(45));
    // Streams have first-token and idle timeouts by default, never longer than the model's.
    assert_eq!(m.ttft_timeout, Some(std::time::Duration::from_secs(45)));
    assert_eq!(m.idle_timeout, Some(std::time::Duration::from_secs(45)));
    let c = load_text(BASE, None, &env(&[("OPENAI_API_KEY", "k")])).expect("loads");
    assert_eq!(
        c.models[0].ttft_timeout,
        Some(std::time::Duration::from_secs(120))
    );
    assert_eq!(
        c.models[0].idle_timeout,
        Some(std::time::Duration::from_secs(60))
    );
    assert_eq!(
        c.server.header_read_timeout,
        std::time::Duration::from_secs(20)
    );
    assert_eq!(c.server.max_body_bytes, 16 * 1024 * 1024);
}

#[test]
fn issue15_a_short_master_key_is_refused() {
    let (path, message) = config_error(
        BASE,
        &env(&[("OPENAI_API_KEY", "k"), ("LLMRR_MASTER_KEY", "x")]),
    );
    assert_eq!(path, "server.master_key");
    assert!(message.contains("shorter than 16"), "{message}");
}

#[test]
fn a_semantic_cache_names_a_configured_embedding_model() {
    let e = env(&[("OPENAI_API_KEY", "sk-x")]);
    let route = |model: &str| {
        format!(
            "{BASE}\n[[routes]]\nname = \"faq\"\nmodels = [\"gpt-4o-mini\"]\n\
             cache = {{ mode = \"semantic\", embedding_model = \"{model}\" }}\n"
        )
    };
    let (path, message) = config_error(&route("no-such-embedder"), &e);
    assert_eq!(path, "routes.faq.cache.embedding_model");
    assert!(
        message.contains("`no-such-embedder` is not a configured model"),
        "{message}"
    );
    assert!(load_text(&route("gpt-4o-mini"), None, &e).is_ok());
}
