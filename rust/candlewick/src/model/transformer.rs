//! The generic transformer stack: embedding -> N x [norm -> attention -> residual, norm -> MLP ->
//! residual] -> final norm -> LM head. Families (families/) decide which weights and options go in;
//! this file only says how they are used.

use candle_core::{Device, Tensor};

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
#[derive(Clone)]
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
        let mut rows = self.forward_batch(&mut [Segment { ids, cache }], last_only)?;
        let n = if last_only { 1 } else { ids.len() };
        Ok(Tensor::from_vec(rows.pop().unwrap_or_default(), (n, self.config.vocab_size), &self.device)?)
    }

    /// Run several sequences together, each after what its own cache holds, with no padding: the
    /// new tokens of all sequences go through the embedding, the projections, the MLPs and the head
    /// as one matrix (weights are read once for the whole batch); RoPE, the cache and attention
    /// work on each sequence's own rows. Every computation is row-wise, so a sequence's logits do
    /// not depend on the batch it is in. Returns each sequence's logits, row-major
    /// [new tokens or 1, vocab].
    pub fn forward_batch(&self, segs: &mut [Segment<'_>], last_only: bool) -> Result<Vec<Vec<f32>>> {
        let vocab = self.config.vocab_size as u32;
        let mut all_ids = Vec::new();
        let mut spans = Vec::with_capacity(segs.len()); // (start position, offset in batch, len)
        for seg in segs.iter() {
            if seg.ids.is_empty() {
                return Err(Error::InvalidArgument("no input tokens".into()));
            }
            if let Some(bad) = seg.ids.iter().find(|&&i| i >= vocab) {
                return Err(Error::InvalidArgument(format!("token id {bad} is out of range for a vocabulary of {vocab}")));
            }
            let start = seg.cache.len();
            if start + seg.ids.len() > seg.cache.capacity() {
                return Err(Error::ContextOverflow(format!(
                    "{} tokens do not fit: the cache holds {} positions (model context {})",
                    start + seg.ids.len(),
                    seg.cache.capacity(),
                    self.context_length()
                )));
            }
            spans.push((start, all_ids.len(), seg.ids.len()));
            all_ids.extend_from_slice(seg.ids);
        }
        if segs.is_empty() {
            return Ok(Vec::new());
        }
        let mut x = self.embed.forward(&all_ids, &self.device)?.unsqueeze(0)?; // [1, tokens, hidden]
        for (l, block) in self.blocks.iter().enumerate() {
            let mut kvs: Vec<(usize, usize, &mut KvCache)> =
                segs.iter_mut().zip(&spans).map(|(s, &(start, _, len))| (start, len, &mut s.cache.layers[l])).collect();
            let h = block.attn.forward(&block.attn_norm.forward(&x)?, &mut kvs, &self.rope)?;
            x = (x + h)?;
            let h = block.mlp.forward(&block.mlp_norm.forward(&x)?)?;
            x = (x + h)?;
        }
        let x = if last_only {
            let last: Vec<u32> = spans.iter().map(|&(_, off, len)| (off + len - 1) as u32).collect();
            x.index_select(&Tensor::new(last.as_slice(), &self.device)?, 1)?
        } else {
            x
        };
        let x = self.norm.forward(&x)?;
        let logits = self.lm_head.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
        let v = self.config.vocab_size;
        let mut out = Vec::with_capacity(segs.len());
        let mut row = 0;
        for &(_, _, len) in &spans {
            let n = if last_only { 1 } else { len };
            out.push(logits[row * v..(row + n) * v].to_vec());
            row += n;
        }
        Ok(out)
    }
}

/// One sequence of a batch: its new tokens and its cache.
pub struct Segment<'a> {
    pub ids: &'a [u32],
    pub cache: &'a mut Cache,
}
