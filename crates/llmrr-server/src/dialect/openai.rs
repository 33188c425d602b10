//! OpenAI's SSE framing: one `data: {chunk}` frame per chunk, `data: [DONE]` at the end, the
//! error envelope as the last frame of a stream that failed, and the routing explanation as a
//! comment line (`: llmrr {…}`) that SDKs skip.

use bytes::{BufMut, Bytes, BytesMut};
use llmrr_core::answer::StreamItem;

/// One stream item as SSE bytes.
pub fn frame(item: StreamItem) -> Bytes {
    match item {
        StreamItem::Chunk(data) => data_frame(&data),
        StreamItem::Done => Bytes::from_static(b"data: [DONE]\n\n"),
        StreamItem::Error(e) => {
            data_frame(&serde_json::to_vec(&e.openai_body()).unwrap_or_default())
        }
        StreamItem::Explain(json) => {
            let mut b = BytesMut::with_capacity(json.len() + 12);
            super::explain_comment(&json, &mut b);
            b.freeze()
        }
    }
}

fn data_frame(data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(data.len() + 8);
    b.put_slice(b"data: ");
    b.put_slice(data);
    b.put_slice(b"\n\n");
    b.freeze()
}
