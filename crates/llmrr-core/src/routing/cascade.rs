//! Whether a `cascade` route accepts an answer, or escalates to the next model: the answer
//! must not be empty, a refusal or cut by the model's length limit (not by a `max_tokens` the
//! request set); it must be valid JSON (valid against the schema) when JSON was asked; and
//! where the answer carries logprobs (the client asked for them), its mean token
//! log-probability must reach the route's floor.

use crate::config::routing::CascadeRule;
use llmrr_types::openai::{ChatCompletionRequest, ResponseFormat};
use serde_json::Value;

/// Openings of a refusal (lowercased, apostrophes straightened).
const REFUSALS: &[&str] = &[
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
    "i am sorry, but i cannot",
    "i can't help with",
    "i cannot help with",
    "i can't assist",
    "i cannot assist",
    "i'm unable to",
    "i am unable to",
    "i won't be able to",
    "i can't provide",
    "i cannot provide",
];

/// Why the answer (an OpenAI chat completion body) must be escalated; `None`: accepted.
pub fn rejects(rule: &CascadeRule, req: &ChatCompletionRequest, body: &[u8]) -> Option<String> {
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        return Some("the answer is not JSON".into());
    };
    let choice = &answer["choices"][0];
    let message = &choice["message"];
    match choice["finish_reason"].as_str() {
        // Only the model's own limit: a cap the client (or a budget) set would cut every
        // model's answer alike.
        Some("length") if req.max_output_tokens().is_none() => {
            return Some("the answer was cut by the length limit".into())
        }
        Some("content_filter") => return Some("the answer was filtered (a refusal)".into()),
        _ => {}
    }
    if message["refusal"]
        .as_str()
        .is_some_and(|r| !r.trim().is_empty())
    {
        return Some("the model refused".into());
    }
    let text = message["content"].as_str().unwrap_or("");
    let has_tool_calls = message["tool_calls"]
        .as_array()
        .is_some_and(|c| !c.is_empty());
    if text.trim().is_empty() && !has_tool_calls {
        return Some("the answer is empty".into());
    }
    if is_refusal(text) {
        return Some("the answer is a refusal".into());
    }
    if !has_tool_calls {
        if let Some(why) = json_problem(req, text) {
            return Some(why);
        }
    }
    if let Some(floor) = rule.min_mean_logprob {
        if let Some(mean) = mean_logprob(choice) {
            if mean < floor {
                return Some(format!(
                    "mean token log-probability {mean:.3} is below {floor}"
                ));
            }
        }
    }
    None
}

fn is_refusal(text: &str) -> bool {
    let head: String = text
        .trim_start()
        .chars()
        .take(80)
        .collect::<String>()
        .to_lowercase()
        .replace('\u{2019}', "'");
    REFUSALS.iter().any(|r| head.starts_with(r))
}

/// What is wrong with `text` as the JSON the request asked for.
fn json_problem(req: &ChatCompletionRequest, text: &str) -> Option<String> {
    let schema = match &req.response_format {
        Some(ResponseFormat::JsonObject) => None,
        Some(ResponseFormat::JsonSchema { json_schema }) => json_schema.get("schema"),
        _ => return None,
    };
    let value: Value = match serde_json::from_str(text.trim()) {
        Ok(v) => v,
        Err(e) => return Some(format!("JSON was asked and the answer is not JSON ({e})")),
    };
    let schema = schema?;
    let validator = match jsonschema::validator_for(schema) {
        Ok(v) => v,
        // A schema the validator cannot compile is the client's to fix; the upstream took it.
        Err(_) => return None,
    };
    let first = validator.iter_errors(&value).next()?;
    Some(format!(
        "the answer does not match the JSON schema: {} (at `{}`)",
        first,
        first.instance_path()
    ))
}

/// The mean of `logprobs.content[].logprob`, when the provider returned them.
fn mean_logprob(choice: &Value) -> Option<f64> {
    let tokens = choice["logprobs"]["content"].as_array()?;
    let values: Vec<f64> = tokens
        .iter()
        .filter_map(|t| t["logprob"].as_f64())
        .collect();
    if values.is_empty() {
        return None;
    }
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(format: Option<Value>) -> ChatCompletionRequest {
        let mut r = json!({"model": "m", "messages": [{"role": "user", "content": "q"}]});
        if let Some(f) = format {
            r["response_format"] = f;
        }
        serde_json::from_value(r).expect("request")
    }

    fn answer(content: Value, finish: &str, extra: Value) -> Vec<u8> {
        let mut choice = json!({"index": 0, "finish_reason": finish,
            "message": {"role": "assistant", "content": content}});
        if let (Some(c), Some(e)) = (choice.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        serde_json::to_vec(&json!({"choices": [choice]})).expect("json")
    }

    #[test]
    fn each_check_escalates_and_a_good_answer_passes() {
        let plain = req(None);
        let rule = CascadeRule::default();
        let ok = answer(json!("Paris."), "stop", json!({}));
        assert_eq!(rejects(&rule, &plain, &ok), None);
        let why = |body: &[u8]| rejects(&rule, &plain, body).unwrap_or_default();
        assert!(why(&answer(json!("  "), "stop", json!({}))).contains("empty"));
        assert!(why(&answer(json!("Par"), "length", json!({}))).contains("length"));
        let mut capped = req(None);
        capped.max_tokens = Some(5);
        let cut = answer(json!("Par"), "length", json!({}));
        assert_eq!(rejects(&rule, &capped, &cut), None, "the client's own cap");
        assert!(why(&answer(
            json!("I’m sorry, but I can’t help."),
            "stop",
            json!({})
        ))
        .contains("refusal"));
        let refused = serde_json::to_vec(&json!({"choices": [{"finish_reason": "stop",
            "message": {"role": "assistant", "content": null, "refusal": "no"}}]}))
        .expect("json");
        assert!(why(&refused).contains("refused"));

        let object = req(Some(json!({"type": "json_object"})));
        assert!(rejects(
            &rule,
            &object,
            &answer(json!("{\"a\": 1"), "stop", json!({}))
        )
        .is_some_and(|w| w.contains("not JSON")));
        assert_eq!(
            rejects(
                &rule,
                &object,
                &answer(json!("{\"a\": 1}"), "stop", json!({}))
            ),
            None
        );

        let schema = req(Some(
            json!({"type": "json_schema", "json_schema": {"name": "s",
            "schema": {"type": "object", "required": ["city"],
                       "properties": {"city": {"type": "string"}}}}}),
        ));
        assert!(rejects(
            &rule,
            &schema,
            &answer(json!("{\"city\": 3}"), "stop", json!({}))
        )
        .is_some_and(|w| w.contains("schema")));
        assert_eq!(
            rejects(
                &rule,
                &schema,
                &answer(json!("{\"city\": \"Paris\"}"), "stop", json!({}))
            ),
            None
        );

        let floor = CascadeRule {
            min_mean_logprob: Some(-1.0),
        };
        let unsure = answer(
            json!("Maybe."),
            "stop",
            json!({"logprobs": {"content": [{"token": "Maybe", "logprob": -2.5},
                                            {"token": ".", "logprob": -0.1}]}}),
        );
        assert!(rejects(&floor, &plain, &unsure).is_some_and(|w| w.contains("-1.300")));
        let sure = answer(
            json!("Yes."),
            "stop",
            json!({"logprobs": {"content": [{"token": "Yes", "logprob": -0.2}]}}),
        );
        assert_eq!(rejects(&floor, &plain, &sure), None);
        // No logprobs returned: the floor cannot be checked, the answer stands.
        assert_eq!(rejects(&floor, &plain, &ok), None);
    }
}
