//! Fused differentiable ops for the training path, each a candle custom op with its own backward
//! (candle-nn's fused softmax, rms_norm and layer_norm have none and drop gradients silently):
//! one pass over a row forward and one backward, rows spread over candle's worker pool, sums in
//! f64. Each has a composite twin in plain candle ops (`*_ref`, the reference its test checks it
//! against, forward and gradients).

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, D};

use crate::error::Result;
use crate::kernels::SharedOut;

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
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
    total.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().map(|v| v as f32).collect()
}

fn last_dim(l: &Layout) -> (usize, usize) {
    let d = l.dims().last().copied().unwrap_or(1).max(1);
    (l.shape().elem_count() / d, d)
}

// ---- softmax ---------------------------------------------------------------------------------

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "cw-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, self.name())?;
        let (n, d) = last_dim(l);
        let out = rows(n, d, |i, o| {
            let r = &x[i * d..(i + 1) * d];
            let max = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f64;
            for (o, &v) in o.iter_mut().zip(r) {
                *o = (v - max).exp();
                sum += *o as f64;
            }
            let inv = (1.0 / sum) as f32;
            o.iter_mut().for_each(|o| *o *= inv);
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        // dx = p * (g - sum(g * p))
        let p = res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let g = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let d = res.dims().last().copied().unwrap_or(1).max(1);
        let n = p.len() / d;
        let out = rows(n, d, |i, o| {
            let (pr, gr) = (&p[i * d..(i + 1) * d], &g[i * d..(i + 1) * d]);
            let dot: f64 = pr.iter().zip(gr).map(|(&a, &b)| (a * b) as f64).sum();
            let dot = dot as f32;
            for ((o, &a), &b) in o.iter_mut().zip(pr).zip(gr) {
                *o = a * (b - dot);
            }
        });
        Ok(Some(Tensor::from_vec(out, res.shape(), res.device())?))
    }
}

/// Softmax over the last dimension, with its gradient.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1(Softmax)?)
}

/// The same in plain candle ops (the row maximum a constant: softmax is shift-invariant).
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

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w) = (contiguous(s1, l1, self.name())?, contiguous(s2, l2, self.name())?);
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

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // y = x s w, s = (mean(x^2) + eps)^-1/2:
        // dx = s (g w) - x s^3 mean((g w) x);  dw = sum over rows of g x s
        let xv = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let wv = w.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let g = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let d = wv.len().max(1);
        let n = xv.len() / d;
        let dx = rows(n, d, |i, o| {
            let (r, gr) = (&xv[i * d..(i + 1) * d], &g[i * d..(i + 1) * d]);
            let s = inv_rms(r, self.eps);
            let m: f64 = r.iter().zip(gr).zip(&wv).map(|((&x, &g), &w)| (g * w * x) as f64).sum::<f64>() / d as f64;
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
    Ok(x.contiguous()?.apply_op2(&w.contiguous()?, RmsNormOp { eps })?)
}

/// The same in plain candle ops.
pub fn rms_norm_ref(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)?)
}

// ---- cross-entropy ---------------------------------------------------------------------------

/// Per-row negative log-likelihood of logits [n, vocab] against targets (negative: not counted,
/// 0), with its gradient g_i (softmax_i - onehot(t_i)).
struct CrossEntropy {
    targets: Vec<i64>,
}

fn row_lse(r: &[f32]) -> (f32, f64) {
    let max = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = r.iter().map(|&v| ((v - max).exp()) as f64).sum();
    (max, sum)
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
        let out = rows(n, 1, |i, o| {
            let t = self.targets[i];
            if t < 0 {
                return;
            }
            let r = &x[i * v..(i + 1) * v];
            let (max, sum) = row_lse(r);
            o[0] = ((max as f64 + sum.ln()) - r[t as usize] as f64) as f32;
        });
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let x = arg.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let g = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let v = arg.dims().last().copied().unwrap_or(1).max(1);
        let n = x.len() / v;
        let out = rows(n, v, |i, o| {
            let t = self.targets[i];
            if t < 0 {
                return;
            }
            let r = &x[i * v..(i + 1) * v];
            let (max, sum) = row_lse(r);
            let scale = (g[i] as f64 / sum) as f32;
            for (o, &x) in o.iter_mut().zip(r) {
                *o = (x - max).exp() * scale;
            }
            o[t as usize] -= g[i];
        });
        Ok(Some(Tensor::from_vec(out, arg.shape(), arg.device())?))
    }
}

/// Per-row cross-entropy [n] of logits [n, vocab] (rows whose target is negative give 0 and no
/// gradient).
pub fn cross_entropy_rows(logits: &Tensor, targets: Vec<i64>) -> Result<Tensor> {
    Ok(logits.contiguous()?.apply_op1(CrossEntropy { targets })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn close(a: &Tensor, b: &Tensor, tol: f32) {
        let (a, b) = (a.flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| ((i as u32 * 2654435761u32 ^ seed) % 1000) as f32 / 250.0 - 2.0).collect()
    }

    /// Each fused op equals its composite twin, forward and gradients.
    #[test]
    fn fused_ops_equal_their_references() {
        let dev = Device::Cpu;
        let x = Var::from_vec(data(6 * 10, 1), (2, 3, 10), &dev).unwrap();
        let w = Var::from_vec(data(10, 2), 10, &dev).unwrap();
        let up = Tensor::from_vec(data(60, 3), (2, 3, 10), &dev).unwrap();
        let pairs: Vec<(Tensor, Tensor)> = vec![
            (softmax(&x).unwrap(), softmax_ref(&x).unwrap()),
            (rms_norm(&x, &w, 1e-6).unwrap(), rms_norm_ref(&x, &w, 1e-6).unwrap()),
        ];
        for (fused, reference) in pairs {
            close(&fused, &reference, 1e-5);
            let gf = (&fused * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let gr = (&reference * &up).unwrap().sum_all().unwrap().backward().unwrap();
            close(gf.get(&x).unwrap(), gr.get(&x).unwrap(), 1e-4);
            if let (Some(a), Some(b)) = (gf.get(&w), gr.get(&w)) {
                close(a, b, 1e-4);
            }
        }
        // cross-entropy against log-softmax + pick
        let logits = Var::from_vec(data(4 * 7, 5), (4, 7), &dev).unwrap();
        let targets = vec![3i64, -100, 0, 6];
        let ce = cross_entropy_rows(&logits, targets.clone()).unwrap();
        let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
        let picked: Vec<f32> = targets
            .iter()
            .enumerate()
            .map(|(i, &t)| if t < 0 { 0.0 } else { -lsm.get(i).unwrap().get(t as usize).unwrap().to_scalar::<f32>().unwrap() })
            .collect();
        close(&ce, &Tensor::new(picked, &dev).unwrap(), 1e-5);
        let g = ce.sum_all().unwrap().backward().unwrap();
        let gl = g.get(&logits).unwrap().to_vec2::<f32>().unwrap();
        let p = candle_nn::ops::softmax_last_dim(&logits).unwrap().to_vec2::<f32>().unwrap();
        for (i, &t) in targets.iter().enumerate() {
            for j in 0..7 {
                let want = if t < 0 { 0.0 } else { p[i][j] - if j as i64 == t { 1.0 } else { 0.0 } };
                assert!((gl[i][j] - want).abs() < 1e-5);
            }
        }
    }
}
