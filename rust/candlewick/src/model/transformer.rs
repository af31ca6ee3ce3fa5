//! The generic transformer stack: token embedding (+ learned positions, token types, embedding
//! norm) -> N x [attention, MLP, each with a residual and a norm before (pre-norm: GPT-2, Llama)
//! or after (post-norm: BERT)] -> final norm -> LM head. Causal with a KV cache for decoders
//! (`forward_batch`), bidirectional for encoders (`encode_batch`). Families (families/) decide
//! which weights and options go in; this file only says how they are used.

use candle_core::{Device, Tensor};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::nn::{Attention, Embedding, KvCache, Linear, Mlp, Norm, Rope};

#[derive(Debug, Clone)]
pub struct Block {
    pub attn_norm: Norm,
    pub attn: Attention,
    pub mlp_norm: Norm,
    pub mlp: Mlp,
    /// Norms on the sub-layer outputs before the residual addition (Gemma's "sandwich").
    pub post_attn_norm: Option<Norm>,
    pub post_mlp_norm: Option<Norm>,
    /// Cross-attention to an encoder's output between self-attention and the MLP (the decoder
    /// of an encoder-decoder), with its own pre-norm.
    pub cross: Option<(Norm, Attention)>,
}

impl Block {
    /// A block with the four parts every layer has and none of the optional ones.
    pub fn new(attn_norm: Norm, attn: Attention, mlp_norm: Norm, mlp: Mlp) -> Self {
        Block {
            attn_norm,
            attn,
            mlp_norm,
            mlp,
            post_attn_norm: None,
            post_mlp_norm: None,
            cross: None,
        }
    }

    /// One layer on x: [1, tokens, hidden], with `attend` doing the self-attention sub-layer.
    pub(crate) fn forward(
        &self,
        x: Tensor,
        post_norm: bool,
        attend: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        self.forward_cross(x, post_norm, attend, |_, _| {
            Err(Error::Model(
                "this layer has cross-attention but no encoder output was given".into(),
            ))
        })
    }

    /// As `forward`, with `cross(attention, normed x)` doing the cross-attention sub-layer of a
    /// layer that has one.
    pub(crate) fn forward_cross(
        &self,
        x: Tensor,
        post_norm: bool,
        attend: impl FnOnce(&Tensor) -> Result<Tensor>,
        cross: impl FnOnce(&Attention, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        if post_norm {
            let x = self.attn_norm.forward(&(&x + attend(&x)?)?)?;
            return self.mlp_norm.forward(&(&x + self.mlp.forward(&x)?)?);
        }
        let post = |n: &Option<Norm>, h: Tensor| -> Result<Tensor> {
            match n {
                Some(n) => n.forward(&h),
                None => Ok(h),
            }
        };
        let mut x = (&x + post(&self.post_attn_norm, attend(&self.attn_norm.forward(&x)?)?)?)?;
        if let Some((norm, attn)) = &self.cross {
            x = (&x + cross(attn, &norm.forward(&x)?)?)?;
        }
        Ok((&x
            + post(
                &self.post_mlp_norm,
                self.mlp.forward(&self.mlp_norm.forward(&x)?)?,
            )?)?)
    }
}

/// An MLM or other head on the hidden states: dense -> activation -> norm -> decoder (+ bias).
pub struct MlmHead {
    pub dense: Linear,
    pub activation: crate::config::Activation,
    pub norm: Norm,
    pub decoder: Linear,
}

pub struct Transformer {
    pub config: ModelConfig,
    pub embed: Embedding,
    /// Multiplies the token embeddings (Gemma: sqrt(hidden)).
    pub embed_scale: Option<f64>,
    /// Learned absolute positions (BERT, GPT-2).
    pub positions: Option<Embedding>,
    /// Token types (BERT segments); type 0 is added to every token.
    pub token_types: Option<Embedding>,
    /// Norm right after the embeddings (BERT).
    pub embed_norm: Option<Norm>,
    pub blocks: Vec<Block>,
    /// Final norm (pre-norm stacks).
    pub norm: Option<Norm>,
    pub lm_head: Option<Linear>,
    pub mlm_head: Option<MlmHead>,
    pub rope: Option<Rope>,
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
    /// A stack of `blocks` over token embeddings with nothing else: no positions, norms, heads
    /// or RoPE. Families set what they have with struct update syntax.
    pub fn bare(
        config: ModelConfig,
        embed: Embedding,
        blocks: Vec<Block>,
        device: &Device,
    ) -> Self {
        Transformer {
            config,
            embed,
            embed_scale: None,
            positions: None,
            token_types: None,
            embed_norm: None,
            blocks,
            norm: None,
            lm_head: None,
            mlm_head: None,
            rope: None,
            device: device.clone(),
        }
    }

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
        Ok(Tensor::from_vec(
            rows.pop().unwrap_or_default(),
            (n, self.config.vocab_size),
            &self.device,
        )?)
    }

    /// Run several sequences together, each after what its own cache holds, with no padding: the
    /// new tokens of all sequences go through the embedding, the projections, the MLPs and the head
    /// as one matrix (weights are read once for the whole batch); RoPE, the cache and attention
    /// work on each sequence's own rows. Every computation is row-wise, so a sequence's logits do
    /// not depend on the other sequences, but for weight types whose summation order llama.cpp
    /// chooses by the number of rows of a matmul (Q4_K, Q6_K), which batching changes: there the
    /// last bits follow the batch, as they do in llama.cpp. Returns each sequence's logits,
    /// row-major [new tokens or 1, vocab]. A single sequence longer than `UBATCH` tokens runs in
    /// pieces of that size, one after another, as llama.cpp splits a prompt into micro-batches
    /// (so that every matmul sees the rows llama.cpp's does); the pieces before the last skip the
    /// LM head when only the last position is wanted. Bad input is refused before anything is run.
    pub fn forward_batch(
        &self,
        segs: &mut [Segment<'_>],
        last_only: bool,
    ) -> Result<Vec<Vec<f32>>> {
        self.check_segments(segs)?;
        if let [seg] = segs {
            if seg.ids.len() > UBATCH {
                let mut rows = Vec::new();
                let chunks: Vec<&[u32]> = seg.ids.chunks(UBATCH).collect();
                for (c, ids) in chunks.iter().enumerate() {
                    let last = c + 1 == chunks.len();
                    let head = if last_only && !last {
                        Head::Skip
                    } else if last_only {
                        Head::Last
                    } else {
                        Head::All
                    };
                    let mut piece = [Segment {
                        ids,
                        cache: &mut *seg.cache,
                    }];
                    let r = self.forward_batch_once(&mut piece, head)?;
                    rows.extend(r.into_iter().next().unwrap_or_default());
                }
                return Ok(vec![rows]);
            }
        }
        self.forward_batch_once(segs, if last_only { Head::Last } else { Head::All })
    }

    /// Every sequence has tokens, in the vocabulary, that fit its cache.
    fn check_segments(&self, segs: &[Segment<'_>]) -> Result<()> {
        let vocab = self.config.vocab_size as u32;
        for seg in segs {
            if seg.ids.is_empty() {
                return Err(Error::InvalidArgument("no input tokens".into()));
            }
            if let Some(bad) = seg.ids.iter().find(|&&i| i >= vocab) {
                return Err(Error::InvalidArgument(format!(
                    "token id {bad} is out of range for a vocabulary of {vocab}"
                )));
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
        }
        Ok(())
    }

    /// One pass over segments `forward_batch` has checked (each piece of a long prompt fits the
    /// cache because the whole prompt does).
    fn forward_batch_once(&self, segs: &mut [Segment<'_>], head: Head) -> Result<Vec<Vec<f32>>> {
        let last_only = head != Head::All;
        let mut all_ids = Vec::new();
        let mut spans = Vec::with_capacity(segs.len()); // (start position, offset in batch, len)
        for seg in segs.iter() {
            spans.push((seg.cache.len(), all_ids.len(), seg.ids.len()));
            all_ids.extend_from_slice(seg.ids);
        }
        if segs.is_empty() {
            return Ok(Vec::new());
        }
        let rope = self.rope.as_ref();
        let lm_head = self
            .lm_head
            .as_ref()
            .ok_or_else(|| Error::Unsupported("this model has no LM head".into()))?;
        let positions: Vec<(usize, usize)> =
            spans.iter().map(|&(start, _, len)| (start, len)).collect();
        let mut x = self.embeddings(&all_ids, &positions)?;
        for (l, block) in self.blocks.iter().enumerate() {
            let mut kvs: Vec<(usize, usize, &mut KvCache)> = segs
                .iter_mut()
                .zip(&spans)
                .map(|(s, &(start, _, len))| (start, len, &mut s.cache.layers[l]))
                .collect();
            x = block.forward(x, self.config.post_norm, |h| {
                block.attn.forward(h, &mut kvs, rope)
            })?;
        }
        if head == Head::Skip {
            return Ok(vec![Vec::new(); segs.len()]);
        }
        let x = if last_only {
            let last: Vec<u32> = spans
                .iter()
                .map(|&(_, off, len)| (off + len - 1) as u32)
                .collect();
            x.index_select(&Tensor::new(last.as_slice(), &self.device)?, 1)?
        } else {
            x
        };
        let x = match &self.norm {
            Some(n) => n.forward(&x)?,
            None => x,
        };
        let logits = lm_head.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
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

impl Transformer {
    /// Token embeddings plus learned positions (each span at its own start) and token type 0,
    /// then the embedding norm: [1, tokens, hidden].
    fn embeddings(&self, ids: &[u32], spans: &[(usize, usize)]) -> Result<Tensor> {
        let mut x = self.embed.forward(ids, &self.device)?;
        if let Some(s) = self.embed_scale {
            x = (x * s)?;
        }
        if let Some(pe) = &self.positions {
            let pos: Vec<u32> = spans
                .iter()
                .flat_map(|&(start, len)| (start..start + len).map(|p| p as u32))
                .collect();
            if let Some(&bad) = pos
                .iter()
                .find(|&&p| p as usize >= self.config.max_position_embeddings)
            {
                return Err(Error::ContextOverflow(format!(
                    "position {bad} is past the {} positions the model has",
                    self.config.max_position_embeddings
                )));
            }
            x = (x + pe.forward(&pos, &self.device)?)?;
        }
        if let Some(tt) = &self.token_types {
            let zeros = vec![0u32; ids.len()];
            x = (x + tt.forward(&zeros, &self.device)?)?;
        }
        if let Some(n) = &self.embed_norm {
            x = n.forward(&x)?;
        }
        Ok(x.unsqueeze(0)?)
    }

    /// Bidirectional pass over whole sequences (encoders): the hidden state of every token,
    /// row-major [len, hidden] per sequence. Sequences go through the projections and MLPs as one
    /// matrix and attend only to themselves, so no padding is needed.
    pub fn encode_batch(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let vocab = self.config.vocab_size as u32;
        let mut ids = Vec::new();
        let mut lens = Vec::with_capacity(seqs.len());
        for s in seqs {
            if s.is_empty() {
                return Err(Error::InvalidArgument("an input has no tokens".into()));
            }
            if s.len() > self.context_length() {
                return Err(Error::ContextOverflow(format!(
                    "an input of {} tokens is longer than the {} positions the model has (truncate it)",
                    s.len(),
                    self.context_length()
                )));
            }
            if let Some(bad) = s.iter().find(|&&i| i >= vocab) {
                return Err(Error::InvalidArgument(format!(
                    "token id {bad} is out of range for a vocabulary of {vocab}"
                )));
            }
            ids.extend_from_slice(s);
            lens.push(s.len());
        }
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let spans: Vec<(usize, usize)> = lens.iter().map(|&l| (0, l)).collect();
        let mut x = self.embeddings(&ids, &spans)?;
        for block in &self.blocks {
            x = block.forward(x, self.config.post_norm, |h| {
                block
                    .attn
                    .forward_bidirectional(h, &lens, self.rope.as_ref())
            })?;
        }
        if let Some(n) = &self.norm {
            x = n.forward(&x)?;
        }
        let h = self.config.hidden_size;
        let flat = x.flatten_all()?.to_vec1::<f32>()?;
        let mut out = Vec::with_capacity(lens.len());
        let mut off = 0;
        for &l in &lens {
            out.push(flat[off * h..(off + l) * h].to_vec());
            off += l;
        }
        Ok(out)
    }
}

/// What a forward pass shows when asked: the hidden state entering the first layer and leaving
/// each layer (the last one after the final norm, as HF reports it), [tokens, hidden] each, and
/// each layer's attention probabilities [heads, tokens, tokens].
pub struct Inspection {
    pub hidden_states: Vec<Vec<f32>>,
    pub attentions: Vec<Vec<f32>>,
    /// Logits [tokens, vocab] when the model has an LM or MLM head.
    pub logits: Option<Vec<f32>>,
}

impl Transformer {
    /// One whole sequence through the stack (causal for decoders, bidirectional for encoders),
    /// keeping every layer's hidden states and attention probabilities. Decoders run the same
    /// causal kernel as `forward` (so hidden states and logits are the same bits, up to
    /// `UBATCH` tokens: a longer sequence runs here as one piece, in `forward` in several);
    /// encoders a plain reference kernel that agrees with `encode` to float rounding.
    pub fn inspect(&self, ids: &[u32]) -> Result<Inspection> {
        let c = &self.config;
        let vocab = c.vocab_size as u32;
        if ids.is_empty() {
            return Err(Error::InvalidArgument("no input tokens".into()));
        }
        if ids.len() > self.context_length() {
            return Err(Error::ContextOverflow(format!(
                "{} tokens exceed the model's {} positions",
                ids.len(),
                self.context_length()
            )));
        }
        if let Some(bad) = ids.iter().find(|&&i| i >= vocab) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is out of range for a vocabulary of {vocab}"
            )));
        }
        let causal = c.architecture == crate::config::Architecture::Decoder;
        let n = ids.len();
        let (nh, nkv, hd) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let rows = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
        let mut x = self.embeddings(ids, &[(0, n)])?;
        let mut hidden = vec![rows(&x)?];
        let mut attentions = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let a = &block.attn;
            x = block.forward(x, c.post_norm, |h| {
                let p = a.project(h, &[(0, n)], self.rope.as_ref())?;
                let scale = 1.0 / (hd as f32).sqrt();
                if causal {
                    // k, v as the cache holds them: [kv head][position][head_dim]
                    let by_head = |t: &[f32]| -> Vec<f32> {
                        (0..nkv)
                            .flat_map(|g| (0..n).flat_map(move |j| (0..hd).map(move |d| (j, g, d))))
                            .map(|(j, g, d)| t[(j * nkv + g) * hd + d])
                            .collect()
                    };
                    let shape = crate::kernels::attention::Shape {
                        num_heads: nh,
                        num_kv_heads: nkv,
                        head_dim: hd,
                        capacity: n,
                        window: a.extra.window,
                    };
                    let (out, probs) = crate::kernels::attention::causal_with_probs(
                        &p.q,
                        &by_head(&p.k),
                        &by_head(&p.v),
                        shape,
                        0,
                        n,
                        scale,
                    );
                    attentions.push(probs);
                    return a.output(out, h);
                }
                let (out, probs) = crate::kernels::attention::with_probs(
                    &p.q,
                    &p.k,
                    &p.v,
                    n,
                    n,
                    nh,
                    nkv,
                    hd,
                    scale,
                    causal,
                    a.extra.window,
                );
                attentions.push(probs);
                a.output(out, h)
            })?;
            hidden.push(rows(&x)?);
        }
        if let Some(norm) = &self.norm {
            x = norm.forward(&x)?;
            if let Some(last) = hidden.last_mut() {
                *last = rows(&x)?;
            }
        }
        let logits = match (&self.lm_head, &self.mlm_head) {
            (Some(head), _) => Some(rows(&head.forward(&x)?)?),
            (None, Some(m)) => {
                let t = crate::nn::mlp::activate(&m.dense.forward(&x)?, m.activation)?;
                Some(rows(&m.decoder.forward(&m.norm.forward(&t)?)?)?)
            }
            _ => None,
        };
        Ok(Inspection {
            hidden_states: hidden,
            attentions,
            logits,
        })
    }
}

/// Which logits a forward pass computes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Head {
    All,
    Last,
    /// None: only the cache is filled (a piece of a long prompt before its last).
    Skip,
}

/// llama.cpp's default micro-batch (`n_ubatch`): the most tokens of one sequence that go through
/// the model as one matrix.
pub const UBATCH: usize = 512;

/// One sequence of a batch: its new tokens and its cache.
pub struct Segment<'a> {
    pub ids: &'a [u32],
    pub cache: &'a mut Cache,
}
