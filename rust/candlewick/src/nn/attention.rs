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

impl Attention {
    /// x: [1, tokens, hidden], the new tokens of one or more sequences one after another; `seqs`
    /// gives each sequence's (start position, number of new tokens, cache) in that order. Causal
    /// within each sequence; sequences never see each other.
    pub fn forward(&self, x: &Tensor, seqs: &mut [(usize, usize, &mut KvCache)], rope: Option<&Rope>) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let mut q = self.q.forward(x)?.flatten_all()?.to_vec1::<f32>()?;
        let mut k = self.k.forward(x)?.flatten_all()?.to_vec1::<f32>()?;
        let v = self.v.forward(x)?.flatten_all()?.to_vec1::<f32>()?;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut out = Vec::with_capacity(s * nh * hd);
        let mut off = 0;
        for (start, len, cache) in seqs.iter_mut() {
            let (start, len) = (*start, *len);
            let q = &mut q[off * nh * hd..(off + len) * nh * hd];
            let k = &mut k[off * nkv * hd..(off + len) * nkv * hd];
            if let Some(n) = &self.extra.q_norm {
                n.apply_rows(q);
            }
            if let Some(n) = &self.extra.k_norm {
                n.apply_rows(k);
            }
            if let Some(rope) = self.extra.rope.as_ref().or(rope) {
                rope.apply(q, nh, start);
                rope.apply(k, nkv, start);
            }
            cache.append(k, &v[off * nkv * hd..(off + len) * nkv * hd], len)?;
            let shape = Shape { num_heads: nh, num_kv_heads: nkv, head_dim: hd, capacity: cache.capacity(), window: self.extra.window };
            out.extend(attention::causal(q, &cache.k, &cache.v, shape, start, len, scale));
            off += len;
        }
        if off != s {
            return Err(crate::error::Error::Model(format!("attention got {s} tokens but sequences of {off}")));
        }
        self.o.forward(&Tensor::from_vec(out, (b, s, nh * hd), x.device())?)
    }

    /// Bidirectional self-attention (encoders) over sequences of `lens` tokens laid one after
    /// another in x: [1, tokens, hidden]; no cache, no mask needed (each sequence sees exactly
    /// its own tokens, so padding never enters). RoPE when given, at positions 0..len.
    pub fn forward_bidirectional(&self, x: &Tensor, lens: &[usize], rope: Option<&Rope>) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let mut q = self.q.forward(x)?.flatten_all()?.to_vec1::<f32>()?;
        let mut k = self.k.forward(x)?.flatten_all()?.to_vec1::<f32>()?;
        let v = self.v.forward(x)?.flatten_all()?.to_vec1::<f32>()?;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut out = Vec::with_capacity(s * nh * hd);
        let mut off = 0;
        for &len in lens {
            let qs = &mut q[off * nh * hd..(off + len) * nh * hd];
            let ks = &mut k[off * nkv * hd..(off + len) * nkv * hd];
            if let Some(r) = rope {
                r.apply(qs, nh, 0);
                r.apply(ks, nkv, 0);
            }
            let vs = &v[off * nkv * hd..(off + len) * nkv * hd];
            out.extend(attention::bidirectional(qs, ks, vs, nh, nkv, hd, len, scale));
            off += len;
        }
        if off != s {
            return Err(crate::error::Error::Model(format!("attention got {s} tokens but sequences of {off}")));
        }
        self.o.forward(&Tensor::from_vec(out, (b, s, nh * hd), x.device())?)
    }
}
