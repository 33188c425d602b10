//! Guardrails on whole texts: the request's messages or prompt (input), a complete answer
//! (output).

use super::{Guardrails, Side};
use crate::error::Result;
use bytes::Bytes;
use llmrr_types::openai::{ChatCompletionRequest, ContentPart, MessageContent};
use serde_json::Value;
use std::borrow::Cow;

/// True when the rules changed `text`.
fn apply_in_place(g: &Guardrails, text: &mut String, side: Side) -> Result<bool> {
    if let Cow::Owned(new) = g.check(text, side)? {
        let changed = new != *text;
        *text = new;
        return Ok(changed);
    }
    Ok(false)
}

/// The input rules on every text of a chat request (message contents and text parts).
pub fn redact_chat(g: &Guardrails, req: &mut ChatCompletionRequest) -> Result<()> {
    if !g.applies_to(Side::Input) {
        return Ok(());
    }
    let mut changed = false;
    for m in &mut req.messages {
        match &mut m.content {
            Some(MessageContent::Text(t)) => changed |= apply_in_place(g, t, Side::Input)?,
            Some(MessageContent::Parts(parts)) => {
                for p in parts {
                    if let ContentPart::Text { text } = p {
                        changed |= apply_in_place(g, text, Side::Input)?;
                    }
                }
            }
            None => {}
        }
    }
    if changed {
        // The client's own body would carry the text unredacted: it is not sent.
        req.native = None;
    }
    Ok(())
}

/// The input rules on a completions prompt (a string or strings).
pub fn redact_prompt(g: &Guardrails, prompt: &mut Value) -> Result<()> {
    if !g.applies_to(Side::Input) {
        return Ok(());
    }
    match prompt {
        Value::String(s) => apply_in_place(g, s, Side::Input).map(drop),
        Value::Array(items) => {
            for item in items {
                if let Value::String(s) = item {
                    apply_in_place(g, s, Side::Input)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The output rules on a complete answer (chat `message.content`, completions `text`).
pub fn redact_answer(g: &Guardrails, body: Bytes) -> Result<Bytes> {
    if !g.applies_to(Side::Output) {
        return Ok(body);
    }
    let Ok(mut answer) = serde_json::from_slice::<Value>(&body) else {
        return Ok(body);
    };
    let mut changed = false;
    if let Some(choices) = answer.get_mut("choices").and_then(Value::as_array_mut) {
        for choice in choices {
            let text = match choice.get_mut("message") {
                Some(m) => m.get_mut("content"),
                None => choice.get_mut("text"),
            };
            if let Some(Value::String(s)) = text {
                if let Cow::Owned(new) = g.check(s, Side::Output)? {
                    *s = new;
                    changed = true;
                }
            }
        }
    }
    if !changed {
        return Ok(body);
    }
    Ok(serde_json::to_vec(&answer).map(Bytes::from).unwrap_or(body))
}
