//! Preallocated key/value cache: one buffer per layer sized for the whole request up front, written
//! in place each step (no per-step concatenation, which would make generation quadratic).
use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct KvCache {
    k: Tensor,
    v: Tensor,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// Buffers of [batch, kv_heads, capacity, head_dim].
    pub fn new(batch: usize, kv_heads: usize, head_dim: usize, capacity: usize, device: &Device) -> Result<Self> {
        let k = Tensor::zeros((batch, kv_heads, capacity, head_dim), DType::F32, device)?;
        let v = k.zeros_like()?;
        Ok(Self { k, v, len: 0, capacity })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Forget everything from position `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Append k, v ([batch, kv_heads, seq, head_dim]) and return all keys and values so far.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let seq = k.dim(2)?;
        if self.len + seq > self.capacity {
            return Err(Error::ContextOverflow(format!(
                "KV cache full: {} + {seq} tokens exceed its {} positions",
                self.len, self.capacity
            )));
        }
        self.k.slice_set(&k.contiguous()?, 2, self.len)?;
        self.v.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len += seq;
        Ok((self.k.narrow(2, 0, self.len)?, self.v.narrow(2, 0, self.len)?))
    }

    /// Bytes held by the buffers.
    pub fn size_in_bytes(&self) -> usize {
        2 * self.k.elem_count() * self.k.dtype().size_in_bytes()
    }
}
