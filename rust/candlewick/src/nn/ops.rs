//! Fused differentiable ops for the training path, each a candle custom op with its own backward
//! (candle-nn's fused softmax, rms_norm and layer_norm have none and drop gradients silently):
//! one pass over a row forward and one backward, rows spread over candle's worker pool, sums in
//! f64. Each has a composite twin in plain candle ops (`*_ref`, the reference its test checks it
//! against, forward and gradients).

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor, D};

use crate::error::Result;
use crate::kernels::math::{exp_in_place, exp_scaled, expf_lanes, max_and_sum_exp, simd_fn};
use crate::kernels::SharedOut;

pub(crate) fn contiguous<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op} needs a contiguous f32 input"),
    }
}

/// Run `f(row index, row)` over the rows of `n` x `d` values, writing each row's output (of
/// `out_d` values) into `out`, rows spread over the worker pool.
fn rows(n: usize, out_d: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; n * out_d];
    let ptr = SharedOut(out.as_mut_ptr());
    candle_core::utils::barrier_pool().execute_chunked(n, |range| {
        let p = ptr;
        for i in range {
            // SAFETY: each row index is handed to exactly one work item; rows do not overlap.
            let row = unsafe { std::slice::from_raw_parts_mut(p.0.add(i * out_d), out_d) };
            f(i, row);
        }
    });
    out
}

/// The same with two outputs per row (of `d` values each), e.g. the gradients of two inputs.
fn rows2(
    n: usize,
    d: usize,
    f: impl Fn(usize, &mut [f32], &mut [f32]) + Sync,
) -> (Vec<f32>, Vec<f32>) {
    let (mut a, mut b) = (vec![0f32; n * d], vec![0f32; n * d]);
    let (pa, pb) = (SharedOut(a.as_mut_ptr()), SharedOut(b.as_mut_ptr()));
    candle_core::utils::barrier_pool().execute_chunked(n, |range| {
        let (pa, pb) = (pa, pb);
        for i in range {
            // SAFETY: each row index is handed to exactly one work item; rows do not overlap.
            let (ra, rb) = unsafe {
                (
                    std::slice::from_raw_parts_mut(pa.0.add(i * d), d),
                    std::slice::from_raw_parts_mut(pb.0.add(i * d), d),
                )
            };
            f(i, ra, rb);
        }
    });
    (a, b)
}

/// Run `f` on a tensor's values, row-major, borrowed (copied only when the tensor is strided).
pub(crate) fn with_values<R>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(cpu) => f(contiguous(cpu, layout, "a training op")?),
        _ => candle_core::bail!("the training ops run on the CPU"),
    }
}

/// Per-chunk column sums over rows (a weight's gradient), reduced once per chunk.
fn column_sums(n: usize, d: usize, f: impl Fn(usize, &mut [f64]) + Sync) -> Vec<f32> {
    let total = Mutex::new(vec![0f64; d]);
    candle_core::utils::barrier_pool().execute_chunked(n, |range| {
        let mut acc = vec![0f64; d];
        for i in range {
            f(i, &mut acc);
        }
        let mut t = total.lock().unwrap_or_else(|e| e.into_inner());
        t.iter_mut().zip(&acc).for_each(|(t, a)| *t += a);
    });
    total
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// A tensor's values, row-major.
pub(crate) fn values(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.contiguous()?.flatten_all()?.to_vec1::<f32>()
}

fn last_dim(l: &Layout) -> (usize, usize) {
    let d = l.dims().last().copied().unwrap_or(1).max(1);
    (l.shape().elem_count() / d, d)
}

// ---- softmax ---------------------------------------------------------------------------------

/// Softmax in plain candle ops (the row maximum a constant: softmax is shift-invariant): the
/// composite twin `masked_softmax` is tested against.
pub fn softmax_ref(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

// ---- RMSNorm ---------------------------------------------------------------------------------

struct RmsNormOp {
    eps: f64,
}

fn inv_rms(r: &[f32], eps: f64) -> f32 {
    let ms: f64 = r.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / r.len() as f64;
    (1.0 / (ms + eps).sqrt()) as f32
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "cw-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w) = (
            contiguous(s1, l1, self.name())?,
            contiguous(s2, l2, self.name())?,
        );
        let (n, d) = last_dim(l1);
        if w.len() != d {
            candle_core::bail!("rms norm of {} weights on rows of {d}", w.len());
        }
        let out = rows(n, d, |i, o| {
            let r = &x[i * d..(i + 1) * d];
            let s = inv_rms(r, self.eps);
            for ((o, &v), &w) in o.iter_mut().zip(r).zip(w) {
                *o = v * s * w;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // y = x s w, s = (mean(x^2) + eps)^-1/2:
        // dx = s (g w) - x s^3 mean((g w) x);  dw = sum over rows of g x s
        let xv = values(x)?;
        let wv = values(w)?;
        let g = values(grad)?;
        let d = wv.len().max(1);
        let n = xv.len() / d;
        let dx = rows(n, d, |i, o| {
            let (r, gr) = (&xv[i * d..(i + 1) * d], &g[i * d..(i + 1) * d]);
            let s = inv_rms(r, self.eps);
            let m: f64 = r
                .iter()
                .zip(gr)
                .zip(&wv)
                .map(|((&x, &g), &w)| (g * w * x) as f64)
                .sum::<f64>()
                / d as f64;
            let c = (m as f32) * s * s * s;
            for (((o, &x), &g), &w) in o.iter_mut().zip(r).zip(gr).zip(&wv) {
                *o = s * g * w - x * c;
            }
        });
        let dw = column_sums(n, d, |i, acc| {
            let (r, gr) = (&xv[i * d..(i + 1) * d], &g[i * d..(i + 1) * d]);
            let s = inv_rms(r, self.eps);
            for ((a, &x), &g) in acc.iter_mut().zip(r).zip(gr) {
                *a += (g * x * s) as f64;
            }
        });
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), x.device())?),
            Some(Tensor::from_vec(dw, w.shape(), w.device())?),
        ))
    }
}

/// RMSNorm over the last dimension, times `w`, with gradients for both.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(x.contiguous()?
        .apply_op2(&w.contiguous()?, RmsNormOp { eps })?)
}

/// The same in plain candle ops.
pub fn rms_norm_ref(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)?)
}

// ---- LayerNorm -------------------------------------------------------------------------------

/// (x - mean) / sqrt(var + eps) * w + b over the last dimension, with gradients for x, w and b.
struct LayerNormOp {
    eps: f64,
}

/// (mean, 1 / sqrt(biased variance + eps)) of a row, in f64.
fn moments(r: &[f32], eps: f64) -> (f32, f32) {
    let d = r.len() as f64;
    let mean = r.iter().map(|&v| v as f64).sum::<f64>() / d;
    let var = r.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "cw-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w, b) = (
            contiguous(s1, l1, self.name())?,
            contiguous(s2, l2, self.name())?,
            contiguous(s3, l3, self.name())?,
        );
        let (n, d) = last_dim(l1);
        if w.len() != d || b.len() != d {
            candle_core::bail!("layer norm of {} weights on rows of {d}", w.len());
        }
        let out = rows(n, d, |i, o| {
            let r = &x[i * d..(i + 1) * d];
            let (mean, inv) = moments(r, self.eps);
            for (j, (o, &v)) in o.iter_mut().zip(r).enumerate() {
                *o = (v - mean) * inv * w[j] + b[j];
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // xh = (x - mean) inv, dy = g w: dx = inv (dy - mean(dy) - xh mean(dy xh));
        // dw = sum g xh; db = sum g
        let xv = values(x)?;
        let wv = values(w)?;
        let g = values(grad)?;
        let d = wv.len().max(1);
        let n = xv.len() / d;
        let dx = rows(n, d, |i, o| {
            let (r, gr) = (&xv[i * d..(i + 1) * d], &g[i * d..(i + 1) * d]);
            let (mean, inv) = moments(r, self.eps);
            let (mut m1, mut m2) = (0f64, 0f64);
            for j in 0..d {
                let dy = (gr[j] * wv[j]) as f64;
                m1 += dy;
                m2 += dy * ((r[j] - mean) * inv) as f64;
            }
            let (m1, m2) = ((m1 / d as f64) as f32, (m2 / d as f64) as f32);
            for j in 0..d {
                let xh = (r[j] - mean) * inv;
                o[j] = inv * (gr[j] * wv[j] - m1 - xh * m2);
            }
        });
        let dwb = column_sums(n, 2 * d, |i, acc| {
            let (r, gr) = (&xv[i * d..(i + 1) * d], &g[i * d..(i + 1) * d]);
            let (mean, inv) = moments(r, self.eps);
            for j in 0..d {
                acc[j] += (gr[j] * (r[j] - mean) * inv) as f64;
                acc[d + j] += gr[j] as f64;
            }
        });
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), x.device())?),
            Some(Tensor::from_vec(dwb[..d].to_vec(), w.shape(), w.device())?),
            Some(Tensor::from_vec(dwb[d..].to_vec(), b.shape(), b.device())?),
        ))
    }
}

/// LayerNorm over the last dimension with weight `w` and bias `b`, gradients for all three.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, LayerNormOp { eps })?)
}

/// The same in plain candle ops.
pub fn layer_norm_ref(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let xc = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(xc
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(w)?
        .broadcast_add(b)?)
}

// ---- cross-entropy ---------------------------------------------------------------------------

/// Per-row negative log-likelihood of logits [n, vocab] against targets (negative: not counted,
/// 0), with its gradient g_i (softmax_i - onehot(t_i)).
struct CrossEntropy {
    targets: Vec<i64>,
    /// Each row's (max, sum of exp(x - max)), kept by the forward pass for the backward one.
    lse: Mutex<Vec<(f32, f64)>>,
}

impl CustomOp1 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cw-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, self.name())?;
        let (n, v) = last_dim(l);
        if self.targets.len() != n {
            candle_core::bail!("{} targets for {n} rows of logits", self.targets.len());
        }
        if let Some(&t) = self.targets.iter().find(|&&t| t >= v as i64) {
            candle_core::bail!("target {t} is outside the {v} logits of a row");
        }
        let lse = Mutex::new(vec![(0f32, 1f64); n]);
        let out = rows(n, 1, |i, o| {
            let t = self.targets[i];
            if t < 0 {
                return;
            }
            let r = &x[i * v..(i + 1) * v];
            let (max, sum) = max_and_sum_exp(r);
            lse.lock().unwrap_or_else(|e| e.into_inner())[i] = (max, sum);
            o[0] = ((max as f64 + sum.ln()) - r[t as usize] as f64) as f32;
        });
        *self.lse.lock().unwrap_or_else(|e| e.into_inner()) =
            lse.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let g = values(grad)?;
        let v = arg.dims().last().copied().unwrap_or(1).max(1);
        let lse = self.lse.lock().unwrap_or_else(|e| e.into_inner());
        let out = with_values(arg, |x| {
            let n = x.len() / v;
            if lse.len() != n || g.len() != n {
                candle_core::bail!(
                    "cross-entropy backward for {n} rows, its forward saw {}",
                    lse.len()
                );
            }
            Ok(rows(n, v, |i, o| {
                let t = self.targets[i];
                if t < 0 {
                    return;
                }
                let r = &x[i * v..(i + 1) * v];
                let (max, sum) = lse[i];
                let scale = (g[i] as f64 / sum) as f32;
                exp_scaled(o, r, max, scale);
                o[t as usize] -= g[i];
            }))
        })?;
        Ok(Some(Tensor::from_vec(out, arg.shape(), arg.device())?))
    }
}

/// Per-row cross-entropy [n] of logits [n, vocab] (rows whose target is negative give 0 and no
/// gradient).
pub fn cross_entropy_rows(logits: &Tensor, targets: Vec<i64>) -> Result<Tensor> {
    Ok(logits.contiguous()?.apply_op1(CrossEntropy {
        targets,
        lse: Mutex::new(Vec::new()),
    })?)
}

// ---- gated activation -------------------------------------------------------------------------

/// act(gate) * up, elementwise, with both gradients: SwiGLU (silu), GeGLU (gelu, erf or tanh),
/// ReGLU (relu).
struct Gated {
    act: Activation,
}

use crate::config::Activation;

/// SiLU and its slope in f32 (as torch computes them), with the vectorizable exp.
#[inline(always)]
fn silu_and_slope(x: f32) -> (f32, f32) {
    let s = 1.0 / (1.0 + expf_lanes(-x));
    (x * s, s * (1.0 + x * (1.0 - s)))
}

simd_fn! {
    /// silu(g) * u, a row.
    fn silu_gated(out: &mut [f32], g: &[f32], u: &[f32]) {
        for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
            *o = silu_and_slope(g).0 * u;
        }
    }
}

simd_fn! {
    /// The gradients of silu(g) * u for an upstream gradient dy, a row.
    fn silu_gated_backward(d_g: &mut [f32], d_u: &mut [f32], g: &[f32], u: &[f32], dy: &[f32]) {
        let n = d_g.len().min(d_u.len()).min(g.len()).min(u.len()).min(dy.len());
        for j in 0..n {
            let (a, slope) = silu_and_slope(g[j]);
            d_g[j] = dy[j] * u[j] * slope;
            d_u[j] = dy[j] * a;
        }
    }
}

/// (act(x), act'(x)): SiLU in f32, the others in f64.
fn act_and_slope(a: Activation, x: f32) -> (f32, f32) {
    if a == Activation::Silu {
        return silu_and_slope(x);
    }
    let x = x as f64;
    let (y, d) = match a {
        Activation::Silu => {
            let s = 1.0 / (1.0 + (-x).exp());
            (x * s, s * (1.0 + x * (1.0 - s)))
        }
        Activation::Relu => (x.max(0.0), if x > 0.0 { 1.0 } else { 0.0 }),
        Activation::Gelu => {
            let cdf = 0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            (x * cdf, cdf + x * pdf)
        }
        Activation::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let u = c * (x + 0.044715 * x * x * x);
            let t = u.tanh();
            let du = c * (1.0 + 3.0 * 0.044715 * x * x);
            (
                0.5 * x * (1.0 + t),
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du,
            )
        }
    };
    (y as f32, d as f32)
}

/// erf in f64: its Maclaurin series below 2.5, erfc's continued fraction above (both converge to
/// well below f32 rounding there).
fn erf(x: f64) -> f64 {
    let ax = x.abs();
    let r = if ax < 2.5 {
        // Maclaurin series: 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
        let (mut term, mut sum, x2) = (ax, ax, ax * ax);
        for n in 1..60 {
            term *= -x2 / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
        let mut f = ax;
        for k in (1..60).rev() {
            f = ax + (k as f64 / 2.0) / f;
        }
        1.0 - (-ax * ax).exp() / std::f64::consts::PI.sqrt() / f
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

impl CustomOp2 for Gated {
    fn name(&self) -> &'static str {
        "cw-gated-activation"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (g, u) = (
            contiguous(s1, l1, self.name())?,
            contiguous(s2, l2, self.name())?,
        );
        if g.len() != u.len() {
            candle_core::bail!("gate and up of different sizes");
        }
        let (n, d) = last_dim(l1);
        let act = self.act;
        let out = rows(n, d, |i, o| {
            let (g, u) = (&g[i * d..(i + 1) * d], &u[i * d..(i + 1) * d]);
            if act == Activation::Silu {
                silu_gated(o, g, u);
            } else {
                for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                    *o = act_and_slope(act, g).0 * u;
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let d = gate.dims().last().copied().unwrap_or(1).max(1);
        let act = self.act;
        let (dg, du) = with_values(gate, |g| {
            with_values(up, |u| {
                with_values(grad, |dy| {
                    if u.len() != g.len() || dy.len() != g.len() {
                        candle_core::bail!(
                            "gated activation backward on inputs of different sizes"
                        );
                    }
                    Ok(rows2(g.len() / d, d, |i, o_g, o_u| {
                        let (g, u, dy) = (
                            &g[i * d..(i + 1) * d],
                            &u[i * d..(i + 1) * d],
                            &dy[i * d..(i + 1) * d],
                        );
                        if act == Activation::Silu {
                            silu_gated_backward(o_g, o_u, g, u, dy);
                        } else {
                            for j in 0..d {
                                let (a, slope) = act_and_slope(act, g[j]);
                                o_g[j] = dy[j] * u[j] * slope;
                                o_u[j] = dy[j] * a;
                            }
                        }
                    }))
                })
            })
        })?;
        Ok((
            Some(Tensor::from_vec(dg, gate.shape(), gate.device())?),
            Some(Tensor::from_vec(du, up.shape(), up.device())?),
        ))
    }
}

/// act(gate) * up with gradients for both (one pass forward, one backward).
pub fn gated(gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(gate
        .contiguous()?
        .apply_op2(&up.contiguous()?, Gated { act })?)
}

// ---- bias ---------------------------------------------------------------------------------------

/// y + b, b broadcast over y's rows, with both gradients: the bias's is the column sums of the
/// upstream gradient (in f64, rows spread over the pool) rather than candle's strided reduction.
struct BiasAdd;

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "cw-bias-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (y, b) = (
            contiguous(s1, l1, self.name())?,
            contiguous(s2, l2, self.name())?,
        );
        let (n, d) = last_dim(l1);
        if b.len() != d {
            candle_core::bail!("a bias of {} values for rows of {d}", b.len());
        }
        let out = rows(n, d, |i, o| {
            for ((o, &y), &b) in o.iter_mut().zip(&y[i * d..(i + 1) * d]).zip(b) {
                *o = y + b;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let d = b.elem_count().max(1);
        let db = with_values(grad, |g| {
            Ok(column_sums(g.len() / d, d, |i, acc| {
                for (a, &g) in acc.iter_mut().zip(&g[i * d..(i + 1) * d]) {
                    *a += g as f64;
                }
            }))
        })?;
        Ok((
            Some(grad.clone()),
            Some(Tensor::from_vec(db, b.shape(), b.device())?),
        ))
    }
}

/// y + b over y's last dimension, with gradients for both.
pub fn add_bias(y: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(y.contiguous()?.apply_op2(&b.contiguous()?, BiasAdd)?)
}

// ---- activation -------------------------------------------------------------------------------

/// act(x), elementwise, with its gradient: the non-gated MLPs' and heads' activation.
struct Act {
    act: Activation,
}

/// erf in f32 from erfc's Chebyshev fit (Numerical Recipes' erfcc: fractional error below 1.2e-7
/// everywhere), one exp: vectorizable, unlike the f64 series.
#[inline(always)]
fn erf_lanes(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * expf_lanes(-z * z + p);
    let r = 1.0 - erfc;
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// (act(x), act'(x)) in f32 with the vectorizable exp and erf (torch computes them in f32 too).
#[inline(always)]
fn act_lanes(a: Activation, x: f32) -> (f32, f32) {
    match a {
        Activation::Silu => silu_and_slope(x),
        Activation::Relu => (
            if x > 0.0 { x } else { 0.0 },
            if x > 0.0 { 1.0 } else { 0.0 },
        ),
        Activation::Gelu => {
            let cdf = 0.5 * (1.0 + erf_lanes(x * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = expf_lanes(-0.5 * x * x) * 0.398_942_3; // 1/sqrt(2 pi)
            (x * cdf, cdf + x * pdf)
        }
        Activation::GeluTanh => {
            let c = 0.797_884_6f32; // sqrt(2/pi)
            let u = c * (x + 0.044715 * x * x * x);
            let t = 1.0 - 2.0 / (expf_lanes(2.0 * u) + 1.0);
            let du = c * (1.0 + 3.0 * 0.044715 * x * x);
            (
                0.5 * x * (1.0 + t),
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du,
            )
        }
    }
}

simd_fn! {
    /// act(x) over a row.
    fn act_row(out: &mut [f32], xs: &[f32], a: Activation) {
        for (o, &x) in out.iter_mut().zip(xs) {
            *o = act_lanes(a, x).0;
        }
    }
}

simd_fn! {
    /// dy * act'(x) over a row.
    fn act_backward_row(out: &mut [f32], xs: &[f32], dy: &[f32], a: Activation) {
        for ((o, &x), &d) in out.iter_mut().zip(xs).zip(dy) {
            *o = d * act_lanes(a, x).1;
        }
    }
}

impl CustomOp1 for Act {
    fn name(&self) -> &'static str {
        "cw-activation"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, self.name())?;
        let (n, d) = last_dim(l);
        let out = rows(n, d, |i, o| act_row(o, &x[i * d..(i + 1) * d], self.act));
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let d = arg.dims().last().copied().unwrap_or(1).max(1);
        let out = with_values(arg, |x| {
            with_values(grad, |dy| {
                if dy.len() != x.len() {
                    candle_core::bail!(
                        "activation backward: a gradient of {} values for {}",
                        dy.len(),
                        x.len()
                    );
                }
                Ok(rows(x.len() / d, d, |i, o| {
                    act_backward_row(o, &x[i * d..(i + 1) * d], &dy[i * d..(i + 1) * d], self.act)
                }))
            })
        })?;
        Ok(Some(Tensor::from_vec(out, arg.shape(), arg.device())?))
    }
}

/// act(x) with its gradient (one pass forward, one backward).
pub fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1(Act { act })?)
}

// ---- rotary positions --------------------------------------------------------------------------

/// Rotary position embedding of heads [rows, heads, t, d] with cos/sin tables [t, d/2]: pairs
/// (x_i, x_{i+d/2}) (or (x_{2i}, x_{2i+1}) interleaved) rotated by their position's angle. Its
/// gradient is the same rotation backwards.
struct RopeOp {
    cos: Vec<f32>,
    sin: Vec<f32>,
    t: usize,
    interleaved: bool,
}

impl RopeOp {
    /// Rotate each row of `x` (rows of d, position = row index mod t) into `out`; `sign` -1 rotates
    /// backwards (the gradient).
    fn rotate(&self, x: &[f32], d: usize, sign: f32) -> Vec<f32> {
        let half = d / 2;
        rows(x.len() / d, d, |i, o| {
            let (r, p) = (&x[i * d..(i + 1) * d], i % self.t);
            let (c, s) = (
                &self.cos[p * half..(p + 1) * half],
                &self.sin[p * half..(p + 1) * half],
            );
            for j in 0..half {
                let (a, b) = if self.interleaved {
                    (2 * j, 2 * j + 1)
                } else {
                    (j, j + half)
                };
                let sj = sign * s[j];
                o[a] = r[a] * c[j] - r[b] * sj;
                o[b] = r[a] * sj + r[b] * c[j];
            }
        })
    }
}

impl CustomOp1 for RopeOp {
    fn name(&self) -> &'static str {
        "cw-rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, self.name())?;
        let dims = l.dims();
        let d = dims.last().copied().unwrap_or(0);
        if dims.len() != 4 || dims[2] != self.t || d % 2 != 0 || self.cos.len() != self.t * (d / 2)
        {
            candle_core::bail!(
                "rotary positions for {} positions of {} pairs on heads of {dims:?}",
                self.t,
                self.cos.len() / self.t.max(1)
            );
        }
        Ok((CpuStorage::F32(self.rotate(x, d, 1.0)), l.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let d = arg.dims().last().copied().unwrap_or(2).max(2);
        let out = with_values(grad, |g| Ok(self.rotate(g, d, -1.0)))?;
        Ok(Some(Tensor::from_vec(out, arg.shape(), arg.device())?))
    }
}

/// Rotary positions with their gradient (one pass forward, one backward): heads [rows, heads,
/// t, d], tables of cos and sin [t * d/2] (position-major).
pub fn rope(x: &Tensor, cos: Vec<f32>, sin: Vec<f32>, interleaved: bool) -> Result<Tensor> {
    let t = x.dim(2)?;
    Ok(x.contiguous()?.apply_op1(RopeOp {
        cos,
        sin,
        t,
        interleaved,
    })?)
}

// ---- scaled, masked softmax --------------------------------------------------------------------

/// softmax(scale * x + mask) over the last dimension, the additive mask [rows, 1, q or 1, k]
/// broadcast over the heads (and queries) of x [rows, heads, q, k]; the gradient is x's only (the
/// mask is a constant). `mask`: the values and their number of query rows.
struct MaskedSoftmax {
    scale: f32,
    mask: Option<(Vec<f32>, usize)>,
}

impl CustomOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "cw-masked-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, self.name())?;
        let dims = l.dims();
        if dims.len() != 4 {
            candle_core::bail!("masked softmax on scores [rows, heads, q, k]");
        }
        let (heads, q, k) = (dims[1], dims[2], dims[3]);
        let n = x.len() / k.max(1);
        let out = rows(n, k, |i, o| {
            let r = &x[i * k..(i + 1) * k];
            let m = self.mask.as_ref().map(|(m, mq)| {
                let row = i / (heads * q);
                let qi = if *mq == 1 { 0 } else { i % q };
                &m[(row * mq + qi) * k..(row * mq + qi + 1) * k]
            });
            let mut max = f32::NEG_INFINITY;
            for j in 0..k {
                o[j] = r[j] * self.scale + m.map_or(0.0, |m| m[j]);
                max = max.max(o[j]);
            }
            let sum = exp_in_place(o, max);
            let inv = (1.0 / sum) as f32;
            o.iter_mut().for_each(|o| *o *= inv);
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let d = res.dims().last().copied().unwrap_or(1).max(1);
        let scale = self.scale;
        let out = with_values(res, |p| {
            with_values(grad, |g| {
                if g.len() != p.len() {
                    candle_core::bail!(
                        "softmax backward: a gradient of {} values for {}",
                        g.len(),
                        p.len()
                    );
                }
                Ok(rows(p.len() / d, d, |i, o| {
                    let (pr, gr) = (&p[i * d..(i + 1) * d], &g[i * d..(i + 1) * d]);
                    let dot = pr
                        .iter()
                        .zip(gr)
                        .map(|(&a, &b)| (a * b) as f64)
                        .sum::<f64>() as f32;
                    for ((o, &a), &b) in o.iter_mut().zip(pr).zip(gr) {
                        *o = scale * a * (b - dot);
                    }
                }))
            })
        })?;
        Ok(Some(Tensor::from_vec(out, res.shape(), res.device())?))
    }
}

/// softmax(scale * scores + mask), scores [rows, heads, q, k], mask [rows, 1, q, k] (or none).
pub fn masked_softmax(scores: &Tensor, scale: f32, mask: Option<&Tensor>) -> Result<Tensor> {
    let mask = match mask {
        Some(m) => {
            let (rows, one, q, k) = m.dims4()?;
            let (r2, _, q2, k2) = scores.dims4()?;
            if one != 1 || rows != r2 || k != k2 || (q != q2 && q != 1) {
                return Err(crate::error::Error::Model(format!(
                    "a mask of {:?} for scores of {:?}",
                    m.dims(),
                    scores.dims()
                )));
            }
            Some((m.flatten_all()?.to_vec1::<f32>()?, q))
        }
        None => None,
    };
    Ok(scores
        .contiguous()?
        .apply_op1(MaskedSoftmax { scale, mask })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn close(a: &Tensor, b: &Tensor, tol: f32) {
        let (a, b) = (
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32 * 2654435761u32 ^ seed) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    }

    /// Each fused op equals its composite twin, forward and gradients.
    #[test]
    fn fused_ops_equal_their_references() {
        let dev = Device::Cpu;
        let x = Var::from_vec(data(6 * 10, 1), (2, 3, 10), &dev).unwrap();
        let w = Var::from_vec(data(10, 2), 10, &dev).unwrap();
        let up = Tensor::from_vec(data(60, 3), (2, 3, 10), &dev).unwrap();
        let pairs: Vec<(Tensor, Tensor)> = vec![(
            rms_norm(&x, &w, 1e-6).unwrap(),
            rms_norm_ref(&x, &w, 1e-6).unwrap(),
        )];
        let bias = Var::from_vec(data(10, 4), 10, &dev).unwrap();
        let mut pairs = pairs;
        pairs.push((
            layer_norm(&x, &w, &bias, 1e-5).unwrap(),
            layer_norm_ref(&x, &w, &bias, 1e-5).unwrap(),
        ));
        pairs.push((
            add_bias(&x, &bias).unwrap(),
            x.broadcast_add(&bias).unwrap(),
        ));
        for (fused, reference) in pairs {
            close(&fused, &reference, 1e-5);
            let gf = (&fused * &up)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gr = (&reference * &up)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            close(gf.get(&x).unwrap(), gr.get(&x).unwrap(), 1e-4);
            for v in [&w, &bias] {
                if let (Some(a), Some(b)) = (gf.get(v), gr.get(v)) {
                    close(a, b, 1e-4);
                }
            }
        }
        for act in [
            Activation::Silu,
            Activation::Gelu,
            Activation::GeluTanh,
            Activation::Relu,
        ] {
            let g = Var::from_vec(data(60, 7), (6, 10), &dev).unwrap();
            let u = Var::from_vec(data(60, 8), (6, 10), &dev).unwrap();
            let up6 = Tensor::from_vec(data(60, 9), (6, 10), &dev).unwrap();
            let fused = gated(&g, &u, act).unwrap();
            let reference = (crate::nn::mlp::activate(&g, act).unwrap() * u.as_tensor()).unwrap();
            close(&fused, &reference, 1e-5);
            let gf = (&fused * &up6)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gr = (&reference * &up6)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            close(gf.get(&g).unwrap(), gr.get(&g).unwrap(), 1e-4);
            close(gf.get(&u).unwrap(), gr.get(&u).unwrap(), 1e-4);
            // the plain activation, over [-10, 10)
            let wide = Var::from_vec(
                data(60, 12).iter().map(|v| v * 5.0).collect(),
                (6, 10),
                &dev,
            )
            .unwrap();
            let fused = activation(&wide, act).unwrap();
            let reference = crate::nn::mlp::activate(&wide, act).unwrap();
            close(&fused, &reference, 1e-5);
            let gf = (&fused * &up6)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gr = (&reference * &up6)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            close(gf.get(&wide).unwrap(), gr.get(&wide).unwrap(), 1e-4);
        }
        let sc = Var::from_vec(data(2 * 3 * 4 * 5, 10), (2, 3, 4, 5), &dev).unwrap();
        let mask = Tensor::from_vec(
            (0..40)
                .map(|i| if i % 7 == 3 { f32::MIN } else { 0.0 })
                .collect::<Vec<f32>>(),
            (2, 1, 4, 5),
            &dev,
        )
        .unwrap();
        let upm = Tensor::from_vec(data(120, 11), (2, 3, 4, 5), &dev).unwrap();
        let fused = masked_softmax(&sc, 0.5, Some(&mask)).unwrap();
        let reference = softmax_ref(
            &(sc.as_tensor() * 0.5)
                .unwrap()
                .broadcast_add(&mask)
                .unwrap(),
        )
        .unwrap();
        close(&fused, &reference, 1e-5);
        let gf = (&fused * &upm)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gr = (&reference * &upm)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        close(gf.get(&sc).unwrap(), gr.get(&sc).unwrap(), 1e-4);
        // cross-entropy against log-softmax + pick
        let logits = Var::from_vec(data(4 * 7, 5), (4, 7), &dev).unwrap();
        let targets = vec![3i64, -100, 0, 6];
        let ce = cross_entropy_rows(&logits, targets.clone()).unwrap();
        let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
        let picked: Vec<f32> = targets
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                if t < 0 {
                    0.0
                } else {
                    -lsm.get(i)
                        .unwrap()
                        .get(t as usize)
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap()
                }
            })
            .collect();
        close(&ce, &Tensor::new(picked, &dev).unwrap(), 1e-5);
        let g = ce.sum_all().unwrap().backward().unwrap();
        let gl = g.get(&logits).unwrap().to_vec2::<f32>().unwrap();
        let p = candle_nn::ops::softmax_last_dim(&logits)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (i, &t) in targets.iter().enumerate() {
            for j in 0..7 {
                let want = if t < 0 {
                    0.0
                } else {
                    p[i][j] - if j as i64 == t { 1.0 } else { 0.0 }
                };
                assert!((gl[i][j] - want).abs() < 1e-5);
            }
        }
    }
}
