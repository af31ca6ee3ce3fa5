//! y = x W^T (+ b), with W quantized (GGUF block types) or dense.
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Module, Tensor};

use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Linear {
    weight: QMatMul,
    bias: Option<Tensor>,
    out_features: usize,
}

impl Linear {
    pub fn from_qtensor(w: QTensor, bias: Option<Tensor>) -> Result<Self> {
        let out_features = w.shape().dims()[0];
        Ok(Self { weight: QMatMul::from_arc(std::sync::Arc::new(w))?, bias, out_features })
    }

    pub fn from_arc(w: std::sync::Arc<QTensor>) -> Result<Self> {
        let out_features = w.shape().dims()[0];
        Ok(Self { weight: QMatMul::from_arc(w)?, bias: None, out_features })
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.weight.forward(x)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}
