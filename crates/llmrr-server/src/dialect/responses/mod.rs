//! OpenAI's Responses API (`POST /v1/responses`, `GET`/`DELETE /v1/responses/{id}`) over the
//! gateway: every configured model answers, translated to the gateway's chat request and back;
//! a model that speaks the Responses API itself (`responses_api`) is sent the client's body.
//!
//! - `request`: a Responses request -> the gateway's chat request (input items, instructions,
//!   function tools, tool_choice, text.format, sampling, reasoning effort), which carries the
//!   client's own body too, for models that speak the Responses API (`native_body`)
//! - `object`: the response object and its output items (reasoning, message, function_call),
//!   status and usage, with the request's parameters echoed
//! - `stream`: stream items -> the semantic events (`response.created` … `response.completed`)
//!
//! Errors use OpenAI's envelope. Stored responses (`store`, on by default) live in the store,
//! scoped to the key that made them, for `[store] responses_retention_days`.

pub mod input_items;
mod object;
mod request;
mod stream;

pub use object::{assistant_message, items_of, new_id, Echo, Item};
pub use request::{native_body, to_chat, ResponsesRequest, Translated};
pub use stream::EventWriter;
