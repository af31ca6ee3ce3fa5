//! AdamW (Loshchilov & Hutter 2019) as torch.optim.AdamW computes it, global-norm gradient
//! clipping as torch.nn.utils.clip_grad_norm_, and the learning-rate schedules of transformers'
//! get_*_schedule_with_warmup.

use std::collections::BTreeMap;

use std::sync::Mutex;

use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Tensor, Var};

use crate::kernels::math::{simd_fn, sum_squares};
use crate::kernels::SharedOut;
use crate::nn::ops::with_values;

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

    /// One update of every parameter that has a gradient, at learning rate `lr`, each gradient
    /// first multiplied by `grad_scale` (the clipping coefficient; 1 leaves it as it is):
    /// p <- p (1 - lr wd); m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
    /// p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    /// One pass over each parameter, its moments and its gradient, in place, rows of values spread
    /// over the worker pool.
    pub fn update(
        &mut self,
        params: &BTreeMap<String, Var>,
        grads: &BTreeMap<String, Tensor>,
        lr: f64,
        grad_scale: f32,
    ) -> Result<()> {
        let c = self.config;
        self.step += 1;
        let t = self.step as f64;
        let bias1 = 1.0 - c.beta1.powf(t);
        let bias2 = 1.0 - c.beta2.powf(t);
        for (name, var) in params {
            let Some(g) = grads.get(name) else { continue };
            if g.dims() != var.dims() {
                return Err(Error::Model(format!(
                    "{name}: a gradient of {:?} for a parameter of {:?}",
                    g.dims(),
                    var.dims()
                )));
            }
            let (m, v) = match self.moments.get(name) {
                Some(mv) => mv.clone(),
                // two separate buffers: the update writes both in place
                None => (
                    Tensor::zeros(var.shape(), DType::F32, var.device())?,
                    Tensor::zeros(var.shape(), DType::F32, var.device())?,
                ),
            };
            let step = Step {
                decay: if c.weight_decay != 0.0 && decays(var.dims()) {
                    (1.0 - lr * c.weight_decay) as f32
                } else {
                    1.0
                },
                beta1: c.beta1 as f32,
                beta2: c.beta2 as f32,
                one_minus_beta1: (1.0 - c.beta1) as f32,
                one_minus_beta2: (1.0 - c.beta2) as f32,
                inv_bias2_sqrt: (1.0 / bias2.sqrt()) as f32,
                eps: c.eps as f32,
                step_size: (lr / bias1) as f32,
                grad_scale,
            };
            with_mut(var.as_tensor(), |p| {
                with_mut(&m, |m| {
                    with_mut(&v, |v| {
                        with_values(g, |g| {
                            step.run(p, m, v, g);
                            Ok(())
                        })
                    })
                })
            })?;
            self.moments.insert(name.clone(), (m, v));
        }
        Ok(())
    }
}

/// One AdamW step's constants, in f32 as torch's update computes them.
struct Step {
    decay: f32,
    beta1: f32,
    beta2: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    inv_bias2_sqrt: f32,
    eps: f32,
    step_size: f32,
    grad_scale: f32,
}

impl Step {
    fn run(&self, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        const CHUNK: usize = 1 << 14;
        let n = p.len();
        let (pp, pm, pv) = (
            SharedOut(p.as_mut_ptr()),
            SharedOut(m.as_mut_ptr()),
            SharedOut(v.as_mut_ptr()),
        );
        candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(CHUNK), |range| {
            let (pp, pm, pv) = (pp, pm, pv);
            for c in range {
                let (a, b) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
                // SAFETY: each chunk index is handed to exactly one work item; chunks do not overlap,
                // and the three buffers (distinct tensors) outlive the pool call.
                let (p, m, v) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(pp.0.add(a), b - a),
                        std::slice::from_raw_parts_mut(pm.0.add(a), b - a),
                        std::slice::from_raw_parts_mut(pv.0.add(a), b - a),
                    )
                };
                adamw_chunk(p, m, v, &g[a..b], self);
            }
        });
    }
}

simd_fn! {
    /// The update over one chunk of a parameter, its moments and its gradient.
    fn adamw_chunk(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], s: &Step) {
        let n = p.len().min(m.len()).min(v.len()).min(g.len());
        for i in 0..n {
            let g = g[i] * s.grad_scale;
            let mi = m[i] * s.beta1 + g * s.one_minus_beta1;
            let vi = v[i] * s.beta2 + (g * g) * s.one_minus_beta2;
            let denom = vi.sqrt() * s.inv_bias2_sqrt + s.eps;
            p[i] = p[i] * s.decay - (mi / denom) * s.step_size;
            m[i] = mi;
            v[i] = vi;
        }
    }
}

/// Run `f` on a packed f32 tensor's values, mutably, in place (through candle's in-place op).
fn with_mut<R>(
    t: &Tensor,
    f: impl FnOnce(&mut [f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    struct InPlace<F, R> {
        f: Mutex<Option<F>>,
        out: Mutex<Option<candle_core::Result<R>>>,
    }
    impl<F: FnOnce(&mut [f32]) -> candle_core::Result<R>, R> InplaceOp1 for InPlace<F, R> {
        fn name(&self) -> &'static str {
            "cw-adamw"
        }
        fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
            let (CpuStorage::F32(data), Some((a, b))) = (storage, layout.contiguous_offsets())
            else {
                candle_core::bail!("the optimizer updates packed f32 CPU tensors");
            };
            let f = self.f.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(f) = f {
                *self.out.lock().unwrap_or_else(|e| e.into_inner()) = Some(f(&mut data[a..b]));
            }
            Ok(())
        }
    }
    let op = InPlace {
        f: Mutex::new(Some(f)),
        out: Mutex::new(None),
    };
    t.inplace_op1(&op)?;
    let out = op.out.into_inner().unwrap_or_else(|e| e.into_inner());
    out.unwrap_or_else(|| candle_core::bail!("the in-place update did not run"))
}

/// The gradients' global L2 norm (sums of squares in f64, spread over the worker pool).
pub fn grad_norm(grads: &BTreeMap<String, Tensor>) -> Result<f64> {
    const CHUNK: usize = 1 << 14;
    let mut sq = 0f64;
    for g in grads.values() {
        sq += with_values(g, |g| {
            let total = Mutex::new(0f64);
            candle_core::utils::barrier_pool().execute_chunked(g.len().div_ceil(CHUNK), |range| {
                let mut acc = 0f64;
                for c in range {
                    let part = &g[c * CHUNK..((c + 1) * CHUNK).min(g.len())];
                    acc += sum_squares(part);
                }
                *total.lock().unwrap_or_else(|e| e.into_inner()) += acc;
            });
            Ok(total.into_inner().unwrap_or_else(|e| e.into_inner()))
        })?;
    }
    let norm = sq.sqrt();
    if !norm.is_finite() {
        return Err(Error::Model(format!(
            "the gradient norm is {norm}: the loss diverged (lower lr)"
        )));
    }
    Ok(norm)
}

/// torch's clip_grad_norm_ coefficient: max_norm / (norm + 1e-6), capped at 1 (1 without clipping).
pub fn clip_coef(norm: f64, max_norm: Option<f64>) -> f32 {
    match max_norm {
        Some(max) => (max / (norm + 1e-6)).min(1.0) as f32,
        None => 1.0,
    }
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
