//! RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x^2) + eps) * weight.
//! Computed as ggml's `ggml_compute_forward_rms_norm_f32` does (squares summed in f64, scale in
//! f32), so logits agree with llama.cpp as closely as possible.
use candle_core::Tensor;

use crate::error::Result;

#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    pub fn new(weight: Tensor, eps: f64) -> Result<Self> {
        Ok(Self { weight: weight.flatten_all()?.to_vec1::<f32>()?, eps: eps as f32 })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let d = self.weight.len();
        let mut v = x.flatten_all()?.to_vec1::<f32>()?;
        for row in v.chunks_exact_mut(d) {
            let sum: f64 = row.iter().map(|&a| (a * a) as f64).sum();
            let mean = (sum / d as f64) as f32;
            let scale = 1.0 / (mean + self.eps).sqrt();
            for (a, w) in row.iter_mut().zip(&self.weight) {
                *a = (*a * scale) * w;
            }
        }
        Ok(Tensor::from_vec(v, dims, x.device())?)
    }
}
