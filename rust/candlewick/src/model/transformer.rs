//! The transformer, top to bottom: token embeddings (plus learned positions and token types, and
//! an embedding norm), N blocks of [self-attention, (cross-attention,) MLP], each sub-layer with
//! its residual connection and norms, a final norm, and a head. One type serves all three
//! architectures: an encoder is a stack of bidirectional blocks, a decoder a stack of causal
//! ones, an encoder-decoder one of each (the decoder's blocks also cross-attend to the encoder's
//! output). Families (families/) decide which weights and options go in; this file only says how
//! they are used. Checking a request and cutting it into micro-batches happen where requests
//! are assembled (state.rs), once, before anything runs here.

use candle_core::{Device, Tensor};

use super::heads::{Head, LmHead, Pooler};
use crate::error::Result;
use crate::nn::attention::{CrossKv, SelfKv};
use crate::nn::{Attention, Cache, Embedding, Linear, Mlp, Norm};

pub struct Embeddings {
    pub tokens: Embedding,
    /// Multiplies the token embeddings (Gemma: sqrt(hidden)).
    pub scale: Option<f64>,
    /// Learned (or fixed sinusoidal) absolute positions, added to the tokens (BERT, GPT-2).
    pub positions: Option<Embedding>,
    /// Token types (BERT segments): type 0 is added to every token.
    pub token_types: Option<Embedding>,
    /// Norm right after the embeddings (BERT).
    pub norm: Option<Norm>,
}

/// Where a sub-layer's norms sit around its residual connection.
pub enum Norms {
    /// x + f(norm(x)): GPT-2, Llama, T5.
    Pre(Norm),
    /// norm(x + f(x)): BERT, the original transformer.
    Post(Norm),
    /// x + after(f(before(x))): Gemma's "sandwich".
    Sandwich { before: Norm, after: Norm },
}

/// One layer: self-attention, cross-attention (decoders of encoder-decoders only), MLP.
pub struct Block {
    pub attn: Attention,
    pub attn_norms: Norms,
    pub cross: Option<(Attention, Norms)>,
    pub mlp: Mlp,
    pub mlp_norms: Norms,
}

pub struct Transformer {
    pub embeddings: Embeddings,
    pub blocks: Vec<Block>,
    /// Final norm (pre-norm stacks).
    pub norm: Option<Norm>,
    /// LM head (decoders) or masked-LM head (encoders); None: hidden states only.
    pub head: Option<Head>,
    /// BERT's pooler (BertModel checkpoints hold one).
    pub pooler: Option<Pooler>,
}

/// What one forward pass runs over: several sequences' new tokens laid one after another, each
/// with its own caches.
pub struct Batch<'a> {
    /// (position of the first new token, number of new tokens) of each sequence.
    pub spans: Vec<(usize, usize)>,
    /// Each sequence's self-attention caches (one per layer): new keys and values go there.
    pub caches: Vec<&'a mut Cache>,
    /// Each sequence's encoder keys and values (one per layer), for blocks that cross-attend.
    pub encoder: Vec<&'a Cache>,
}

/// What a forward pass shows when asked: for one sequence, the hidden state entering the first
/// layer and leaving each layer (the last one after the final norm, as HF reports it), [tokens,
/// hidden] each, and each layer's attention probabilities [heads, tokens, tokens]. A sequence
/// run in several pieces (micro-batches) fills it piece by piece.
pub struct Trace {
    tokens: usize,
    keep_hidden: bool,
    keep_attentions: bool,
    /// Empty unless asked for.
    pub hidden_states: Vec<Vec<f32>>,
    /// Empty unless asked for.
    pub attentions: Vec<Vec<f32>>,
}

impl Norms {
    /// x through sub-layer `f` with this residual order.
    fn around(&self, x: Tensor, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        Ok(match self {
            Norms::Pre(norm) => (&x + f(&norm.forward(&x)?)?)?,
            Norms::Post(norm) => norm.forward(&(&x + f(&x)?)?)?,
            Norms::Sandwich { before, after } => (&x + after.forward(&f(&before.forward(&x)?)?)?)?,
        })
    }
}

impl Embeddings {
    /// Token embeddings alone: no scale, positions, token types or norm.
    pub fn tokens(tokens: Embedding) -> Self {
        Embeddings {
            tokens,
            scale: None,
            positions: None,
            token_types: None,
            norm: None,
        }
    }

    /// [1, tokens, hidden] for the new tokens of each span (start position, tokens).
    fn forward(&self, ids: &[u32], spans: &[(usize, usize)]) -> Result<Tensor> {
        let dev = Device::Cpu;
        let mut x = self.tokens.forward(ids, &dev)?;
        if let Some(s) = self.scale {
            x = (x * s)?;
        }
        if let Some(table) = &self.positions {
            // each sequence counts positions from its own start
            let pos: Vec<u32> = spans
                .iter()
                .flat_map(|&(start, len)| (start..start + len).map(|p| p as u32))
                .collect();
            x = (x + table.forward(&pos, &dev)?)?;
        }
        if let Some(types) = &self.token_types {
            x = (x + types.forward(&vec![0u32; ids.len()], &dev)?)?;
        }
        if let Some(n) = &self.norm {
            x = n.forward(&x)?;
        }
        Ok(x.unsqueeze(0)?)
    }
}

impl Block {
    /// One layer on x: [1, tokens, hidden] (layer `l` of its stack).
    fn forward(&self, x: Tensor, l: usize, batch: &mut Batch, mut trace: Option<&mut Trace>) -> Result<Tensor> {
        let want = trace.as_ref().is_some_and(|t| t.keep_attentions);
        // self-attention: each sequence appends its new keys to, and reads, its own cache
        let x = self.attn_norms.around(x, |h| {
            let mut kv: Vec<SelfKv> = batch
                .spans
                .iter()
                .zip(batch.caches.iter_mut())
                .map(|(&(start, len), c)| SelfKv { start, len, cache: &mut c.layers[l] })
                .collect();
            let (out, probs) = self.attn.forward(h, &mut kv, want)?;
            if let (Some(t), Some(p)) = (trace.as_mut(), probs.into_iter().next()) {
                t.attention(l, batch.spans[0], self.attn.num_heads, p);
            }
            Ok(out)
        })?;
        // cross-attention to the encoder's output (the decoder of an encoder-decoder)
        let x = match &self.cross {
            Some((attn, norms)) => norms.around(x, |h| {
                let kv: Vec<CrossKv> = batch
                    .spans
                    .iter()
                    .zip(&batch.encoder)
                    .map(|(&(_, len), e)| CrossKv { len, encoder: &e.layers[l] })
                    .collect();
                Ok(attn.forward_cross(h, &kv, false)?.0)
            })?,
            None => x,
        };
        // the position-wise feed-forward network
        self.mlp_norms.around(x, |h| self.mlp.forward(h))
    }
}

impl Transformer {
    /// A decoder stack: embeddings, blocks, a final norm and an LM head.
    pub fn decoder(embeddings: Embeddings, blocks: Vec<Block>, norm: Norm, lm_head: Linear) -> Self {
        Transformer {
            embeddings,
            blocks,
            norm: Some(norm),
            head: Some(Head::Lm(LmHead { proj: lm_head, scale: None })),
            pooler: None,
        }
    }

    /// Run the new tokens `ids` of the batch's sequences (laid one after another) through the
    /// stack: hidden states after the final norm, [1, tokens, hidden].
    pub fn forward(&self, ids: &[u32], batch: &mut Batch, mut trace: Option<&mut Trace>) -> Result<Tensor> {
        // token embeddings, plus positions and token types, then the embedding norm
        let mut x = self.embeddings.forward(ids, &batch.spans)?;
        if let Some(t) = trace.as_deref_mut() {
            t.hidden(0, &x)?;
        }
        // N blocks, each reading the residual stream and adding to it
        let n = self.blocks.len();
        for (l, block) in self.blocks.iter().enumerate() {
            x = block.forward(x, l, batch, trace.as_deref_mut())?;
            if let Some(t) = trace.as_deref_mut() {
                if l + 1 < n || self.norm.is_none() {
                    t.hidden(l + 1, &x)?;
                }
            }
        }
        // the final norm (pre-norm stacks); HF reports the last hidden state after it
        if let Some(norm) = &self.norm {
            x = norm.forward(&x)?;
            if let Some(t) = trace {
                t.hidden(n, &x)?;
            }
        }
        Ok(x)
    }

    /// The head's outputs (logits) for some rows of the hidden states (all when `rows` is None):
    /// [rows, outputs] row-major. A matmul over fewer rows may round differently, as in llama.cpp.
    pub fn logits(&self, hidden: &Tensor, rows: Option<&[u32]>) -> Result<Vec<f32>> {
        let head = self.head.as_ref().ok_or_else(|| {
            crate::error::Error::Unsupported("this model has no LM head".into())
        })?;
        let x = match rows {
            Some(r) => hidden.index_select(&Tensor::new(r, &Device::Cpu)?, 1)?,
            None => hidden.clone(),
        };
        Ok(head.forward(&x)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Self-attention caches for one sequence of `capacity` positions.
    pub fn new_cache(&self, capacity: usize) -> Cache {
        let (nkv, hd) = self
            .blocks
            .first()
            .map(|b| (b.attn.num_kv_heads, b.attn.head_dim))
            .unwrap_or((1, 1));
        Cache::new(self.blocks.len(), nkv, hd, capacity)
    }

    /// The keys and values every cross-attending block reads from an encoder output
    /// [1, tokens, hidden]: computed once per request.
    pub fn encoder_kv(&self, encoded: &Tensor) -> Result<Cache> {
        let layers = self
            .blocks
            .iter()
            .map(|b| match &b.cross {
                Some((attn, _)) => attn.encoder_kv(encoded),
                None => Err(crate::error::Error::Model(
                    "a decoder block without cross-attention".into(),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Cache { layers })
    }
}

impl Trace {
    /// A trace of one sequence of `tokens` tokens through `layers` layers, keeping the hidden
    /// states and/or the attention probabilities.
    pub fn new(tokens: usize, layers: usize, hidden_states: bool, attentions: bool) -> Self {
        Trace {
            tokens,
            keep_hidden: hidden_states,
            keep_attentions: attentions,
            hidden_states: if hidden_states { vec![Vec::new(); layers + 1] } else { Vec::new() },
            attentions: if attentions { vec![Vec::new(); layers] } else { Vec::new() },
        }
    }

    fn hidden(&mut self, index: usize, x: &Tensor) -> Result<()> {
        if self.keep_hidden {
            self.hidden_states[index].extend(x.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(())
    }

    /// Probabilities [heads][len][start + len] of a piece at positions start..start+len, placed
    /// into the layer's [heads][tokens][tokens].
    fn attention(&mut self, layer: usize, (start, len): (usize, usize), heads: usize, probs: Vec<f32>) {
        if !self.keep_attentions || probs.is_empty() {
            return;
        }
        let n = self.tokens;
        let all = &mut self.attentions[layer];
        all.resize(heads * n * n, 0.0);
        let keys = probs.len() / (heads * len).max(1);
        for h in 0..heads {
            for i in 0..len {
                let src = &probs[(h * len + i) * keys..(h * len + i + 1) * keys];
                let dst = (h * n + start + i) * n;
                all[dst..dst + keys.min(n)].copy_from_slice(&src[..keys.min(n)]);
            }
        }
    }
}
