//! Multi-head attention with grouped-query attention (num_kv_heads divides num_heads; MHA and
//! MQA are the two ends), in three kinds: causal self-attention (decoders), bidirectional
//! self-attention (encoders) and cross-attention to an encoder's output. Every kind keeps its
//! keys and values in a `KvCache` and runs the one kernel in kernels::attention.
use candle_core::Tensor;

use super::{KvCache, Linear, RelativeBias, RmsNorm, Rope};
use crate::error::{Error, Result};
use crate::kernels::attention::{self, Bias, Job, Keys, Shape};

/// Which keys a query attends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKind {
    /// Its own sequence up to its own position (decoders).
    Causal,
    /// Its whole own sequence (encoders).
    Bidirectional,
    /// Every position of the encoder's output (an encoder-decoder's decoder).
    Cross,
}

/// How attention knows where tokens are (learned and sinusoidal positions are added to the
/// embeddings instead, before the first layer).
#[derive(Debug, Clone)]
pub enum AttentionPositions {
    None,
    /// q and k rotated by their positions.
    Rope(Rope),
    /// A learned bias per head and distance bucket added to the scores (T5).
    RelativeBias(RelativeBias),
}

#[derive(Debug, Clone)]
pub struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub kind: AttentionKind,
    /// Multiplies q.k: 1/sqrt(head_dim), or 1 (T5, whose initialisation absorbs it).
    pub scale: f32,
    pub positions: AttentionPositions,
    /// Per-head RMS norms on q and k before RoPE (Gemma 3).
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    /// A query sees only its last `window` positions (Mistral, Gemma 3's local layers).
    pub window: Option<usize>,
    /// Gemma 2: scores capped softly at +-softcap (cap x tanh(score / cap)); 0 = none.
    pub softcap: f32,
}

/// One sequence's part of a self-attention call: its new tokens (at positions start..start+len)
/// and this layer's cache of it, which a causal layer appends the new keys and values to. A
/// bidirectional layer sees its whole sequence at once and keeps nothing: its keys live in a
/// cache of their own only while the layer runs (the one given is not touched).
pub struct SelfKv<'a> {
    pub start: usize,
    pub len: usize,
    pub cache: &'a mut KvCache,
}

/// One sequence's part of a cross-attention call: its new decoder tokens and the encoder's keys
/// and values for this layer.
pub struct CrossKv<'a> {
    pub len: usize,
    pub encoder: &'a KvCache,
}

/// q, k, v of a run of tokens: [tokens][heads][head_dim] each, q and k normed and rotated.
struct Projected {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

fn rows(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

impl Attention {
    /// A plain multi-head attention of `kind` (no norms, window or positions).
    pub fn new(
        q: Linear,
        k: Linear,
        v: Linear,
        o: Linear,
        heads: (usize, usize, usize),
        kind: AttentionKind,
    ) -> Self {
        let (num_heads, num_kv_heads, head_dim) = heads;
        Attention {
            q,
            k,
            v,
            o,
            num_heads,
            num_kv_heads,
            head_dim,
            kind,
            scale: 1.0 / (head_dim as f32).sqrt(),
            positions: AttentionPositions::None,
            q_norm: None,
            k_norm: None,
            window: None,
            softcap: 0.0,
        }
    }

    fn shape(&self, capacity: usize) -> Shape {
        Shape {
            num_heads: self.num_heads,
            num_kv_heads: self.num_kv_heads,
            head_dim: self.head_dim,
            capacity,
            window: self.window,
        }
    }

    /// Project x: [1, tokens, hidden] (sequences laid one after another, `spans` giving each
    /// one's (start position, tokens)) to q, k and v, then per sequence the q/k norms and RoPE at
    /// its positions.
    fn project(&self, x: &Tensor, spans: &[(usize, usize)]) -> Result<Projected> {
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let s = crate::profile::span("q/k/v matmuls");
        let qkv = Linear::forward_many(&[&self.q, &self.k, &self.v], x)?;
        let (mut q, mut k, v) = (rows(&qkv[0])?, rows(&qkv[1])?, rows(&qkv[2])?);
        drop(s);
        let _s = crate::profile::span("q/k norms, rope");
        let tokens: usize = spans.iter().map(|&(_, len)| len).sum();
        if tokens * nh * hd != q.len() {
            return Err(Error::Model(format!(
                "attention got {} tokens but sequences of {tokens}",
                q.len() / (nh * hd)
            )));
        }
        let mut off = 0;
        for &(start, len) in spans {
            let qs = &mut q[off * nh * hd..(off + len) * nh * hd];
            let ks = &mut k[off * nkv * hd..(off + len) * nkv * hd];
            if let Some(n) = &self.q_norm {
                n.apply_rows(qs);
            }
            if let Some(n) = &self.k_norm {
                n.apply_rows(ks);
            }
            if let AttentionPositions::Rope(r) = &self.positions {
                r.apply(qs, nh, start);
                r.apply(ks, nkv, start);
            }
            off += len;
        }
        Ok(Projected { q, k, v })
    }

    /// The output projection of attention values [tokens][heads][head_dim].
    fn output(&self, values: Vec<f32>, x: &Tensor) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let _s = crate::profile::span("o matmul");
        self.o.forward(&Tensor::from_vec(
            values,
            (b, s, self.num_heads * self.head_dim),
            x.device(),
        )?)
    }

    /// One sequence's attention over `cache`, with the bias of its positions when the layer has
    /// relative positions; `probs` [heads][len][keys] when asked for.
    fn attend(
        &self,
        q: &[f32],
        start: usize,
        len: usize,
        keys: Keys,
        cache: &KvCache,
        want_probs: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut job = Job {
            shape: self.shape(cache.capacity()),
            start,
            seq: len,
            keys,
            scale: self.scale,
            softcap: self.softcap,
            bias: None,
        };
        let span = job.key_span();
        // distances key - query run from -(last query position) to the last key's
        let min_distance = -((start + len) as i64 - 1);
        let max_distance = span as i64 - 1 - start as i64;
        let bias_values = match &self.positions {
            AttentionPositions::RelativeBias(rb) => rb.by_distance(min_distance, max_distance),
            _ => Vec::new(),
        };
        if !bias_values.is_empty() {
            job.bias = Some(Bias {
                values: &bias_values,
                min_distance,
                span: (max_distance - min_distance + 1) as usize,
            });
        }
        let mut probs = if want_probs {
            vec![0f32; self.num_heads * len * span]
        } else {
            Vec::new()
        };
        let out = attention::attend(&job, q, cache.view(), want_probs.then_some(&mut probs[..]));
        (out, probs)
    }

    /// Self-attention (causal or bidirectional) of x: [1, tokens, hidden], the new tokens of one
    /// or more sequences one after another, each appending its keys and values to its own cache
    /// and attending only to itself. Returns the output and, when asked, each sequence's
    /// attention probabilities.
    pub fn forward(
        &self,
        x: &Tensor,
        seqs: &mut [SelfKv<'_>],
        want_probs: bool,
    ) -> Result<(Tensor, Vec<Vec<f32>>)> {
        let keys_of = |cache: &KvCache| match self.kind {
            AttentionKind::Causal => Ok(Keys::Causal),
            AttentionKind::Bidirectional => Ok(Keys::All(cache.len())),
            AttentionKind::Cross => Err(Error::Model(
                "a cross-attention layer was run as self-attention".into(),
            )),
        };
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let spans: Vec<(usize, usize)> = seqs.iter().map(|s| (s.start, s.len)).collect();
        let p = self.project(x, &spans)?;
        let mut out = Vec::with_capacity(p.q.len());
        let mut all_probs = Vec::new();
        let mut off = 0;
        for s in seqs.iter_mut() {
            let kv = off * nkv * hd..(off + s.len) * nkv * hd;
            let mut own;
            let cache: &mut KvCache = if self.kind == AttentionKind::Bidirectional {
                own = KvCache::new(nkv, hd, s.start + s.len);
                &mut own
            } else {
                s.cache
            };
            if cache.len() != s.start {
                return Err(Error::Model(format!(
                    "a sequence at position {} with a cache of {} positions",
                    s.start,
                    cache.len()
                )));
            }
            let span = crate::profile::span("kv cache append");
            cache.append(&p.k[kv.clone()], &p.v[kv], s.len)?;
            drop(span);
            let keys = keys_of(cache)?;
            let q = &p.q[off * nh * hd..(off + s.len) * nh * hd];
            let span = crate::profile::span("attention");
            let (o, probs) = self.attend(q, s.start, s.len, keys, cache, want_probs);
            drop(span);
            out.extend(o);
            all_probs.push(probs);
            off += s.len;
        }
        Ok((self.output(out, x)?, all_probs))
    }

    /// Cross-attention of x: [1, tokens, hidden] (the new decoder tokens of one or more
    /// sequences) to each sequence's encoder keys and values.
    pub fn forward_cross(
        &self,
        x: &Tensor,
        seqs: &[CrossKv<'_>],
        want_probs: bool,
    ) -> Result<(Tensor, Vec<Vec<f32>>)> {
        let (nh, hd) = (self.num_heads, self.head_dim);
        let q = rows(&self.q.forward(x)?)?;
        let mut out = Vec::with_capacity(q.len());
        let mut all_probs = Vec::new();
        let mut off = 0;
        for s in seqs {
            let qs = &q[off * nh * hd..(off + s.len) * nh * hd];
            let (o, probs) = self.attend(
                qs,
                0,
                s.len,
                Keys::All(s.encoder.len()),
                s.encoder,
                want_probs,
            );
            out.extend(o);
            all_probs.push(probs);
            off += s.len;
        }
        Ok((self.output(out, x)?, all_probs))
    }

    /// The differentiable form (training, losses) over a padded batch x: [batch, tokens, hidden],
    /// every sequence from position 0: self-attention when `memory` is None, else cross-attention
    /// to `memory` [batch, keys, hidden]. `mask` [batch, 1, tokens, keys] is added to the scores
    /// (0 where a key is seen, f32::MIN where not: causality, window and padding in one).
    /// Candle ops throughout, softmax included (candle-nn's fused one records no gradient).
    pub fn forward_t(
        &self,
        x: &Tensor,
        memory: Option<&Tensor>,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let src = memory.unwrap_or(x);
        let s = src.dim(1)?;
        let heads = |y: Tensor, n: usize, len: usize| -> Result<Tensor> {
            Ok(y.reshape((b, len, n, hd))?.transpose(1, 2)?.contiguous()?)
        };
        let mut q = heads(self.q.forward_t(x)?, nh, t)?;
        let mut k = heads(self.k.forward_t(src)?, nkv, s)?;
        let mut v = heads(self.v.forward_t(src)?, nkv, s)?;
        if let Some(n) = &self.q_norm {
            q = n.forward_t(&q)?;
        }
        if let Some(n) = &self.k_norm {
            k = n.forward_t(&k)?;
        }
        if let (AttentionPositions::Rope(r), None) = (&self.positions, memory) {
            q = r.forward_t(&q)?;
            k = r.forward_t(&k)?;
        }
        if nh != nkv {
            // grouped-query attention: each kv head serves nh / nkv query heads
            let rep = nh / nkv;
            let expand = |y: Tensor| -> Result<Tensor> {
                Ok(y.unsqueeze(2)?
                    .broadcast_as((b, nkv, rep, s, hd))?
                    .reshape((b, nh, s, hd))?)
            };
            k = expand(k)?;
            v = expand(v)?;
        }
        let mut scores = q.matmul(&k.t()?)?;
        let mut scale = self.scale;
        if self.softcap > 0.0 {
            let cap = self.softcap as f64;
            scores = ((scores * (scale as f64 / cap))?.tanh()? * cap)?;
            scale = 1.0;
        }
        if let (AttentionPositions::RelativeBias(rb), None) = (&self.positions, memory) {
            scores = (scores * scale as f64)?.broadcast_add(&rb.forward_t(t, s)?.unsqueeze(0)?)?;
            scale = 1.0;
        }
        // scale, mask and softmax in one op (its gradient reaches the scores)
        let probs = super::ops::masked_softmax(&scores, scale, mask)?;
        let out = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?;
        self.o.forward_t(&out)
    }

    /// The keys and values this cross-attention layer reads from an encoder output
    /// [1, tokens, hidden]: computed once per request.
    pub fn encoder_kv(&self, encoded: &Tensor) -> Result<KvCache> {
        let n = encoded.dim(1)?;
        let mut cache = KvCache::new(self.num_kv_heads, self.head_dim, n);
        cache.append(
            &rows(&self.k.forward(encoded)?)?,
            &rows(&self.v.forward(encoded)?)?,
            n,
        )?;
        Ok(cache)
    }
}
