//! The cache key: blake3 of the canonical form of everything that shapes an answer.
//!
//! Canonical: object keys sorted, `null` the same as absent, numbers by value (`0` = `0.0`),
//! parameters at their documented default the same as absent (`n: 1`, `top_p: 1`, penalties
//! 0, `logprobs: false`, empty lists), and fields that do not change the answer left out
//! (`user`, `metadata`, `store`, `stream_options`, `service_tier`, the gateway's own
//! `llmrr` options). What remains — messages, tools, tool_choice, response_format, every
//! sampling parameter, seed, n, and unknown parameters forwarded upstream — is hashed with
//! the endpoint, the model or route named, whether the answer is streamed, and the namespace.

use serde_json::Value;
use std::fmt;

/// 32 bytes of blake3.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_bytes(b: [u8; 32]) -> Self {
        CacheKey(b)
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The key written as [`CacheKey::hex`] writes it.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(text, &mut b).ok()?;
        Some(CacheKey(b))
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.hex()[..16])
    }
}

/// Text normalization of a rule (off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Normalize {
    pub whitespace: bool,
    pub case: bool,
}

/// What the key covers besides the request body.
#[derive(Debug, Clone, Copy)]
pub struct KeyScope<'a> {
    /// `chat`, `completions`, `embeddings`.
    pub endpoint: &'a str,
    /// The model or route the request named.
    pub name: &'a str,
    pub namespace: &'a str,
    pub stream: bool,
    pub normalize: Normalize,
}

/// Top-level fields that never change the answer.
const IGNORED: &[&str] = &[
    "model",
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "service_tier",
    "llmrr",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    // The Responses API's: what to add to the output (llmrr's answers do not carry it), and
    // a bound on built-in tools (which llmrr refuses).
    "include",
    "max_tool_calls",
];

/// Where a top-level field at this value is the same as absent.
fn is_default(name: &str, v: &Value) -> bool {
    let num = |x: f64| v.as_f64() == Some(x);
    match name {
        "n" | "top_p" => num(1.0),
        "presence_penalty" | "frequency_penalty" => num(0.0),
        "logprobs" | "echo" => v == &Value::Bool(false),
        "parallel_tool_calls" => v == &Value::Bool(true),
        "tools" | "stop" | "functions" => v.as_array().is_some_and(Vec::is_empty),
        "logit_bias" => v.as_object().is_some_and(serde_json::Map::is_empty),
        _ => false,
    }
}

/// Fields whose strings are text written by people (normalized when the rule says so).
const TEXT_FIELDS: &[&str] = &["messages", "prompt", "input", "instructions", "system"];

/// Where a chat body keeps the client's own body of another API (Anthropic's Messages,
/// OpenAI's Responses): the key reads it as it reads the top level.
pub const NATIVE_BODIES: [&str; 2] = ["llmrr_anthropic", "llmrr_responses"];

/// The key of a request body (already serialized as JSON `body`) in `scope`.
pub fn key_of(scope: &KeyScope<'_>, body: &Value) -> CacheKey {
    let mut h = blake3::Hasher::new();
    h.update(b"llmrr-cache-v1\0");
    for part in [scope.endpoint, scope.name, scope.namespace] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update(&[u8::from(scope.stream)]);
    match body {
        Value::Object(map) => feed_body(&mut h, map, scope.normalize),
        other => feed(&mut h, other, scope.normalize),
    }
    CacheKey(*h.finalize().as_bytes())
}

/// A request body's fields that shape the answer, in name order, those people wrote
/// normalized by `n`; a client's own body kept inside ([`NATIVE_BODIES`]) is read the same way.
fn feed_body(h: &mut blake3::Hasher, map: &serde_json::Map<String, Value>, n: Normalize) {
    let mut fields: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, v)| !v.is_null() && !IGNORED.contains(&k.as_str()) && !is_default(k, v))
        .collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    h.update(b"{");
    for (k, v) in fields {
        feed_str(h, k, Normalize::default());
        match v {
            Value::Object(inner) if NATIVE_BODIES.contains(&k.as_str()) => feed_body(h, inner, n),
            _ if TEXT_FIELDS.contains(&k.as_str()) => feed(h, v, n),
            _ => feed(h, v, Normalize::default()),
        }
    }
    h.update(b"}");
}

/// A value into the hash, with a tag per type so that no two values feed the same bytes.
fn feed(h: &mut blake3::Hasher, v: &Value, n: Normalize) {
    match v {
        Value::Null => {
            h.update(b"n");
        }
        Value::Bool(b) => {
            h.update(if *b { b"t" } else { b"f" });
        }
        Value::Number(num) => feed_number(h, num),
        Value::String(s) => feed_str(h, s, n),
        Value::Array(items) => {
            h.update(b"[");
            h.update(&(items.len() as u64).to_le_bytes());
            for item in items {
                feed(h, item, n);
            }
        }
        Value::Object(map) => {
            let mut fields: Vec<(&String, &Value)> =
                map.iter().filter(|(_, v)| !v.is_null()).collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            h.update(b"{");
            h.update(&(fields.len() as u64).to_le_bytes());
            for (k, v) in fields {
                feed_str(h, k, Normalize::default());
                // Inside messages, only what people wrote: `content` and `text` (never a
                // role, a tool name, an id, a URL or arguments).
                let n = if matches!(k.as_str(), "content" | "text") {
                    n
                } else {
                    Normalize::default()
                };
                feed(h, v, n);
            }
        }
    }
}

/// Numbers by value: an integral float is the integer (`0.0` = `0`).
fn feed_number(h: &mut blake3::Hasher, num: &serde_json::Number) {
    if let Some(i) = num.as_i64() {
        h.update(b"i");
        h.update(&i.to_le_bytes());
    } else if let Some(u) = num.as_u64() {
        h.update(b"u");
        h.update(&u.to_le_bytes());
    } else {
        let f = num.as_f64().unwrap_or(f64::NAN);
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            h.update(b"i");
            h.update(&(f as i64).to_le_bytes());
        } else {
            h.update(b"d");
            h.update(&f.to_bits().to_le_bytes());
        }
    }
}

fn feed_str(h: &mut blake3::Hasher, s: &str, n: Normalize) {
    h.update(b"s");
    if !n.whitespace && !n.case {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
        return;
    }
    let mut text = if n.whitespace {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        s.to_owned()
    };
    if n.case {
        text = text.to_lowercase();
    }
    h.update(&(text.len() as u64).to_le_bytes());
    h.update(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> KeyScope<'static> {
        KeyScope {
            endpoint: "chat",
            name: "gpt",
            namespace: "team:a",
            stream: false,
            normalize: Normalize::default(),
        }
    }

    fn key(body: Value) -> CacheKey {
        key_of(&scope(), &body)
    }

    fn base() -> Value {
        json!({"messages": [{"role": "user", "content": "Hello  World"}], "temperature": 0})
    }

    #[test]
    fn field_order_nulls_numbers_and_defaults_do_not_change_the_key() {
        let a = key(base());
        let reordered: Value = serde_json::from_str(
            r#"{"temperature": 0.0, "messages": [{"content": "Hello  World", "role": "user", "name": null}]}"#,
        )
        .unwrap();
        assert_eq!(a, key(reordered));
        let mut with_defaults = base();
        for (k, v) in [
            ("n", json!(1)),
            ("top_p", json!(1.0)),
            ("presence_penalty", json!(0)),
            ("frequency_penalty", json!(0.0)),
            ("logprobs", json!(false)),
            ("tools", json!([])),
            ("parallel_tool_calls", json!(true)),
            ("user", json!("alice")),
            ("metadata", json!({"a": "b"})),
            ("stream_options", json!({"include_usage": true})),
            ("llmrr", json!({"explain": true})),
            ("seed", Value::Null),
        ] {
            with_defaults[k] = v;
        }
        assert_eq!(a, key(with_defaults));
    }

    /// A client's own Responses body inside the chat body: read as the top level is (what
    /// never shapes an answer left out, text normalized when the rule says so).
    #[test]
    fn a_native_body_is_keyed_like_the_top_level() {
        let with = |native: Value| {
            let mut body = base();
            body["llmrr_responses"] = native;
            body
        };
        let native = json!({"input": "Hello  World", "reasoning": {"summary": "auto"}});
        let a = key(with(native.clone()));
        assert_ne!(a, key(base()), "the body counts");
        let mut platform = native.clone();
        for (k, v) in [
            ("metadata", json!({"run": 2})),
            ("store", json!(false)),
            ("user", json!("u")),
            ("include", json!(["reasoning.encrypted_content"])),
            ("top_p", json!(1)),
        ] {
            platform[k] = v;
        }
        assert_eq!(a, key(with(platform)));
        let mut summary = native.clone();
        summary["reasoning"]["summary"] = json!("detailed");
        assert_ne!(a, key(with(summary)));
        let normalized = KeyScope {
            normalize: Normalize {
                whitespace: true,
                case: true,
            },
            ..scope()
        };
        let mut spaced = with(native);
        let plain = key_of(&normalized, &spaced);
        spaced["llmrr_responses"]["input"] = json!("hello world");
        spaced["messages"][0]["content"] = json!("hello world");
        assert_eq!(plain, key_of(&normalized, &spaced));
    }

    #[test]
    fn every_parameter_that_shapes_the_answer_changes_the_key() {
        let a = key(base());
        let changes = [
            ("temperature", json!(0.5)),
            ("top_p", json!(0.9)),
            ("n", json!(2)),
            ("seed", json!(7)),
            ("max_tokens", json!(10)),
            ("max_completion_tokens", json!(10)),
            ("stop", json!(["x"])),
            ("presence_penalty", json!(0.1)),
            ("frequency_penalty", json!(0.1)),
            ("logit_bias", json!({"1": 2})),
            (
                "tools",
                json!([{"type": "function", "function": {"name": "f"}}]),
            ),
            ("tool_choice", json!("required")),
            ("parallel_tool_calls", json!(false)),
            ("response_format", json!({"type": "json_object"})),
            ("reasoning_effort", json!("low")),
            ("logprobs", json!(true)),
        ];
        let mut seen = vec![a];
        for (k, v) in changes {
            let mut body = base();
            body[k] = v;
            let k2 = key(body);
            assert!(!seen.contains(&k2), "{k} did not change the key");
            seen.push(k2);
        }
        let mut other_text = base();
        other_text["messages"][0]["content"] = json!("Hello World");
        assert_ne!(a, key(other_text));
        let mut other_role = base();
        other_role["messages"][0]["role"] = json!("system");
        assert_ne!(a, key(other_role));
        for s in [
            KeyScope {
                endpoint: "completions",
                ..scope()
            },
            KeyScope {
                name: "other",
                ..scope()
            },
            KeyScope {
                namespace: "team:b",
                ..scope()
            },
            KeyScope {
                stream: true,
                ..scope()
            },
        ] {
            assert_ne!(a, key_of(&s, &base()));
        }
    }

    #[test]
    fn normalization_applies_to_text_only_when_asked() {
        let loose =
            json!({"messages": [{"role": "user", "content": " hello\n world "}], "temperature": 0});
        assert_ne!(key(base()), key(loose.clone()));
        let n = KeyScope {
            normalize: Normalize {
                whitespace: true,
                case: true,
            },
            ..scope()
        };
        assert_eq!(key_of(&n, &base()), key_of(&n, &loose));
        // Only the text: roles, tool names and URLs inside messages keep their case.
        let role = |r: &str| json!({"messages": [{"role": r, "content": "hi"}], "temperature": 0});
        assert_ne!(key_of(&n, &role("user")), key_of(&n, &role("USER")));
        // Nor other string parameters.
        let mut a = base();
        a["tool_choice"] = json!("auto");
        let mut b = base();
        b["tool_choice"] = json!("AUTO");
        assert_ne!(key_of(&n, &a), key_of(&n, &b));
    }
}
