//! Preallocated key/value cache: one buffer per layer sized for the whole request up front, written
//! in place each step (no per-step concatenation, which would make generation quadratic).
//! Layout [kv_heads][capacity][head_dim], in f32 or f16 (`KvDtype`). Every attention kind keeps
//! its keys here: a decoder's past, an encoder's whole sequence, an encoder-decoder's encoder
//! output.
use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::error::{Error, Result};
use crate::kernels::attention::KvView;

/// How a cache stores keys and values. f16 (llama.cpp's default) halves the cache and what a
/// decode step reads from it; each value is rounded once, to nearest even, when it is written,
/// and the attention reads it back exactly, into f32 arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvDtype {
    F32,
    F16,
}

impl KvDtype {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "float32" | "f32" => Ok(KvDtype::F32),
            "float16" | "f16" => Ok(KvDtype::F16),
            other => Err(Error::InvalidArgument(format!(
                "kv_cache_dtype must be 'float16' or 'float32', got {other:?}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KvDtype::F32 => "float32",
            KvDtype::F16 => "float16",
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            KvDtype::F32 => 4,
            KvDtype::F16 => 2,
        }
    }
}

#[derive(Debug, Clone)]
enum Buffers {
    F32 { k: Vec<f32>, v: Vec<f32> },
    F16 { k: Vec<f16>, v: Vec<f16> },
}

#[derive(Debug, Clone)]
pub struct KvCache {
    buffers: Buffers,
    len: usize,
    capacity: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl KvCache {
    /// An f32 cache: the transient ones (an encoder's own keys, an encoder output's).
    pub fn new(kv_heads: usize, head_dim: usize, capacity: usize) -> Self {
        Self::with_dtype(kv_heads, head_dim, capacity, KvDtype::F32)
    }

    pub fn with_dtype(kv_heads: usize, head_dim: usize, capacity: usize, dtype: KvDtype) -> Self {
        let n = kv_heads * capacity * head_dim;
        let buffers = match dtype {
            KvDtype::F32 => Buffers::F32 {
                k: vec![0.0; n],
                v: vec![0.0; n],
            },
            KvDtype::F16 => Buffers::F16 {
                k: vec![f16::ZERO; n],
                v: vec![f16::ZERO; n],
            },
        };
        Self {
            buffers,
            len: 0,
            capacity,
            kv_heads,
            head_dim,
        }
    }

    pub fn dtype(&self) -> KvDtype {
        match self.buffers {
            Buffers::F32 { .. } => KvDtype::F32,
            Buffers::F16 { .. } => KvDtype::F16,
        }
    }

    /// The buffers as the attention kernel reads them.
    pub fn view(&self) -> KvView<'_> {
        match &self.buffers {
            Buffers::F32 { k, v } => KvView::F32 { k, v },
            Buffers::F16 { k, v } => KvView::F16 { k, v },
        }
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

    /// Append `seq` positions of k and v given as [seq][kv_heads][head_dim].
    pub fn append(&mut self, k: &[f32], v: &[f32], seq: usize) -> Result<()> {
        if self.len + seq > self.capacity {
            return Err(Error::ContextOverflow(format!(
                "KV cache full: {} + {seq} tokens exceed its {} positions",
                self.len, self.capacity
            )));
        }
        let hd = self.head_dim;
        for s in 0..seq {
            for g in 0..self.kv_heads {
                let src = (s * self.kv_heads + g) * hd;
                let dst = (g * self.capacity + self.len + s) * hd;
                match &mut self.buffers {
                    Buffers::F32 { k: ck, v: cv } => {
                        ck[dst..dst + hd].copy_from_slice(&k[src..src + hd]);
                        cv[dst..dst + hd].copy_from_slice(&v[src..src + hd]);
                    }
                    Buffers::F16 { k: ck, v: cv } => {
                        ck[dst..dst + hd].convert_from_f32_slice(&k[src..src + hd]);
                        cv[dst..dst + hd].convert_from_f32_slice(&v[src..src + hd]);
                    }
                }
            }
        }
        self.len += seq;
        Ok(())
    }

    /// Bytes held by the buffers.
    pub fn size_in_bytes(&self) -> usize {
        match &self.buffers {
            Buffers::F32 { k, v } => (k.len() + v.len()) * 4,
            Buffers::F16 { k, v } => (k.len() + v.len()) * 2,
        }
    }
}

/// The KV caches of every layer of one stack, for one sequence: the per-request state of a
/// decoder's self-attention, or of an encoder-decoder's cross-attention (filled once with the
/// encoder output).
#[derive(Debug, Clone)]
pub struct Cache {
    pub layers: Vec<KvCache>,
}

impl Cache {
    /// `layers` caches of `capacity` positions each.
    pub fn new(
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
        dtype: KvDtype,
    ) -> Self {
        Cache {
            layers: (0..layers)
                .map(|_| KvCache::with_dtype(kv_heads, head_dim, capacity, dtype))
                .collect(),
        }
    }

    /// Positions already held (the same in every layer).
    pub fn len(&self) -> usize {
        self.layers.first().map(|c| c.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.layers.first().map(|c| c.capacity()).unwrap_or(0)
    }

    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(|c| c.reset())
    }

    /// Bytes held by the buffers.
    pub fn size_in_bytes(&self) -> usize {
        self.layers.iter().map(|c| c.size_in_bytes()).sum()
    }
}
