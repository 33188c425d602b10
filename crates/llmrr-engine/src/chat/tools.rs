//! Tool calling on local models: which syntax a model's template speaks, and the grammar that
//! makes its calls valid — the function's name, then arguments that parse against the
//! function's JSON schema (compiled by `llmrr_core::provider::json_grammar`).
//!
//! `tool_choice: "auto"` uses a lazy grammar, applied from the moment the model opens a call
//! (its trigger); `"required"` and a named function constrain the answer from its first token.

use llmrr_core::provider::json_grammar::{grammar_of, text_literal};
use llmrr_types::openai::{FunctionDefinition, Tool, ToolChoice, ToolChoiceMode};
use serde_json::{json, Value};

/// How a model family writes its tool calls (read off its chat template).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ToolSyntax {
    /// `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>` per call: Hermes, Qwen 2.5
    /// and 3, and the many models tuned on their format.
    Hermes,
    /// `{"name": …, "parameters": {…}}` as the whole answer: Llama 3.1 to 3.3.
    Llama3,
    /// `[TOOL_CALLS][{"name": …, "arguments": {…}}, …]`: Mistral.
    Mistral,
}

impl ToolSyntax {
    /// The syntax a template's tool calls take; `None`: tools are not supported (the template
    /// cannot render them, or writes calls in a syntax not known here).
    pub fn detect(template: &str) -> Option<ToolSyntax> {
        if !template.contains("tools") {
            None
        } else if template.contains("<tool_call>") {
            Some(ToolSyntax::Hermes)
        } else if template.contains("[TOOL_CALLS]") {
            Some(ToolSyntax::Mistral)
        } else if template.contains("<|start_header_id|>") && template.contains("ipython") {
            // Llama 3.1+ (its tool results are the `ipython` role); other templates on Llama
            // 3's tokens (Functionary's `>>>`…) write calls otherwise.
            Some(ToolSyntax::Llama3)
        } else {
            None
        }
    }

    /// The regular expression (ECMAScript, as llama.cpp's `std::regex` reads it) that a lazy
    /// grammar waits for; the text from its first group on is the call. Llama 3's call is the
    /// whole answer: only at its start (after whitespace and an optional `<|python_tag|>`).
    pub fn trigger_pattern(self) -> &'static str {
        match self {
            ToolSyntax::Hermes => "(<tool_call>)",
            // Bounded: libstdc++'s regex recurses per character a `*` takes.
            ToolSyntax::Llama3 => r#"^[ \t\r\n]{0,32}(?:<\|python_tag\|>)?(\{"name": )"#,
            ToolSyntax::Mistral => r"(\[TOOL_CALLS\])",
        }
    }

    /// The text that opens the calls.
    pub fn trigger(self) -> &'static str {
        match self {
            ToolSyntax::Hermes => "<tool_call>",
            ToolSyntax::Llama3 => "{\"name\": ",
            ToolSyntax::Mistral => "[TOOL_CALLS]",
        }
    }

    /// The text that closes one call (Hermes only).
    pub fn closer(self) -> Option<&'static str> {
        match self {
            ToolSyntax::Hermes => Some("</tool_call>"),
            _ => None,
        }
    }

    /// The key the arguments go under.
    fn arguments_key(self) -> &'static str {
        match self {
            ToolSyntax::Llama3 => "parameters",
            _ => "arguments",
        }
    }
}

/// What the sampler is given for a request with tools.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolGrammar {
    pub gbnf: String,
    /// `Some(syntax)`: applied only once the model opens a call in that syntax
    /// (`tool_choice: "auto"`; see [`ToolSyntax::trigger_pattern`]).
    pub lazy: Option<ToolSyntax>,
}

/// Whether tools are offered, and how the answer is constrained.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ToolPlan {
    /// `tool_choice: "none"`: the tools are not shown, nothing is parsed.
    Off,
    On(ToolGrammar),
}

/// Why the tools cannot be planned.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PlanError {
    /// The request contradicts itself (400 `invalid_request_error`).
    Invalid(String),
    /// A schema a grammar cannot follow (400 `unsupported_parameter`).
    Unsupported(String),
}

/// The plan for `tools` under `choice`, or why it cannot be honoured.
pub(crate) fn plan(
    syntax: ToolSyntax,
    tools: &[Tool],
    choice: Option<&ToolChoice>,
    parallel: Option<bool>,
) -> Result<ToolPlan, PlanError> {
    let mut names = std::collections::HashSet::new();
    for t in tools {
        if !names.insert(t.function.name.as_str()) {
            return Err(PlanError::Invalid(format!(
                "two tools are named `{}`",
                t.function.name
            )));
        }
    }
    let (chosen, lazy): (Vec<&FunctionDefinition>, bool) = match choice {
        Some(ToolChoice::Mode(ToolChoiceMode::None)) => return Ok(ToolPlan::Off),
        None | Some(ToolChoice::Mode(ToolChoiceMode::Auto)) => {
            (tools.iter().map(|t| &t.function).collect(), true)
        }
        Some(ToolChoice::Mode(ToolChoiceMode::Required)) => {
            (tools.iter().map(|t| &t.function).collect(), false)
        }
        Some(ToolChoice::Named(n)) => {
            let f = tools
                .iter()
                .find(|t| t.function.name == n.function.name)
                .ok_or_else(|| {
                    PlanError::Invalid(format!(
                        "`tool_choice` names `{}`, which is not among `tools`",
                        n.function.name
                    ))
                })?;
            (vec![&f.function], false)
        }
    };
    // A named choice is one call of that function, as OpenAI does.
    let parallel = parallel.unwrap_or(true) && !matches!(choice, Some(ToolChoice::Named(_)));
    let empty = json!({"type": "object", "properties": {}});
    let schemas: Vec<&Value> = chosen
        .iter()
        .map(|f| f.parameters.as_ref().unwrap_or(&empty))
        .collect();
    let gbnf = grammar_of(&schemas, |tops| {
        let bodies: Vec<String> = chosen
            .iter()
            .zip(tops)
            .map(|(f, top)| {
                let head = format!(
                    "{{\"name\": {}, \"{}\": ",
                    Value::String(f.name.clone()),
                    syntax.arguments_key()
                );
                format!("{} {top} \"}}\"", text_literal(&head))
            })
            .collect();
        let call = format!("( {} )", bodies.join(" | "));
        let many = |open: &str, one: &str, sep: &str, close: &str| {
            let (open, sep, close) = (text_literal(open), text_literal(sep), text_literal(close));
            if parallel {
                format!("{open} {one} ( {sep} {one} )* {close}")
            } else {
                format!("{open} {one} {close}")
            }
        };
        match syntax {
            ToolSyntax::Hermes => {
                let one = format!(
                    "{} {call} {}",
                    text_literal("<tool_call>\n"),
                    text_literal("\n</tool_call>")
                );
                if parallel {
                    format!("{one} ( {} {one} )*", text_literal("\n"))
                } else {
                    one
                }
            }
            // One call: the format has no list.
            ToolSyntax::Llama3 => call,
            ToolSyntax::Mistral => many("[TOOL_CALLS][", &call, ", ", "]"),
        }
    })
    .map_err(|why| {
        PlanError::Unsupported(format!(
            "these tools' parameters (a grammar cannot follow them: {why})"
        ))
    })?;
    Ok(ToolPlan::On(ToolGrammar {
        gbnf,
        lazy: lazy.then_some(syntax),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, params: Value) -> Tool {
        serde_json::from_value(
            json!({"type": "function", "function": {"name": name, "parameters": params}}),
        )
        .expect("tool")
    }

    #[test]
    fn detects_the_syntax_from_the_template() {
        assert_eq!(
            ToolSyntax::detect("{% if tools %}<tool_call>{% endif %}"),
            Some(ToolSyntax::Hermes)
        );
        assert_eq!(
            ToolSyntax::detect("{% if tools %}[AVAILABLE_TOOLS]{% endif %}[TOOL_CALLS]"),
            Some(ToolSyntax::Mistral)
        );
        assert_eq!(
            ToolSyntax::detect("<|start_header_id|>{% if tools %}{% endif %}ipython"),
            Some(ToolSyntax::Llama3)
        );
        assert_eq!(
            ToolSyntax::detect("<|start_header_id|>{% if tools %}>>>{% endif %}"),
            None
        );
        assert_eq!(ToolSyntax::detect("<|im_start|>{{ m.content }}"), None);
        assert_eq!(
            ToolSyntax::detect("{% if tools %}<|im_start|>{% endif %}"),
            None
        );
    }

    #[test]
    fn plans_follow_tool_choice() {
        let tools = vec![
            tool(
                "get_weather",
                json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
            ),
            tool("now", json!({"type": "object", "properties": {}})),
        ];
        let ToolPlan::On(auto) = plan(ToolSyntax::Hermes, &tools, None, None).expect("plan") else {
            panic!("auto offers the tools")
        };
        assert_eq!(auto.lazy, Some(ToolSyntax::Hermes));
        assert!(auto.gbnf.starts_with("root ::= \"<tool_call>\\n\" ( \"{\\\"name\\\": \\\"get_weather\\\", \\\"arguments\\\": \""), "{}", auto.gbnf);
        assert!(auto.gbnf.contains(")*"), "parallel calls: {}", auto.gbnf);

        let named: ToolChoice =
            serde_json::from_value(json!({"type": "function", "function": {"name": "now"}}))
                .expect("choice");
        let ToolPlan::On(one) = plan(ToolSyntax::Llama3, &tools, Some(&named), None).expect("plan")
        else {
            panic!("named offers the tools")
        };
        assert_eq!(one.lazy, None);
        assert!(
            one.gbnf.contains("\\\"now\\\", \\\"parameters\\\": "),
            "{}",
            one.gbnf
        );
        assert!(!one.gbnf.contains("get_weather"), "{}", one.gbnf);

        let none: ToolChoice = serde_json::from_value(json!("none")).expect("choice");
        assert_eq!(
            plan(ToolSyntax::Hermes, &tools, Some(&none), None),
            Ok(ToolPlan::Off)
        );
        let other: ToolChoice =
            serde_json::from_value(json!({"type": "function", "function": {"name": "nope"}}))
                .expect("choice");
        assert!(plan(ToolSyntax::Hermes, &tools, Some(&other), None).is_err());
        let twice = vec![tools[0].clone(), tools[0].clone()];
        assert!(plan(ToolSyntax::Hermes, &twice, None, None).is_err());
        let bad = vec![tool(
            "f",
            json!({"type": "object", "properties": {"x": {"type": "string", "pattern": "a+"}}}),
        )];
        let err = plan(ToolSyntax::Hermes, &bad, None, None).expect_err("pattern is refused");
        assert!(
            matches!(&err, PlanError::Unsupported(w) if w.contains("pattern")),
            "{err:?}"
        );
    }
}
