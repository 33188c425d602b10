//! Reads a GGUF file's header, metadata and tensor table (never the weights).

use super::quant::type_layout;
use super::write::align;
use super::{vt, MAGIC};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// A metadata value. Arrays keep their length and, for small ones, their values.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    Int(i128),
    Float(f64),
    Bool(bool),
    Str(String),
    Array { len: u64, values: Vec<MetaValue> },
}

impl std::fmt::Display for MetaValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetaValue::Int(v) => write!(f, "{v}"),
            MetaValue::Float(v) => write!(f, "{v}"),
            MetaValue::Bool(v) => write!(f, "{v}"),
            MetaValue::Str(s) if s.len() > 80 => {
                let head: String = s.chars().take(80).collect();
                write!(f, "{head:?}… ({} bytes)", s.len())
            }
            MetaValue::Str(s) => write!(f, "{s:?}"),
            MetaValue::Array { len, .. } => write!(f, "[{len} values]"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub type_id: u32,
    pub offset: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    pub fn type_name(&self) -> &'static str {
        type_layout(self.type_id).map_or("unknown", |l| l.2)
    }

    pub fn bytes(&self) -> Option<u64> {
        let (block, size, _) = type_layout(self.type_id)?;
        Some(self.elements() / block * size)
    }
}

/// What a GGUF file says about itself.
#[derive(Debug, Clone)]
pub struct GgufInfo {
    pub version: u32,
    pub metadata: Vec<(String, MetaValue)>,
    pub tensors: Vec<TensorInfo>,
    pub file_size: u64,
    /// Where the tensor data starts.
    pub data_offset: u64,
}

/// Arrays longer than this keep only their length.
const KEEP_ARRAY: u64 = 16;
const MAX_STRING: u64 = 1 << 28;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

struct Reader<R> {
    inner: R,
}

impl<R: Read> Reader<R> {
    fn bytes<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.inner.read_exact(&mut b)?;
        Ok(b)
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn string(&mut self) -> io::Result<String> {
        let len = self.u64()?;
        if len > MAX_STRING {
            return Err(bad(format!("a string of {len} bytes")));
        }
        let mut b = vec![0u8; len as usize];
        self.inner.read_exact(&mut b)?;
        String::from_utf8(b).map_err(|_| bad("a string that is not UTF-8"))
    }
    fn value(&mut self, ty: u32) -> io::Result<MetaValue> {
        Ok(match ty {
            vt::U8 => MetaValue::Int(self.bytes::<1>()?[0].into()),
            vt::I8 => MetaValue::Int((self.bytes::<1>()?[0] as i8).into()),
            vt::U16 => MetaValue::Int(u16::from_le_bytes(self.bytes()?).into()),
            vt::I16 => MetaValue::Int(i16::from_le_bytes(self.bytes()?).into()),
            vt::U32 => MetaValue::Int(self.u32()?.into()),
            vt::I32 => MetaValue::Int(i32::from_le_bytes(self.bytes()?).into()),
            vt::U64 => MetaValue::Int(self.u64()?.into()),
            vt::I64 => MetaValue::Int(i64::from_le_bytes(self.bytes()?).into()),
            vt::F32 => MetaValue::Float(f32::from_le_bytes(self.bytes()?).into()),
            vt::F64 => MetaValue::Float(f64::from_le_bytes(self.bytes()?)),
            vt::BOOL => MetaValue::Bool(self.bytes::<1>()?[0] != 0),
            vt::STRING => MetaValue::Str(self.string()?),
            vt::ARRAY => {
                let elem = self.u32()?;
                let len = self.u64()?;
                let mut values = Vec::new();
                for i in 0..len {
                    let v = self.value(elem)?;
                    if i < KEEP_ARRAY {
                        values.push(v);
                    }
                }
                if len > KEEP_ARRAY {
                    values.clear();
                }
                MetaValue::Array { len, values }
            }
            other => return Err(bad(format!("unknown metadata type {other}"))),
        })
    }
}

impl GgufInfo {
    pub fn read(path: &Path) -> io::Result<GgufInfo> {
        let mut file = File::open(path)?;
        let file_size = file.metadata()?.len();
        let mut r = Reader {
            inner: BufReader::with_capacity(1 << 16, &mut file),
        };
        if r.u32()? != MAGIC {
            return Err(bad("not a GGUF file (bad magic)"));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(bad(format!("GGUF version {version} is not supported")));
        }
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        if n_tensors > 1 << 20 || n_kv > 1 << 20 {
            return Err(bad("implausible tensor or metadata count"));
        }
        let mut metadata = Vec::with_capacity(n_kv as usize);
        for _ in 0..n_kv {
            let key = r.string()?;
            let ty = r.u32()?;
            metadata.push((key, r.value(ty)?));
        }
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()?;
            if n_dims > 8 {
                return Err(bad(format!("tensor {name} has {n_dims} dimensions")));
            }
            let dims = (0..n_dims)
                .map(|_| r.u64())
                .collect::<io::Result<Vec<_>>>()?;
            let type_id = r.u32()?;
            let offset = r.u64()?;
            tensors.push(TensorInfo {
                name,
                dims,
                type_id,
                offset,
            });
        }
        let header_end = r.inner.stream_position()?;
        let info = GgufInfo {
            version,
            metadata,
            tensors,
            file_size,
            data_offset: 0,
        };
        let alignment = info.int("general.alignment").unwrap_or(32).max(1) as u64;
        let data_offset = if alignment == 32 {
            align(header_end)
        } else {
            header_end.div_ceil(alignment) * alignment
        };
        if data_offset > file_size {
            return Err(bad("the file ends before its tensor data"));
        }
        let _ = file.seek(SeekFrom::Start(0));
        Ok(GgufInfo {
            data_offset,
            ..info
        })
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn int(&self, key: &str) -> Option<i128> {
        match self.get(key)? {
            MetaValue::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn architecture(&self) -> &str {
        self.str("general.architecture").unwrap_or("unknown")
    }

    fn arch_int(&self, key: &str) -> Option<u64> {
        self.int(&format!("{}.{key}", self.architecture()))
            .and_then(|v| u64::try_from(v).ok())
    }

    /// Whether a sequence's KV can be kept and reused from position 0: not for sliding-window
    /// attention (its oldest cells slide out) nor recurrent state (it cannot be cut short).
    pub fn reuses_prefixes(&self) -> bool {
        let arch = self.architecture();
        let key = |k: &str| format!("{arch}.{k}");
        // A window of 0 is none; llama.cpp reads Phi-3's and then turns it off.
        let sliding = arch != "phi3"
            && self
                .int(&key("attention.sliding_window"))
                .is_some_and(|w| w > 0);
        // Recurrent (Mamba, RWKV) and hybrid (LFM2, MiniMax-01…) state.
        let recurrent = [
            "ssm.conv_kernel",
            "ssm.state_size",
            "wkv.head_size",
            "shortconv.l_cache",
            "attention.recurrent_layers",
        ]
        .iter()
        .any(|k| self.get(&key(k)).is_some());
        !(sliding || recurrent)
    }

    pub fn parameters(&self) -> u64 {
        self.tensors.iter().map(TensorInfo::elements).sum()
    }

    pub fn context_length(&self) -> Option<u64> {
        self.arch_int("context_length")
    }

    pub fn chat_template(&self) -> Option<&str> {
        self.str("tokenizer.chat_template")
    }

    pub fn vocab_size(&self) -> Option<u64> {
        match self.get("tokenizer.ggml.tokens") {
            Some(MetaValue::Array { len, .. }) => Some(*len),
            _ => None,
        }
    }

    /// The quantization: llama.cpp's name of `general.file_type`, else the most common type
    /// among the 2-D tensors.
    pub fn quantization(&self) -> String {
        const FILE_TYPES: &[(i128, &str)] = &[
            (0, "F32"),
            (1, "F16"),
            (2, "Q4_0"),
            (3, "Q4_1"),
            (7, "Q8_0"),
            (8, "Q5_0"),
            (9, "Q5_1"),
            (10, "Q2_K"),
            (11, "Q3_K_S"),
            (12, "Q3_K_M"),
            (13, "Q3_K_L"),
            (14, "Q4_K_S"),
            (15, "Q4_K_M"),
            (16, "Q5_K_S"),
            (17, "Q5_K_M"),
            (18, "Q6_K"),
            (32, "BF16"),
        ];
        if let Some(ft) = self.int("general.file_type") {
            if let Some((_, name)) = FILE_TYPES.iter().find(|(id, _)| *id == ft) {
                return (*name).to_owned();
            }
        }
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for t in self.tensors.iter().filter(|t| t.dims.len() >= 2) {
            match counts.iter_mut().find(|(n, _)| *n == t.type_name()) {
                Some(c) => c.1 += 1,
                None => counts.push((t.type_name(), 1)),
            }
        }
        counts
            .into_iter()
            .max_by_key(|c| c.1)
            .map_or_else(|| "unknown".to_owned(), |c| c.0.to_owned())
    }

    /// The dimensions of an attention head's key and value.
    pub fn head_dims(&self) -> (u64, u64) {
        let embd = self.arch_int("embedding_length").unwrap_or(0);
        let heads = self.arch_int("attention.head_count").unwrap_or(1).max(1);
        (
            self.arch_int("attention.key_length")
                .unwrap_or(embd / heads),
            self.arch_int("attention.value_length")
                .unwrap_or(embd / heads),
        )
    }

    /// Memory to run this model with `n_ctx` KV cells in total (every sequence together),
    /// evaluating up to `n_batch` tokens per step, the KV cache in f16.
    pub fn estimate_memory(&self, n_ctx: u64, n_batch: u64) -> MemoryEstimate {
        self.estimate_memory_with(n_ctx, n_batch, 2.0)
    }

    /// As [`Self::estimate_memory`], the KV cache at `kv_bytes` per element (a quantized
    /// type's block size over its elements).
    pub fn estimate_memory_with(&self, n_ctx: u64, n_batch: u64, kv_bytes: f64) -> MemoryEstimate {
        let layers = self.arch_int("block_count").unwrap_or(0);
        let embd = self.arch_int("embedding_length").unwrap_or(0);
        let heads = self.arch_int("attention.head_count").unwrap_or(1).max(1);
        let heads_kv = self.arch_int("attention.head_count_kv").unwrap_or(heads);
        let key_len = self
            .arch_int("attention.key_length")
            .unwrap_or(embd / heads);
        let value_len = self
            .arch_int("attention.value_length")
            .unwrap_or(embd / heads);
        let ff = self.arch_int("feed_forward_length").unwrap_or(4 * embd);
        let vocab = self.vocab_size().unwrap_or(32_000);
        // K and V for every layer and cell.
        let kv_cache =
            ((layers * n_ctx * (key_len + value_len) * heads_kv) as f64 * kv_bytes).ceil() as u64;
        // The CPU compute buffer: activations of one batch plus its logits, in f32 (a
        // conservative reading of what llama.cpp allocates for a graph of this shape).
        let compute = n_batch * (vocab + 4 * embd.max(ff)) * 4 + (16 << 20);
        MemoryEstimate {
            weights: self.file_size.saturating_sub(self.data_offset),
            kv_cache,
            compute,
            prompt_cache: 0,
        }
    }
}

/// The memory a loaded model is expected to take, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MemoryEstimate {
    pub weights: u64,
    pub kv_cache: u64,
    pub compute: u64,
    /// Kept prompts copied out of the slots (a local model's `prompt_cache_mb`).
    pub prompt_cache: u64,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.compute + self.prompt_cache
    }
}
