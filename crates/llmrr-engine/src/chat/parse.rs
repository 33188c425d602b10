//! The model's text, split into what the client reads as content and the tool calls it made,
//! as it streams: text before a call goes out as it comes (less what could be the start of
//! the call's opening), and each call goes out whole once it is complete.
//!
//! A call that does not parse, or that the answer cut short, is given back as the text it was:
//! never a made-up call, never lost text.

use super::tools::ToolSyntax;
use serde_json::Value;

/// One complete tool call, in OpenAI's terms.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedCall {
    pub id: String,
    pub name: String,
    /// JSON text.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Out {
    Text(String),
    Call(ParsedCall),
}

#[derive(Debug)]
pub(crate) struct ToolSplitter {
    syntax: ToolSyntax,
    /// The functions offered: a "call" of anything else is text.
    names: Vec<String>,
    /// Text not yet given out: after the opening when `in_call`.
    held: String,
    in_call: bool,
    /// A call failed to parse: the rest is text.
    gave_up: bool,
    /// A call just ended: the whitespace between calls is not content.
    after_call: bool,
    /// Llama 3: whether the answer began with a call is known (a call is the whole answer).
    decided: bool,
    /// The text that opened the call being read (given back with it if it is not a call).
    opening: String,
}

enum Step {
    /// More text is needed.
    Wait,
    /// Complete calls, and the bytes of `held` they took.
    Calls(Vec<ParsedCall>, usize),
    Malformed,
}

impl ToolSplitter {
    pub fn new(syntax: ToolSyntax, names: Vec<String>) -> ToolSplitter {
        ToolSplitter {
            syntax,
            names,
            held: String::new(),
            in_call: false,
            gave_up: false,
            after_call: false,
            decided: false,
            opening: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> Vec<Out> {
        self.held.push_str(text);
        let mut out = Vec::new();
        loop {
            if self.gave_up {
                if !self.held.is_empty() {
                    out.push(Out::Text(std::mem::take(&mut self.held)));
                }
                return out;
            }
            if !self.in_call {
                if self.after_call {
                    let ws = self.held.len() - self.held.trim_start().len();
                    self.held.drain(..ws);
                    if self.held.is_empty() {
                        return out;
                    }
                    self.after_call = false;
                }
                let trigger = self.syntax.trigger();
                if self.syntax == ToolSyntax::Llama3 {
                    if self.decided {
                        self.gave_up = true;
                        continue;
                    }
                    match llama3_opening(&self.held) {
                        None => return out,
                        Some(Some(skip)) => {
                            self.opening = self.held.drain(..skip).collect();
                            self.in_call = true;
                        }
                        Some(None) => self.gave_up = true,
                    }
                    self.decided = true;
                    continue;
                }
                if let Some(at) = self.held.find(trigger) {
                    let before: String = self.held.drain(..at).collect();
                    if !before.is_empty() {
                        out.push(Out::Text(before));
                    }
                    self.opening = self.held.drain(..trigger.len()).collect();
                    self.in_call = true;
                    continue;
                }
                let keep = partial_suffix(&self.held, trigger);
                let emit: String = self.held.drain(..self.held.len() - keep).collect();
                if !emit.is_empty() {
                    out.push(Out::Text(emit));
                }
                return out;
            }
            match self.step() {
                Step::Wait => return out,
                Step::Calls(calls, used) => {
                    out.extend(calls.into_iter().map(Out::Call));
                    self.held.drain(..used);
                    self.in_call = false;
                    self.after_call = true;
                }
                Step::Malformed => {
                    self.held.insert_str(0, &self.opening);
                    self.in_call = false;
                    self.gave_up = true;
                }
            }
        }
    }

    /// The end of the answer: what is still held, as text.
    pub fn finish(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        if self.after_call && self.held.trim().is_empty() {
            self.held.clear();
        }
        if self.in_call {
            self.held.insert_str(0, &self.opening);
            self.in_call = false;
        }
        if !self.held.is_empty() {
            out.push(Out::Text(std::mem::take(&mut self.held)));
        }
        out
    }

    /// Parses the call(s) at the start of `held` (just after the opening).
    fn step(&self) -> Step {
        let s = &self.held;
        // Llama 3's opening is the start of the call's own JSON.
        let (json_from, prefix) = match self.syntax {
            ToolSyntax::Llama3 => (0, self.syntax.trigger()),
            _ => (s.len() - s.trim_start().len(), ""),
        };
        let text = format!("{prefix}{}", &s[json_from..]);
        let mut values = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
        let value = match values.next() {
            None => return Step::Wait,
            Some(Err(e)) if e.is_eof() => return Step::Wait,
            Some(Err(_)) => return Step::Malformed,
            Some(Ok(v)) => v,
        };
        let mut used = json_from + values.byte_offset() - prefix.len();
        let known = |c: &ParsedCall| self.names.contains(&c.name);
        let call = |v| call(v, self.syntax);
        let calls = match (self.syntax, value) {
            (ToolSyntax::Mistral, Value::Array(items)) => {
                let calls: Option<Vec<ParsedCall>> = items.into_iter().map(call).collect();
                match calls {
                    Some(c) if !c.is_empty() && c.iter().all(known) => c,
                    _ => return Step::Malformed,
                }
            }
            (ToolSyntax::Mistral, _) => return Step::Malformed,
            (_, v) => match call(v) {
                Some(c) if known(&c) => vec![c],
                _ => return Step::Malformed,
            },
        };
        if let Some(closer) = self.syntax.closer() {
            let rest = &s[used..];
            let trimmed = rest.trim_start();
            if trimmed.starts_with(closer) {
                used += rest.len() - trimmed.len() + closer.len();
            } else if closer.starts_with(trimmed) {
                return Step::Wait;
            } else {
                return Step::Malformed;
            }
        }
        Step::Calls(calls, used)
    }
}

/// Whether a Llama 3 answer opens with a call: `None` while it cannot be told yet,
/// `Some(Some(n))` with the bytes up to the end of the opening (whitespace and
/// `<|python_tag|>` before it are not content), `Some(None)` when it does not.
fn llama3_opening(s: &str) -> Option<Option<usize>> {
    const TAG: &str = "<|python_tag|>";
    let trigger = ToolSyntax::Llama3.trigger();
    // At most 32 whitespace characters before it, as the trigger's pattern says.
    let t = s.trim_start_matches([' ', '\t', '\r', '\n']);
    let ws = s.len() - t.len();
    if ws > 32 {
        return Some(None);
    }
    let (rest, tag) = match t.strip_prefix(TAG) {
        Some(r) => (r, TAG.len()),
        None if TAG.starts_with(t) => return None,
        None => (t, 0),
    };
    if rest.starts_with(trigger) {
        Some(Some(ws + tag + trigger.len()))
    } else if trigger.starts_with(rest) {
        None
    } else {
        Some(None)
    }
}

/// A fresh call id: Mistral's templates take only 9 letters and digits, others OpenAI's form.
pub(crate) fn call_id(syntax: ToolSyntax) -> String {
    match syntax {
        ToolSyntax::Mistral => {
            const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
            (0..9)
                .map(|_| ALNUM[rand::random::<u32>() as usize % ALNUM.len()] as char)
                .collect()
        }
        _ => format!("call_{}", uuid::Uuid::now_v7().simple()),
    }
}

/// `{"name": …, "arguments" | "parameters": {…}}` as a call.
fn call(v: Value, syntax: ToolSyntax) -> Option<ParsedCall> {
    let Value::Object(mut o) = v else {
        return None;
    };
    let name = match o.remove("name")? {
        Value::String(n) if !n.is_empty() => n,
        _ => return None,
    };
    let args = o
        .remove("arguments")
        .or_else(|| o.remove("parameters"))
        .unwrap_or(Value::Object(Default::default()));
    let arguments = match args {
        // Some models write the arguments as JSON text already.
        Value::String(s) if serde_json::from_str::<Value>(&s).is_ok() => s,
        v @ Value::Object(_) => v.to_string(),
        _ => return None,
    };
    Some(ParsedCall {
        id: call_id(syntax),
        name,
        arguments,
    })
}

/// The length of the longest end of `text` that `pattern` starts with (it may become a match).
fn partial_suffix(text: &str, pattern: &str) -> usize {
    (1..pattern.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && pattern.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` in pieces of `n` bytes (on character boundaries) and joins what comes out.
    fn split(syntax: ToolSyntax, text: &str, n: usize) -> (String, Vec<(String, String)>) {
        let names = ["get_weather", "now", "a", "b", "f"]
            .map(String::from)
            .to_vec();
        let mut s = ToolSplitter::new(syntax, names);
        let mut outs = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = n.min(rest.len());
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            outs.extend(s.push(&rest[..cut]));
            rest = &rest[cut..];
        }
        outs.extend(s.finish());
        let mut content = String::new();
        let mut calls = Vec::new();
        for o in outs {
            match o {
                Out::Text(t) => content.push_str(&t),
                Out::Call(c) => calls.push((c.name, c.arguments)),
            }
        }
        (content, calls)
    }

    #[test]
    fn splits_each_syntax_whatever_the_pieces() {
        let cases = [
            (
                ToolSyntax::Hermes,
                "Let me look. <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Pärnu\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>",
                "Let me look. ",
                vec![("get_weather", r#"{"city":"Pärnu"}"#), ("now", "{}")],
            ),
            (
                ToolSyntax::Llama3,
                "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}",
                "",
                vec![("get_weather", r#"{"city":"Oslo"}"#)],
            ),
            (
                ToolSyntax::Mistral,
                "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"name\": \"b\", \"arguments\": \"{\\\"y\\\": 2}\"}]",
                "",
                vec![("a", r#"{"x":1}"#), ("b", r#"{"y": 2}"#)],
            ),
        ];
        for (syntax, text, content, calls) in cases {
            for n in [1, 2, 3, 7, 1000] {
                let (c, k) = split(syntax, text, n);
                assert_eq!(c, content, "{syntax:?} in pieces of {n}");
                let k: Vec<(&str, &str)> =
                    k.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                assert_eq!(k, calls, "{syntax:?} in pieces of {n}");
            }
        }
    }

    #[test]
    fn what_is_not_a_call_stays_text() {
        // Plain text, a lone `<`, and text that starts like the opening but is not.
        assert_eq!(
            split(ToolSyntax::Hermes, "a < b <tool", 1),
            ("a < b <tool".into(), vec![])
        );
        // A call cut short by the token limit comes back as the text it was.
        let cut = "ok <tool_call>\n{\"name\": \"f\", \"argu";
        assert_eq!(split(ToolSyntax::Hermes, cut, 2), (cut.into(), vec![]));
        // A malformed call, and everything after it, is text.
        let bad = "<tool_call>\n{\"arguments\": {}}\n</tool_call> tail";
        assert_eq!(split(ToolSyntax::Hermes, bad, 3), (bad.into(), vec![]));
        let unclosed = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}} and more";
        assert_eq!(
            split(ToolSyntax::Hermes, unclosed, 4),
            (unclosed.into(), vec![])
        );
        // JSON that names no offered function is an answer, not a call.
        let answer = "{\"name\": \"Bob\", \"age\": 3}";
        assert_eq!(
            split(ToolSyntax::Llama3, answer, 5),
            (answer.into(), vec![])
        );
        // Llama 3's call is the whole answer: not one quoted in prose.
        let prose = "Use {\"name\": \"now\", \"parameters\": {}} like this.";
        assert_eq!(split(ToolSyntax::Llama3, prose, 3), (prose.into(), vec![]));
        // A cut call gives back all it was, the tag included.
        let cut = " <|python_tag|>{\"name\": \"now\", \"param";
        assert_eq!(split(ToolSyntax::Llama3, cut, 4), (cut.into(), vec![]));
        let tagged = " <|python_tag|>{\"name\": \"now\", \"parameters\": {}}";
        assert_eq!(
            split(ToolSyntax::Llama3, tagged, 2),
            (String::new(), vec![("now".into(), "{}".into())])
        );
    }
}
