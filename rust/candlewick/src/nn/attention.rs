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
}

impl Attention {
    /// x: [1, seq, hidden] at positions start..start+seq (causal).
    pub fn forward(&self, x: &Tensor, start: usize, rope: &Rope, cache: &mut KvCache) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let mut q = self.q.forward(x)?.flatten_all()?.to_vec1::<f32>()?;
        let mut k = self.k.forward(x)?.flatten_all()?.to_vec1::<f32>()?;
        let v = self.v.forward(x)?.flatten_all()?.to_vec1::<f32>()?;
        rope.apply(&mut q, nh, start);
        rope.apply(&mut k, nkv, start);
        cache.append(&k, &v, s)?;
        let shape = Shape { num_heads: nh, num_kv_heads: nkv, head_dim: hd, capacity: cache.capacity() };
        let scale = 1.0 / (hd as f32).sqrt();
        let out = attention::causal(&q, &cache.k, &cache.v, shape, start, s, scale);
        self.o.forward(&Tensor::from_vec(out, (b, s, nh * hd), x.device())?)
    }
}
