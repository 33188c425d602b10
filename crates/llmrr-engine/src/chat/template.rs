//! A model's own chat template — the GGUF's `tokenizer.chat_template`, Jinja as Hugging Face's
//! tokenizers run it — rendered with minijinja. llama.cpp's built-in formats (used for plain
//! chats) cannot render tools, tool calls or tool results; this can, for any template.
//!
//! The environment matches transformers' own: `trim_blocks` and `lstrip_blocks`, Python's
//! string and dict methods (`.strip()`, `.items()`…), `raise_exception`, `strftime_now`, and a
//! `tojson` that writes JSON as Python's `json.dumps` does (`", "` and `": "`, no HTML
//! escaping, `indent=`).

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Serde, Value as JValue};
use minijinja::{Environment, Error as JError, ErrorKind};
use serde::Serialize;
use serde_json::Value;

const NAME: &str = "chat";

pub(crate) struct JinjaTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

impl std::fmt::Debug for JinjaTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JinjaTemplate").finish_non_exhaustive()
    }
}

impl JinjaTemplate {
    /// Compiles `source`; `bos` and `eos` are the model's token texts (`bos_token`,
    /// `eos_token` in the template).
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<JinjaTemplate, String> {
        let mut env = Environment::new();
        env.set_syntax(
            SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| e.to_string())?,
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<JValue, JError> {
                Err(JError::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_function("strftime_now", |format: String| -> String {
            jiff::Zoned::now().strftime(&format).to_string()
        });
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| e.to_string())?;
        Ok(JinjaTemplate {
            env,
            bos: bos.to_owned(),
            eos: eos.to_owned(),
        })
    }

    /// The prompt for `messages` (OpenAI-shaped JSON, as [`super::messages`] makes them) and
    /// `tools` (OpenAI's `{"type": "function", "function": {…}}` objects), ending with the
    /// assistant's turn opened. A leading `bos_token` is dropped: tokenizing adds it.
    pub fn render<T: Serialize>(
        &self,
        messages: &[Value],
        tools: Option<&[T]>,
    ) -> Result<String, String> {
        let tmpl = self.env.get_template(NAME).map_err(|e| e.to_string())?;
        let out = tmpl
            .render(minijinja::context! {
                messages => JValue::from(Serde(messages)),
                tools => tools.map(|t| JValue::from(Serde(t))),
                add_generation_prompt => true,
                bos_token => &self.bos,
                eos_token => &self.eos,
            })
            .map_err(|e| match e.detail() {
                Some(d) => format!("{}: {d}", e.kind()),
                None => e.to_string(),
            })?;
        Ok(match out.strip_prefix(self.bos.as_str()) {
            Some(rest) if !self.bos.is_empty() => rest.to_owned(),
            _ => out,
        })
    }
}

/// JSON as Python's `json.dumps(value, ensure_ascii=False, indent=…, separators=…,
/// sort_keys=…)` writes it; maps keep their order unless `sort_keys`.
fn tojson(value: JValue, kwargs: Kwargs) -> Result<JValue, JError> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<JValue> = kwargs.get("separators")?;
    // Not escaping non-ASCII is what chat templates ask for; `True` is taken as that too.
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let (item, key) = match separators {
        None => (", ".to_owned(), ": ".to_owned()),
        Some(v) => {
            let parts: Vec<String> = v
                .try_iter()?
                .map(|p| p.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .unwrap_or_default();
            match <[String; 2]>::try_from(parts) {
                Ok([item, key]) => (item, key),
                Err(_) => {
                    return Err(JError::new(
                        ErrorKind::InvalidOperation,
                        "separators is a pair of strings",
                    ))
                }
            }
        }
    };
    let bad = |e: serde_json::Error| JError::new(ErrorKind::BadSerialization, e.to_string());
    let out = if sort_keys == Some(true) {
        // serde_json's maps are sorted.
        let sorted: Value = serde_json::to_value(&value).map_err(bad)?;
        dump(&sorted, indent, &item, &key)
    } else {
        dump(&value, indent, &item, &key)
    }
    .map_err(bad)?;
    Ok(JValue::from_safe_string(
        String::from_utf8(out).unwrap_or_default(),
    ))
}

fn dump<T: Serialize>(
    v: &T,
    indent: Option<usize>,
    item: &str,
    key: &str,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    match indent {
        Some(n) => {
            let pad = vec![b' '; n];
            let f = serde_json::ser::PrettyFormatter::with_indent(&pad);
            v.serialize(&mut serde_json::Serializer::with_formatter(&mut out, f))?;
        }
        None => {
            let f = PythonFormatter {
                item: item.as_bytes(),
                key: key.as_bytes(),
            };
            v.serialize(&mut serde_json::Serializer::with_formatter(&mut out, f))?;
        }
    }
    Ok(out)
}

/// `json.dumps`'s separators: `", "` between items and `": "` after keys by default.
struct PythonFormatter<'a> {
    item: &'a [u8],
    key: &'a [u8],
}

impl PythonFormatter<'_> {
    /// The item separator, before every item but the first.
    fn between<W: ?Sized + std::io::Write>(&self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(self.item)
        }
    }
}

impl serde_json::ser::Formatter for PythonFormatter<'_> {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.between(w, first)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.between(w, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_as_transformers_does() {
        let t = JinjaTemplate::new(
            "{{ bos_token }}{% for m in messages %}\n{{ m.role | upper }}: {{ m.content.strip() }}\n{% endfor %}{% if tools %}{{ tools[0] | tojson }}{% endif %}{{ {'a': [1, 'é<']} | tojson(indent=2) }}",
            "<s>",
            "</s>",
        )
        .expect("compiles");
        let out = t
            .render(
                &[json!({"role": "user", "content": "  hi  "})],
                Some(&[json!({"type": "function", "function": {"name": "f"}})]),
            )
            .expect("renders");
        assert_eq!(
            out,
            "USER: hi\n{\"function\": {\"name\": \"f\"}, \"type\": \"function\"}{\n  \"a\": [\n    1,\n    \"é<\"\n  ]\n}"
        );
        let err = JinjaTemplate::new("{{ raise_exception('no system role') }}", "", "")
            .expect("compiles")
            .render::<Value>(&[], None)
            .expect_err("raises");
        assert!(err.contains("no system role"), "{err}");
    }
}
