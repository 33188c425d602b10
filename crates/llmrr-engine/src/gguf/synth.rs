//! A small llama-architecture model with random weights: a byte-level BPE vocabulary (GPT-2's
//! byte-to-character mapping, so every byte sequence can be tokenized), ChatML special tokens
//! and chat template. Its output is gibberish, but it runs through llama.cpp exactly like a real
//! model of the same shape, which is what tests and benchmarks need.
//!
//! The output projection is scaled so that logits are spread wide: greedy decoding then has a
//! clear winner at every step, and the same prompt gives the same text whatever else shares
//! the batch (the no-cross-talk test depends on it).

use super::{GgufWriter, TensorSpec, TensorType};
use std::collections::HashSet;
use std::io::{self, BufWriter, Write};
use std::path::Path;

#[derive(Debug, Clone)]
pub struct SynthSpec {
    pub name: String,
    pub n_embd: u64,
    pub n_layer: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    pub n_ff: u64,
    pub vocab_size: u64,
    pub context_length: u64,
    /// The type of the 2-D weight matrices (norms stay F32).
    pub ty: TensorType,
    pub seed: u64,
    /// Whether to embed a chat template (ChatML).
    pub chat_template: bool,
}

impl SynthSpec {
    /// A model small enough for tests: loads in milliseconds, a few hundred KB.
    pub fn tiny() -> SynthSpec {
        SynthSpec {
            name: "llmrr-synth-tiny".into(),
            n_embd: 64,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            n_ff: 128,
            vocab_size: 512,
            context_length: 4096,
            ty: TensorType::F32,
            seed: 42,
            chat_template: true,
        }
    }

    /// About 270M parameters, the benchmark's size.
    pub fn m270() -> SynthSpec {
        SynthSpec {
            name: "llmrr-synth-270m".into(),
            n_embd: 1024,
            n_layer: 16,
            n_head: 16,
            n_head_kv: 8,
            n_ff: 3072,
            vocab_size: 32_000,
            context_length: 8192,
            ty: TensorType::Q8_0,
            seed: 42,
            chat_template: true,
        }
    }

    pub fn preset(name: &str) -> Option<SynthSpec> {
        match name {
            "tiny" => Some(SynthSpec::tiny()),
            "270m" => Some(SynthSpec::m270()),
            _ => None,
        }
    }

    fn head_dim(&self) -> u64 {
        self.n_embd / self.n_head
    }

    fn tensors(&self) -> Vec<TensorSpec> {
        let (e, kv, ff, v) = (
            self.n_embd,
            self.head_dim() * self.n_head_kv,
            self.n_ff,
            self.vocab_size,
        );
        let t = |name: String, dims: &[u64], ty| TensorSpec {
            name,
            dims: dims.to_vec(),
            ty,
        };
        let mut all = vec![
            t("token_embd.weight".into(), &[e, v], self.ty),
            t("output_norm.weight".into(), &[e], TensorType::F32),
            t("output.weight".into(), &[e, v], self.ty),
        ];
        for i in 0..self.n_layer {
            let b = |s: &str| format!("blk.{i}.{s}.weight");
            all.extend([
                t(b("attn_norm"), &[e], TensorType::F32),
                t(b("attn_q"), &[e, e], self.ty),
                t(b("attn_k"), &[e, kv], self.ty),
                t(b("attn_v"), &[e, kv], self.ty),
                t(b("attn_output"), &[e, e], self.ty),
                t(b("ffn_norm"), &[e], TensorType::F32),
                t(b("ffn_gate"), &[e, ff], self.ty),
                t(b("ffn_up"), &[e, ff], self.ty),
                t(b("ffn_down"), &[ff, e], self.ty),
            ]);
        }
        all
    }

    pub fn parameters(&self) -> u64 {
        self.tensors()
            .iter()
            .map(|t| t.dims.iter().product::<u64>())
            .sum()
    }

    fn validate(&self) -> io::Result<()> {
        let block = if self.ty == TensorType::F32 || self.ty == TensorType::F16 {
            1
        } else {
            32
        };
        let ok = self.n_head > 0
            && self.n_embd.is_multiple_of(self.n_head)
            && self.n_head_kv > 0
            && self.n_head.is_multiple_of(self.n_head_kv)
            && self.n_embd.is_multiple_of(block)
            && self.n_ff.is_multiple_of(block)
            && self.n_layer > 0
            && self.vocab_size >= 260;
        if ok {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "inconsistent shape: n_embd must divide by n_head (and by 32 when quantized), \
                 n_head by n_head_kv, vocab_size >= 260",
            ))
        }
    }
}

/// Special tokens, after the 256 byte tokens.
const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// ChatML, with tools in the Hermes syntax (the form Qwen and Hermes models use): tools are
/// listed in the system turn, calls are `<tool_call>` blocks, results come back as
/// `<tool_response>` in a user turn.
pub(crate) const CHATML: &str = r#"{%- if tools %}
{{- '<|im_start|>system\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\n\n' }}{%- endif %}
{{- '# Tools\n\nFunctions you can call, one JSON signature per line:\n<tools>' }}
{%- for tool in tools %}{{- '\n' + (tool | tojson) }}{%- endfor %}
{{- '\n</tools>\n\nTo call one, answer with its name and arguments as JSON in tags:\n<tool_call>\n{"name": "<name>", "arguments": {<arguments>}}\n</tool_call><|im_end|>\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'system' and loop.first %}
{%- elif message.role == 'assistant' and message.tool_calls %}
{{- '<|im_start|>assistant' }}
{%- if message.content %}{{- '\n' + message.content }}{%- endif %}
{%- for call in message.tool_calls %}
{{- '\n<tool_call>\n{"name": "' + call.function.name + '", "arguments": ' + (call.function.arguments | tojson) + '}\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\n' }}
{%- elif message.role == 'tool' %}
{{- '<|im_start|>user\n<tool_response>\n' + message.content + '\n</tool_response><|im_end|>\n' }}
{%- else %}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"#;

/// GPT-2's reversible byte -> character mapping: printable bytes stand for themselves, the
/// others are moved to U+0100 and up, so every token is a printable string.
fn byte_chars() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut next = 256u32;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap_or('?')
            } else {
                let c = char::from_u32(next).unwrap_or('?');
                next += 1;
                c
            }
        })
        .collect()
}

/// xorshift64*: fast, seedable, good enough for random weights.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The vocabulary: tokens, their types and BPE merges. Merged tokens join pieces of
/// lower-case words (optionally space-led), so ordinary English text tokenizes into
/// multi-byte tokens the way it does with a trained vocabulary.
fn vocabulary(size: usize, rng: &mut Rng) -> (Vec<String>, Vec<i32>, Vec<String>) {
    let chars = byte_chars();
    let mut tokens: Vec<String> = chars.iter().map(char::to_string).collect();
    let mut types = vec![1i32; 256];
    for s in SPECIALS {
        tokens.push(s.to_owned());
        types.push(3);
    }
    let letters: Vec<String> = (b'a'..=b'z')
        .map(|b| chars[b as usize].to_string())
        .collect();
    let space = chars[b' ' as usize].to_string();
    let mut pieces: Vec<String> = letters.clone();
    pieces.extend(letters.iter().map(|l| format!("{space}{l}")));
    let mut seen: HashSet<String> = tokens.iter().cloned().collect();
    let mut merges = Vec::new();
    // The space-led letters first: they are merges of the space and a letter.
    for l in &letters {
        if tokens.len() >= size {
            break;
        }
        let joined = format!("{space}{l}");
        merges.push(format!("{space} {l}"));
        seen.insert(joined.clone());
        tokens.push(joined);
        types.push(1);
    }
    let mut tries = 0;
    while tokens.len() < size && tries < size * 50 {
        tries += 1;
        let a = pieces[rng.below(pieces.len())].clone();
        let b = letters[rng.below(letters.len())].clone();
        let joined = format!("{a}{b}");
        if joined.chars().count() > 10 || !seen.insert(joined.clone()) {
            continue;
        }
        merges.push(format!("{a} {b}"));
        pieces.push(joined.clone());
        tokens.push(joined);
        types.push(1);
    }
    // Any room left (tiny alphabets): unused filler tokens.
    while tokens.len() < size {
        tokens.push(format!("<|unused{}|>", tokens.len()));
        types.push(5);
    }
    (tokens, types, merges)
}

/// Writes the model to `path`; returns the file size.
pub fn synthesize(spec: &SynthSpec, path: &Path) -> io::Result<u64> {
    spec.validate()?;
    let mut rng = Rng(spec.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (tokens, types, merges) = vocabulary(spec.vocab_size as usize, &mut rng);
    let mut w = GgufWriter::new();
    w.string("general.architecture", "llama")
        .string("general.name", &spec.name)
        .u32("general.file_type", spec.ty.file_type())
        .u32("general.quantization_version", 2)
        .u32("llama.context_length", spec.context_length as u32)
        .u32("llama.embedding_length", spec.n_embd as u32)
        .u32("llama.block_count", spec.n_layer as u32)
        .u32("llama.feed_forward_length", spec.n_ff as u32)
        .u32("llama.attention.head_count", spec.n_head as u32)
        .u32("llama.attention.head_count_kv", spec.n_head_kv as u32)
        .u32("llama.rope.dimension_count", spec.head_dim() as u32)
        .f32("llama.rope.freq_base", 10_000.0)
        .f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        .u32("llama.vocab_size", spec.vocab_size as u32)
        .string("tokenizer.ggml.model", "gpt2")
        .string("tokenizer.ggml.pre", "gpt-2")
        .strings("tokenizer.ggml.tokens", &tokens)
        .i32s("tokenizer.ggml.token_type", &types)
        .strings("tokenizer.ggml.merges", &merges)
        .u32("tokenizer.ggml.bos_token_id", 256)
        .u32("tokenizer.ggml.eos_token_id", 258)
        .u32("tokenizer.ggml.padding_token_id", 256)
        .bool("tokenizer.ggml.add_bos_token", false);
    if spec.chat_template {
        w.string("tokenizer.chat_template", CHATML);
    }
    let tensors = spec.tensors();
    let file = std::fs::File::create(path)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut row = Vec::new();
    let written = w.write(&mut out, &tensors, |i, buf| {
        let t = &tensors[i];
        let n = t.dims[0] as usize;
        let rows: u64 = t.dims[1..].iter().product();
        let scale = if t.dims.len() == 1 {
            0.0 // norms: all ones
        } else if t.name == "token_embd.weight" {
            1.0
        } else if t.name == "output.weight" {
            // logits with a spread of about 3 (see the module docs)
            3.0 * (3.0 / n as f32).sqrt()
        } else {
            (3.0 / n as f32).sqrt()
        };
        for _ in 0..rows {
            row.clear();
            row.extend((0..n).map(|_| {
                if scale == 0.0 {
                    1.0
                } else {
                    rng.unit() * scale
                }
            }));
            t.ty.encode(&row, buf);
        }
    })?;
    out.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufInfo;

    #[test]
    fn synthesized_files_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tiny.gguf");
        let spec = SynthSpec::tiny();
        let size = synthesize(&spec, &path).expect("synth");
        let info = GgufInfo::read(&path).expect("read");
        assert_eq!(info.file_size, size);
        assert_eq!(info.architecture(), "llama");
        assert_eq!(info.parameters(), spec.parameters());
        assert_eq!(info.vocab_size(), Some(512));
        assert_eq!(info.context_length(), Some(4096));
        assert_eq!(info.quantization(), "F32");
        assert!(info
            .chat_template()
            .is_some_and(|t| t.contains("<|im_start|>")));
        assert_eq!(info.tensors.len(), 3 + 9 * 2);
        let last = info.tensors.last().expect("tensors");
        assert_eq!(
            info.data_offset + last.offset + last.bytes().expect("known type"),
            size
        );
    }

    #[test]
    fn the_270m_preset_has_about_270m_parameters() {
        let p = SynthSpec::m270().parameters();
        assert!((260_000_000..280_000_000).contains(&p), "{p}");
    }
}
