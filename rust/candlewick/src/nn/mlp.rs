//! Feed-forward block. Gated (SwiGLU, GeGLU): down(act(gate(x)) * up(x)); plain: down(act(up(x))).
use candle_core::Tensor;

use super::Linear;
use crate::config::Activation;
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate: Option<Linear>,
    pub up: Linear,
    pub down: Linear,
    pub activation: Activation,
}

fn act(x: &Tensor, a: Activation) -> Result<Tensor> {
    Ok(match a {
        Activation::Silu => candle_nn::ops::silu(x)?,
        Activation::Gelu => x.gelu_erf()?,
        Activation::GeluTanh => x.gelu()?,
        Activation::Relu => x.relu()?,
    })
}

impl Mlp {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = match &self.gate {
            Some(g) => (act(&g.forward(x)?, self.activation)? * self.up.forward(x)?)?,
            None => act(&self.up.forward(x)?, self.activation)?,
        };
        self.down.forward(&h)
    }
}
