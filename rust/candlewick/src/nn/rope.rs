//! Rotary position embedding (Su et al. 2021). Frequencies theta^(-2i/d); the rotation pairs are
//! either adjacent dims (GGUF llama: the converter permuted q/k, so llama.cpp uses "normal" rope on
//! adjacent pairs) or the two halves of the head (HF layout, "neox" style).
use candle_core::{Device, Tensor};

use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
    interleaved: bool,
}

impl Rope {
    pub fn new(head_dim: usize, theta: f64, max_len: usize, interleaved: bool, device: &Device) -> Result<Self> {
        // As ggml's rope cache: theta_i = p * theta_scale^i by repeated f32 multiplication,
        // theta_scale = base^(-2/d); cos and sin in f32.
        let half = head_dim / 2;
        let theta_scale = (theta as f32).powf(-2.0 / head_dim as f32);
        let mut cos = Vec::with_capacity(max_len * half);
        let mut sin = Vec::with_capacity(max_len * half);
        for p in 0..max_len {
            let mut t = p as f32;
            for _ in 0..half {
                cos.push(t.cos());
                sin.push(t.sin());
                t *= theta_scale;
            }
        }
        let cos = Tensor::from_vec(cos, (max_len, half), device)?;
        let sin = Tensor::from_vec(sin, (max_len, half), device)?;
        Ok(Self { cos, sin, interleaved })
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
