//! Preallocated key/value cache: one buffer per layer sized for the whole request up front, written
//! in place each step (no per-step concatenation, which would make generation quadratic).
//! Layout [kv_heads][capacity][head_dim], f32. Every attention kind keeps its keys here: a
//! decoder's past, an encoder's whole sequence, an encoder-decoder's encoder output.
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct KvCache {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    len: usize,
    capacity: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl KvCache {
    pub fn new(kv_heads: usize, head_dim: usize, capacity: usize) -> Self {
        let n = kv_heads * capacity * head_dim;
        Self {
            k: vec![0.0; n],
            v: vec![0.0; n],
            len: 0,
            capacity,
            kv_heads,
            head_dim,
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
                self.k[dst..dst + hd].copy_from_slice(&k[src..src + hd]);
                self.v[dst..dst + hd].copy_from_slice(&v[src..src + hd]);
            }
        }
        self.len += seq;
        Ok(())
    }

    /// Bytes held by the buffers.
    pub fn size_in_bytes(&self) -> usize {
        (self.k.len() + self.v.len()) * std::mem::size_of::<f32>()
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
    pub fn new(layers: usize, kv_heads: usize, head_dim: usize, capacity: usize) -> Self {
        Cache {
            layers: (0..layers)
                .map(|_| KvCache::new(kv_heads, head_dim, capacity))
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
