//! JSON Schema to llama.cpp's GBNF: what constrains a local model's output so that it always
//! parses against the schema (`response_format: json_schema`).
//!
//! Supported: `type` (one or a list), `properties` with `required` (only the declared
//! properties are produced, required ones first, each group in key order: alphabetical, as
//! serde_json keeps them), `additionalProperties`
//! (ignored beside `properties`: producing only the declared ones satisfies every value of it;
//! without `properties`: `false` is `{}`, a schema makes a map of it), `items`, `minItems`,
//! `maxItems`, `enum` and `const` (with a `type` beside them: the values of that type),
//! `anyOf`, a one-element `allOf`, `$ref` to `#/$defs/…` or `#/definitions/…` (recursion
//! through objects and arrays), string `minLength`/`maxLength` (at most 2,000: llama.cpp's
//! limit), and annotations (`title`, `description`, `default`, `examples`…). Anything else
//! (`pattern`, `format`, `minimum`, `multipleOf`, `not`, `oneOf`, tuples…) is refused by name,
//! as is a keyword beside one it cannot be combined with here: a grammar that ignored a
//! constraint could produce an answer the schema rejects. Sizes are bounded (properties, enum
//! values, rules, the grammar's length) so that a schema costs little to compile.

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
    "$defs",
    "definitions",
    "strict",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// llama.cpp's largest repetition count.
const MAX_REPEAT: u64 = 2000;
/// Properties of one object, values of one `enum`, rules, and the grammar's bytes, at most.
const MAX_PROPERTIES: usize = 256;
const MAX_ENUM: usize = 1024;
const MAX_RULES: usize = 4096;
const MAX_GRAMMAR_BYTES: usize = 256 * 1024;

/// The GBNF of `schema`, or the keyword that cannot be compiled.
pub fn grammar(schema: &Value) -> Result<String, String> {
    grammar_of(&[schema], |tops| format!("ws {} ws", tops[0]))
}

/// One grammar for several schemas: each is compiled to a rule (names never clash, and each
/// schema's `$ref`s resolve within it), then `root` makes the root rule's body from their
/// names, in order (with [`text_literal`] for the text around them).
pub fn grammar_of(
    schemas: &[&Value],
    root: impl FnOnce(&[String]) -> String,
) -> Result<String, String> {
    let mut g = Grammar {
        root: &Value::Null,
        rules: Vec::new(),
        names: HashMap::new(),
        used: Default::default(),
        bases: HashMap::new(),
        open_refs: HashMap::new(),
        containers: 0,
    };
    let mut tops = Vec::with_capacity(schemas.len());
    for schema in schemas.iter().copied() {
        g.root = schema;
        g.names.clear();
        g.open_refs.clear();
        g.containers = 0;
        tops.push(g.visit(schema, "root-value", 0)?);
    }
    let mut out = format!("root ::= {}\n", root(&tops));
    for (name, body) in &g.rules {
        out.push_str(&format!("{name} ::= {body}\n"));
        if out.len() > MAX_GRAMMAR_BYTES {
            return Err("the schema is too large for a local model's grammar".into());
        }
    }
    out.push_str(PRIMITIVES);
    Ok(out)
}

/// Text as a GBNF literal (the exact characters, nothing else).
pub fn text_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
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

const PRIMITIVES: &str = r#"value ::= object | array | string | number | ("true" | "false" | "null")
object ::= "{" ws ( member ( ws "," ws member )* )? ws "}"
member ::= string ws ":" ws value
array ::= "[" ws ( value ( ws "," ws value )* )? ws "]"
string ::= "\"" char* "\""
char ::= [^"\\\x00-\x1f] | "\\" ( ["\\/bfnrt] | "u" ( [0-9a-cA-CefEF] hex{3} | [dD] [0-7] hex{2} ) )
hex ::= [0-9a-fA-F]
number ::= "-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )?
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
    /// Names given per base, so a new one takes one look.
    bases: HashMap<String, usize>,
    /// The `$ref`s being compiled, and how many objects or arrays were open when each began:
    /// a reference back to one with no new bracket since is left recursion.
    open_refs: HashMap<String, usize>,
    containers: usize,
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
        let n = self.bases.entry(base.clone()).or_insert(0);
        let mut name = if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        while self.used.contains(&name) || is_primitive(&name) {
            *n += 1;
            name = format!("{base}-{n}");
        }
        *n += 1;
        self.used.insert(name.clone());
        name
    }

    fn rule(&mut self, hint: &str, body: String) -> Result<String, String> {
        if self.rules.len() >= MAX_RULES {
            return Err("the schema is too large for a local model's grammar".into());
        }
        let name = self.name(hint);
        self.rules.push((name.clone(), body));
        Ok(name)
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
        for key in obj.keys() {
            if !ANNOTATIONS.contains(&key.as_str())
                && !matches!(
                    key.as_str(),
                    "type"
                        | "properties"
                        | "required"
                        | "additionalProperties"
                        | "items"
                        | "minItems"
                        | "maxItems"
                        | "enum"
                        | "const"
                        | "anyOf"
                        | "allOf"
                        | "$ref"
                        | "minLength"
                        | "maxLength"
                )
            {
                return Err(format!("`{key}` is not supported for local models"));
            }
        }
        // The keywords that stand alone here: beside them only annotations (and `type`, for
        // `enum` and `const`).
        let alone = |keyword: &str, allowed: &[&str]| -> Result<(), String> {
            match obj.keys().find(|k| {
                k.as_str() != keyword
                    && !ANNOTATIONS.contains(&k.as_str())
                    && !allowed.contains(&k.as_str())
            }) {
                Some(other) => Err(format!(
                    "`{other}` beside `{keyword}` is not supported for local models"
                )),
                None => Ok(()),
            }
        };
        if let Some(r) = obj.get("$ref") {
            alone("$ref", &[])?;
            return self.reference(r, depth);
        }
        if obj.contains_key("const") || obj.contains_key("enum") {
            alone("const", &["enum", "type"])?;
            alone("enum", &["const", "type"])?;
            let values: Vec<&Value> = match (obj.get("const"), obj.get("enum")) {
                (Some(c), _) => vec![c],
                (None, Some(Value::Array(v))) => v.iter().collect(),
                _ => return Err("`enum` is a list".into()),
            };
            let enum_values = obj.get("enum").and_then(Value::as_array);
            let kept: Vec<&Value> = values
                .into_iter()
                .filter(|v| enum_values.is_none_or(|e| e.contains(v)))
                .filter(|v| of_type(v, obj.get("type")))
                .collect();
            if kept.is_empty() {
                return Err("`enum`/`const` leaves no value of the `type`".into());
            }
            if kept.len() > MAX_ENUM {
                return Err(format!("more than {MAX_ENUM} `enum` values"));
            }
            let body = kept
                .iter()
                .map(|v| literal(v))
                .collect::<Vec<_>>()
                .join(" | ");
            return self.rule(hint, body);
        }
        if let Some(alts) = obj.get("anyOf") {
            alone("anyOf", &[])?;
            let alts = alts.as_array().ok_or("`anyOf` is a list")?;
            let mut names = Vec::new();
            for (i, a) in alts.iter().enumerate() {
                names.push(self.visit(a, &format!("{hint}-{i}"), depth + 1)?);
            }
            if names.is_empty() {
                return Err("an empty `anyOf` accepts nothing".into());
            }
            return self.rule(hint, names.join(" | "));
        }
        if let Some(all) = obj.get("allOf") {
            alone("allOf", &[])?;
            return match all.as_array().map(Vec::as_slice) {
                Some([one]) => self.visit(one, hint, depth + 1),
                _ => Err(
                    "`allOf` with more than one schema is not supported for local models".into(),
                ),
            };
        }
        match obj.get("type") {
            None => {
                if obj.contains_key("properties")
                    || obj.contains_key("required")
                    || obj.contains_key("additionalProperties")
                {
                    self.object(obj, hint, depth)
                } else if obj.contains_key("items")
                    || obj.contains_key("minItems")
                    || obj.contains_key("maxItems")
                {
                    self.array(obj, hint, depth)
                } else if obj.contains_key("minLength") || obj.contains_key("maxLength") {
                    self.string(obj, hint)
                } else {
                    Ok("value".into())
                }
            }
            Some(Value::String(t)) => self.typed(t, obj, hint, depth),
            Some(Value::Array(types)) => {
                let mut seen: Vec<&str> = Vec::new();
                for t in types {
                    let t = t.as_str().ok_or("`type` names types")?;
                    if seen.contains(&t) {
                        return Err(format!("`type` names `{t}` twice"));
                    }
                    seen.push(t);
                }
                if seen.is_empty() {
                    return Err("an empty `type` list accepts nothing".into());
                }
                let mut names = Vec::new();
                for t in seen {
                    names.push(self.typed(t, obj, &format!("{hint}-{t}"), depth)?);
                }
                self.rule(hint, names.join(" | "))
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
                if max.is_some_and(|m| m < min)
                    || min > MAX_REPEAT
                    || max.is_some_and(|m| m > MAX_REPEAT)
                {
                    return Err(format!(
                        "`minLength`/`maxLength` out of range (a local model's grammar counts \
                         to {MAX_REPEAT})"
                    ));
                }
                let max = max.map(|m| m.to_string()).unwrap_or_default();
                self.rule(hint, format!(r#""\"" char{{{min},{max}}} "\"""#))
            }
        }
    }

    fn array(
        &mut self,
        obj: &'a Map<String, Value>,
        hint: &str,
        depth: usize,
    ) -> Result<String, String> {
        self.containers += 1;
        let item = match obj.get("items") {
            Some(Value::Array(_)) => {
                self.containers -= 1;
                return Err("`items` as a list (a tuple) is not supported for local models".into());
            }
            Some(s) => self.visit(s, &format!("{hint}-item"), depth + 1),
            None => Ok("value".into()),
        };
        self.containers -= 1;
        let item = item?;
        let count = |k: &str| -> Result<Option<u64>, String> {
            obj.get(k)
                .map(|v| v.as_u64().ok_or(format!("`{k}` is a count")))
                .transpose()
        };
        let (min, max) = (count("minItems")?.unwrap_or(0), count("maxItems")?);
        if max.is_some_and(|m| m < min) || min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT) {
            return Err(format!(
                "`minItems`/`maxItems` out of range (a local model's grammar counts to {MAX_REPEAT})"
            ));
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
        self.rule(hint, body)
    }

    fn object(
        &mut self,
        obj: &'a Map<String, Value>,
        hint: &str,
        depth: usize,
    ) -> Result<String, String> {
        let required: Vec<&str> = match obj.get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => r
                .iter()
                .map(|k| k.as_str().ok_or("`required` lists property names"))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("`required` is a list of property names".into()),
        };
        let Some(props) = obj.get("properties") else {
            if !required.is_empty() {
                return Err(
                    "`required` without `properties` is not supported for local models".into(),
                );
            }
            return match obj.get("additionalProperties") {
                None | Some(Value::Bool(true)) => Ok("object".into()),
                Some(Value::Bool(false)) => self.rule(hint, r#""{" ws "}""#.into()),
                Some(schema) => {
                    // A map: string keys, each value of the schema.
                    self.containers += 1;
                    let v = self.visit(schema, &format!("{hint}-value"), depth + 1);
                    self.containers -= 1;
                    let v = v?;
                    let kv = format!(r#"string ws ":" ws {v}"#);
                    self.rule(
                        hint,
                        format!(r#""{{" ws ( {kv} ( ws "," ws {kv} )* )? ws "}}""#),
                    )
                }
            };
        };
        let props = props.as_object().ok_or("`properties` is an object")?;
        if props.len() > MAX_PROPERTIES {
            return Err(format!(
                "more than {MAX_PROPERTIES} properties in one object"
            ));
        }
        for r in &required {
            if !props.contains_key(*r) {
                return Err(format!(
                    "`required` names `{r}`, which is not in `properties`"
                ));
            }
        }
        let mut must = Vec::new();
        let mut may = Vec::new();
        self.containers += 1;
        for (key, schema) in props {
            let v = match self.visit(schema, &format!("{hint}-{key}"), depth + 1) {
                Ok(v) => v,
                Err(e) => {
                    self.containers -= 1;
                    return Err(e);
                }
            };
            let kv = format!(r#"{} ws ":" ws {v}"#, literal(&Value::String(key.clone())));
            if required.contains(&key.as_str()) {
                must.push(kv);
            } else {
                may.push(kv);
            }
        }
        self.containers -= 1;
        let body = if must.is_empty() {
            if may.is_empty() {
                r#""{" ws "}""#.to_owned()
            } else {
                // Any subset of the optional properties, in order, in linear size: `rest`
                // rules say what may follow each property.
                let mut rest = String::new();
                let mut starts = Vec::new();
                for i in (0..may.len()).rev() {
                    let tail = if rest.is_empty() {
                        String::new()
                    } else {
                        format!(" {rest}")
                    };
                    starts.push(format!("{}{tail}", may[i]));
                    if i > 0 {
                        rest = self.rule(
                            &format!("{hint}-rest"),
                            format!(r#"( ws "," ws {}{tail} )?"#, may[i]),
                        )?;
                    }
                }
                starts.reverse();
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
        self.rule(hint, body)
    }

    fn reference(&mut self, r: &Value, depth: usize) -> Result<String, String> {
        let r = r.as_str().ok_or("`$ref` is a string")?;
        if let Some(&at) = self.open_refs.get(r) {
            // A reference back to a definition still being compiled, with no bracket read
            // since: llama.cpp refuses left recursion.
            if at == self.containers {
                return Err(format!(
                    "`$ref` `{r}` refers to itself without an object or array between"
                ));
            }
        }
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
        self.open_refs.insert(r.to_owned(), self.containers);
        let inner = self.visit(target, &format!("def-{}", path.1), depth + 1);
        self.open_refs.remove(r);
        self.rules.push((name.clone(), inner?));
        Ok(name)
    }
}

/// Whether `v` is of the schema's `type` (any, when none is given).
fn of_type(v: &Value, ty: Option<&Value>) -> bool {
    let is = |t: &str| match t {
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        _ => false,
    };
    match ty {
        None => true,
        Some(Value::String(t)) => is(t),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).any(is),
        Some(_) => false,
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
            | "hex"
            | "number"
            | "integer"
            | "boolean"
            | "null"
            | "ws"
    )
}

/// A JSON value as a GBNF literal.
fn literal(v: &Value) -> String {
    text_literal(&v.to_string())
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
        // Recursion through an object is fine.
        assert!(g.contains("def-node"), "{g}");
        // `type` beside `enum` keeps the values of that type; a map of integers.
        let g = grammar(&json!({"type": "string", "enum": ["a", 1]})).expect("compiles");
        assert!(
            g.contains(r#"root-value ::= "\"a\"""#) && !g.contains(r#"| "1""#),
            "{g}"
        );
        let g = grammar(&json!({"type": "object", "additionalProperties": {"type": "integer"}}))
            .expect("compiles");
        assert!(g.contains(r#"string ws ":" ws integer"#), "{g}");
        // Many optional properties: a grammar of linear size.
        let props: serde_json::Map<String, Value> = (0..200)
            .map(|i| (format!("p{i}"), json!({"type": "boolean"})))
            .collect();
        let g = grammar(&json!({"type": "object", "properties": props})).expect("compiles");
        assert!(g.len() < 64 * 1024, "{} bytes", g.len());
        for (bad, word) in [
            (json!({"type": "string", "pattern": "^a$"}), "pattern"),
            (
                json!({"type": "object", "properties": {}, "oneOf": [{}, {}]}),
                "oneOf",
            ),
            (
                json!({"type": "object", "properties": {}, "anyOf": [{}, {}]}),
                "beside",
            ),
            (
                json!({"$ref": "#/$defs/a", "maxLength": 2, "$defs": {"a": {}}}),
                "beside",
            ),
            (
                json!({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}},
                    "$ref": "#/$defs/a"}),
                "itself",
            ),
            (json!({"type": "object", "required": ["a"]}), "required"),
            (json!({"type": "string", "maxLength": 5000}), "2000"),
            (json!({"type": []}), "empty"),
            (json!({"type": ["object", "object"]}), "twice"),
            (json!({"type": "array", "items": [{}, {}]}), "tuple"),
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
