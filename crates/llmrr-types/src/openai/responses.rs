//! OpenAI's Responses API as an upstream answers it: the response object and its stream
//! events, as far as the gateway reads them to turn them into chat completions. Items,
//! parts and events it has no use for parse as `Other` and are skipped.

use crate::openai::{CompletionTokensDetails, PromptTokensDetails, Usage};
use serde::Deserialize;
use serde_json::Value;

/// A response object (`"object": "response"`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResponseObject {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub created_at: Option<f64>,
    /// `completed`, `incomplete`, `failed`, `in_progress`…
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub output: Vec<OutputItem>,
    #[serde(default)]
    pub usage: Option<ResponsesUsage>,
    #[serde(default)]
    pub incomplete_details: Option<IncompleteDetails>,
    /// Why a `failed` response failed (`{"code", "message"}`).
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    Message {
        #[serde(default)]
        content: Vec<OutputContent>,
    },
    FunctionCall {
        #[serde(default)]
        call_id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        arguments: String,
    },
    /// A reasoning model's reasoning: its summary (OpenAI) or its text (open models served
    /// by vLLM).
    Reasoning {
        #[serde(default)]
        summary: Vec<TextPart>,
        #[serde(default)]
        content: Option<Vec<TextPart>>,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputContent {
    OutputText {
        text: String,
    },
    Refusal {
        refusal: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TextPart {
    #[serde(default)]
    pub text: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct IncompleteDetails {
    /// `max_output_tokens` or `content_filter`.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct ResponsesUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub input_tokens_details: Option<PromptTokensDetails>,
    #[serde(default)]
    pub output_tokens_details: Option<CompletionTokensDetails>,
}

impl ResponsesUsage {
    /// The same counts under chat completions' names.
    pub fn to_chat(self) -> Usage {
        Usage {
            prompt_tokens: self.input_tokens,
            completion_tokens: self.output_tokens,
            total_tokens: self.input_tokens + self.output_tokens,
            prompt_tokens_details: self.input_tokens_details.filter(|d| d.cached_tokens > 0),
            completion_tokens_details: self
                .output_tokens_details
                .filter(|d| d.reasoning_tokens > 0),
            ..Usage::default()
        }
    }
}

/// One event of a streamed response (`data: {"type": …}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum StreamEvent {
    #[serde(rename = "response.created")]
    Created { response: ResponseObject },
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded { output_index: u32, item: OutputItem },
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta { delta: String },
    #[serde(rename = "response.refusal.delta")]
    RefusalDelta { delta: String },
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionCallArgumentsDelta { output_index: u32, delta: String },
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone {
        output_index: u32,
        #[serde(default)]
        arguments: String,
    },
    /// A new part of a reasoning summary (parts after the first are new paragraphs).
    #[serde(rename = "response.reasoning_summary_part.added")]
    ReasoningSummaryPartAdded {
        #[serde(default)]
        summary_index: u32,
    },
    #[serde(rename = "response.reasoning_summary_text.delta")]
    ReasoningSummaryDelta { delta: String },
    #[serde(rename = "response.reasoning_text.delta")]
    ReasoningTextDelta { delta: String },
    #[serde(rename = "response.completed")]
    Completed { response: ResponseObject },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: ResponseObject },
    #[serde(rename = "response.failed")]
    Failed { response: ResponseObject },
    /// A failure in the stream: `code`/`message` at the top (OpenAI), or under `error`.
    #[serde(rename = "error")]
    Error {
        #[serde(default)]
        code: Option<Value>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        error: Option<Value>,
    },
    #[serde(other)]
    Other,
}
