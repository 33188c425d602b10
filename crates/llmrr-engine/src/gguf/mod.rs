//! GGUF files without llama.cpp: read the header (for `models inspect` and memory estimates),
//! write files, and synthesize small random-weight llama models for tests and trials.
//!
//! - `read`: header, metadata and tensor table of a GGUF file ([`GgufInfo`])
//! - `write`: a streaming GGUF v3 writer
//! - `quant`: F16 / Q8_0 / Q4_0 encodings of `f32` rows
//! - `synth`: a llama-architecture model with a byte-level BPE vocab and a chat template

mod quant;
mod read;
mod synth;
mod write;

pub use quant::TensorType;
pub use read::{GgufInfo, MemoryEstimate, MetaValue, TensorInfo};
#[cfg(test)]
pub(crate) use synth::CHATML;
pub use synth::{synthesize, SynthSpec};
pub use write::{GgufWriter, TensorSpec};

/// `GGUF` in little-endian order.
pub(crate) const MAGIC: u32 = 0x4655_4747;
pub(crate) const ALIGNMENT: u64 = 32;

/// GGUF metadata value types.
pub(crate) mod vt {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}
