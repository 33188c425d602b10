//! The tensor encodings the synthesizer writes, and the size of every type the reader meets.

use half::f16;

/// A ggml tensor type (the numbers are GGUF's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
    Q4_0,
    Q8_0,
}

impl TensorType {
    pub fn id(self) -> u32 {
        match self {
            TensorType::F32 => 0,
            TensorType::F16 => 1,
            TensorType::Q4_0 => 2,
            TensorType::Q8_0 => 8,
        }
    }

    /// GGUF's `general.file_type` for a model whose matrices are of this type.
    pub fn file_type(self) -> u32 {
        match self {
            TensorType::F32 => 0,
            TensorType::F16 => 1,
            TensorType::Q4_0 => 2,
            TensorType::Q8_0 => 7,
        }
    }

    pub fn parse(name: &str) -> Option<TensorType> {
        match name.to_ascii_lowercase().as_str() {
            "f32" => Some(TensorType::F32),
            "f16" => Some(TensorType::F16),
            "q4_0" => Some(TensorType::Q4_0),
            "q8_0" => Some(TensorType::Q8_0),
            _ => None,
        }
    }

    /// Bytes of a row of `n` values (`n` a multiple of 32 for the block types).
    pub fn row_bytes(self, n: u64) -> u64 {
        match self {
            TensorType::F32 => n * 4,
            TensorType::F16 => n * 2,
            TensorType::Q4_0 => n / 32 * 18,
            TensorType::Q8_0 => n / 32 * 34,
        }
    }

    /// Appends the encoding of `row` to `out`.
    pub fn encode(self, row: &[f32], out: &mut Vec<u8>) {
        match self {
            TensorType::F32 => row.iter().for_each(|v| out.extend(v.to_le_bytes())),
            TensorType::F16 => row
                .iter()
                .for_each(|v| out.extend(f16::from_f32(*v).to_le_bytes())),
            TensorType::Q8_0 => row.chunks(32).for_each(|b| q8_0_block(b, out)),
            TensorType::Q4_0 => row.chunks(32).for_each(|b| q4_0_block(b, out)),
        }
    }
}

/// One scale and 32 signed bytes: `x ≈ d * q`.
fn q8_0_block(block: &[f32], out: &mut Vec<u8>) {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
    out.extend(f16::from_f32(d).to_le_bytes());
    out.extend(block.iter().map(|v| (v * inv).round() as i8 as u8));
}

/// One scale and 32 four-bit values packed two per byte: `x ≈ d * (q - 8)`, the scale taken
/// from the value of largest magnitude so that it maps to -8 exactly.
fn q4_0_block(block: &[f32], out: &mut Vec<u8>) {
    let max = block
        .iter()
        .copied()
        .fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
    let d = max / -8.0;
    let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
    let q = |v: f32| ((v * inv + 8.5) as i32).clamp(0, 15) as u8;
    out.extend(f16::from_f32(d).to_le_bytes());
    for j in 0..16 {
        out.push(q(block[j]) | (q(block[j + 16]) << 4));
    }
}

/// Block size and bytes per block of a ggml type id, for sizes in files we did not write.
pub(crate) fn type_layout(id: u32) -> Option<(u64, u64, &'static str)> {
    Some(match id {
        0 => (1, 4, "F32"),
        1 => (1, 2, "F16"),
        2 => (32, 18, "Q4_0"),
        3 => (32, 20, "Q4_1"),
        6 => (32, 22, "Q5_0"),
        7 => (32, 24, "Q5_1"),
        8 => (32, 34, "Q8_0"),
        10 => (256, 84, "Q2_K"),
        11 => (256, 110, "Q3_K"),
        12 => (256, 144, "Q4_K"),
        13 => (256, 176, "Q5_K"),
        14 => (256, 210, "Q6_K"),
        15 => (256, 292, "Q8_K"),
        16 => (256, 66, "IQ2_XXS"),
        17 => (256, 74, "IQ2_XS"),
        18 => (256, 98, "IQ3_XXS"),
        19 => (256, 50, "IQ1_S"),
        20 => (32, 18, "IQ4_NL"),
        21 => (256, 110, "IQ3_S"),
        22 => (256, 82, "IQ2_S"),
        23 => (256, 136, "IQ4_XS"),
        24 => (1, 1, "I8"),
        25 => (1, 2, "I16"),
        26 => (1, 4, "I32"),
        27 => (1, 8, "I64"),
        28 => (1, 8, "F64"),
        29 => (256, 56, "IQ1_M"),
        30 => (1, 2, "BF16"),
        34 => (256, 54, "TQ1_0"),
        35 => (256, 66, "TQ2_0"),
        39 => (32, 17, "MXFP4"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_q8(bytes: &[u8]) -> Vec<f32> {
        let d = f16::from_le_bytes([bytes[0], bytes[1]]).to_f32();
        bytes[2..34].iter().map(|q| *q as i8 as f32 * d).collect()
    }

    fn decode_q4(bytes: &[u8]) -> Vec<f32> {
        let d = f16::from_le_bytes([bytes[0], bytes[1]]).to_f32();
        let mut v = vec![0f32; 32];
        for j in 0..16 {
            v[j] = ((bytes[2 + j] & 0xF) as f32 - 8.0) * d;
            v[j + 16] = ((bytes[2 + j] >> 4) as f32 - 8.0) * d;
        }
        v
    }

    #[test]
    fn quantized_blocks_round_trip_within_their_step() {
        let row: Vec<f32> = (0..32)
            .map(|i| ((i * 37 % 29) as f32 - 14.0) / 7.0)
            .collect();
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (ty, decode, step) in [
            (
                TensorType::Q8_0,
                decode_q8 as fn(&[u8]) -> Vec<f32>,
                amax / 127.0,
            ),
            // -8..7: the extreme of the other sign clips by one step.
            (TensorType::Q4_0, decode_q4, amax / 4.0),
        ] {
            let mut out = Vec::new();
            ty.encode(&row, &mut out);
            assert_eq!(out.len() as u64, ty.row_bytes(32));
            for (a, b) in row.iter().zip(decode(&out)) {
                assert!((a - b).abs() <= step * 0.51 + 1e-3, "{ty:?}: {a} vs {b}");
            }
        }
    }
}
