//! JSON Schema to llama.cpp's GBNF: what constrains a local model's output so that it always
//! parses against the schema (`response_format: json_schema`).
//!
//! Supported: `type` (one or a list), `properties` with `required` (only the declared
//! properties are produced, in the schema's order of keys as read), `items`, `minItems`,
//! `maxItems`, `enum`, `const`, `anyOf`/`oneOf`, a one-element `allOf`, `$ref` to `#/$defs/…`
//! or `#/definitions/…` (recursion included), string `minLength`/`maxLength`, and the
//! annotations (`title`, `description`, `default`, `examples`, `$schema`, `$id`,
//! `additionalProperties`: producing only the declared properties satisfies every value of
//! it). Anything else (`pattern`, `format`, `minimum`, `multipleOf`, `not`…) is refused by name:
//! a grammar that ignored it could produce an answer the schema rejects.

use serde_json::{Map, Value};
use std::collections::HashMap;

/// Keys that do not constrain the value.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "additionalProperties",
    "$defs",
    "definitions",
    "strict",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// The GBNF of `schema`, or the keyword that cannot be compiled.
pub fn grammar(schema: &Value) -> Result<String, String> {
    let mut g = Grammar {
        root: schema,
        rules: Vec::new(),
        names: HashMap::new(),
        used: Default::default(),
    };
    let top = g.visit(schema, "root-value", 0)?;
    let mut out = format!("root ::= ws {top} ws\n");
    for (name, body) in &g.rules {
        out.push_str(&format!("{name} ::= {body}\n"));
    }
    out.push_str(PRIMITIVES);
    Ok(out)
}

const PRIMITIVES: &str = r#"value ::= object | array | string | number | ("true" | "false" | "null")
object ::= "{" ws ( member ( ws "," ws member )* )? ws "}"
member ::= string ws ":" ws value
array ::= "[" ws ( value ( ws "," ws value )* )? ws "]"
string ::= "\"" char* "\""
char ::= [^"\\\x00-\x1f] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )
number ::= "-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?
integer ::= "-"? ( "0" | [1-9] [0-9]{0,15} )
boolean ::= "true" | "false"
null ::= "null"
ws ::= [ \t\n]{0,8}
"#;

/// Deepest nesting compiled (a schema deeper than this is refused, not overflowed).
const MAX_DEPTH: usize = 64;

struct Grammar<'a> {
    root: &'a Value,
    rules: Vec<(String, String)>,
    /// `$ref` -> its rule's name (set before its body is compiled: recursion works).
    names: HashMap<String, String>,
    used: std::collections::HashSet<String>,
}

impl<'a> Grammar<'a> {
    /// A fresh rule name from `hint`.
    fn name(&mut self, hint: &str) -> String {
        let base: String = hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let base = if base.is_empty() {
            "r".to_owned()
        } else {
            base
        };
        let mut name = base.clone();
        let mut i = 1;
        while self.used.contains(&name) || is_primitive(&name) {
            i += 1;
            name = format!("{base}-{i}");
        }
        self.used.insert(name.clone());
        name
    }

    fn rule(&mut self, hint: &str, body: String) -> String {
        let name = self.name(hint);
        self.rules.push((name.clone(), body));
        name
    }

    /// The rule (or primitive) for `schema`.
    fn visit(&mut self, schema: &'a Value, hint: &str, depth: usize) -> Result<String, String> {
        if depth > MAX_DEPTH {
            return Err("the schema is nested too deeply".into());
        }
        let obj = match schema {
            Value::Bool(true) => return Ok("value".into()),
            Value::Bool(false) => return Err("a `false` schema accepts nothing".into()),
            Value::Object(o) => o,
            _ => return Err("a schema is an object".into()),
        };
        if let Some(r) = obj.get("$ref") {
            return self.reference(r, depth);
        }
        for key in obj.keys() {
            if !ANNOTATIONS.contains(&key.as_str())
                && !matches!(
                    key.as_str(),
                    "type"
                        | "properties"
                        | "required"
                        | "items"
                        | "minItems"
                        | "maxItems"
                        | "enum"
                        | "const"
                        | "anyOf"
                        | "oneOf"
                        | "allOf"
                        | "minLength"
                        | "maxLength"
                )
            {
                return Err(format!("`{key}` is not supported for local models"));
            }
        }
        if let Some(v) = obj.get("const") {
            return Ok(literal(v));
        }
        if let Some(values) = obj.get("enum") {
            let values = values.as_array().ok_or("`enum` is a list")?;
            if values.is_empty() {
                return Err("an empty `enum` accepts nothing".into());
            }
            let body = values.iter().map(literal).collect::<Vec<_>>().join(" | ");
            return Ok(self.rule(hint, body));
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(alts) = obj.get(key) {
                let alts = alts.as_array().ok_or(format!("`{key}` is a list"))?;
                let mut names = Vec::new();
                for (i, a) in alts.iter().enumerate() {
                    names.push(self.visit(a, &format!("{hint}-{i}"), depth + 1)?);
                }
                if names.is_empty() {
                    return Err(format!("an empty `{key}` accepts nothing"));
                }
                return Ok(self.rule(hint, names.join(" | ")));
            }
        }
        if let Some(all) = obj.get("allOf") {
            return match all.as_array().map(Vec::as_slice) {
                Some([one]) => self.visit(one, hint, depth + 1),
                _ => Err(
                    "`allOf` with more than one schema is not supported for local models".into(),
                ),
            };
        }
        match obj.get("type") {
            None => {
                if obj.contains_key("properties") {
                    self.object(obj, hint, depth)
                } else if obj.contains_key("items") {
                    self.array(obj, hint, depth)
                } else {
                    Ok("value".into())
                }
            }
            Some(Value::String(t)) => self.typed(t, obj, hint, depth),
            Some(Value::Array(types)) => {
                let mut names = Vec::new();
                for t in types {
                    let t = t.as_str().ok_or("`type` names types")?;
                    names.push(self.typed(t, obj, &format!("{hint}-{t}"), depth)?);
                }
                Ok(self.rule(hint, names.join(" | ")))
            }
            Some(_) => Err("`type` is a string or a list".into()),
        }
    }

    fn typed(
        &mut self,
        t: &str,
        obj: &'a Map<String, Value>,
        hint: &str,
        depth: usize,
    ) -> Result<String, String> {
        match t {
            "object" => self.object(obj, hint, depth),
            "array" => self.array(obj, hint, depth),
            "string" => self.string(obj, hint),
            "number" => Ok("number".into()),
            "integer" => Ok("integer".into()),
            "boolean" => Ok("boolean".into()),
            "null" => Ok("null".into()),
            other => Err(format!("`{other}` is not a JSON Schema type")),
        }
    }

    fn string(&mut self, obj: &Map<String, Value>, hint: &str) -> Result<String, String> {
        let bound = |k: &str| -> Result<Option<u64>, String> {
            obj.get(k)
                .map(|v| v.as_u64().ok_or(format!("`{k}` is a count")))
                .transpose()
        };
        match (bound("minLength")?, bound("maxLength")?) {
            (None, None) => Ok("string".into()),
            (min, max) => {
                let min = min.unwrap_or(0);
                if max.is_some_and(|m| m < min) || min > 10_000 || max.is_some_and(|m| m > 10_000) {
                    return Err("`minLength`/`maxLength` out of range".into());
                }
                let max = max.map(|m| m.to_string()).unwrap_or_default();
                Ok(self.rule(hint, format!(r#""\"" char{{{min},{max}}} "\"""#)))
            }
        }
    }

    fn array(
        &mut self,
        obj: &'a Map<String, Value>,
        hint: &str,
        depth: usize,
    ) -> Result<String, String> {
        let item = match obj.get("items") {
            Some(s) => self.visit(s, &format!("{hint}-item"), depth + 1)?,
            None => "value".into(),
        };
        let count = |k: &str| -> Result<Option<u64>, String> {
            obj.get(k)
                .map(|v| v.as_u64().ok_or(format!("`{k}` is a count")))
                .transpose()
        };
        let (min, max) = (count("minItems")?.unwrap_or(0), count("maxItems")?);
        if max.is_some_and(|m| m < min) || min > 1000 || max.is_some_and(|m| m > 1000) {
            return Err("`minItems`/`maxItems` out of range".into());
        }
        let body = match (min, max) {
            (_, Some(0)) => r#""[" ws "]""#.to_owned(),
            (0, None) => format!(r#""[" ws ( {item} ( ws "," ws {item} )* )? ws "]""#),
            (0, Some(max)) => {
                format!(
                    r#""[" ws ( {item} ( ws "," ws {item} ){{0,{}}} )? ws "]""#,
                    max - 1
                )
            }
            (min, max) => format!(
                r#""[" ws {item} ( ws "," ws {item} ){{{},{}}} ws "]""#,
                min - 1,
                max.map(|m| (m - 1).to_string()).unwrap_or_default()
            ),
        };
        Ok(self.rule(hint, body))
    }

    fn object(
        &mut self,
        obj: &'a Map<String, Value>,
        hint: &str,
        depth: usize,
    ) -> Result<String, String> {
        let Some(props) = obj.get("properties") else {
            return Ok("object".into());
        };
        let props = props.as_object().ok_or("`properties` is an object")?;
        let required: Vec<&str> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut must = Vec::new();
        let mut may = Vec::new();
        for (key, schema) in props {
            let v = self.visit(schema, &format!("{hint}-{key}"), depth + 1)?;
            let kv = format!(r#"{} ws ":" ws {v}"#, literal(&Value::String(key.clone())));
            if required.contains(&key.as_str()) {
                must.push(kv);
            } else {
                may.push(kv);
            }
        }
        for r in &required {
            if !props.contains_key(*r) {
                return Err(format!(
                    "`required` names `{r}`, which is not in `properties`"
                ));
            }
        }
        let body = if must.is_empty() {
            if may.is_empty() {
                r#""{" ws "}""#.to_owned()
            } else {
                // Any subset of the optional properties, in order: chains starting at each.
                let mut starts = Vec::new();
                for i in 0..may.len() {
                    let mut chain = may[i].clone();
                    for next in &may[i + 1..] {
                        chain.push_str(&format!(r#" ( ws "," ws {next} )?"#));
                    }
                    starts.push(format!("( {chain} )"));
                }
                format!(r#""{{" ws ( {} )? ws "}}""#, starts.join(" | "))
            }
        } else {
            let mut body = format!(r#""{{" ws {}"#, must.join(r#" ws "," ws "#));
            for m in &may {
                body.push_str(&format!(r#" ( ws "," ws {m} )?"#));
            }
            body.push_str(r#" ws "}""#);
            body
        };
        Ok(self.rule(hint, body))
    }

    fn reference(&mut self, r: &Value, depth: usize) -> Result<String, String> {
        let r = r.as_str().ok_or("`$ref` is a string")?;
        if let Some(name) = self.names.get(r) {
            return Ok(name.clone());
        }
        let path = r
            .strip_prefix("#/$defs/")
            .map(|n| ("$defs", n))
            .or_else(|| r.strip_prefix("#/definitions/").map(|n| ("definitions", n)))
            .ok_or(format!(
                "`$ref` `{r}`: only #/$defs/… and #/definitions/… are supported"
            ))?;
        let target = self
            .root
            .get(path.0)
            .and_then(|d| d.get(path.1))
            .ok_or(format!("`$ref` `{r}` names nothing"))?;
        let name = self.name(&format!("ref-{}", path.1));
        self.names.insert(r.to_owned(), name.clone());
        let inner = self.visit(target, &format!("def-{}", path.1), depth + 1)?;
        self.rules.push((name.clone(), inner));
        Ok(name)
    }
}

fn is_primitive(name: &str) -> bool {
    matches!(
        name,
        "root"
            | "value"
            | "object"
            | "member"
            | "array"
            | "string"
            | "char"
            | "number"
            | "integer"
            | "boolean"
            | "null"
            | "ws"
    )
}

/// A JSON value as a GBNF literal.
fn literal(v: &Value) -> String {
    let json = v.to_string();
    let mut out = String::with_capacity(json.len() + 2);
    out.push('"');
    for c in json.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compiles_the_supported_keywords_and_names_the_rest() {
        let g = grammar(&json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 20},
                "tags": {"type": "array", "items": {"enum": ["a", "b\"c"]}, "maxItems": 3},
                "size": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "node": {"$ref": "#/$defs/node"}
            },
            "required": ["name", "size"],
            "additionalProperties": false,
            "$defs": {"node": {"type": "object", "properties": {
                "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}}}}
        }))
        .expect("compiles");
        assert!(g.starts_with("root ::= ws "), "{g}");
        assert!(g.contains(r#""\"b\\\"c\"""#), "enum literal escaped: {g}");
        assert!(g.contains("char{0,20}"), "{g}");
        assert!(g.contains("ref-node"), "{g}");
        for (bad, word) in [
            (json!({"type": "string", "pattern": "^a$"}), "pattern"),
            (json!({"type": "integer", "minimum": 3}), "minimum"),
            (
                json!({"type": "object", "properties": {"a": {}}, "required": ["b"]}),
                "required",
            ),
            (json!({"$ref": "https://example.com/s.json"}), "$ref"),
            (json!({"type": "martian"}), "martian"),
        ] {
            let e = grammar(&bad).expect_err("refused");
            assert!(e.contains(word), "{bad}: {e}");
        }
    }
}
