//! AdamW (Loshchilov & Hutter 2019) as torch.optim.AdamW computes it, global-norm gradient
//! clipping as torch.nn.utils.clip_grad_norm_, and the learning-rate schedules of transformers'
//! get_*_schedule_with_warmup.

use std::collections::BTreeMap;

use candle_core::{Tensor, Var};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// The moments of every parameter, by name, and the step count.
pub struct AdamW {
    pub config: AdamWConfig,
    pub step: u64,
    /// (first moment, second moment) per parameter.
    pub moments: BTreeMap<String, (Tensor, Tensor)>,
}

/// Whether weight decay applies to a parameter: matrices and embeddings, not biases or norm
/// weights (transformers' Trainer leaves those undecayed).
pub fn decays(shape: &[usize]) -> bool {
    shape.len() >= 2
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> Self {
        AdamW {
            config,
            step: 0,
            moments: BTreeMap::new(),
        }
    }

    /// One update of every parameter that has a gradient, at learning rate `lr`:
    /// p <- p (1 - lr wd); m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
    /// p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    pub fn update(&mut self, params: &BTreeMap<String, Var>, grads: &BTreeMap<String, Tensor>, lr: f64) -> Result<()> {
        let c = self.config;
        self.step += 1;
        let t = self.step as f64;
        let bias1 = 1.0 - c.beta1.powf(t);
        let bias2 = 1.0 - c.beta2.powf(t);
        for (name, var) in params {
            let Some(g) = grads.get(name) else { continue };
            let (m, v) = match self.moments.get(name) {
                Some(mv) => mv.clone(),
                None => (g.zeros_like()?, g.zeros_like()?),
            };
            let m = ((m * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            let v = ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let mut p = var.as_tensor().detach();
            if c.weight_decay != 0.0 && decays(var.dims()) {
                p = (p * (1.0 - lr * c.weight_decay))?;
            }
            let denom = ((v.sqrt()? / bias2.sqrt())? + c.eps)?;
            let p = (p - ((&m / denom)? * (lr / bias1))?)?;
            var.set(&p)?;
            self.moments.insert(name.clone(), (m, v));
        }
        Ok(())
    }
}

/// The gradients' global L2 norm, and the gradients scaled to at most `max_norm` when it is
/// above (torch's clip_grad_norm_: coefficient max_norm / (norm + 1e-6), capped at 1).
pub fn clip(grads: &mut BTreeMap<String, Tensor>, max_norm: Option<f64>) -> Result<f64> {
    let mut sq = 0f64;
    for g in grads.values() {
        sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let norm = sq.sqrt();
    if !norm.is_finite() {
        return Err(Error::Model(format!("the gradient norm is {norm}: the loss diverged (lower lr)")));
    }
    if let Some(max) = max_norm {
        let coef = max / (norm + 1e-6);
        if coef < 1.0 {
            for g in grads.values_mut() {
                *g = (&*g * coef)?;
            }
        }
    }
    Ok(norm)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    Constant,
    Linear,
    Cosine,
}

impl Schedule {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "linear" => Ok(Schedule::Linear),
            "cosine" => Ok(Schedule::Cosine),
            other => Err(Error::InvalidArgument(format!(
                "schedule must be 'cosine', 'linear' or 'constant', got {other:?}"
            ))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Linear => "linear",
            Schedule::Cosine => "cosine",
        }
    }

    /// The learning rate of (0-based) step `step` of `total`: a linear warmup over `warmup`
    /// steps from 0, then constant, linear decay to 0, or half a cosine to 0.
    pub fn lr(&self, base: f64, step: u64, warmup: u64, total: u64) -> f64 {
        if step < warmup {
            return base * step as f64 / warmup.max(1) as f64;
        }
        let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
        base * match self {
            Schedule::Constant => 1.0,
            Schedule::Linear => (1.0 - progress).max(0.0),
            Schedule::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
        }
    }
}
