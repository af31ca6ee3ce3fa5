//! RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x^2) + eps) * weight.
//! Computed as ggml's `ggml_compute_forward_rms_norm_f32` does (squares summed in f64, scale in
//! f32), so logits agree with llama.cpp as closely as possible.
use candle_core::Tensor;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Vec<f32>,
    /// The same weight as a tensor: what the differentiable path multiplies by (a training
    /// parameter when the model was built from one).
    tensor: Option<Tensor>,
    eps: f32,
}

fn unread() -> Error {
    Error::Model("a norm whose weights were not read (a listing build) cannot run".into())
}

impl RmsNorm {
    pub fn new(weight: Tensor, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: weight.flatten_all()?.to_vec1::<f32>()?,
            tensor: Some(weight),
            eps: eps as f32,
        })
    }

    /// A norm whose weights were not read (a build that only lists a checkpoint's tensors).
    pub(crate) fn unread(eps: f64) -> Self {
        Self {
            weight: Vec::new(),
            tensor: None,
            eps: eps as f32,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let mut v = x.flatten_all()?.to_vec1::<f32>()?;
        self.apply_rows(&mut v);
        Ok(Tensor::from_vec(v, dims, x.device())?)
    }

    /// The differentiable form (training, losses): over the last dimension, in candle ops that
    /// record their gradients (candle-nn's fused rms_norm records none).
    pub fn forward_t(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.tensor.as_ref().ok_or_else(unread)?;
        super::ops::rms_norm(x, w, self.eps as f64)
    }

    /// Normalise every run of `weight.len()` values in place (rows, or heads within rows).
    pub fn apply_rows(&self, v: &mut [f32]) {
        let d = self.weight.len();
        for row in v.chunks_exact_mut(d) {
            let sum: f64 = row.iter().map(|&a| (a * a) as f64).sum();
            let mean = (sum / d as f64) as f32;
            let scale = 1.0 / (mean + self.eps).sqrt();
            for (a, w) in row.iter_mut().zip(&self.weight) {
                *a = (*a * scale) * w;
            }
        }
    }
}

/// LayerNorm (Ba et al. 2016): (x - mean) / sqrt(var + eps) * weight + bias, per row, with the
/// mean and (biased) variance accumulated in f64.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    /// weight and bias as tensors, for the differentiable path.
    tensors: Option<(Tensor, Option<Tensor>)>,
    eps: f64,
}

impl LayerNorm {
    /// A norm whose weights were not read (a build that only lists a checkpoint's tensors).
    pub(crate) fn unread(eps: f64) -> Self {
        Self {
            weight: Vec::new(),
            bias: None,
            tensors: None,
            eps,
        }
    }

    pub fn new(weight: Tensor, bias: Option<Tensor>, eps: f64) -> Result<Self> {
        let w = weight.flatten_all()?.to_vec1::<f32>()?;
        let b = bias
            .as_ref()
            .map(|b| b.flatten_all()?.to_vec1::<f32>())
            .transpose()?;
        Ok(Self {
            weight: w,
            bias: b,
            tensors: Some((weight, bias)),
            eps,
        })
    }

    /// The differentiable form (training, losses), over the last dimension (biased variance).
    pub fn forward_t(&self, x: &Tensor) -> Result<Tensor> {
        let (w, b) = self.tensors.as_ref().ok_or_else(unread)?;
        let b = match b {
            Some(b) => b.clone(),
            None => w.zeros_like()?,
        };
        super::ops::layer_norm(x, w, &b, self.eps)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let d = self.weight.len();
        let mut v = x.flatten_all()?.to_vec1::<f32>()?;
        for row in v.chunks_exact_mut(d) {
            let mean = row.iter().map(|&a| a as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            let inv = 1.0 / (var + self.eps).sqrt();
            for (j, a) in row.iter_mut().enumerate() {
                let y = ((*a as f64 - mean) * inv) as f32 * self.weight[j];
                *a = match &self.bias {
                    Some(b) => y + b[j],
                    None => y,
                };
            }
        }
        Ok(Tensor::from_vec(v, dims, x.device())?)
    }
}

/// The norm a config names.
#[derive(Debug, Clone)]
pub enum Norm {
    Rms(RmsNorm),
    Layer(LayerNorm),
}

impl Norm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Norm::Rms(n) => n.forward(x),
            Norm::Layer(n) => n.forward(x),
        }
    }

    /// The differentiable form.
    pub fn forward_t(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Norm::Rms(n) => n.forward_t(x),
            Norm::Layer(n) => n.forward_t(x),
        }
    }
}
