//! Recurrent layers, as torch's nn.LSTM and nn.GRU compute them: per layer an input projection
//! W_ih x + b_ih and a recurrent one W_hh h + b_hh, their gates in torch's order (LSTM: input,
//! forget, cell, output; GRU: reset, update, new), the first layer reading the input and each
//! next layer the previous one's outputs. One code path serves inference and training: the
//! input projection of a whole sequence is one matmul (gradients through candle), then one fused
//! op (`Scan`) steps the cell through time and, backward, through time in reverse (BPTT), its
//! weight gradients as one matmul over all steps. `forward_ref` is the same in plain candle ops,
//! step by step: the reference the fused op is tested against.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, DType, Device, IndexOp, Layout, Shape, Tensor};

use super::Linear;
use crate::config::Cell;
use crate::error::{Error, Result};
use crate::kernels::math::{expf_lanes, simd_fn};
use crate::kernels::SharedOut;

impl Cell {
    /// Gates per hidden unit: the rows of W_ih and W_hh are `gates() * hidden`.
    pub fn gates(&self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

/// One layer's weights: `input` is W_ih [gates * hidden, in] with b_ih; `w_hh` [gates * hidden,
/// hidden] and `b_hh` [gates * hidden] the recurrent projection.
pub struct RnnLayer {
    pub input: Linear,
    pub w_hh: Tensor,
    pub b_hh: Tensor,
}

/// A stack of recurrent layers of one cell type.
pub struct Rnn {
    pub cell: Cell,
    pub hidden: usize,
    pub layers: Vec<RnnLayer>,
}

/// What a stack carries from one token to the next, for `rows` sequences: each layer's hidden
/// state h [rows, hidden] and, for an LSTM, its cell state c [rows, hidden]. Tensors are shared
/// on clone (a forked beam copies nothing until it steps).
#[derive(Clone, Debug)]
pub struct RnnState {
    pub layers: Vec<(Tensor, Option<Tensor>)>,
}

impl RnnState {
    pub fn size_in_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|(h, c)| (h.elem_count() + c.as_ref().map_or(0, |c| c.elem_count())) * 4)
            .sum()
    }
}

fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::sigmoid(x)?)
}

impl Rnn {
    /// The state before any token: zeros, as torch starts without (h0, c0).
    pub fn zero_state(&self, rows: usize) -> Result<RnnState> {
        let z = Tensor::zeros((rows, self.hidden), DType::F32, &Device::Cpu)?;
        Ok(RnnState {
            layers: self
                .layers
                .iter()
                .map(|_| (z.clone(), (self.cell == Cell::Lstm).then(|| z.clone())))
                .collect(),
        })
    }

    fn check_state(&self, rows: usize, state: &RnnState) -> Result<()> {
        if state.layers.len() != self.layers.len()
            || state
                .layers
                .iter()
                .any(|(h, _)| h.dims() != [rows, self.hidden])
        {
            return Err(Error::Model(format!(
                "a recurrent state of {} layers for {} layers of {rows} rows",
                state.layers.len(),
                self.layers.len()
            )));
        }
        Ok(())
    }

    /// x [rows, tokens, in] after `state`: the last layer's outputs [rows, tokens, hidden], and
    /// `state` moved past the tokens. Gradients reach x and every weight (not the state).
    pub fn forward(&self, x: &Tensor, state: &mut RnnState) -> Result<Tensor> {
        let (rows, _, _) = x.dims3()?;
        self.check_state(rows, state)?;
        let mut x = x.clone();
        for (layer, (h, c)) in self.layers.iter().zip(state.layers.iter_mut()) {
            let xp = layer.input.forward_t(&x)?.contiguous()?;
            let saved = Arc::new(Mutex::new(Saved::default()));
            let op = Scan {
                cell: self.cell,
                hidden: self.hidden,
                h0: h.flatten_all()?.to_vec1::<f32>()?,
                c0: match c {
                    Some(c) => c.flatten_all()?.to_vec1::<f32>()?,
                    None => Vec::new(),
                },
                saved: saved.clone(),
            };
            x = xp.apply_op3(&layer.w_hh, &layer.b_hh, op)?;
            let tokens = x.dim(1)?;
            if tokens > 0 {
                *h = x.i((.., tokens - 1))?.detach().contiguous()?;
                if let Some(c) = c.as_mut() {
                    let saved = saved.lock().unwrap_or_else(|e| e.into_inner());
                    let last = &saved.cells[(tokens - 1) * rows * self.hidden..];
                    *c = Tensor::from_slice(last, (rows, self.hidden), &Device::Cpu)?;
                }
            }
        }
        Ok(x)
    }

    /// `forward` in plain candle ops, one step at a time (the reference of the fused op).
    pub fn forward_ref(&self, x: &Tensor, state: &mut RnnState) -> Result<Tensor> {
        let (rows, tokens, _) = x.dims3()?;
        self.check_state(rows, state)?;
        let mut x = x.clone();
        for (layer, (h, c)) in self.layers.iter().zip(state.layers.iter_mut()) {
            // the input's share of every gate, for all tokens at once
            let xp = layer.input.forward_t(&x)?;
            let recurrent = Linear::dense(layer.w_hh.clone(), Some(layer.b_hh.clone()))?;
            let mut outs = Vec::with_capacity(tokens);
            for t in 0..tokens {
                let xt = xp.i((.., t))?;
                let hp = recurrent.forward_t(h)?;
                *h = match (self.cell, c.as_mut()) {
                    (Cell::Lstm, Some(c)) => {
                        let (i, f, g, o) = lstm_gates(&(xt + hp)?, self.hidden)?;
                        *c = ((f * &*c)? + (i * g)?)?;
                        (o * c.tanh()?)?
                    }
                    (Cell::Gru, _) => gru(&xt, &hp, h, self.hidden)?,
                    (Cell::Lstm, None) => {
                        return Err(Error::Model("an LSTM state without its cell state".into()))
                    }
                };
                outs.push(h.clone());
            }
            x = Tensor::stack(&outs, 1)?;
        }
        Ok(x)
    }
}

/// An LSTM's gates from their pre-activations [rows, 4 * hidden]: sigmoid(i), sigmoid(f),
/// tanh(g), sigmoid(o).
fn lstm_gates(z: &Tensor, h: usize) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    Ok((
        sigmoid(&z.narrow(1, 0, h)?)?,
        sigmoid(&z.narrow(1, h, h)?)?,
        z.narrow(1, 2 * h, h)?.tanh()?,
        sigmoid(&z.narrow(1, 3 * h, h)?)?,
    ))
}

/// A GRU step: r = sigmoid(x_r + h_r), z = sigmoid(x_z + h_z), n = tanh(x_n + r * h_n),
/// h' = (1 - z) * n + z * h, from the input's and the state's projections [rows, 3 * hidden].
fn gru(xp: &Tensor, hp: &Tensor, h_prev: &Tensor, h: usize) -> Result<Tensor> {
    let r = sigmoid(&(xp.narrow(1, 0, h)? + hp.narrow(1, 0, h)?)?)?;
    let z = sigmoid(&(xp.narrow(1, h, h)? + hp.narrow(1, h, h)?)?)?;
    let n = (xp.narrow(1, 2 * h, h)? + (r * hp.narrow(1, 2 * h, h)?)?)?.tanh()?;
    Ok((&n + (z * (h_prev - &n)?)?)?)
}

/// What the forward pass keeps for the backward one, per step t and row: the gates' activations
/// (LSTM: i, f, g, o; GRU: r, z, n and the state's share of n before r scales it, W_hn h + b_hn),
/// [tokens, rows, 4 * hidden], and the LSTM's cell states [tokens, rows, hidden].
#[derive(Default)]
struct Saved {
    acts: Vec<f32>,
    cells: Vec<f32>,
}

/// One layer's recurrence over a sequence: (xp [rows, tokens, gates * hidden], the input's
/// projection with b_ih; W_hh; b_hh) -> outputs [rows, tokens, hidden], from the initial state
/// h0 (and c0), which is a constant.
struct Scan {
    cell: Cell,
    hidden: usize,
    h0: Vec<f32>,
    c0: Vec<f32>,
    /// Shared with the caller, which reads the last cell state from it.
    saved: Arc<Mutex<Saved>>,
}

/// sigmoid with the lane-friendly exp (no slow path: vectorizes).
#[inline(always)]
fn sig(x: f32) -> f32 {
    1.0 / (1.0 + expf_lanes(-x))
}

/// tanh as 1 - 2 / (exp(2x) + 1) with the lane-friendly exp (absolute error ~1e-7).
#[inline(always)]
fn tanh_lanes(x: f32) -> f32 {
    1.0 - 2.0 / (expf_lanes(2.0 * x) + 1.0)
}

simd_fn! {
    /// One LSTM step of one row: pre-activations x + p [4h] (input's and state's shares), the
    /// cell state c [h] (updated in place), the activations i, f, g, o into a [4h] and h' into o.
    fn lstm_step(x: &[f32], p: &[f32], c: &mut [f32], a: &mut [f32], out: &mut [f32]) {
        let h = c.len();
        let (ai, rest) = a.split_at_mut(h);
        let (af, rest) = rest.split_at_mut(h);
        let (ag, ao) = rest.split_at_mut(h);
        for u in 0..h {
            let i = sig(x[u] + p[u]);
            let f = sig(x[h + u] + p[h + u]);
            let g = tanh_lanes(x[2 * h + u] + p[2 * h + u]);
            let o = sig(x[3 * h + u] + p[3 * h + u]);
            let cn = f * c[u] + i * g;
            c[u] = cn;
            out[u] = o * tanh_lanes(cn);
            (ai[u], af[u], ag[u], ao[u]) = (i, f, g, o);
        }
    }
}

simd_fn! {
    /// One GRU step of one row: r, z, n and the state's share of n (W_hn h + b_hn) into a [4h],
    /// h' = n + z (h - n) into out.
    fn gru_step(x: &[f32], p: &[f32], hprev: &[f32], a: &mut [f32], out: &mut [f32]) {
        let h = hprev.len();
        let (ar, rest) = a.split_at_mut(h);
        let (az, rest) = rest.split_at_mut(h);
        let (an, ahn) = rest.split_at_mut(h);
        for u in 0..h {
            let r = sig(x[u] + p[u]);
            let z = sig(x[h + u] + p[h + u]);
            let n = tanh_lanes(x[2 * h + u] + r * p[2 * h + u]);
            out[u] = n + z * (hprev[u] - n);
            (ar[u], az[u], an[u], ahn[u]) = (r, z, n, p[2 * h + u]);
        }
    }
}

simd_fn! {
    /// An LSTM step backward for one row: from the output's gradient `go` plus what the next
    /// step sent back (dh, dc), the pre-activations' gradient into dz [4h]; dc becomes what
    /// reaches the previous cell state, dh is cleared (the state's matmul adds to it).
    fn lstm_step_back(go: &[f32], a: &[f32], c: &[f32], c_prev: &[f32], dh: &mut [f32], dc: &mut [f32], dz: &mut [f32]) {
        let h = c.len();
        let (zi, rest) = dz.split_at_mut(h);
        let (zf, rest) = rest.split_at_mut(h);
        let (zg, zo) = rest.split_at_mut(h);
        for u in 0..h {
            let (i, f, g, o) = (a[u], a[h + u], a[2 * h + u], a[3 * h + u]);
            let d = go[u] + dh[u];
            let tc = tanh_lanes(c[u]);
            let dcu = d * o * (1.0 - tc * tc) + dc[u];
            zi[u] = dcu * g * i * (1.0 - i);
            zf[u] = dcu * c_prev[u] * f * (1.0 - f);
            zg[u] = dcu * i * (1.0 - g * g);
            zo[u] = d * tc * o * (1.0 - o);
            dc[u] = dcu * f;
            dh[u] = 0.0;
        }
    }
}

simd_fn! {
    /// A GRU step backward for one row: the input projection's gradient into dx [3h], the state
    /// projection's into dp [3h]; dh becomes the direct share reaching the previous state (z dh).
    fn gru_step_back(go: &[f32], a: &[f32], hprev: &[f32], dh: &mut [f32], dx: &mut [f32], dp: &mut [f32]) {
        let h = hprev.len();
        let (xr, rest) = dx.split_at_mut(h);
        let (xz, xn) = rest.split_at_mut(h);
        let (pr, rest) = dp.split_at_mut(h);
        let (pz, pn) = rest.split_at_mut(h);
        for u in 0..h {
            let (r, z, n, hn) = (a[u], a[h + u], a[2 * h + u], a[3 * h + u]);
            let d = go[u] + dh[u];
            let dn = d * (1.0 - z) * (1.0 - n * n);
            let dr = dn * hn * r * (1.0 - r);
            let dz = d * (hprev[u] - n) * z * (1.0 - z);
            (xr[u], xz[u], xn[u]) = (dr, dz, dn);
            (pr[u], pz[u], pn[u]) = (dr, dz, dn * r);
            dh[u] = d * z;
        }
    }
}

/// dot(x, y) in 16 lanes with fused multiply-adds.
#[inline(always)]
fn dot_lanes(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (xc, yc) = (x.chunks_exact(16), y.chunks_exact(16));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for l in 0..16 {
            acc[l] = a[l].mul_add(b[l], acc[l]);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (a, b) in xr.iter().zip(yr) {
        s = a.mul_add(*b, s);
    }
    s
}

simd_fn! {
    /// out[r * n + j] = bias[j] + dot(x[r], w[j]) for the rows j0..j1 of w [n, k] and every
    /// row r of x [m, k]: a block of W rows stays in L1 while every row of x reads it.
    fn proj_block(out: SharedOut, x: &[f32], w: &[f32], bias: &[f32], m: usize, k: usize, n: usize, j0: usize, j1: usize) {
        let mut jb = j0;
        while jb < j1 {
            let je = (jb + 8).min(j1);
            for r in 0..m {
                let xr = &x[r * k..(r + 1) * k];
                for j in jb..je {
                    let v = bias[j] + dot_lanes(xr, &w[j * k..(j + 1) * k]);
                    // SAFETY: out holds m x n values; each (r, j) is written by the one work item owning j.
                    unsafe { *out.0.add(r * n + j) = v };
                }
            }
            jb = je;
        }
    }
}

simd_fn! {
    /// dst[r * n + u] += sum_j g[r * k + j] * w[j * n + u] for the columns u0..u1 (w [k, n]):
    /// 64 columns of a row at a time, their sums held in registers while j runs.
    fn grad_block(dst: SharedOut, g: &[f32], w: &[f32], m: usize, k: usize, n: usize, u0: usize, u1: usize) {
        for r in 0..m {
            let gr = &g[r * k..(r + 1) * k];
            // SAFETY: dst holds m x n values; the columns u0..u1 belong to this work item alone.
            let d = unsafe { std::slice::from_raw_parts_mut(dst.0.add(r * n + u0), u1 - u0) };
            let mut chunks = d.chunks_exact_mut(64);
            let mut u = u0;
            for dc in &mut chunks {
                let mut acc = [0f32; 64];
                for (j, &c) in gr.iter().enumerate() {
                    let wv: &[f32; 64] = w[j * n + u..j * n + u + 64].try_into().unwrap_or(&[0.0; 64]);
                    for l in 0..64 {
                        acc[l] = c.mul_add(wv[l], acc[l]);
                    }
                }
                for (dv, a) in dc.iter_mut().zip(acc) {
                    *dv += a;
                }
                u += 64;
            }
            let rest = chunks.into_remainder();
            for (j, &c) in gr.iter().enumerate() {
                for (dv, &x) in rest.iter_mut().zip(&w[j * n + u..j * n + u + (u1 - u)]) {
                    *dv = c.mul_add(x, *dv);
                }
            }
        }
    }
}

/// out [m, n] = bias + x [m, k] W^T (W [n, k] row-major), the rows of W split over the pool.
fn state_proj(
    out: &mut [f32],
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    (m, k, n): (usize, usize, usize),
) {
    let ptr = SharedOut(out.as_mut_ptr());
    let blocks = n.div_ceil(64);
    candle_core::utils::barrier_pool().execute_chunked(blocks, |range| {
        proj_block(
            ptr,
            x,
            w,
            bias,
            m,
            k,
            n,
            range.start * 64,
            (range.end * 64).min(n),
        );
    });
}

/// dst [m, n] += g [m, k] W (W [k, n] row-major), the columns of dst split over the pool.
fn state_grad(dst: &mut [f32], g: &[f32], w: &[f32], (m, k, n): (usize, usize, usize)) {
    let ptr = SharedOut(dst.as_mut_ptr());
    let blocks = n.div_ceil(64);
    candle_core::utils::barrier_pool().execute_chunked(blocks, |range| {
        grad_block(
            ptr,
            g,
            w,
            m,
            k,
            n,
            range.start * 64,
            (range.end * 64).min(n),
        );
    });
}

impl CustomOp3 for Scan {
    fn name(&self) -> &'static str {
        "cw-rnn-scan"
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
        let xp = super::ops::contiguous(s1, l1, self.name())?;
        let w = super::ops::contiguous(s2, l2, self.name())?;
        let b = super::ops::contiguous(s3, l3, self.name())?;
        let (rows, tokens, gh) = l1.shape().dims3()?;
        let h = self.hidden;
        let g = self.cell.gates();
        if gh != g * h || w.len() != gh * h || b.len() != gh || self.h0.len() != rows * h {
            candle_core::bail!("a recurrent scan of {rows} x {tokens} x {gh} for hidden {h}");
        }
        let lstm = self.cell == Cell::Lstm;
        if lstm && self.c0.len() != rows * h {
            candle_core::bail!("an LSTM scan without its cell state");
        }
        let mut out = vec![0f32; rows * tokens * h];
        let mut acts = vec![0f32; tokens * rows * 4 * h];
        let mut cells = if lstm {
            vec![0f32; tokens * rows * h]
        } else {
            Vec::new()
        };
        let mut hprev = self.h0.clone();
        let mut cprev = self.c0.clone();
        let mut hp = vec![0f32; rows * gh];
        for t in 0..tokens {
            // the state's share of every gate: h W_hh^T + b_hh
            state_proj(&mut hp, &hprev, w, b, (rows, h, gh));
            for r in 0..rows {
                let x = &xp[(r * tokens + t) * gh..(r * tokens + t + 1) * gh];
                let p = &hp[r * gh..(r + 1) * gh];
                let a = &mut acts[(t * rows + r) * 4 * h..(t * rows + r + 1) * 4 * h];
                let o = &mut out[(r * tokens + t) * h..(r * tokens + t + 1) * h];
                if lstm {
                    let c = &mut cprev[r * h..(r + 1) * h];
                    lstm_step(x, p, c, a, o);
                    cells[(t * rows + r) * h..(t * rows + r + 1) * h].copy_from_slice(c);
                } else {
                    gru_step(x, p, &hprev[r * h..(r + 1) * h], a, o);
                }
            }
            for r in 0..rows {
                hprev[r * h..(r + 1) * h]
                    .copy_from_slice(&out[(r * tokens + t) * h..(r * tokens + t + 1) * h]);
            }
        }
        *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Saved { acts, cells };
        Ok((CpuStorage::F32(out), Shape::from((rows, tokens, h))))
    }

    fn bwd(
        &self,
        xp: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (rows, tokens, gh) = xp.dims3()?;
        let h = self.hidden;
        let lstm = self.cell == Cell::Lstm;
        let saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        let (acts, cells) = (&saved.acts, &saved.cells);
        if acts.len() != tokens * rows * 4 * h {
            candle_core::bail!("a recurrent scan's backward without its forward");
        }
        let g_out = super::ops::values(grad)?;
        let outs = super::ops::values(res)?;
        let wv = super::ops::values(w)?;
        // the state each step read: h0, then the outputs shifted by one, [tokens, rows, hidden]
        let mut hprevs = vec![0f32; tokens * rows * h];
        for t in 0..tokens {
            for r in 0..rows {
                let src = if t == 0 {
                    &self.h0[r * h..(r + 1) * h]
                } else {
                    &outs[(r * tokens + t - 1) * h..(r * tokens + t) * h]
                };
                hprevs[(t * rows + r) * h..(t * rows + r + 1) * h].copy_from_slice(src);
            }
        }
        let mut d_xp = vec![0f32; rows * tokens * gh];
        // the gradient of each step's recurrent projection h W_hh^T + b_hh, [tokens, rows, gh]
        let mut d_hp = vec![0f32; tokens * rows * gh];
        let mut dh_next = vec![0f32; rows * h];
        let mut dc_next = vec![0f32; rows * h];
        for t in (0..tokens).rev() {
            for r in 0..rows {
                let a = &acts[(t * rows + r) * 4 * h..(t * rows + r + 1) * 4 * h];
                let dx = &mut d_xp[(r * tokens + t) * gh..(r * tokens + t + 1) * gh];
                let dp = &mut d_hp[(t * rows + r) * gh..(t * rows + r + 1) * gh];
                let go = &g_out[(r * tokens + t) * h..(r * tokens + t + 1) * h];
                let dh = &mut dh_next[r * h..(r + 1) * h];
                if lstm {
                    let c = &cells[(t * rows + r) * h..(t * rows + r + 1) * h];
                    let c_prev = if t == 0 {
                        &self.c0[r * h..(r + 1) * h]
                    } else {
                        &cells[((t - 1) * rows + r) * h..(t * rows + r) * h]
                    };
                    lstm_step_back(go, a, c, c_prev, dh, &mut dc_next[r * h..(r + 1) * h], dx);
                    dp.copy_from_slice(dx);
                } else {
                    gru_step_back(
                        go,
                        a,
                        &hprevs[(t * rows + r) * h..(t * rows + r + 1) * h],
                        dh,
                        dx,
                        dp,
                    );
                }
            }
            // what reaches the previous state through W_hh
            state_grad(
                &mut dh_next,
                &d_hp[t * rows * gh..(t + 1) * rows * gh],
                &wv,
                (rows, gh, h),
            );
        }
        let dev = xp.device();
        let d_hp = Tensor::from_vec(d_hp, (tokens * rows, gh), dev)?;
        let hprevs = Tensor::from_vec(hprevs, (tokens * rows, h), dev)?;
        let d_w = d_hp.t()?.matmul(&hprevs)?;
        let d_b = d_hp.sum(0)?;
        Ok((
            Some(Tensor::from_vec(d_xp, (rows, tokens, gh), dev)?),
            Some(d_w),
            Some(d_b),
        ))
    }
}
