//! Attention over a KV cache, on plain slices: one kernel for every attention kind, in ggml's
//! order of operations (llama.cpp without flash attention): scores by `ggml_vec_dot_f32`, softmax
//! with `ggml_v_expf` and a double-precision sum of 8-lane partial sums, then P.V by tinyBLAS (8
//! lanes over key positions) when the batch has several tokens, by `ggml_vec_dot_f32` when it has
//! one. `attend_ref` is its plain twin (f64 throughout), and the tests below compare the two.
//!
//! Keys and values are laid out as the cache holds them, [kv head][capacity][head_dim]; queries
//! [token][head][head_dim]. A query sees the keys before and at its own position (`Keys::Causal`,
//! decoders; optionally only the last `window` of them) or every key the cache holds
//! (`Keys::All`: encoders, cross-attention). T5 adds a bias per head and distance to the scores.

use half::f16;

use super::math::{expf, hsum8, vec_dot_f32};

#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Positions the cache buffers hold (stride between KV heads).
    pub capacity: usize,
    /// Sliding window (causal keys only): a query at position p sees keys p - window + 1 ..= p.
    pub window: Option<usize>,
}

/// Which cached keys a query sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// Positions up to and including its own.
    Causal,
    /// The first `n` positions, whatever the query's own.
    All(usize),
}

/// A bias added to the scores by head and distance (key position - query position): T5's
/// relative positions. `values[h * span + (distance - min_distance)]`.
#[derive(Debug, Clone, Copy)]
pub struct Bias<'a> {
    pub values: &'a [f32],
    pub min_distance: i64,
    pub span: usize,
}

impl Bias<'_> {
    #[inline(always)]
    fn at(&self, h: usize, distance: i64) -> f32 {
        self.values[h * self.span + (distance - self.min_distance) as usize]
    }
}

/// One attention call: queries at positions start..start+seq of one sequence.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    pub shape: Shape,
    pub start: usize,
    pub seq: usize,
    pub keys: Keys,
    pub scale: f32,
    /// Gemma 2's soft cap on the scores: cap x tanh(score / cap); 0 = none.
    pub softcap: f32,
    pub bias: Option<Bias<'a>>,
}

impl Job<'_> {
    /// Keys query i sees: [lo, n).
    #[inline(always)]
    fn visible(&self, i: usize) -> (usize, usize) {
        match self.keys {
            Keys::Causal => {
                let n = self.start + i + 1;
                (
                    self.shape.window.map(|w| n.saturating_sub(w)).unwrap_or(0),
                    n,
                )
            }
            Keys::All(n) => (0, n),
        }
    }

    /// Key positions in a row of the probabilities: [head][query][key].
    pub fn key_span(&self) -> usize {
        match self.keys {
            Keys::Causal => self.start + self.seq,
            Keys::All(n) => n,
        }
    }
}

/// A cache's keys and values as the kernel reads them, [kv head][capacity][head_dim].
#[derive(Debug, Clone, Copy)]
pub enum KvView<'a> {
    F32 {
        k: &'a [f32],
        v: &'a [f32],
    },
    /// Read back exactly into f32 (each row widened as it is used), so the result equals the
    /// f32 kernel's on the same, rounded, values bit for bit.
    F16 {
        k: &'a [f16],
        v: &'a [f16],
    },
}

/// An element type of the cache.
trait KvElem: Copy + Send + Sync {
    /// f16: the F16C path is there and should be taken (the caller checks the CPU).
    const HALF: bool;
    /// The row as f32: itself, or widened exactly into `tmp`.
    fn as_f32<'a, const AVX: bool>(src: &'a [Self], tmp: &'a mut Vec<f32>) -> &'a [f32];

    /// `ggml_vec_dot_f32(row, q)` of the row read as f32 (the same bits as widening it first).
    #[inline(always)]
    fn dot<const AVX: bool>(row: &[Self], q: &[f32], tmp: &mut Vec<f32>) -> f32 {
        let r = Self::as_f32::<AVX>(row, tmp);
        #[cfg(target_arch = "x86_64")]
        if AVX {
            // SAFETY: AVX and FMA are there (AVX is only set by `one_head_fma` and `one_head_f16c`).
            return unsafe { super::math::vec_dot_f32_avx(r, q) };
        }
        vec_dot_f32(r, q)
    }

    /// acc[d] = fma(row[d], p, acc[d]) with the row read as f32.
    #[inline(always)]
    fn axpy<const AVX: bool>(acc: &mut [f32], row: &[Self], p: f32, tmp: &mut Vec<f32>) {
        let r = Self::as_f32::<AVX>(row, tmp);
        for (ad, &vd) in acc.iter_mut().zip(r) {
            *ad = vd.mul_add(p, *ad);
        }
    }
}

impl KvElem for f32 {
    const HALF: bool = false;
    #[inline(always)]
    fn as_f32<'a, const AVX: bool>(src: &'a [f32], _tmp: &'a mut Vec<f32>) -> &'a [f32] {
        src
    }
}

impl KvElem for f16 {
    const HALF: bool = true;
    #[inline(always)]
    fn as_f32<'a, const AVX: bool>(src: &'a [f16], tmp: &'a mut Vec<f32>) -> &'a [f32] {
        tmp.resize(src.len(), 0.0);
        #[cfg(target_arch = "x86_64")]
        if AVX {
            // SAFETY: AVX is only set by `one_head_f16c`, which has F16C; the 8 halves read and
            // the 8 floats written lie inside `src` and `tmp` (i + 8 <= len).
            unsafe {
                use std::arch::x86_64::*;
                let n8 = src.len() & !7;
                let mut i = 0;
                while i < n8 {
                    let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
                    _mm256_storeu_ps(tmp.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
                    i += 8;
                }
                for j in n8..src.len() {
                    tmp[j] = src[j].to_f32();
                }
            }
            return tmp;
        }
        for (d, s) in tmp.iter_mut().zip(src) {
            *d = s.to_f32();
        }
        tmp
    }

    /// `vec_dot_f32_avx` with the halves widened in registers: the same lanes and order.
    #[inline(always)]
    fn dot<const AVX: bool>(row: &[f16], q: &[f32], tmp: &mut Vec<f32>) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if AVX {
            // SAFETY: AVX is only set by `one_head_f16c` (AVX, FMA, F16C); every load lies inside
            // `row` and `q` (i + 32 <= n <= both lengths).
            unsafe {
                use std::arch::x86_64::*;
                let n = row.len().min(q.len());
                let np = n & !31;
                let (px, py) = (row.as_ptr(), q.as_ptr());
                let mut acc = [_mm256_setzero_ps(); 4];
                let mut i = 0;
                while i < np {
                    for (j, a) in acc.iter_mut().enumerate() {
                        let x =
                            _mm256_cvtph_ps(_mm_loadu_si128(px.add(i + 8 * j) as *const __m128i));
                        *a = _mm256_fmadd_ps(x, _mm256_loadu_ps(py.add(i + 8 * j)), *a);
                    }
                    i += 32;
                }
                let x0 =
                    _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
                let t = _mm_add_ps(_mm256_castps256_ps128(x0), _mm256_extractf128_ps::<1>(x0));
                let h = _mm_hadd_ps(t, t);
                let mut s = _mm_cvtss_f32(_mm_hadd_ps(h, h));
                for j in np..n {
                    s = row[j].to_f32().mul_add(q[j], s);
                }
                return s;
            }
        }
        vec_dot_f32(Self::as_f32::<AVX>(row, tmp), q)
    }

    #[inline(always)]
    fn axpy<const AVX: bool>(acc: &mut [f32], row: &[f16], p: f32, tmp: &mut Vec<f32>) {
        #[cfg(target_arch = "x86_64")]
        if AVX {
            // SAFETY: as in `dot`; i + 8 <= n <= both lengths.
            unsafe {
                use std::arch::x86_64::*;
                let n = acc.len().min(row.len());
                let n8 = n & !7;
                let pv = _mm256_set1_ps(p);
                let mut i = 0;
                while i < n8 {
                    let x = _mm256_cvtph_ps(_mm_loadu_si128(row.as_ptr().add(i) as *const __m128i));
                    let a = acc.as_mut_ptr().add(i);
                    _mm256_storeu_ps(a, _mm256_fmadd_ps(x, pv, _mm256_loadu_ps(a)));
                    i += 8;
                }
                for j in n8..n {
                    acc[j] = row[j].to_f32().mul_add(p, acc[j]);
                }
                return;
            }
        }
        for (ad, &vd) in acc.iter_mut().zip(Self::as_f32::<AVX>(row, tmp)) {
            *ad = vd.mul_add(p, *ad);
        }
    }
}

/// Attention values [seq][num_heads][head_dim]; with `probs`, also the probabilities used,
/// [num_heads][seq][key_span] (0 for keys a query does not see). The (token, head) pairs are
/// shared out over the worker pool.
pub fn attend(job: &Job, q: &[f32], kv: KvView, probs: Option<&mut [f32]>) -> Vec<f32> {
    match kv {
        KvView::F32 { k, v } => attend_typed(job, q, k, v, probs),
        KvView::F16 { k, v } => attend_typed(job, q, k, v, probs),
    }
}

fn attend_typed<E: KvElem>(
    job: &Job,
    q: &[f32],
    k: &[E],
    v: &[E],
    probs: Option<&mut [f32]>,
) -> Vec<f32> {
    let (nh, hd, seq) = (job.shape.num_heads, job.shape.head_dim, job.seq);
    let span = job.key_span();
    let mut out = vec![0f32; seq * nh * hd];
    let dst = super::SharedOut(out.as_mut_ptr());
    let probs = probs.map(|p| {
        assert!(p.len() >= nh * seq * span, "probability buffer too small");
        super::SharedOut(p.as_mut_ptr())
    });
    let work = |items: std::ops::Range<usize>| {
        let (dst, probs) = (dst, probs);
        let mut scratch = Scratch::default();
        for item in items {
            let (i, h) = (item / nh, item % nh);
            // SAFETY: item (i, h) owns out[(i * nh + h) * hd..][..hd], inside `out`.
            let o = unsafe { std::slice::from_raw_parts_mut(dst.0.add(item * hd), hd) };
            #[cfg(target_arch = "x86_64")]
            if E::HALF && super::math::has_f16c_fma() {
                // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
                unsafe { one_head_f16c(job, q, k, v, i, h, o, &mut scratch) };
            } else if !E::HALF && super::has_fma() {
                // SAFETY: the CPU has FMA (checked just above), so AVX too.
                unsafe { one_head_fma(job, q, k, v, i, h, o, &mut scratch) };
            } else {
                one_head::<E, false>(job, q, k, v, i, h, o, &mut scratch);
            }
            #[cfg(not(target_arch = "x86_64"))]
            one_head::<E, false>(job, q, k, v, i, h, o, &mut scratch);
            if let Some(pr) = probs {
                // SAFETY: item (i, h) owns row (h, i) of the [nh][seq][span] probabilities,
                // inside the buffer (checked above).
                let row =
                    unsafe { std::slice::from_raw_parts_mut(pr.0.add((h * seq + i) * span), span) };
                row[..scratch.p.len()].copy_from_slice(&scratch.p);
            }
        }
    };
    if seq * nh * span < 512 {
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
    /// One key or value row widened to f32 (f16 caches).
    row: Vec<f32>,
}

/// The same code compiled with AVX and FMA, so `mul_add` is one instruction instead of a libm
/// call and the dot products run in 256-bit registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn one_head_fma<E: KvElem>(
    job: &Job,
    q: &[f32],
    k: &[E],
    v: &[E],
    i: usize,
    h: usize,
    o: &mut [f32],
    scratch: &mut Scratch,
) {
    one_head::<E, true>(job, q, k, v, i, h, o, scratch)
}

/// `one_head_fma` with F16C as well, for f16 caches: rows widened 8 at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn one_head_f16c<E: KvElem>(
    job: &Job,
    q: &[f32],
    k: &[E],
    v: &[E],
    i: usize,
    h: usize,
    o: &mut [f32],
    scratch: &mut Scratch,
) {
    one_head::<E, true>(job, q, k, v, i, h, o, scratch)
}

/// Query token i, head h (`AVX`: the caller has AVX and FMA enabled).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn one_head<E: KvElem, const AVX: bool>(
    job: &Job,
    q: &[f32],
    k: &[E],
    v: &[E],
    i: usize,
    h: usize,
    o: &mut [f32],
    scratch: &mut Scratch,
) {
    let sh = job.shape;
    let (nh, hd) = (sh.num_heads, sh.head_dim);
    let n_rep = nh / sh.num_kv_heads;
    let (lo, n) = job.visible(i);
    let Scratch { p, acc, row } = scratch;
    p.clear();
    p.resize(n, 0.0);
    let g = h / n_rep;
    let kh = &k[g * sh.capacity * hd..];
    let vh = &v[g * sh.capacity * hd..];
    let qh = &q[(i * nh + h) * hd..(i * nh + h + 1) * hd];
    let pos = (job.start + i) as i64;
    // softmax(scale * q.k + bias) over the visible keys; masked keys are exactly 0.
    let mut max = f32::NEG_INFINITY;
    for (t, pt) in p[..].iter_mut().enumerate().skip(lo) {
        let dot = E::dot::<AVX>(&kh[t * hd..(t + 1) * hd], qh, row);
        *pt = dot * job.scale;
        if job.softcap > 0.0 {
            *pt = (*pt * (1.0 / job.softcap)).tanh() * job.softcap;
        }
        if let Some(b) = &job.bias {
            *pt += b.at(h, t as i64 - pos);
        }
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
    let seq = job.seq;
    let slots = if seq >= 2 { 8 } else { 32 };
    acc.clear();
    acc.resize(slots * hd, 0.0);
    for (t, &pt) in p[..].iter().enumerate() {
        let a = &mut acc[(t % slots) * hd..(t % slots + 1) * hd];
        E::axpy::<AVX>(a, &vh[t * hd..(t + 1) * hd], pt, row);
    }
    // the slots summed per output element as `hsum8` / `reduce4x8` would, with the elements
    // along the SIMD lanes
    let a = |slot: usize| &acc[slot * hd..(slot + 1) * hd];
    if seq >= 2 {
        let s: [&[f32]; 8] = std::array::from_fn(a);
        for (d, od) in o.iter_mut().enumerate() {
            *od = ((s[0][d] + s[4][d]) + (s[2][d] + s[6][d]))
                + ((s[1][d] + s[5][d]) + (s[3][d] + s[7][d]));
        }
    } else {
        // x_l = (slot l + slot 16 + l) + (slot 8 + l + slot 24 + l), then
        // ((x0 + x4) + (x1 + x5)) + ((x2 + x6) + (x3 + x7))
        let s: [&[f32]; 32] = std::array::from_fn(a);
        for (d, od) in o.iter_mut().enumerate() {
            let x: [f32; 8] =
                std::array::from_fn(|l| (s[l][d] + s[16 + l][d]) + (s[8 + l][d] + s[24 + l][d]));
            *od = ((x[0] + x[4]) + (x[1] + x[5])) + ((x[2] + x[6]) + (x[3] + x[7]));
        }
    }
}

/// The plain twin of `attend`: the same attention with every sum in f64, in the obvious order.
/// Returns (values [seq][num_heads][head_dim], probabilities [num_heads][seq][key_span]).
pub fn attend_ref(job: &Job, q: &[f32], k: &[f32], v: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let sh = job.shape;
    let (nh, hd, seq, span) = (sh.num_heads, sh.head_dim, job.seq, job.key_span());
    let n_rep = nh / sh.num_kv_heads;
    let mut out = vec![0f32; seq * nh * hd];
    let mut probs = vec![0f32; nh * seq * span];
    for i in 0..seq {
        let (lo, n) = job.visible(i);
        for h in 0..nh {
            let g = h / n_rep;
            let qh = &q[(i * nh + h) * hd..(i * nh + h + 1) * hd];
            let key = |t: usize| &k[(g * sh.capacity + t) * hd..(g * sh.capacity + t + 1) * hd];
            let scores: Vec<f64> = (lo..n)
                .map(|t| {
                    let dot: f64 = key(t)
                        .iter()
                        .zip(qh)
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum();
                    let bias = job
                        .bias
                        .map(|b| b.at(h, t as i64 - (job.start + i) as i64) as f64)
                        .unwrap_or(0.0);
                    let score = dot * job.scale as f64;
                    let cap = job.softcap as f64;
                    (if cap > 0.0 {
                        cap * (score / cap).tanh()
                    } else {
                        score
                    }) + bias
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                let val: f64 = (lo..n)
                    .map(|t| e[t - lo] / z * v[(g * sh.capacity + t) * hd + d] as f64)
                    .sum();
                out[(i * nh + h) * hd + d] = val as f32;
            }
            for t in lo..n {
                probs[(h * seq + i) * span + t] = (e[t - lo] / z) as f32;
            }
        }
    }
    (out, probs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn randn(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
    }

    /// Every kind the models use: causal prefill and decode steps (with a window, with GQA),
    /// all keys (encoders, cross-attention), and T5's bias without scaling.
    #[test]
    fn attend_equals_its_plain_twin() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (nh, nkv, cap) = (4, 2, 40);
        // a head of 20 has a tail after its 8-lane blocks
        for hd in [16usize, 20] {
            for (start, seq, keys, window, scale, with_bias, softcap) in [
                (0, 12, Keys::Causal, None, 0.25, false, 0.0),
                (5, 1, Keys::Causal, None, 0.25, false, 0.0),
                (3, 9, Keys::Causal, Some(4), 0.25, false, 0.0),
                (30, 1, Keys::Causal, Some(7), 0.25, false, 0.0),
                (0, 10, Keys::All(10), None, 0.25, false, 0.0),
                (0, 3, Keys::All(17), None, 0.25, false, 0.0),
                (4, 6, Keys::Causal, None, 1.0, true, 0.0),
                (0, 8, Keys::All(8), None, 1.0, true, 0.0),
                // Gemma 2's soft cap, low enough to bend the scores
                (2, 7, Keys::Causal, Some(5), 1.0, false, 1.5),
                (9, 1, Keys::Causal, None, 1.0, false, 1.5),
            ] {
                let q = randn(&mut rng, seq * nh * hd);
                let k = randn(&mut rng, nkv * cap * hd);
                let v = randn(&mut rng, nkv * cap * hd);
                let (min_distance, span) = (-40i64, 81usize);
                let values = randn(&mut rng, nh * span);
                let job = Job {
                    shape: Shape {
                        num_heads: nh,
                        num_kv_heads: nkv,
                        head_dim: hd,
                        capacity: cap,
                        window,
                    },
                    start,
                    seq,
                    keys,
                    scale,
                    softcap,
                    bias: with_bias.then_some(Bias {
                        values: &values,
                        min_distance,
                        span,
                    }),
                };
                let mut probs = vec![0f32; nh * seq * job.key_span()];
                let fast = attend(&job, &q, KvView::F32 { k: &k, v: &v }, Some(&mut probs));
                let (want, want_probs) = attend_ref(&job, &q, &k, &v);
                let err = |a: &[f32], b: &[f32]| {
                    a.iter()
                        .zip(b)
                        .map(|(x, y)| (x - y).abs())
                        .fold(0f32, f32::max)
                };
                assert!(
                    err(&fast, &want) < 1e-5,
                    "{keys:?} {start} {seq}: {}",
                    err(&fast, &want)
                );
                assert!(err(&probs, &want_probs) < 1e-6, "{keys:?} probs");
                // without probabilities: the same values, bit for bit
                assert_eq!(attend(&job, &q, KvView::F32 { k: &k, v: &v }, None), fast);
                // an f16 cache: the f32 kernel's result on the rounded values, bit for bit
                let half = |x: &[f32]| x.iter().map(|&a| f16::from_f32(a)).collect::<Vec<_>>();
                let widen = |x: &[f16]| x.iter().map(|a| a.to_f32()).collect::<Vec<_>>();
                let (k16, v16) = (half(&k), half(&v));
                let (kr, vr) = (widen(&k16), widen(&v16));
                let from_half = attend(&job, &q, KvView::F16 { k: &k16, v: &v16 }, None);
                assert_eq!(
                    from_half,
                    attend(&job, &q, KvView::F32 { k: &kr, v: &vr }, None),
                    "{keys:?} f16"
                );
                let (want16, _) = attend_ref(&job, &q, &kr, &vr);
                assert!(
                    err(&from_half, &want16) < 1e-5,
                    "{keys:?} f16 against the reference"
                );
            }
        }
    }
}
