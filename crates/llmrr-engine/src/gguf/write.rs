//! A GGUF v3 writer: metadata first, then the tensor table, then the tensor data streamed one
//! tensor at a time (a model never has to be held in memory whole).

use super::{vt, TensorType, ALIGNMENT, MAGIC};
use std::io::{self, Write};

/// A tensor to write: `dims[0]` is the row length (ggml's `ne0`).
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: TensorType,
}

impl TensorSpec {
    pub fn bytes(&self) -> u64 {
        let rows: u64 = self.dims[1..].iter().product();
        self.ty.row_bytes(self.dims[0]) * rows
    }
}

#[derive(Debug, Default)]
pub struct GgufWriter {
    meta: Vec<u8>,
    n_kv: u64,
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend((s.len() as u64).to_le_bytes());
    buf.extend(s.as_bytes());
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, key: &str, ty: u32) -> &mut Vec<u8> {
        self.n_kv += 1;
        put_str(&mut self.meta, key);
        self.meta.extend(ty.to_le_bytes());
        &mut self.meta
    }

    pub fn string(&mut self, key: &str, value: &str) -> &mut Self {
        put_str(self.key(key, vt::STRING), value);
        self
    }

    pub fn u32(&mut self, key: &str, value: u32) -> &mut Self {
        self.key(key, vt::U32).extend(value.to_le_bytes());
        self
    }

    pub fn f32(&mut self, key: &str, value: f32) -> &mut Self {
        self.key(key, vt::F32).extend(value.to_le_bytes());
        self
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key, vt::BOOL).push(u8::from(value));
        self
    }

    pub fn strings(&mut self, key: &str, values: &[String]) -> &mut Self {
        let buf = self.key(key, vt::ARRAY);
        buf.extend(vt::STRING.to_le_bytes());
        buf.extend((values.len() as u64).to_le_bytes());
        values.iter().for_each(|v| put_str(buf, v));
        self
    }

    pub fn i32s(&mut self, key: &str, values: &[i32]) -> &mut Self {
        let buf = self.key(key, vt::ARRAY);
        buf.extend(vt::I32.to_le_bytes());
        buf.extend((values.len() as u64).to_le_bytes());
        values.iter().for_each(|v| buf.extend(v.to_le_bytes()));
        self
    }

    /// Writes the file. `fill(i, buf)` appends the data of `tensors[i]` to the (empty) `buf`.
    pub fn write<W: Write>(
        &self,
        out: &mut W,
        tensors: &[TensorSpec],
        mut fill: impl FnMut(usize, &mut Vec<u8>),
    ) -> io::Result<u64> {
        let mut head = Vec::with_capacity(self.meta.len() + 64 * tensors.len() + 64);
        head.extend(MAGIC.to_le_bytes());
        head.extend(3u32.to_le_bytes());
        head.extend((tensors.len() as u64).to_le_bytes());
        head.extend(self.n_kv.to_le_bytes());
        head.extend(&self.meta);
        let mut offset = 0u64;
        for t in tensors {
            put_str(&mut head, &t.name);
            head.extend((t.dims.len() as u32).to_le_bytes());
            t.dims.iter().for_each(|d| head.extend(d.to_le_bytes()));
            head.extend(t.ty.id().to_le_bytes());
            head.extend(offset.to_le_bytes());
            offset = align(offset + t.bytes());
        }
        head.resize(align(head.len() as u64) as usize, 0);
        out.write_all(&head)?;
        let mut written = head.len() as u64;
        let mut buf = Vec::new();
        for (i, t) in tensors.iter().enumerate() {
            buf.clear();
            fill(i, &mut buf);
            if buf.len() as u64 != t.bytes() {
                return Err(io::Error::other(format!(
                    "tensor {} has {} bytes, expected {}",
                    t.name,
                    buf.len(),
                    t.bytes()
                )));
            }
            buf.resize(align(buf.len() as u64) as usize, 0);
            out.write_all(&buf)?;
            written += buf.len() as u64;
        }
        Ok(written)
    }
}

pub(crate) fn align(n: u64) -> u64 {
    n.div_ceil(ALIGNMENT) * ALIGNMENT
}
