//! Families say *what* a checkpoint is: tensor names, shapes and options, mapped onto nn/ blocks.
pub mod bert;
pub mod gemma3;
pub mod gpt2;
pub mod hf;
pub mod llama;
pub mod t5;

use candle_core::Device;

use crate::error::Result;
use crate::io::safetensors::SafetensorsFile;
use crate::nn::{LayerNorm, Linear, Norm, RmsNorm};

/// Tensors looked up by checkpoint name: across a checkpoint's files, or in memory (models built
/// from a config).
pub struct Tensors<'a> {
    pub files: &'a [SafetensorsFile],
    pub memory: Option<&'a std::collections::BTreeMap<String, candle_core::Tensor>>,
    pub device: &'a Device,
}

impl Tensors<'_> {
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<candle_core::Tensor> {
        if let Some(m) = self.memory {
            let t = m
                .get(name)
                .ok_or_else(|| crate::error::Error::Model(format!("tensor {name} is missing")))?;
            if t.dims() != shape {
                return Err(crate::error::Error::Model(format!(
                    "tensor {name} has shape {:?}, expected {shape:?}",
                    t.dims()
                )));
            }
            return Ok(t.clone());
        }
        let f = self
            .files
            .iter()
            .find(|f| f.contains(name))
            .unwrap_or(&self.files[0]);
        f.tensor(name, shape, self.device)
    }

    pub fn has(&self, name: &str) -> bool {
        self.memory.is_some_and(|m| m.contains_key(name))
            || self.files.iter().any(|f| f.contains(name))
    }

    pub fn linear(&self, name: &str, out: usize, inp: usize, bias: bool) -> Result<Linear> {
        let w = self.get(&format!("{name}.weight"), &[out, inp])?;
        let b = if bias {
            Some(self.get(&format!("{name}.bias"), &[out])?)
        } else {
            None
        };
        Linear::dense(w, b)
    }

    pub fn layer_norm(&self, name: &str, h: usize, bias: bool, eps: f64) -> Result<Norm> {
        let w = self.get(&format!("{name}.weight"), &[h])?;
        let b = if bias {
            Some(self.get(&format!("{name}.bias"), &[h])?)
        } else {
            None
        };
        Ok(Norm::Layer(LayerNorm::new(w, b, eps)?))
    }
}

impl Tensors<'_> {
    pub fn rms_norm(&self, name: &str, h: usize, eps: f64) -> Result<Norm> {
        Ok(Norm::Rms(RmsNorm::new(self.get(name, &[h])?, eps)?))
    }
}

/// The attention shape and vocabulary every GGUF decoder states the same way under its
/// architecture's keys: (hidden, heads, kv_heads, head_dim, vocab).
pub fn gguf_shape(
    g: &crate::io::gguf::GgufFile,
    arch: &str,
) -> Result<(usize, usize, usize, usize, usize)> {
    use crate::error::Error;
    let key = |k: &str| format!("{arch}.{k}");
    let hidden = g.require_u64(&key("embedding_length"))? as usize;
    let heads = g.require_u64(&key("attention.head_count"))? as usize;
    let kv_heads = match g.get(&key("attention.head_count_kv")) {
        Some(v) => v.as_u64().ok_or_else(|| {
            Error::Unsupported(format!(
                "{}: per-layer head_count_kv arrays",
                g.path().display()
            ))
        })? as usize,
        None => heads,
    };
    let head_dim = match g.get(&key("attention.key_length")) {
        Some(v) => v.as_u64().unwrap_or(0) as usize,
        None if heads > 0 && hidden % heads == 0 => hidden / heads,
        None => {
            return Err(Error::invalid_file(
                g.path(),
                format!("embedding_length {hidden} is not divisible by head_count {heads}"),
            ))
        }
    };
    let embed = g
        .tensor_info("token_embd.weight")
        .ok_or_else(|| Error::invalid_file(g.path(), "tensor token_embd.weight is missing"))?;
    Ok((hidden, heads, kv_heads, head_dim, embed.shape[0]))
}
