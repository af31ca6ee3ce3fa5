//! The generic transformer stack: embedding -> N x [norm -> attention -> residual, norm -> MLP ->
//! residual] -> final norm -> LM head. Families (families/) decide which weights and options go in;
//! this file only says how they are used.

use candle_core::{Device, IndexOp, Tensor};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::nn::{Attention, Embedding, KvCache, Linear, Mlp, RmsNorm, Rope};

#[derive(Debug, Clone)]
pub struct Block {
    pub attn_norm: RmsNorm,
    pub attn: Attention,
    pub mlp_norm: RmsNorm,
    pub mlp: Mlp,
}

pub struct Transformer {
    pub config: ModelConfig,
    pub embed: Embedding,
    pub blocks: Vec<Block>,
    pub norm: RmsNorm,
    pub lm_head: Linear,
    pub rope: Rope,
    pub device: Device,
}

/// Per-request state: one KV cache per layer and the number of positions already seen.
pub struct Cache {
    layers: Vec<KvCache>,
}

impl Cache {
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
    pub fn size_in_bytes(&self) -> usize {
        self.layers.iter().map(|c| c.size_in_bytes()).sum()
    }
}

impl Transformer {
    /// The context the model supports (its trained positions).
    pub fn context_length(&self) -> usize {
        self.config.max_position_embeddings
    }

    /// A cache for `capacity` positions (clamped to the context length).
    pub fn new_cache(&self, capacity: usize) -> Result<Cache> {
        let c = &self.config;
        let capacity = capacity.clamp(1, self.context_length());
        let layers = (0..c.num_layers)
            .map(|_| KvCache::new(c.num_kv_heads, c.head_dim, capacity))
            .collect();
        Ok(Cache { layers })
    }

    /// Run `ids` (one sequence) after what `cache` already holds. Returns logits [seq, vocab] for
    /// every new position, or [1, vocab] for the last one when `last_only`.
    pub fn forward(&self, ids: &[u32], cache: &mut Cache, last_only: bool) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(Error::InvalidArgument("no input tokens".into()));
        }
        let vocab = self.config.vocab_size as u32;
        if let Some(bad) = ids.iter().find(|&&i| i >= vocab) {
            return Err(Error::InvalidArgument(format!("token id {bad} is out of range for a vocabulary of {vocab}")));
        }
        let start = cache.len();
        let seq = ids.len();
        if start + seq > cache.capacity() {
            return Err(Error::ContextOverflow(format!(
                "{} tokens do not fit: the cache holds {} positions (model context {})",
                start + seq,
                cache.capacity(),
                self.context_length()
            )));
        }
        let mut x = self.embed.forward(ids, &self.device)?.unsqueeze(0)?; // [1, seq, hidden]
        for (block, kv) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let h = block.attn.forward(&block.attn_norm.forward(&x)?, start, &self.rope, kv)?;
            x = (x + h)?;
            let h = block.mlp.forward(&block.mlp_norm.forward(&x)?)?;
            x = (x + h)?;
        }
        let x = if last_only { x.i((.., seq - 1.., ..))? } else { x };
        let x = self.norm.forward(&x)?;
        Ok(self.lm_head.forward(&x)?.squeeze(0)?)
    }
}
