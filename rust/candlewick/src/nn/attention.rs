//! Multi-head self-attention with grouped-query attention (num_kv_heads divides num_heads; MHA and
//! MQA are the two ends), rotary positions and a KV cache.
use candle_core::Tensor;

use super::{KvCache, Linear, Rope};
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl Attention {
    /// x: [batch, seq, hidden] at positions start..start+seq; mask: additive [seq, kv_len] or None
    /// (a single query row needs none: it may see every cached position).
    pub fn forward(&self, x: &Tensor, start: usize, rope: &Rope, cache: &mut KvCache, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let heads = |t: Tensor, n: usize| -> Result<Tensor> { Ok(t.reshape((b, s, n, hd))?.transpose(1, 2)?) };
        let q = rope.apply(&heads(self.q.forward(x)?, nh)?, start)?;
        let k = rope.apply(&heads(self.k.forward(x)?, nkv)?, start)?;
        let v = heads(self.v.forward(x)?, nkv)?;
        let (k, v) = cache.append(&k, &v)?;
        let t = k.dim(2)?;

        // Grouped-query attention without copying K/V: the n_rep query heads that share one KV head
        // are stacked along the row axis, [b, nkv, n_rep * s, hd], and meet that head's keys once.
        let n_rep = nh / nkv;
        let q = (q.contiguous()?.reshape((b, nkv, n_rep * s, hd))? * (1.0 / (hd as f64).sqrt()))?;
        let scores = q.matmul(&k.t()?)?;
        let scores = match mask {
            Some(m) => scores.reshape((b, nkv, n_rep, s, t))?.broadcast_add(m)?.reshape((b, nkv, n_rep * s, t))?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&v)?; // [b, nkv, n_rep * s, hd]
        let out = out.reshape((b, nh, s, hd))?.transpose(1, 2)?.reshape((b, s, nh * hd))?;
        self.o.forward(&out)
    }
}

/// Additive causal mask [seq, start + seq]: query i (at position start + i) sees keys 0..=start + i.
pub fn causal_mask(seq: usize, start: usize, device: &candle_core::Device) -> Result<Tensor> {
    let t = start + seq;
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| (0..t).map(move |j| if j > start + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(mask, (seq, t), device)?)
}

