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
    /// GELU through ggml's f16 lookup table (llama.cpp's CPU GELU), for GGUF parity.
    pub ggml_gelu: bool,
}

/// The activation a config names, elementwise.
pub fn activate(x: &Tensor, a: Activation) -> Result<Tensor> {
    Ok(match a {
        Activation::Silu => candle_nn::ops::silu(x)?,
        Activation::Gelu => x.gelu_erf()?,
        Activation::GeluTanh => x.gelu()?,
        Activation::Relu => x.relu()?,
    })
}

impl Mlp {
    /// The differentiable form: candle ops throughout (the activation's exact formula, not
    /// ggml's lookup table).
    pub fn forward_t(&self, x: &Tensor) -> Result<Tensor> {
        let h = match &self.gate {
            Some(g) => {
                super::ops::gated(&g.forward_t(x)?, &self.up.forward_t(x)?, self.activation)?
            }
            None => super::ops::activation(&self.up.forward_t(x)?, self.activation)?,
        };
        self.down.forward_t(&h)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // Gated MLPs whose activation ggml computes its own way (SwiGLU with its expf; GELU
        // through its f16 table) run on slices, so activations match llama.cpp.
        let ggml_act = match (&self.gate, self.activation) {
            (Some(g), Activation::Silu) => Some((g, false)),
            (Some(g), _) if self.ggml_gelu => Some((g, true)),
            _ => None,
        };
        use crate::profile::span;
        if let Some((g, gelu)) = ggml_act {
            let s = span("gate/up matmuls");
            let mut dims = x.dims().to_vec();
            if let Some(last) = dims.last_mut() {
                *last = self.up.out_features();
            }
            // the products as plain values where the layers allow (no tensor copies: a 512-token
            // prefill's gate and up are 4 MiB each for Gemma 3 270M)
            let (gv, uv) = match Linear::forward_many_values(&[g, &self.up], x)? {
                Some(v) => match <[Vec<f32>; 2]>::try_from(v) {
                    Ok([gv, uv]) => (gv, uv),
                    Err(_) => {
                        return Err(crate::error::Error::Model("gate/up: two products".into()))
                    }
                },
                None => {
                    let gate_up = Linear::forward_many(&[g, &self.up], x)?;
                    (
                        gate_up[0].flatten_all()?.to_vec1::<f32>()?,
                        gate_up[1].flatten_all()?.to_vec1::<f32>()?,
                    )
                }
            };
            drop(s);
            let s = span("activation");
            let mut h = vec![0f32; gv.len()];
            if gelu {
                crate::kernels::math::geglu_rows(&gv, &uv, &mut h);
            } else {
                crate::kernels::math::swiglu(&gv, &uv, &mut h);
            }
            drop((gv, uv));
            let h = Tensor::from_vec(h, dims, x.device())?;
            drop(s);
            let _s = span("down matmul");
            return self.down.forward(&h);
        }
        let s = span("gate/up matmuls, activation");
        let h = match &self.gate {
            Some(g) => (activate(&g.forward(x)?, self.activation)? * self.up.forward(x)?)?,
            None => activate(&self.up.forward(x)?, self.activation)?,
        };
        drop(s);
        let _s = span("down matmul");
        self.down.forward(&h)
    }
}
