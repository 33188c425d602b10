//! Reading the file, overlaying a profile, resolving env references, validating.

use super::defaults as d;
use super::raw::{RawConfig, RawModel};
use super::resolved::*;
use crate::error::{Error, Result};
use crate::secret::Secret;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// OpenAI's own API (scheme and host).
const OPENAI_URL: &str = "https://api.openai.com";

/// How the environment is read: the process's own, or a map in tests.
pub enum Env {
    Process,
    Map(HashMap<String, String>),
    /// For commands that only use the store (`llmrr keys`): a model's secret that is not set is
    /// left empty instead of failing the load; every other setting is read as usual.
    WithoutModelSecrets(Box<Env>),
}

impl Env {
    pub fn get(&self, name: &str) -> Option<String> {
        match self {
            Env::Process => std::env::var(name).ok(),
            Env::Map(m) => m.get(name).cloned(),
            Env::WithoutModelSecrets(inner) => inner.get(name),
        }
        .filter(|v| !v.is_empty())
    }
}

/// Where the config comes from.
pub enum ConfigSource<'a> {
    File(&'a Path),
    Text {
        name: &'a str,
        toml: &'a str,
    },
    /// No file: built-in defaults plus the providers whose API-key variables are set.
    Defaults,
}

/// Load and validate the config. `profile` wins over `LLMRR_PROFILE`.
pub fn load(source: ConfigSource<'_>, profile: Option<&str>, env: &Env) -> Result<Config> {
    let profile = profile
        .map(str::to_owned)
        .or_else(|| env.get(d::PROFILE_VAR));
    let (source_name, mut tree) = match source {
        ConfigSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::config(path.display().to_string(), format!("cannot read: {e}"))
            })?;
            (
                path.display().to_string(),
                parse_toml(&path.display().to_string(), &text)?,
            )
        }
        ConfigSource::Text { name, toml } => (name.to_owned(), parse_toml(name, toml)?),
        ConfigSource::Defaults => ("built-in defaults".to_owned(), toml::Table::new()),
    };
    let profiles = tree.remove("profiles");
    if let Some(name) = &profile {
        let overlay = match profiles.as_ref().and_then(|p| p.get(name)) {
            Some(toml::Value::Table(t)) => Some(t.clone()),
            Some(_) => return Err(Error::config(format!("profiles.{name}"), "must be a table")),
            None if d::KNOWN_PROFILES.contains(&name.as_str()) => None,
            None => {
                return Err(Error::config(
                    format!("profiles.{name}"),
                    format!("profile `{name}` is not defined in {source_name}"),
                ))
            }
        };
        if let Some(overlay) = overlay {
            merge(&mut tree, overlay);
        }
    }
    let raw: RawConfig =
        serde_path_to_error::deserialize(toml::Value::Table(tree)).map_err(|e| {
            let path = e.path().to_string();
            Error::config(
                if path == "." { "config".into() } else { path },
                e.inner().to_string(),
            )
        })?;
    let from_defaults = matches!(source, ConfigSource::Defaults);
    resolve(raw, profile, source_name, from_defaults, env)
}

fn parse_toml(name: &str, text: &str) -> Result<toml::Table> {
    text.parse::<toml::Table>()
        .map_err(|e| Error::config(name, format!("invalid TOML: {}", e.message())))
}

/// Deep-merge `overlay` into `base`: tables merge key by key, anything else (arrays included)
/// is replaced.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

fn resolve(
    raw: RawConfig,
    profile: Option<String>,
    source: String,
    from_defaults: bool,
    env: &Env,
) -> Result<Config> {
    let s = raw.server;
    let listen_text = s.listen.as_deref().unwrap_or(d::LISTEN);
    let listen = SocketAddr::from_str(listen_text).map_err(|_| {
        Error::config(
            "server.listen",
            format!("`{listen_text}` is not an address like 127.0.0.1:8080"),
        )
    })?;
    let master_key = match &s.master_key {
        Some(r) => Some(secret_ref("server.master_key", r, env)?),
        None => env.get(d::MASTER_KEY_VAR).map(Secret::new),
    };
    if let Some(key) = &master_key {
        if key.expose().chars().count() < d::MIN_MASTER_KEY_CHARS {
            return Err(Error::config(
                "server.master_key",
                format!(
                    "the master key is shorter than {} characters; use a long random secret \
                     (e.g. `openssl rand -hex 24`)",
                    d::MIN_MASTER_KEY_CHARS
                ),
            ));
        }
    }
    let require_master_key = s
        .require_master_key
        .unwrap_or(profile.as_deref() == Some("production"));
    if master_key.is_none() && require_master_key {
        return Err(Error::config(
            "server.master_key",
            format!(
                "a master key is required{} but {} is not set",
                profile
                    .as_deref()
                    .map(|p| format!(" by profile `{p}`"))
                    .unwrap_or_default(),
                d::MASTER_KEY_VAR
            ),
        ));
    }
    if master_key.is_none() && !listen.ip().is_loopback() {
        return Err(Error::config(
            "server.listen",
            format!(
                "`{listen}` is not a loopback address; without a master key llmrr only \
                 binds loopback (set {})",
                d::MASTER_KEY_VAR
            ),
        ));
    }
    let key_cache = seconds(
        "server.key_cache_secs",
        s.key_cache_secs.unwrap_or(d::KEY_CACHE_SECS),
    )?;
    if key_cache > Duration::from_secs(86_400) {
        return Err(Error::config(
            "server.key_cache_secs",
            "at most 86400 (a day): revoked keys must not live on in memory",
        ));
    }
    let server = ServerConfig {
        listen,
        master_key,
        require_master_key,
        max_body_bytes: positive(
            "server.max_body_bytes",
            s.max_body_bytes.unwrap_or(d::MAX_BODY_BYTES),
        )? as usize,
        request_timeout: seconds(
            "server.request_timeout_secs",
            s.request_timeout_secs.unwrap_or(d::REQUEST_TIMEOUT_SECS),
        )?,
        shutdown_grace: seconds(
            "server.shutdown_grace_secs",
            s.shutdown_grace_secs.unwrap_or(d::SHUTDOWN_GRACE_SECS),
        )?,
        header_read_timeout: seconds(
            "server.header_read_timeout_secs",
            s.header_read_timeout_secs
                .unwrap_or(d::HEADER_READ_TIMEOUT_SECS),
        )?,
        body_read_timeout: seconds(
            "server.body_read_timeout_secs",
            s.body_read_timeout_secs
                .unwrap_or(d::BODY_READ_TIMEOUT_SECS),
        )?,
        max_connections: at_most(
            "server.max_connections",
            positive(
                "server.max_connections",
                s.max_connections.unwrap_or(d::MAX_CONNECTIONS),
            )?,
            1_000_000,
        )? as usize,
        max_messages: positive(
            "server.max_messages",
            s.max_messages.unwrap_or(d::MAX_MESSAGES),
        )? as usize,
        metrics_public: s.metrics_public.unwrap_or(false),
        cors_origins: cors_origins(&s.cors.allowed_origins)?,
        cors_max_age_secs: s.cors.max_age_secs.unwrap_or(d::CORS_MAX_AGE_SECS),
        key_cache,
    };

    let st = raw.store;
    let url = match st.url.as_deref() {
        Some(r) if r.starts_with("env:") => secret_ref("store.url", r, env)?,
        Some(r) => Secret::new(r),
        None => Secret::new(d::STORE_URL),
    };
    let u = url.expose();
    if !(u.starts_with("sqlite:") || u.starts_with("postgres://") || u.starts_with("postgresql://"))
    {
        return Err(Error::config(
            "store.url",
            format!(
                "`{}` must start with sqlite:// or postgres://",
                redact_url(u)
            ),
        ));
    }
    let store = StoreConfig {
        display_url: redact_url(u),
        url,
        log_batch_size: positive(
            "store.log_batch_size",
            st.log_batch_size.unwrap_or(d::LOG_BATCH_SIZE) as u64,
        )? as usize,
        log_flush_interval: Duration::from_millis(positive(
            "store.log_flush_interval_ms",
            st.log_flush_interval_ms.unwrap_or(d::LOG_FLUSH_INTERVAL_MS),
        )?),
        log_queue_capacity: positive(
            "store.log_queue_capacity",
            st.log_queue_capacity.unwrap_or(d::LOG_QUEUE_CAPACITY) as u64,
        )? as usize,
        responses_retention_days: st
            .responses_retention_days
            .unwrap_or(d::RESPONSES_RETENTION_DAYS)
            .min(d::MAX_RETENTION_DAYS),
    };

    let shared = super::money::shared(raw.shared, env)?;
    let cache = super::cache::cache(raw.cache)?;
    let telemetry = super::telemetry::telemetry(raw.telemetry, env)?;
    let local = super::load_local::local_config(&raw.local)?;
    let mut raw_models = if from_defaults {
        catalog_models(env)
    } else {
        raw.models
    };
    let scanned = super::load_local::scan_models_dir(&raw.local, &raw_models)?;
    raw_models.extend(scanned);
    for m in raw_models.iter_mut().filter(|m| m.provider == "local") {
        super::load_local::apply_defaults(m, &raw.local);
    }
    let mut models: Vec<ModelSpec> = Vec::with_capacity(raw_models.len());
    for (i, m) in raw_models.into_iter().enumerate() {
        let spec = resolve_model(i, m, env, server.request_timeout, &cache.default)?;
        if models.iter().any(|o| o.name == spec.name) {
            return Err(Error::config(
                format!("models[{i}].name"),
                format!("`{}` is defined twice", spec.name),
            ));
        }
        models.push(spec);
    }
    let (routing, routes) = super::load_routing::resolve(
        raw.routing,
        raw.routes,
        raw.tiers,
        &models,
        server.request_timeout,
        &cache.default,
    )?;
    let longest_call = models
        .iter()
        .map(|m| m.timeout)
        .chain([server.request_timeout, routing.retry.max_total])
        .max()
        .unwrap_or(server.request_timeout);
    let money = super::money::money(raw.money, longest_call, env)?;
    let limits = super::limits::limits(raw.limits)?;
    let rules = routes
        .iter()
        .map(|r| (format!("routes.{}.cache", r.name), &r.cache))
        .chain(
            models
                .iter()
                .map(|m| (format!("models.{}.cache", m.name), &m.cache)),
        );
    super::cache::check_embedding_models(rules, &models)?;
    Ok(Config {
        profile,
        source,
        server,
        store,
        models,
        routes,
        routing,
        local,
        money,
        shared,
        limits,
        cache,
        telemetry,
    })
}

fn resolve_model(
    i: usize,
    m: RawModel,
    env: &Env,
    request_timeout: Duration,
    cache: &super::cache::CacheRule,
) -> Result<ModelSpec> {
    let at = |key: &str| format!("models[{i}].{key}");
    if m.name.trim().is_empty() || m.name.chars().any(char::is_whitespace) {
        return Err(Error::config(
            at("name"),
            format!("`{}` must be a non-empty name without spaces", m.name),
        ));
    }
    let provider = match m.provider.as_str() {
        "openai" => ProviderKind::OpenAi,
        "anthropic" => ProviderKind::Anthropic,
        "local" => ProviderKind::Local,
        other => {
            return Err(Error::config(
                at("provider"),
                format!("`{other}` is not a provider (expected openai, anthropic or local)"),
            ))
        }
    };
    let local = match provider {
        ProviderKind::Local => Some(super::load_local::local_spec(i, &m)?),
        _ => {
            if let Some(key) = m.local_only_key() {
                return Err(Error::config(
                    at(key),
                    "is a setting of local models only (provider = \"local\")",
                ));
            }
            None
        }
    };
    let base_url = match (&m.base_url, &local) {
        (_, Some(l)) => format!("file://{}", l.path.display()),
        (Some(u), _) => u.trim_end_matches('/').to_owned(),
        (None, _) if provider == ProviderKind::Anthropic => {
            "https://api.anthropic.com/v1".to_owned()
        }
        (None, _) => format!("{OPENAI_URL}/v1"),
    };
    if provider == ProviderKind::Anthropic && m.responses_api.is_some() {
        return Err(Error::config(
            at("responses_api"),
            "is a setting of OpenAI-compatible models only (provider = \"openai\")",
        ));
    }
    // OpenAI itself serves the Responses API; another server says so in its config.
    let responses_api = m
        .responses_api
        .unwrap_or(provider == ProviderKind::OpenAi && base_url.starts_with(OPENAI_URL));
    if local.is_none() && !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(Error::config(
            at("base_url"),
            format!("`{base_url}` must be an http:// or https:// URL"),
        ));
    }
    let api_key = m
        .api_key
        .as_deref()
        .map(|r| secret_ref(&at("api_key"), r, env))
        .transpose()?;
    let quality = m.quality.unwrap_or(d::QUALITY);
    if !(0.0..=1.0).contains(&quality) {
        return Err(Error::config(
            at("quality"),
            format!("{quality} must be between 0 and 1"),
        ));
    }
    let upstream_model = m.upstream_model.clone().unwrap_or_else(|| m.name.clone());
    let pricing = super::load_price::pricing(&at, &m, provider, &upstream_model)?;
    let output_limit = m
        .max_output_tokens
        .or(super::load_price::catalog_output_limit(
            &m,
            provider,
            &upstream_model,
        ));
    let mut headers = Vec::with_capacity(m.headers.len());
    for (name, value) in m.headers {
        let key = at(&format!("headers.{name}"));
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(Error::config(key, "is not a valid HTTP header name"));
        }
        let value = if value.starts_with("env:") {
            HeaderValueSpec::Secret(secret_ref(&key, &value, env)?)
        } else {
            HeaderValueSpec::Plain(value)
        };
        if http::HeaderValue::from_str(value.expose()).is_err() {
            return Err(Error::config(key, "is not a valid HTTP header value"));
        }
        headers.push((name, value));
    }
    let capabilities = match &m.capabilities {
        // Local models: JSON mode through a grammar; no images; tools where the chat
        // template can render them (the engine tells, `Provider::capabilities`).
        None if local.is_some() => Capabilities {
            tools: false,
            vision: false,
            json: true,
            declared: false,
        },
        None => Capabilities::default(),
        Some(list) => {
            let mut c = Capabilities {
                tools: false,
                vision: false,
                json: false,
                declared: true,
            };
            for (j, cap) in list.iter().enumerate() {
                match cap.as_str() {
                    "tools" => c.tools = true,
                    "vision" => c.vision = true,
                    "json" => c.json = true,
                    other => {
                        return Err(Error::config(
                            format!("models[{i}].capabilities[{j}]"),
                            format!("`{other}` is not a capability (tools, vision, json)"),
                        ))
                    }
                }
            }
            c
        }
    };
    // Every timeout has a default: a stalled upstream always ends, and fails over.
    let timeout = match m.timeout_secs {
        Some(v) => seconds(&at("timeout_secs"), v)?,
        None => request_timeout,
    };
    let default_secs = |key: &str, v: Option<f64>, default: f64| {
        seconds(&at(key), v.unwrap_or(default)).map(|d| Some(d.min(timeout)))
    };
    let ttft_timeout = default_secs(
        "ttft_timeout_secs",
        m.ttft_timeout_secs,
        d::TTFT_TIMEOUT_SECS,
    )?;
    let idle_timeout = default_secs(
        "idle_timeout_secs",
        m.idle_timeout_secs,
        d::IDLE_TIMEOUT_SECS,
    )?;
    if let Some(0) = m.context_window {
        return Err(Error::config(
            at("context_window"),
            "0 must be a positive token count",
        ));
    }
    if let Some(0) = m.max_output_tokens {
        return Err(Error::config(
            at("max_output_tokens"),
            "0 must be a positive token count",
        ));
    }
    Ok(ModelSpec {
        upstream_model,
        owned_by: m.owned_by.unwrap_or_else(|| provider.as_str().to_owned()),
        name: Arc::from(m.name),
        provider,
        base_url,
        api_key,
        pricing,
        context_window: local.as_ref().map(|l| l.context_size).or(m.context_window),
        max_output_tokens: m.max_output_tokens,
        output_limit,
        quality,
        headers,
        organization: m.organization,
        timeout,
        connect_timeout: seconds(
            &at("connect_timeout_secs"),
            m.connect_timeout_secs.unwrap_or(d::CONNECT_TIMEOUT_SECS),
        )?,
        anthropic_version: m
            .anthropic_version
            .unwrap_or_else(|| d::ANTHROPIC_VERSION.to_owned()),
        responses_api,
        limits: ModelLimits {
            rpm: positive_opt(&at("rpm"), m.rpm)?,
            tpm: positive_opt(&at("tpm"), m.tpm)?,
            max_concurrent: match m.max_concurrent {
                Some(0) => return Err(Error::config(at("max_concurrent"), "must be at least 1")),
                Some(n) => Some(n),
                None => local.as_ref().map(|l| l.parallel),
            },
            max_queue: m
                .max_queue
                .unwrap_or(crate::limits::queue::DEFAULT_MAX_QUEUE),
        },
        guardrails: m
            .guardrails
            .map(|g| super::guardrails::compile(&at("guardrails"), g))
            .transpose()?,
        cache: match &m.cache {
            Some(r) => super::cache::rule(&at("cache"), r, cache)?,
            None => cache.clone(),
        },
        capabilities,
        ttft_timeout,
        idle_timeout,
        local,
    })
}

fn positive_opt(path: &str, v: Option<u64>) -> Result<Option<u64>> {
    match v {
        Some(0) => Err(Error::config(path, "must be at least 1")),
        v => Ok(v),
    }
}

/// The built-in catalog, for each provider whose key variable is set.
fn catalog_models(env: &Env) -> Vec<RawModel> {
    let mut out = Vec::new();
    for p in &d::CATALOG {
        if env.get(p.key_var).is_none() {
            continue;
        }
        let base_url = env
            .get(p.base_url_var)
            .unwrap_or_else(|| p.base_url.to_owned());
        for m in p.models {
            out.push(RawModel {
                name: m.name.to_owned(),
                provider: p.provider.to_owned(),
                base_url: Some(base_url.clone()),
                api_key: Some(format!("env:{}", p.key_var)),
                upstream_model: None,
                context_window: Some(m.context_window),
                quality: Some(m.quality),
                ..RawModel::default()
            });
        }
    }
    out
}

/// Secrets are only ever references to environment variables: `env:NAME`.
pub(super) fn secret_ref(path: &str, reference: &str, env: &Env) -> Result<Secret> {
    let Some(var) = reference.strip_prefix("env:") else {
        return Err(Error::config(
            path,
            "secrets are not written in the config file: reference an environment variable as \
             env:NAME",
        ));
    };
    if var.is_empty() {
        return Err(Error::config(path, "`env:` names no variable"));
    }
    match env.get(var) {
        Some(value) => Ok(Secret::new(value)),
        None if matches!(env, Env::WithoutModelSecrets(_)) && path.starts_with("models") => {
            Ok(Secret::new(String::new()))
        }
        None => Err(Error::config(
            path,
            format!("environment variable {var} is not set"),
        )),
    }
}

pub(super) fn money(path: &str, v: Option<&toml::Value>) -> Result<Decimal> {
    let parsed = match v {
        None => return Ok(Decimal::ZERO),
        Some(toml::Value::Integer(i)) => Some(Decimal::from(*i)),
        // A TOML float prints as its shortest round-trip text (0.15 -> "0.15"), which is the
        // exact decimal the user wrote.
        Some(toml::Value::Float(f)) => Decimal::from_str(&f.to_string()).ok(),
        Some(toml::Value::String(s)) => Decimal::from_str(s).ok(),
        Some(_) => None,
    };
    match parsed {
        Some(d) if d >= Decimal::ZERO => Ok(d),
        _ => Err(Error::config(
            path,
            format!(
                "`{}` must be a non-negative number of USD per million tokens",
                v.map(|v| v.to_string()).unwrap_or_default()
            ),
        )),
    }
}

fn at_most(path: &str, v: u64, max: u64) -> Result<u64> {
    if v <= max {
        Ok(v)
    } else {
        Err(Error::config(
            path,
            format!("{v} is more than the most allowed, {max}"),
        ))
    }
}

/// Each origin is `scheme://host[:port]` (no path, no trailing slash), or `*` alone.
fn cors_origins(list: &[String]) -> Result<Vec<String>> {
    for (i, origin) in list.iter().enumerate() {
        let path = format!("server.cors.allowed_origins[{i}]");
        if origin == "*" {
            if list.len() > 1 {
                return Err(Error::config(path, "`*` must be the only origin"));
            }
            continue;
        }
        let valid = origin.split_once("://").is_some_and(|(scheme, rest)| {
            matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/')
        });
        if !valid {
            return Err(Error::config(
                path,
                format!("`{origin}` is not an origin like https://app.example.com"),
            ));
        }
    }
    // Browsers send origins in lower case; tower-http matches them exactly.
    Ok(list.iter().map(|o| o.to_ascii_lowercase()).collect())
}

pub(crate) fn seconds(path: &str, v: f64) -> Result<Duration> {
    match Duration::try_from_secs_f64(v) {
        Ok(d) if v > 0.0 => Ok(d),
        _ => Err(Error::config(
            path,
            format!("{v} must be a positive number of seconds"),
        )),
    }
}

fn positive(path: &str, v: u64) -> Result<u64> {
    if v > 0 {
        Ok(v)
    } else {
        Err(Error::config(path, "0 must be positive"))
    }
}

/// `postgres://user:pw@host/db` -> `postgres://user:****@host/db`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((creds, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match creds.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:****@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
