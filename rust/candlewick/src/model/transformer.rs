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
use crate::nn::attention::{AttentionKind, CrossKv, SelfKv};
use crate::nn::{Attention, Cache, Embedding, KvDtype, Linear, Mlp, Norm};

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

/// A padded batch for the differentiable path: `rows` sequences of `cols` tokens each, every one
/// from position 0 (as transformers trains: right padding, positions 0..cols).
pub struct Padded<'a> {
    pub ids: &'a [u32],
    pub rows: usize,
    pub cols: usize,
    /// 1 where a token is real, 0 where it is padding; None: every token is real.
    pub mask: Option<&'a [f32]>,
}

/// The additive attention mask [rows, 1, queries, keys]: 0 where a query sees a key, f32::MIN
/// where causality, the window or the key's padding hide it. None when nothing is hidden.
fn additive_mask(
    rows: usize,
    queries: usize,
    keys: usize,
    causal: bool,
    window: Option<usize>,
    key_mask: Option<&[f32]>,
) -> Result<Option<Tensor>> {
    if !causal && key_mask.is_none() {
        return Ok(None);
    }
    let mut m = vec![0f32; rows * queries * keys];
    for r in 0..rows {
        for i in 0..queries {
            for j in 0..keys {
                let seen = (!causal || (j <= i && window.is_none_or(|w| i - j < w)))
                    && key_mask.is_none_or(|k| k[r * keys + j] > 0.5);
                if !seen {
                    m[(r * queries + i) * keys + j] = f32::MIN;
                }
            }
        }
    }
    Ok(Some(Tensor::from_vec(
        m,
        (rows, 1, queries, keys),
        &Device::Cpu,
    )?))
}

impl Norms {
    /// The differentiable form of `around`.
    fn around_t(&self, x: Tensor, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        Ok(match self {
            Norms::Pre(norm) => (&x + f(&norm.forward_t(&x)?)?)?,
            Norms::Post(norm) => norm.forward_t(&(&x + f(&x)?)?)?,
            Norms::Sandwich { before, after } => {
                (&x + after.forward_t(&f(&before.forward_t(&x)?)?)?)?
            }
        })
    }

    /// x through sub-layer `f` with this residual order.
    fn around(&self, x: Tensor, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        use crate::profile::span;
        let norm = |n: &Norm, x: &Tensor| -> Result<Tensor> {
            let _s = span("norm");
            n.forward(x)
        };
        let add = |a: &Tensor, b: Tensor| -> Result<Tensor> {
            let _s = span("residual add");
            Ok((a + b)?)
        };
        Ok(match self {
            Norms::Pre(n) => add(&x, f(&norm(n, &x)?)?)?,
            Norms::Post(n) => norm(n, &add(&x, f(&x)?)?)?,
            Norms::Sandwich { before, after } => add(&x, norm(after, &f(&norm(before, &x)?)?)?)?,
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

impl Embeddings {
    /// The differentiable form: [rows, cols, hidden].
    fn forward_t(&self, input: &Padded) -> Result<Tensor> {
        let dev = Device::Cpu;
        let (b, t) = (input.rows, input.cols);
        let mut x = self.tokens.forward_t(input.ids, &dev)?;
        let hidden = x.dim(1)?;
        x = x.reshape((b, t, hidden))?;
        if let Some(s) = self.scale {
            x = (x * s)?;
        }
        if let Some(table) = &self.positions {
            let pos: Vec<u32> = (0..t as u32).collect();
            x = x.broadcast_add(&table.forward_t(&pos, &dev)?)?;
        }
        if let Some(types) = &self.token_types {
            x = x.broadcast_add(&types.forward_t(&[0], &dev)?)?;
        }
        if let Some(n) = &self.norm {
            x = n.forward_t(&x)?;
        }
        Ok(x)
    }
}

impl Block {
    /// The differentiable form of one layer on x [rows, tokens, hidden]: `mask` for its
    /// self-attention, `memory` the encoder output (and its mask) for its cross-attention.
    fn forward_t(
        &self,
        x: Tensor,
        mask: Option<&Tensor>,
        memory: Option<(&Tensor, Option<&Tensor>)>,
    ) -> Result<Tensor> {
        let x = self
            .attn_norms
            .around_t(x, |h| self.attn.forward_t(h, None, mask))?;
        let x = match (&self.cross, memory) {
            (Some((attn, norms)), Some((enc, enc_mask))) => {
                norms.around_t(x, |h| attn.forward_t(h, Some(enc), enc_mask))?
            }
            (Some(_), None) => {
                return Err(crate::error::Error::Model(
                    "a cross-attending block was run without an encoder output".into(),
                ))
            }
            (None, _) => x,
        };
        self.mlp_norms.around_t(x, |h| self.mlp.forward_t(h))
    }

    /// One layer on x: [1, tokens, hidden] (layer `l` of its stack).
    fn forward(
        &self,
        x: Tensor,
        l: usize,
        batch: &mut Batch,
        mut trace: Option<&mut Trace>,
    ) -> Result<Tensor> {
        let want = trace.as_ref().is_some_and(|t| t.keep_attentions);
        // self-attention: each sequence appends its new keys to, and reads, its own cache
        let x = self.attn_norms.around(x, |h| {
            let mut kv: Vec<SelfKv> = batch
                .spans
                .iter()
                .zip(batch.caches.iter_mut())
                .map(|(&(start, len), c)| SelfKv {
                    start,
                    len,
                    cache: &mut c.layers[l],
                })
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
                    .map(|(&(_, len), e)| CrossKv {
                        len,
                        encoder: &e.layers[l],
                    })
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
    pub fn decoder(
        embeddings: Embeddings,
        blocks: Vec<Block>,
        norm: Norm,
        lm_head: Linear,
    ) -> Self {
        Transformer {
            embeddings,
            blocks,
            norm: Some(norm),
            head: Some(Head::Lm(LmHead {
                proj: lm_head,
                scale: None,
                softcap: None,
            })),
            pooler: None,
        }
    }

    /// Run the new tokens `ids` of the batch's sequences (laid one after another) through the
    /// stack: hidden states after the final norm, [1, tokens, hidden].
    pub fn forward(
        &self,
        ids: &[u32],
        batch: &mut Batch,
        mut trace: Option<&mut Trace>,
    ) -> Result<Tensor> {
        // token embeddings, plus positions and token types, then the embedding norm
        let mut x = {
            let _s = crate::profile::span("embeddings");
            self.embeddings.forward(ids, &batch.spans)?
        };
        if let Some(t) = trace.as_deref_mut() {
            t.hidden(0, &x)?;
        }
        // N blocks, each reading the residual stream and adding to it
        let n = self.blocks.len();
        for (l, block) in self.blocks.iter().enumerate() {
            crate::interrupt::check()?;
            crate::profile::set_layer(Some(l));
            x = block.forward(x, l, batch, trace.as_deref_mut())?;
            crate::profile::set_layer(None);
            if let Some(t) = trace.as_deref_mut() {
                if l + 1 < n || self.norm.is_none() {
                    t.hidden(l + 1, &x)?;
                }
            }
        }
        // the final norm (pre-norm stacks); HF reports the last hidden state after it
        if let Some(norm) = &self.norm {
            x = {
                let _s = crate::profile::span("norm");
                norm.forward(&x)?
            };
            if let Some(t) = trace {
                t.hidden(n, &x)?;
            }
        }
        Ok(x)
    }

    /// The differentiable form of `forward` over a padded batch: hidden states after the final
    /// norm, [rows, cols, hidden]. `encoder`: the encoder's output [rows, keys, hidden] and its
    /// padding mask [rows * keys], for stacks that cross-attend. Gradients reach every dense
    /// weight the stack was built from.
    pub fn forward_t(
        &self,
        input: &Padded,
        encoder: Option<(&Tensor, Option<&[f32]>)>,
    ) -> Result<Tensor> {
        let (b, t) = (input.rows, input.cols);
        if b * t != input.ids.len() || input.mask.is_some_and(|m| m.len() != b * t) {
            return Err(crate::error::Error::Model(format!(
                "a padded batch of {} ids is not {b} x {t}",
                input.ids.len()
            )));
        }
        let mut x = self.embeddings.forward_t(input)?;
        let memory = match encoder {
            Some((enc, enc_mask)) => {
                let keys = enc.dim(1)?;
                Some((enc, additive_mask(b, 1, keys, false, None, enc_mask)?))
            }
            None => None,
        };
        // one mask per (kind, window): layers of the same kind share it
        let mut masks: Vec<((bool, Option<usize>), Option<Tensor>)> = Vec::new();
        for block in &self.blocks {
            crate::interrupt::check()?;
            let key = (block.attn.kind == AttentionKind::Causal, block.attn.window);
            if !masks.iter().any(|(k, _)| *k == key) {
                masks.push((key, additive_mask(b, t, t, key.0, key.1, input.mask)?));
            }
            let mask = masks
                .iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, m)| m.as_ref());
            x = block.forward_t(x, mask, memory.as_ref().map(|(e, m)| (*e, m.as_ref())))?;
        }
        if let Some(norm) = &self.norm {
            x = norm.forward_t(&x)?;
        }
        Ok(x)
    }

    /// The head's differentiable outputs: logits [rows, cols, vocab].
    pub fn logits_t(&self, hidden: &Tensor) -> Result<Tensor> {
        let head = self
            .head
            .as_ref()
            .ok_or_else(|| crate::error::Error::Unsupported("this model has no LM head".into()))?;
        head.forward_t(hidden)
    }

    /// The head's outputs (logits) for some rows of the hidden states (all when `rows` is None):
    /// [rows, outputs] row-major. A matmul over fewer rows may round differently, as in llama.cpp.
    pub fn logits(&self, hidden: &Tensor, rows: Option<&[u32]>) -> Result<Vec<f32>> {
        let head = self
            .head
            .as_ref()
            .ok_or_else(|| crate::error::Error::Unsupported("this model has no LM head".into()))?;
        let _s = crate::profile::span("lm head");
        let x = match rows {
            Some(r) => hidden.index_select(&Tensor::new(r, &Device::Cpu)?, 1)?,
            None => hidden.clone(),
        };
        Ok(head.forward(&x)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Self-attention caches for one sequence of `capacity` positions, stored in `dtype`.
    pub fn new_cache(&self, capacity: usize, dtype: KvDtype) -> Cache {
        let (nkv, hd) = self
            .blocks
            .first()
            .map(|b| (b.attn.num_kv_heads, b.attn.head_dim))
            .unwrap_or((1, 1));
        Cache::new(self.blocks.len(), nkv, hd, capacity, dtype)
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
            hidden_states: if hidden_states {
                vec![Vec::new(); layers + 1]
            } else {
                Vec::new()
            },
            attentions: if attentions {
                vec![Vec::new(); layers]
            } else {
                Vec::new()
            },
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
    fn attention(
        &mut self,
        layer: usize,
        (start, len): (usize, usize),
        heads: usize,
        probs: Vec<f32>,
    ) {
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
