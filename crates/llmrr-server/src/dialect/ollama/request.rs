//! Ollama's requests (`/api/chat`, `/api/generate`, `/api/embed`, `/api/embeddings`) as the
//! gateway's OpenAI requests.

use llmrr_core::Error;
use llmrr_types::openai::{ChatCompletionRequest, EmbeddingRequest};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::Duration;

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub format: Option<Value>,
    #[serde(default)]
    pub options: Option<Map<String, Value>>,
    /// Ollama streams unless told not to.
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub keep_alive: Option<Value>,
    #[serde(default)]
    pub think: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    /// `null` reads as empty, as Ollama reads it.
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub images: Option<Vec<String>>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    pub thinking: Option<String>,
    #[serde(default)]
    pub tool_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ToolCall {
    pub function: Function,
}

#[derive(Debug, Deserialize)]
pub struct Function {
    pub name: String,
    #[serde(default)]
    pub arguments: Value,
}

#[derive(Debug, Deserialize)]
pub struct GenerateRequest {
    pub model: String,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub images: Option<Vec<String>>,
    #[serde(default)]
    pub format: Option<Value>,
    #[serde(default)]
    pub options: Option<Map<String, Value>>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub raw: Option<bool>,
    #[serde(default)]
    pub keep_alive: Option<Value>,
    #[serde(default)]
    pub think: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct EmbedRequest {
    pub model: String,
    /// `/api/embed`: a string or a list of strings.
    #[serde(default)]
    pub input: Option<Value>,
    /// `/api/embeddings` (the older endpoint): one string.
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub dimensions: Option<u32>,
    #[serde(default)]
    pub options: Option<Map<String, Value>>,
    #[serde(default)]
    pub keep_alive: Option<Value>,
}

/// What `keep_alive` asks of a local model: `None` when not given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeepAlive {
    For(Duration),
    Forever,
}

impl KeepAlive {
    pub fn duration(self) -> Duration {
        match self {
            KeepAlive::For(d) => d,
            KeepAlive::Forever => Duration::MAX,
        }
    }
}

/// Ollama's `keep_alive`: seconds as a number, or a duration string (`"5m"`, `"1h30m"`,
/// `"300ms"`, `"10s"`, `"0"`); negative keeps the model loaded for good.
pub fn keep_alive(v: Option<&Value>) -> Result<Option<KeepAlive>, Error> {
    let bad = || {
        Error::invalid(
            "`keep_alive` is a number of seconds or a duration such as \"5m\" or \"1h\"",
            Some("keep_alive".into()),
        )
    };
    let secs = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(bad)?,
        // Empty: not given (as Ollama reads it).
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) if s.trim() == "-" => return Err(bad()),
        Some(Value::String(s)) => parse_duration(s.trim()).ok_or_else(bad)?,
        Some(_) => return Err(bad()),
    };
    if !secs.is_finite() {
        return Err(bad());
    }
    Ok(Some(if secs < 0.0 {
        KeepAlive::Forever
    } else {
        KeepAlive::For(Duration::from_secs_f64(secs.min(1e9)))
    }))
}

/// `"1h30m"`, `"5m"`, `"10s"`, `"300ms"`, `"-1"`, `"0"`, `"2.5s"` in seconds.
fn parse_duration(s: &str) -> Option<f64> {
    if let Ok(n) = s.parse::<f64>() {
        return Some(n);
    }
    let (sign, mut rest) = match s.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, s),
    };
    let mut total = 0.0;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|e| *e > 0)?;
        let n: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Some(sign * total)
}

/// Ollama's `options` as OpenAI's sampling parameters. `top_k`, `min_p` and `repeat_penalty`
/// (as `repetition_penalty`) go only to local models (`local`): OpenAI's API refuses them.
/// Options that only shape Ollama's own runner (`num_ctx`, `num_gpu`, `num_thread`…) do not
/// apply to a gateway's models and are not sent.
fn sampling(options: Option<&Map<String, Value>>, local: bool, out: &mut Map<String, Value>) {
    let Some(o) = options else {
        return;
    };
    let local_only = ["top_k", "min_p", "repeat_penalty"];
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("seed", "seed"),
        ("num_predict", "max_tokens"),
        ("presence_penalty", "presence_penalty"),
        ("frequency_penalty", "frequency_penalty"),
        ("top_k", "top_k"),
        ("min_p", "min_p"),
        ("repeat_penalty", "repetition_penalty"),
    ] {
        if !local && local_only.contains(&from) {
            continue;
        }
        if let Some(v) = o.get(from).filter(|v| !v.is_null()) {
            // Ollama's "no limit" is -1 (or -2: fill the context).
            if from == "num_predict" && v.as_i64().is_some_and(|n| n < 0) {
                continue;
            }
            out.insert(to.into(), v.clone());
        }
    }
    match o.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            out.insert("stop".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
}

/// `format`: `"json"` or a JSON schema.
fn response_format(format: Option<&Value>) -> Result<Option<Value>, Error> {
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some(json!({"type": "json_object"}))),
        // Not strict: OpenAI's strict mode needs every property required and no others
        // allowed, which Ollama's schemas (a pydantic model's, say) seldom say.
        Some(schema @ Value::Object(_)) => Ok(Some(json!({
            "type": "json_schema",
            "json_schema": {"name": "format", "schema": schema}
        }))),
        Some(_) => Err(Error::invalid(
            "`format` is \"json\" or a JSON schema object",
            Some("format".into()),
        )),
    }
}

/// Base64 images (Ollama sends them bare) as data URLs, their type read from the bytes.
fn image_part(b64: &str) -> Value {
    let mime = match b64.get(..4).unwrap_or("") {
        "iVBO" => "image/png",
        "/9j/" => "image/jpeg",
        "R0lG" => "image/gif",
        "UklG" => "image/webp",
        _ => "image/png",
    };
    json!({"type": "image_url", "image_url": {"url": format!("data:{mime};base64,{b64}")}})
}

fn content(text: &str, images: Option<&Vec<String>>) -> Value {
    match images.filter(|i| !i.is_empty()) {
        None => Value::String(text.to_owned()),
        Some(images) => {
            let mut parts = vec![json!({"type": "text", "text": text})];
            parts.extend(images.iter().map(|i| image_part(i)));
            Value::Array(parts)
        }
    }
}

/// Builds the chat request; `stream` is Ollama's (`true` unless the client said `false`).
/// What the translation needs besides the messages.
struct Shape<'a> {
    tools: Option<&'a Vec<Value>>,
    format: Option<&'a Value>,
    options: Option<&'a Map<String, Value>>,
    stream: bool,
    local: bool,
}

fn chat_request(
    model: &str,
    messages: Vec<Value>,
    s: Shape<'_>,
) -> Result<ChatCompletionRequest, Error> {
    let Shape {
        tools,
        format,
        options,
        stream,
        local,
    } = s;
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    body.insert("messages".into(), Value::Array(messages));
    if let Some(tools) = tools.filter(|t| !t.is_empty()) {
        body.insert("tools".into(), Value::Array(tools.clone()));
    }
    if let Some(f) = response_format(format)? {
        body.insert("response_format".into(), f);
    }
    sampling(options, local, &mut body);
    if stream {
        body.insert("stream".into(), true.into());
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    crate::extract::from_value(&Value::Object(body))
}

/// `local`: the model named is a local model (it reads `top_k`, `min_p`, `repeat_penalty`).
pub fn chat(req: &ChatRequest, local: bool) -> Result<ChatCompletionRequest, Error> {
    let mut messages = Vec::with_capacity(req.messages.len());
    // Ollama's tool calls and results carry no ids: calls get ids in order, and each result
    // answers the oldest call not yet answered (of its tool, when it names one).
    let mut open_calls: Vec<(String, String)> = Vec::new();
    for (turn, m) in req.messages.iter().enumerate() {
        let text = m.content.as_deref().unwrap_or("");
        match m.role.as_str() {
            "system" | "user" => messages.push(json!({
                "role": m.role, "content": content(text, m.images.as_ref())
            })),
            "assistant" => {
                let mut msg = json!({"role": "assistant", "content": text});
                if let Some(calls) = m.tool_calls.as_ref().filter(|c| !c.is_empty()) {
                    let calls: Vec<Value> = calls
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            let id = format!("call_{turn}_{i}");
                            open_calls.push((id.clone(), c.function.name.clone()));
                            let arguments = match &c.function.arguments {
                                Value::String(s) => s.clone(),
                                Value::Null => "{}".into(),
                                v => v.to_string(),
                            };
                            json!({"id": id, "type": "function",
                                   "function": {"name": c.function.name, "arguments": arguments}})
                        })
                        .collect();
                    msg["tool_calls"] = Value::Array(calls);
                }
                messages.push(msg);
            }
            "tool" => {
                // The oldest open call of the named tool, else the oldest open call.
                let at = open_calls
                    .iter()
                    .position(|(_, name)| m.tool_name.as_deref().is_none_or(|t| t == name))
                    .or((!open_calls.is_empty()).then_some(0))
                    .ok_or_else(|| {
                        Error::invalid(
                            format!("messages[{turn}]: a tool result with no tool call before it"),
                            Some(format!("messages[{turn}]")),
                        )
                    })?;
                let (id, _) = open_calls.remove(at);
                messages.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            }
            other => {
                return Err(Error::invalid(
                    format!(
                        "messages[{turn}].role `{other}` is not system, user, assistant or tool"
                    ),
                    Some(format!("messages[{turn}].role")),
                ))
            }
        }
    }
    chat_request(
        &req.model,
        messages,
        Shape {
            tools: req.tools.as_ref(),
            format: req.format.as_ref(),
            options: req.options.as_ref(),
            stream: req.stream.unwrap_or(true),
            local,
        },
    )
}

/// `local` as for [`chat`].
pub fn generate(req: &GenerateRequest, local: bool) -> Result<ChatCompletionRequest, Error> {
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(Error::invalid(
            "`suffix` (fill-in-the-middle) is not supported: llmrr answers through the model's chat template",
            Some("suffix".into()),
        ));
    }
    if req.raw == Some(true) {
        return Err(Error::invalid(
            "`raw` is not supported: llmrr answers through the model's chat template (use /v1/completions for raw prompts)",
            Some("raw".into()),
        ));
    }
    let mut messages = Vec::new();
    if let Some(system) = req.system.as_deref().filter(|s| !s.is_empty()) {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({
        "role": "user",
        "content": content(req.prompt.as_deref().unwrap_or(""), req.images.as_ref())
    }));
    chat_request(
        &req.model,
        messages,
        Shape {
            tools: None,
            format: req.format.as_ref(),
            options: req.options.as_ref(),
            stream: req.stream.unwrap_or(true),
            local,
        },
    )
}

pub fn embed(req: &EmbedRequest) -> Result<EmbeddingRequest, Error> {
    let input = match (&req.input, &req.prompt) {
        (Some(i @ (Value::String(_) | Value::Array(_))), _) => i.clone(),
        (Some(_), _) => {
            return Err(Error::invalid(
                "`input` is a string or a list of strings",
                Some("input".into()),
            ))
        }
        (None, Some(p)) => Value::String(p.clone()),
        (None, None) => return Err(Error::invalid("`input` is required", Some("input".into()))),
    };
    let mut body = json!({"model": req.model, "input": input});
    if let Some(d) = req.dimensions {
        body["dimensions"] = d.into();
    }
    crate::extract::from_value(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_forms() {
        let ka = |v: Value| keep_alive(Some(&v)).expect("valid");
        assert_eq!(
            ka(json!(300)),
            Some(KeepAlive::For(Duration::from_secs(300)))
        );
        assert_eq!(
            ka(json!("5m")),
            Some(KeepAlive::For(Duration::from_secs(300)))
        );
        assert_eq!(
            ka(json!("1h30m")),
            Some(KeepAlive::For(Duration::from_secs(5400)))
        );
        assert_eq!(
            ka(json!("250ms")),
            Some(KeepAlive::For(Duration::from_millis(250)))
        );
        assert_eq!(ka(json!("0")), Some(KeepAlive::For(Duration::ZERO)));
        assert_eq!(ka(json!(0)), Some(KeepAlive::For(Duration::ZERO)));
        assert_eq!(ka(json!(-1)), Some(KeepAlive::Forever));
        assert_eq!(ka(json!("-1m")), Some(KeepAlive::Forever));
        assert_eq!(keep_alive(None).expect("none"), None);
        assert_eq!(ka(json!("")), None);
        for bad in [
            json!("5 minutes"),
            json!("m"),
            json!(true),
            json!("5x"),
            json!("-"),
        ] {
            assert!(keep_alive(Some(&bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn chat_translates_tools_images_format_and_options() {
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "weather?", "images": ["iVBORw0KGgo="]},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                {"role": "tool", "content": "sunny", "tool_name": "get_weather"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
            "format": {"type": "object"},
            "options": {"temperature": 0.2, "num_predict": 64, "stop": "END", "num_ctx": 4096,
                        "repeat_penalty": 1.1}
        }))
        .expect("request");
        let translated = chat(&req, true).expect("translated");
        let v = serde_json::to_value(&translated).expect("json");
        assert_eq!(v["stream"], true, "Ollama streams by default");
        assert_eq!(
            v["messages"][1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,iVBORw0KGgo="
        );
        assert_eq!(
            v["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(
            v["messages"][3]["tool_call_id"],
            v["messages"][2]["tool_calls"][0]["id"]
        );
        assert_eq!(v["response_format"]["type"], "json_schema");
        assert_eq!(v["max_tokens"], 64);
        assert_eq!(v["stop"], json!(["END"]));
        assert_eq!(v["repetition_penalty"], 1.1);
        assert!(v.get("num_ctx").is_none());

        let orphan: ChatRequest = serde_json::from_value(json!({"model": "m",
            "messages": [{"role": "tool", "content": "x"}]}))
        .expect("request");
        assert!(chat(&orphan, false).is_err());
        // Not for a remote model: OpenAI refuses them.
        let remote = serde_json::to_value(chat(&req, false).expect("translated")).expect("json");
        assert!(remote.get("repetition_penalty").is_none() && remote.get("top_k").is_none());
    }
}
