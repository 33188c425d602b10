//! OpenAI's API, as served by OpenAI and by every OpenAI-compatible server.

pub mod chat;
pub mod content;
pub mod misc;
pub mod responses;

pub use chat::*;
pub use content::*;
pub use misc::*;
