//! Rotary position embedding (Su et al. 2021). Frequencies theta^(-2i/d); the rotation pairs are
//! either adjacent dims (GGUF llama: the converter permuted q/k, so llama.cpp uses "normal" rope on
//! adjacent pairs) or the two halves of the head (HF layout, "neox" style).
use candle_core::{DType, Device, Tensor};

use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
    interleaved: bool,
}

impl Rope {
    pub fn new(head_dim: usize, theta: f64, max_len: usize, interleaved: bool, device: &Device) -> Result<Self> {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> =
            (0..half).map(|i| (1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)) as f32).collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let t = Tensor::arange(0u32, max_len as u32, device)?.to_dtype(DType::F32)?.reshape((max_len, 1))?;
        let freqs = t.matmul(&inv_freq)?;
        Ok(Self { cos: freqs.cos()?, sin: freqs.sin()?, interleaved })
    }

    /// x: [batch, heads, seq, head_dim] at positions start..start+seq.
    pub fn apply(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let seq = x.dim(2)?;
        let cos = self.cos.narrow(0, start, seq)?;
        let sin = self.sin.narrow(0, start, seq)?;
        let x = x.contiguous()?;
        Ok(if self.interleaved {
            candle_nn::rotary_emb::rope_i(&x, &cos, &sin)?
        } else {
            candle_nn::rotary_emb::rope(&x, &cos, &sin)?
        })
    }

    pub fn max_len(&self) -> usize {
        self.cos.dims()[0]
    }
}
