//! A cached answer: the body (a JSON answer, or the chunks of a stream), who made it and what
//! it cost; and its byte encoding for the disk and Redis tiers.
//!
//! Encoding: `LLC1`, a u32 header length, the header (JSON: everything but the body), then
//! the body: a JSON answer (its u32 length, then its bytes), or each stream chunk as a flag byte (usage only), a u32
//! length and its JSON. Anything else decodes to `None` (a corrupt entry is a miss).

use bytes::{BufMut, Bytes, BytesMut};
use llmrr_types::openai::Usage;
use serde::{Deserialize, Serialize};

/// One chunk of a streamed answer as the client received it (after output guardrails).
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// The chunk's JSON (`data:` of its SSE frame).
    pub data: Bytes,
    /// Carries only usage: sent to clients that asked for `include_usage`.
    pub usage_only: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Json(Bytes),
    Stream(Vec<Chunk>),
}

/// Everything about an entry but its body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The model that answered.
    pub model: String,
    pub provider: String,
    pub usage: Usage,
    /// What the answer cost to make (pico-USD): the saving of each hit.
    pub cost_pusd: i64,
    /// The model had a price (else the saving is unknown, recorded as 0).
    pub priced: bool,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub namespace: String,
    /// The model or route the request named.
    pub name: String,
    /// The key whose request made it.
    pub key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub meta: Meta,
    pub body: Body,
}

const MAGIC: &[u8; 4] = b"LLC1";

impl Entry {
    /// Bytes it takes (its encoding's size, near enough for bounds).
    pub fn size(&self) -> u64 {
        let body = match &self.body {
            Body::Json(b) => b.len(),
            Body::Stream(chunks) => chunks.iter().map(|c| c.data.len() + 5).sum(),
        };
        (body + 256 + self.meta.namespace.len() + self.meta.name.len()) as u64
    }

    pub fn is_stream(&self) -> bool {
        matches!(self.body, Body::Stream(_))
    }

    pub fn encode(&self) -> Bytes {
        let header = serde_json::to_vec(&self.meta).unwrap_or_default();
        let mut out = BytesMut::with_capacity(self.size() as usize + header.len());
        out.put_slice(MAGIC);
        out.put_u32(header.len() as u32);
        out.put_slice(&header);
        match &self.body {
            Body::Json(b) => {
                out.put_u8(b'j');
                out.put_u32(b.len() as u32);
                out.put_slice(b);
            }
            Body::Stream(chunks) => {
                out.put_u8(b's');
                for c in chunks {
                    out.put_u8(u8::from(c.usage_only));
                    out.put_u32(c.data.len() as u32);
                    out.put_slice(&c.data);
                }
            }
        }
        out.freeze()
    }

    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let (len, rest) = take_u32(rest)?;
        let header = rest.get(..len)?;
        let meta: Meta = serde_json::from_slice(header).ok()?;
        let rest = &rest[len..];
        let (&kind, mut rest) = rest.split_first()?;
        let body = match kind {
            b'j' => {
                let (len, rest) = take_u32(rest)?;
                if rest.len() != len {
                    return None;
                }
                Body::Json(Bytes::copy_from_slice(rest))
            }
            b's' => {
                let mut chunks = Vec::new();
                while let Some((&flag, after)) = rest.split_first() {
                    let (len, after) = take_u32(after)?;
                    let data = after.get(..len)?;
                    chunks.push(Chunk {
                        data: Bytes::copy_from_slice(data),
                        usage_only: flag == 1,
                    });
                    rest = &after[len..];
                }
                Body::Stream(chunks)
            }
            _ => return None,
        };
        Some(Entry { meta, body })
    }
}

/// The header of an encoded entry, from its first bytes (enough to hold it).
pub fn meta_of(bytes: &[u8]) -> Option<Meta> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let (len, rest) = take_u32(rest)?;
    serde_json::from_slice(rest.get(..len)?).ok()
}

fn take_u32(b: &[u8]) -> Option<(usize, &[u8])> {
    let (head, rest) = b.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*head) as usize, rest))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn entry(body: Body) -> Entry {
        Entry {
            meta: Meta {
                model: "gpt".into(),
                provider: "openai".into(),
                usage: Usage {
                    prompt_tokens: 3,
                    completion_tokens: 4,
                    total_tokens: 7,
                    ..Usage::default()
                },
                cost_pusd: 1_500_000,
                priced: true,
                created_ms: 1,
                expires_ms: 2,
                namespace: "team:a".into(),
                name: "gpt".into(),
                key_id: Some("k1".into()),
            },
            body,
        }
    }

    #[test]
    fn entries_round_trip_and_corrupt_bytes_are_a_miss() {
        let json = entry(Body::Json(Bytes::from_static(b"{\"id\":\"x\"}")));
        let stream = entry(Body::Stream(vec![
            Chunk {
                data: Bytes::from_static(b"{\"a\":1}"),
                usage_only: false,
            },
            Chunk {
                data: Bytes::from_static(b"{\"usage\":{}}"),
                usage_only: true,
            },
        ]));
        for e in [json, stream] {
            let bytes = e.encode();
            assert_eq!(Entry::decode(&bytes), Some(e));
            assert_eq!(Entry::decode(&bytes[..bytes.len() - 1]), None, "truncated");
            assert_eq!(Entry::decode(b"LLC1\0\0\0\x05{}"), None);
            assert_eq!(Entry::decode(b"nope"), None);
        }
    }
}
