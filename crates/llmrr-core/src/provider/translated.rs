//! Streams of another API's events turned into OpenAI chat chunks (Anthropic's Messages
//! events, OpenAI's Responses events): a [`Translate`] reads one event at a time and gives
//! the chunks it becomes; the stream ends once the translator has seen the answer finish, and
//! with an error when the upstream's events stop before that or fail.

use super::http::Target;
use super::sse::SseEvent;
use super::{ChunkStream, StreamChunk};
use crate::error::{Error, Result};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use llmrr_types::openai as o;

pub trait Translate: Send + 'static {
    /// The chunks one event becomes (often none); an `Err` ends the stream.
    fn on_event(&mut self, target: &Target, ev: SseEvent) -> Result<Vec<StreamChunk>>;

    /// Whether the answer is complete (nothing after it is read).
    fn finished(&self) -> bool;
}

/// `tr`'s chunks of `events`; `last_event` names the event a complete answer ends with (said
/// in the error when the events stop before it).
pub fn translated(
    target: Target,
    events: BoxStream<'static, Result<SseEvent>>,
    tr: impl Translate,
    last_event: &'static str,
) -> ChunkStream {
    struct State<T> {
        events: BoxStream<'static, Result<SseEvent>>,
        tr: T,
        /// Chunks of the last event not yet passed on.
        ready: std::collections::VecDeque<StreamChunk>,
        target: Target,
        /// Failed: nothing more.
        over: bool,
    }
    let state = State {
        events,
        tr,
        ready: Default::default(),
        target,
        over: false,
    };
    futures_util::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(c) = st.ready.pop_front() {
                return Some((Ok(c), st));
            }
            if st.over || st.tr.finished() {
                return None;
            }
            let failure = match st.events.next().await {
                Some(Ok(ev)) => match st.tr.on_event(&st.target, ev) {
                    Ok(chunks) => {
                        st.ready.extend(chunks);
                        continue;
                    }
                    Err(e) => e,
                },
                Some(Err(e)) => e,
                None => st
                    .target
                    .protocol(format!("the stream ended before {last_event}")),
            };
            st.over = true;
            return Some((Err(failure), st));
        }
    })
    .boxed()
}

/// One chunk as the gateway passes it on: its JSON, whether it carries output, its usage.
pub fn encode(
    chunk: &o::ChatCompletionChunk,
    has_output: bool,
    usage: Option<o::Usage>,
) -> Result<StreamChunk> {
    let data = serde_json::to_vec(chunk)
        .map_err(|e| Error::Internal(format!("cannot encode a chunk: {e}")))?;
    Ok(StreamChunk {
        compute: None,
        data: Bytes::from(data),
        usage,
        usage_only: chunk.choices.is_empty(),
        has_output,
    })
}

/// A chunk of answer `id` with one choice.
pub fn chunk(
    id: &str,
    created: i64,
    model: &str,
    delta: o::Delta,
    finish_reason: Option<String>,
) -> o::ChatCompletionChunk {
    o::ChatCompletionChunk {
        id: id.to_owned(),
        object: "chat.completion.chunk".into(),
        created,
        model: model.to_owned(),
        choices: vec![o::ChunkChoice {
            index: 0,
            delta,
            finish_reason,
            logprobs: None,
        }],
        usage: None,
        system_fingerprint: None,
    }
}

/// The last chunk of answer `id`: no choices, its usage.
pub fn usage_chunk(id: &str, created: i64, model: &str, usage: o::Usage) -> Result<StreamChunk> {
    let mut last = chunk(id, created, model, o::Delta::default(), None);
    last.choices.clear();
    last.usage = Some(usage);
    encode(&last, false, Some(usage))
}
