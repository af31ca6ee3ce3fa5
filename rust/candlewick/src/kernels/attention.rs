//! Causal self-attention over a KV cache, on plain slices, in ggml's order of operations
//! (llama.cpp without flash attention): scores by `ggml_vec_dot_f32`, softmax with `ggml_v_expf`
//! and a double-precision sum of 8-lane partial sums, then P.V by tinyBLAS (8 lanes over key
//! positions) when the batch has several tokens, by `ggml_vec_dot_f32` when it has one.

use super::math::{expf, hsum8, reduce4x8, vec_dot_f32};

#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Positions the cache buffers hold (stride between KV heads).
    pub capacity: usize,
    /// Sliding window: a query at position p sees keys p - window + 1 ..= p.
    pub window: Option<usize>,
}

/// q: [seq][num_heads][head_dim] at positions start..start+seq; k, v: [num_kv_heads][capacity][head_dim]
/// holding positions 0..start+seq. Returns [seq][num_heads][head_dim]. The (token, head) pairs are
/// shared out over the worker pool.
pub fn causal(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    sh: Shape,
    start: usize,
    seq: usize,
    scale: f32,
) -> Vec<f32> {
    causal_impl(q, k, v, sh, start, seq, scale, None)
}

/// `causal`, also returning the attention probabilities it used: [num_heads][seq][start + seq]
/// (0 for keys a query does not see).
pub fn causal_with_probs(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    sh: Shape,
    start: usize,
    seq: usize,
    scale: f32,
) -> (Vec<f32>, Vec<f32>) {
    let mut probs = vec![0f32; sh.num_heads * seq * (start + seq)];
    let out = causal_impl(
        q,
        k,
        v,
        sh,
        start,
        seq,
        scale,
        Some(super::SharedOut(probs.as_mut_ptr())),
    );
    (out, probs)
}

#[allow(clippy::too_many_arguments)]
fn causal_impl(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    sh: Shape,
    start: usize,
    seq: usize,
    scale: f32,
    probs: Option<super::SharedOut>,
) -> Vec<f32> {
    let (nh, hd) = (sh.num_heads, sh.head_dim);
    let mut out = vec![0f32; seq * nh * hd];
    let dst = super::SharedOut(out.as_mut_ptr());
    let work = |items: std::ops::Range<usize>| {
        let (dst, probs) = (dst, probs);
        let mut scratch = Scratch::default();
        for item in items {
            let (i, h) = (item / nh, item % nh);
            // SAFETY: item (i, h) owns out[(i * nh + h) * hd..][..hd], inside `out`.
            let o = unsafe { std::slice::from_raw_parts_mut(dst.0.add(item * hd), hd) };
            #[cfg(target_arch = "x86_64")]
            if super::has_fma() {
                // SAFETY: the CPU has FMA (checked just above).
                unsafe { one_head_fma(q, k, v, sh, start, seq, scale, i, h, o, &mut scratch) };
            } else {
                one_head(q, k, v, sh, start, seq, scale, i, h, o, &mut scratch);
            }
            #[cfg(not(target_arch = "x86_64"))]
            one_head(q, k, v, sh, start, seq, scale, i, h, o, &mut scratch);
            if let Some(pr) = probs {
                let n = start + seq;
                // SAFETY: item (i, h) owns row (h, i) of the [nh][seq][n] probabilities.
                let row = unsafe { std::slice::from_raw_parts_mut(pr.0.add((h * seq + i) * n), n) };
                row[..scratch.p.len()].copy_from_slice(&scratch.p);
            }
        }
    };
    if seq * nh * (start + seq) < 512 {
        work(0..seq * nh);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(seq * nh, work);
    }
    out
}

#[derive(Default)]
struct Scratch {
    p: Vec<f32>,
    acc: Vec<f32>,
}

/// The same code compiled with FMA, so `mul_add` is one instruction instead of a libm call.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn one_head_fma(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    sh: Shape,
    start: usize,
    seq: usize,
    scale: f32,
    i: usize,
    h: usize,
    o: &mut [f32],
    scratch: &mut Scratch,
) {
    one_head(q, k, v, sh, start, seq, scale, i, h, o, scratch)
}

/// Query token i, head h.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn one_head(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    sh: Shape,
    start: usize,
    seq: usize,
    scale: f32,
    i: usize,
    h: usize,
    o: &mut [f32],
    scratch: &mut Scratch,
) {
    let (nh, hd) = (sh.num_heads, sh.head_dim);
    let n_rep = nh / sh.num_kv_heads;
    let n = start + i + 1; // keys this query may see
    let lo = sh.window.map(|w| n.saturating_sub(w)).unwrap_or(0); // first one, with a window
    let Scratch { p, acc } = scratch;
    p.clear();
    p.resize(n, 0.0);
    let g = h / n_rep;
    let kh = &k[g * sh.capacity * hd..];
    let vh = &v[g * sh.capacity * hd..];
    let qh = &q[(i * nh + h) * hd..(i * nh + h + 1) * hd];
    // softmax(scale * q.k) over the visible keys; masked keys are exactly 0.
    let mut max = f32::NEG_INFINITY;
    for (t, pt) in p[..].iter_mut().enumerate().skip(lo) {
        *pt = vec_dot_f32(&kh[t * hd..(t + 1) * hd], qh) * scale;
        max = max.max(*pt);
    }
    let mut sum = 0f64;
    for (c, chunk) in p[..].chunks_mut(8).enumerate() {
        let mut lanes = [0f32; 8];
        for (l, pt) in chunk.iter_mut().enumerate() {
            // keys before the window are masked: exactly 0, as exp(-inf)
            *pt = if c * 8 + l >= lo {
                expf(*pt - max)
            } else {
                0.0
            };
            lanes[l] = *pt;
        }
        sum += hsum8(&lanes) as f64;
    }
    let inv = (1.0 / sum) as f32;
    p[..].iter_mut().for_each(|pt| *pt *= inv);

    // P.V with t outermost so the inner loop runs along a contiguous V row; each output
    // element still receives its fused multiply-adds in increasing t, in the lane
    // (accumulator slot) ggml would use: t % 8 for tinyBLAS (several tokens), t % 32 for
    // ggml_vec_dot_f32's four 8-lane accumulators (one token).
    let slots = if seq >= 2 { 8 } else { 32 };
    acc.clear();
    acc.resize(slots * hd, 0.0);
    for (t, &pt) in p[..].iter().enumerate() {
        let a = &mut acc[(t % slots) * hd..(t % slots + 1) * hd];
        for (ad, &vd) in a.iter_mut().zip(&vh[t * hd..(t + 1) * hd]) {
            *ad = vd.mul_add(pt, *ad);
        }
    }
    for (d, od) in o.iter_mut().enumerate() {
        let lane = |slot: usize| acc[slot * hd + d];
        *od = if seq >= 2 {
            hsum8(&std::array::from_fn(lane))
        } else {
            reduce4x8(&std::array::from_fn(|j| {
                std::array::from_fn(|l| lane(j * 8 + l))
            }))
        };
    }
}

/// Bidirectional attention over one sequence (encoders): every token sees every token.
/// q: [seq][num_heads][head_dim], k, v: [seq][num_kv_heads][head_dim]. Softmax in f32 with an f64
/// sum. Returns [seq][num_heads][head_dim]; (token, head) pairs are shared out over the pool.
pub fn bidirectional(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    nh: usize,
    nkv: usize,
    hd: usize,
    seq: usize,
    scale: f32,
) -> Vec<f32> {
    let mut out = vec![0f32; seq * nh * hd];
    let dst = super::SharedOut(out.as_mut_ptr());
    let n_rep = nh / nkv;
    let work = |items: std::ops::Range<usize>| {
        let dst = dst;
        let mut p = vec![0f32; seq];
        for item in items {
            let (i, h) = (item / nh, item % nh);
            let g = h / n_rep;
            let qh = &q[(i * nh + h) * hd..(i * nh + h + 1) * hd];
            let mut max = f32::NEG_INFINITY;
            for (t, pt) in p.iter_mut().enumerate() {
                *pt = vec_dot_f32(&k[(t * nkv + g) * hd..(t * nkv + g + 1) * hd], qh) * scale;
                max = max.max(*pt);
            }
            let mut sum = 0f64;
            for pt in p.iter_mut() {
                *pt = (*pt - max).exp();
                sum += *pt as f64;
            }
            let inv = (1.0 / sum) as f32;
            // SAFETY: item (i, h) owns out[item * hd..][..hd], inside `out`.
            let o = unsafe { std::slice::from_raw_parts_mut(dst.0.add(item * hd), hd) };
            for (t, &pt) in p.iter().enumerate() {
                let w = pt * inv;
                for (od, &vd) in o
                    .iter_mut()
                    .zip(&v[(t * nkv + g) * hd..(t * nkv + g + 1) * hd])
                {
                    *od = vd.mul_add(w, *od);
                }
            }
        }
    };
    if seq * nh * seq < 512 {
        work(0..seq * nh);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(seq * nh, work);
    }
    out
}

/// General attention on slices: q [nq][nh][hd], k and v [nk][nkv][hd]; scores scaled by `scale`,
/// plus `bias` [nh][nq][nk] when given (T5's relative positions); with `causal_past = Some(p)`
/// query i sees keys 0..=p + i, else all keys. Softmax in f32 with an f64 sum.
/// Returns [nq][nh][hd].
#[allow(clippy::too_many_arguments)]
pub fn general(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    nq: usize,
    nk: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
    scale: f32,
    bias: Option<&[f32]>,
    causal_past: Option<usize>,
) -> Vec<f32> {
    let mut out = vec![0f32; nq * nh * hd];
    let n_rep = nh / nkv;
    let mut p = vec![0f32; nk];
    for i in 0..nq {
        let visible = causal_past.map(|past| (past + i + 1).min(nk)).unwrap_or(nk);
        for h in 0..nh {
            let g = h / n_rep;
            let qh = &q[(i * nh + h) * hd..(i * nh + h + 1) * hd];
            let mut max = f32::NEG_INFINITY;
            for (j, pj) in p[..visible].iter_mut().enumerate() {
                let mut s = vec_dot_f32(&k[(j * nkv + g) * hd..(j * nkv + g + 1) * hd], qh) * scale;
                if let Some(b) = bias {
                    s += b[(h * nq + i) * nk + j];
                }
                *pj = s;
                max = max.max(s);
            }
            let mut sum = 0f64;
            for pj in p[..visible].iter_mut() {
                *pj = (*pj - max).exp();
                sum += *pj as f64;
            }
            let inv = (1.0 / sum) as f32;
            let o = &mut out[(i * nh + h) * hd..(i * nh + h + 1) * hd];
            for (j, &pj) in p[..visible].iter().enumerate() {
                let w = pj * inv;
                for (od, &vd) in o
                    .iter_mut()
                    .zip(&v[(j * nkv + g) * hd..(j * nkv + g + 1) * hd])
                {
                    *od = vd.mul_add(w, *od);
                }
            }
        }
    }
    out
}

/// Reference attention that also returns the attention probabilities [nh][nq][nk] (for models
/// asked to output their attention weights): q [nq][nh][hd], k and v [nk][nkv][hd], scores scaled
/// by `scale`, causal (query i sees keys 0..=i) or not. Plain loops, f64 softmax sums.
#[allow(clippy::too_many_arguments)]
pub fn with_probs(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    nq: usize,
    nk: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
    scale: f32,
    causal: bool,
    window: Option<usize>,
) -> (Vec<f32>, Vec<f32>) {
    let mut out = vec![0f32; nq * nh * hd];
    let mut probs = vec![0f32; nh * nq * nk];
    let n_rep = nh / nkv;
    for h in 0..nh {
        let g = h / n_rep;
        for i in 0..nq {
            let visible = if causal { (i + 1).min(nk) } else { nk };
            let lo = window.map(|w| visible.saturating_sub(w)).unwrap_or(0);
            let qh = &q[(i * nh + h) * hd..(i * nh + h + 1) * hd];
            let p = &mut probs[(h * nq + i) * nk..(h * nq + i + 1) * nk];
            let mut max = f32::NEG_INFINITY;
            for (j, pj) in p[..visible].iter_mut().enumerate().skip(lo) {
                *pj = vec_dot_f32(&k[(j * nkv + g) * hd..(j * nkv + g + 1) * hd], qh) * scale;
                max = max.max(*pj);
            }
            let mut sum = 0f64;
            for pj in p[lo..visible].iter_mut() {
                *pj = (*pj - max).exp();
                sum += *pj as f64;
            }
            for pj in p[lo..visible].iter_mut() {
                *pj = (*pj as f64 / sum) as f32;
            }
            let o = &mut out[(i * nh + h) * hd..(i * nh + h + 1) * hd];
            for (j, &pj) in p[..visible].iter().enumerate() {
                for (od, &vd) in o
                    .iter_mut()
                    .zip(&v[(j * nkv + g) * hd..(j * nkv + g + 1) * hd])
                {
                    *od = vd.mul_add(pj, *od);
                }
            }
        }
    }
    (out, probs)
}
