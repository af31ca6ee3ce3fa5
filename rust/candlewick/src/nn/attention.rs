//! Multi-head self-attention with grouped-query attention (num_kv_heads divides num_heads; MHA and
//! MQA are the two ends), rotary positions and a KV cache. The score/softmax/value part is the
//! slice kernel in kernels::attention.
use candle_core::Tensor;

use super::{KvCache, Linear, Rope};
use crate::error::Result;
use crate::kernels::attention::{self, Shape};

#[derive(Debug, Clone)]
pub struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub extra: AttentionExtras,
}

/// Options some families add (Gemma 3): per-head RMS norms on q and k before RoPE, a sliding
/// window (a query sees its last `window` positions), and a RoPE of the layer's own.
#[derive(Debug, Clone, Default)]
pub struct AttentionExtras {
    pub q_norm: Option<super::RmsNorm>,
    pub k_norm: Option<super::RmsNorm>,
    pub window: Option<usize>,
    pub rope: Option<Rope>,
}

/// q, k, v of a run of tokens: [tokens][heads][head_dim] each, q and k normed and rotated.
pub struct Projected {
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

impl Attention {
    /// Project x: [1, tokens, hidden] (sequences laid one after another, `spans` giving each one's
    /// (start position, tokens)) to q, k and v, then per sequence the q/k norms and RoPE (the
    /// layer's own, else `rope`) at its positions. One place for every attention path.
    pub fn project(
        &self,
        x: &Tensor,
        spans: &[(usize, usize)],
        rope: Option<&Rope>,
    ) -> Result<Projected> {
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let rows = |l: &super::Linear| -> Result<Vec<f32>> {
            Ok(l.forward(x)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let (mut q, mut k, v) = (rows(&self.q)?, rows(&self.k)?, rows(&self.v)?);
        let tokens: usize = spans.iter().map(|&(_, len)| len).sum();
        if tokens * nh * hd != q.len() {
            return Err(crate::error::Error::Model(format!(
                "attention got {} tokens but sequences of {tokens}",
                q.len() / (nh * hd)
            )));
        }
        let mut off = 0;
        for &(start, len) in spans {
            let qs = &mut q[off * nh * hd..(off + len) * nh * hd];
            let ks = &mut k[off * nkv * hd..(off + len) * nkv * hd];
            if let Some(n) = &self.extra.q_norm {
                n.apply_rows(qs);
            }
            if let Some(n) = &self.extra.k_norm {
                n.apply_rows(ks);
            }
            if let Some(r) = self.extra.rope.as_ref().or(rope) {
                r.apply(qs, nh, start);
                r.apply(ks, nkv, start);
            }
            off += len;
        }
        Ok(Projected { q, k, v })
    }

    /// The output projection of attention values [tokens][heads][head_dim].
    pub fn output(&self, values: Vec<f32>, x: &Tensor) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        self.o.forward(&Tensor::from_vec(
            values,
            (b, s, self.num_heads * self.head_dim),
            x.device(),
        )?)
    }

    /// x: [1, tokens, hidden], the new tokens of one or more sequences one after another; `seqs`
    /// gives each sequence's (start position, number of new tokens, cache) in that order. Causal
    /// within each sequence; sequences never see each other.
    pub fn forward(
        &self,
        x: &Tensor,
        seqs: &mut [(usize, usize, &mut KvCache)],
        rope: Option<&Rope>,
    ) -> Result<Tensor> {
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let spans: Vec<(usize, usize)> =
            seqs.iter().map(|(start, len, _)| (*start, *len)).collect();
        let p = self.project(x, &spans, rope)?;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut out = Vec::with_capacity(p.q.len());
        let mut off = 0;
        for (start, len, cache) in seqs.iter_mut() {
            let (start, len) = (*start, *len);
            cache.append(
                &p.k[off * nkv * hd..(off + len) * nkv * hd],
                &p.v[off * nkv * hd..(off + len) * nkv * hd],
                len,
            )?;
            let shape = Shape {
                num_heads: nh,
                num_kv_heads: nkv,
                head_dim: hd,
                capacity: cache.capacity(),
                window: self.extra.window,
            };
            out.extend(attention::causal(
                &p.q[off * nh * hd..(off + len) * nh * hd],
                &cache.k,
                &cache.v,
                shape,
                start,
                len,
                scale,
            ));
            off += len;
        }
        self.output(out, x)
    }

    /// Bidirectional self-attention (encoders) over sequences of `lens` tokens laid one after
    /// another in x: [1, tokens, hidden]; no cache, no mask needed (each sequence sees exactly
    /// its own tokens, so padding never enters). RoPE when given, at positions 0..len.
    pub fn forward_bidirectional(
        &self,
        x: &Tensor,
        lens: &[usize],
        rope: Option<&Rope>,
    ) -> Result<Tensor> {
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let spans: Vec<(usize, usize)> = lens.iter().map(|&len| (0, len)).collect();
        let p = self.project(x, &spans, rope)?;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut out = Vec::with_capacity(p.q.len());
        let mut off = 0;
        for &len in lens {
            let (qs, ks, vs) = (
                &p.q[off * nh * hd..(off + len) * nh * hd],
                &p.k[off * nkv * hd..(off + len) * nkv * hd],
                &p.v[off * nkv * hd..(off + len) * nkv * hd],
            );
            out.extend(attention::bidirectional(
                qs, ks, vs, nh, nkv, hd, len, scale,
            ));
            off += len;
        }
        self.output(out, x)
    }
}
