//! Sampling settings read from a request (OpenAI's names, plus `top_k`, `min_p` and
//! `repetition_penalty` as vLLM and llama-server take them), checked on the request's task,
//! and turned into a llama.cpp sampler chain on the worker.

use crate::chat::tools::{ToolGrammar, ToolSyntax};
use crate::error::{Error, Result};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Tokens looked back at by the repetition, presence and frequency penalties.
const PENALTY_LAST_N: i32 = 64;

/// What the output is constrained to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Grammar {
    /// Any JSON object.
    Json,
    /// A JSON schema's GBNF.
    Schema(String),
    /// Tool calls (`chat::tools`): from the first token, or lazily from the call's opening.
    Tools(ToolGrammar),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SamplingParams {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: i32,
    pub min_p: f32,
    pub seed: u32,
    pub repetition_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub logit_bias: Vec<(i32, f32)>,
    /// `response_format`: output constrained to JSON (`json_object`) or to a JSON schema's
    /// grammar (`json_schema`, compiled by `llmrr_core::provider::json_grammar`).
    pub grammar: Option<Grammar>,
    /// Keep generating past end-of-generation tokens (llama-server's `ignore_eos`; benchmarks).
    pub ignore_eos: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: 0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            grammar: None,
            ignore_eos: false,
        }
    }
}

/// The request's values, typed fields first, then the same names among its extra fields.
pub(crate) struct Knobs<'a> {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub logit_bias: Option<&'a BTreeMap<String, f64>>,
    pub extra: &'a Map<String, Value>,
}

fn number(extra: &Map<String, Value>, key: &str) -> Result<Option<f64>> {
    match extra.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| Error::InvalidRequest(format!("`{key}` must be a number"))),
    }
}

fn in_range(key: &str, v: f64, lo: f64, hi: f64) -> Result<f32> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(v as f32)
    } else {
        Err(Error::InvalidRequest(format!(
            "`{key}` is {v}; it must be between {lo} and {hi}"
        )))
    }
}

impl SamplingParams {
    pub fn from_request(k: Knobs<'_>, n_vocab: i32) -> Result<SamplingParams> {
        let x = k.extra;
        let get = |typed: Option<f64>, key: &str| -> Result<Option<f64>> {
            Ok(match typed {
                Some(v) => Some(v),
                None => number(x, key)?,
            })
        };
        let mut p = SamplingParams::default();
        if let Some(v) = get(k.temperature, "temperature")? {
            p.temperature = in_range("temperature", v, 0.0, 2.0)?;
        }
        if let Some(v) = get(k.top_p, "top_p")? {
            p.top_p = in_range("top_p", v, 0.0, 1.0)?;
        }
        match x.get("ignore_eos") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => p.ignore_eos = *b,
            Some(_) => {
                return Err(Error::InvalidRequest(
                    "`ignore_eos` must be a boolean".into(),
                ))
            }
        }
        if let Some(v) = number(x, "top_k")? {
            p.top_k = in_range("top_k", v, 0.0, 1e6)? as i32;
        }
        if let Some(v) = number(x, "min_p")? {
            p.min_p = in_range("min_p", v, 0.0, 1.0)?;
        }
        if let Some(v) = number(x, "repetition_penalty")? {
            p.repetition_penalty = in_range("repetition_penalty", v, 0.01, 10.0)?;
        }
        if let Some(v) = get(k.presence_penalty, "presence_penalty")? {
            p.presence_penalty = in_range("presence_penalty", v, -2.0, 2.0)?;
        }
        if let Some(v) = get(k.frequency_penalty, "frequency_penalty")? {
            p.frequency_penalty = in_range("frequency_penalty", v, -2.0, 2.0)?;
        }
        p.seed = match get(k.seed.map(|s| s as f64), "seed")? {
            // Seeds are 32-bit in llama.cpp: larger ones are folded, not refused.
            Some(s) => (s as i64 as u64 % (u32::MAX as u64)) as u32,
            None => rand::random::<u32>() % u32::MAX,
        };
        let extra_bias;
        let bias = match k.logit_bias {
            Some(b) => Some(b),
            None => match x.get("logit_bias") {
                None | Some(Value::Null) => None,
                Some(v) => {
                    extra_bias = serde_json::from_value::<BTreeMap<String, f64>>(v.clone())
                        .map_err(|_| {
                            Error::InvalidRequest(
                                "`logit_bias` must map token ids to numbers".into(),
                            )
                        })?;
                    Some(&extra_bias)
                }
            },
        };
        for (token, b) in bias.into_iter().flatten() {
            let id: i32 = token
                .parse()
                .ok()
                .filter(|t| (0..n_vocab).contains(t))
                .ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "`logit_bias` key `{token}` is not a token id of this model (0..{n_vocab})"
                    ))
                })?;
            p.logit_bias
                .push((id, in_range("logit_bias", *b, -100.0, 100.0)?));
        }
        Ok(p)
    }

    /// The llama.cpp chain: bias, penalties, grammar, then greedy (temperature 0) or
    /// top-k, top-p, min-p, temperature and a seeded draw.
    pub fn sampler(&self, model: &LlamaModel) -> Result<LlamaSampler> {
        let mut chain = Vec::new();
        if !self.logit_bias.is_empty() {
            let biases: Vec<LlamaLogitBias> = self
                .logit_bias
                .iter()
                .map(|(t, b)| LlamaLogitBias::new(LlamaToken(*t), *b))
                .collect();
            chain.push(LlamaSampler::logit_bias(model.n_vocab(), &biases));
        }
        if self.repetition_penalty != 1.0
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
        {
            chain.push(LlamaSampler::penalties(
                model.n_vocab(),
                PENALTY_LAST_N,
                self.repetition_penalty,
                self.frequency_penalty,
                self.presence_penalty,
            ));
        }
        if let Some(grammar) = &self.grammar {
            let failed = |e: llama_cpp_2::GrammarError| Error::Inference {
                model: String::new(),
                message: format!("grammar: {e}"),
            };
            let sampler = match grammar {
                Grammar::Json => LlamaSampler::grammar(model, JSON_GRAMMAR, "root"),
                Grammar::Schema(g) => LlamaSampler::grammar(model, g, "root"),
                Grammar::Tools(ToolGrammar { gbnf, lazy: None }) => {
                    LlamaSampler::grammar(model, gbnf, "root")
                }
                Grammar::Tools(ToolGrammar {
                    gbnf,
                    lazy: Some(syntax),
                }) => {
                    // An opening that is one token in this vocabulary (Qwen's `<tool_call>`,
                    // Mistral's `[TOOL_CALLS]`) is also matched as that token, whose text is
                    // exactly the opening.
                    let tokens = model
                        .vocab()
                        .tokenize(syntax.trigger().as_bytes(), false, true);
                    let one: Vec<LlamaToken> = match tokens.as_slice() {
                        [t] if *syntax != ToolSyntax::Llama3 => vec![*t],
                        _ => Vec::new(),
                    };
                    let pattern = syntax.trigger_pattern().to_owned();
                    LlamaSampler::grammar_lazy_patterns(model, gbnf, "root", &[pattern], &one)
                }
            };
            chain.push(sampler.map_err(failed)?);
        }
        if self.temperature == 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            if self.top_k > 0 {
                chain.push(LlamaSampler::top_k(self.top_k));
            }
            if self.top_p < 1.0 {
                chain.push(LlamaSampler::top_p(self.top_p, 1));
            }
            if self.min_p > 0.0 {
                chain.push(LlamaSampler::min_p(self.min_p, 1));
            }
            chain.push(LlamaSampler::temp(self.temperature));
            chain.push(LlamaSampler::dist(self.seed));
        }
        Ok(LlamaSampler::chain(chain, true))
    }
}

/// JSON (an object at the top, as OpenAI's JSON mode promises), in llama.cpp's GBNF.
const JSON_GRAMMAR: &str = r#"
root   ::= ws object ws
value  ::= object | array | string | number | ("true" | "false" | "null")
object ::= "{" ws ( member ( ws "," ws member )* )? ws "}"
member ::= string ws ":" ws value
array  ::= "[" ws ( value ( ws "," ws value )* )? ws "]"
string ::= "\"" ( [^"\\\x00-\x1f] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )* "\""
number ::= "-"? ( "0" | [1-9] [0-9]* ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?
ws     ::= [ \t\n]{0,8}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn knobs(extra: &Map<String, Value>) -> Knobs<'_> {
        Knobs {
            temperature: None,
            top_p: None,
            seed: Some(7),
            presence_penalty: None,
            frequency_penalty: None,
            logit_bias: None,
            extra,
        }
    }

    #[test]
    fn extra_fields_and_ranges_are_checked() {
        let extra: Map<String, Value> =
            serde_json::from_str(r#"{"top_k": 40, "min_p": 0.05, "logit_bias": {"5": -100}}"#)
                .expect("json");
        let p = SamplingParams::from_request(knobs(&extra), 100).expect("valid");
        assert_eq!((p.top_k, p.min_p, p.seed), (40, 0.05, 7));
        assert_eq!(p.logit_bias, vec![(5, -100.0)]);

        for bad in [
            r#"{"top_k": "x"}"#,
            r#"{"min_p": 2}"#,
            r#"{"logit_bias": {"100": 1}}"#,
            r#"{"logit_bias": {"5": 101}}"#,
            r#"{"temperature": -1}"#,
        ] {
            let extra: Map<String, Value> = serde_json::from_str(bad).expect("json");
            assert!(
                matches!(
                    SamplingParams::from_request(knobs(&extra), 100),
                    Err(Error::InvalidRequest(_))
                ),
                "{bad}"
            );
        }
    }
}

#[cfg(test)]
mod grammar_tests {
    use crate::chat::tools::ToolSyntax;
    use crate::gguf::{synthesize, SynthSpec};
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::model::LlamaModel;
    use llama_cpp_2::sampling::LlamaSampler;

    /// A lazy grammar handed text it rejects (the token that completes the opening carries
    /// more than the grammar allows) makes llama.cpp throw: caught, reported, the process
    /// alive — the worker then drops the grammar (`worker::sample_guarded`).
    #[test]
    fn a_rejected_trigger_token_is_an_error_not_an_abort() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tiny.gguf");
        synthesize(&SynthSpec::tiny(), &path).expect("synth");
        let backend = crate::backend::backend().expect("backend");
        let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default())
            .expect("loads");
        // A token of two or more letters (the synthetic vocabulary merges letter pieces).
        let vocab = model.vocab();
        let (token, text) = (0..vocab.n_tokens())
            .map(llama_cpp_2::token::LlamaToken)
            .find_map(|t| {
                let text = vocab.text(t)?.to_str().ok()?.to_owned();
                (text.len() >= 2 && text.bytes().all(|b| b.is_ascii_lowercase()))
                    .then_some((t, text))
            })
            .expect("a merged token");
        let first = &text[..1];
        // The grammar wants the first letter then `#`: the token's other letters are rejected.
        let mut s = LlamaSampler::grammar_lazy_patterns(
            &model,
            &format!("root ::= \"{first}\" \"#\""),
            "root",
            &[format!("({first})")],
            &[],
        )
        .expect("compiles");
        assert!(s.try_accept(token).is_err());
        // A grammar that takes the whole token accepts it.
        let mut s = LlamaSampler::grammar_lazy_patterns(
            &model,
            &format!("root ::= \"{text}\" [a-z]*"),
            "root",
            &[format!("({first})")],
            &[],
        )
        .expect("compiles");
        assert!(s.try_accept(token).is_ok());
        // Every syntax's trigger pattern is a regular expression llama.cpp takes.
        for syntax in [ToolSyntax::Hermes, ToolSyntax::Llama3, ToolSyntax::Mistral] {
            let root = format!(
                "root ::= {}",
                llmrr_core::provider::json_grammar::text_literal(syntax.trigger())
            );
            LlamaSampler::grammar_lazy_patterns(
                &model,
                &root,
                "root",
                &[syntax.trigger_pattern().to_owned()],
                &[],
            )
            .unwrap_or_else(|e| panic!("{syntax:?}: {e}"));
        }
    }
}
