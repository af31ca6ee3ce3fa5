//! Scalar math that follows ggml's CPU backend operation by operation, so that our activations
//! match llama.cpp's to the last bit where the reference does (each function names its twin).
//! Lane structure is kept explicit: "8 lanes" means ggml's AVX2 `__m256` accumulation order.

/// ggml `hsum_float_8` / tinyBLAS `hsum(__m256)`: ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)).
#[inline(always)]
pub fn hsum8(a: &[f32; 8]) -> f32 {
    let r = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// `GGML_F32x8_REDUCE` over four 8-lane accumulators: (x0+x2)+(x1+x3) lane-wise, then the two
/// halves, then two horizontal adds: (t0+t1)+(t2+t3).
#[inline(always)]
pub fn reduce4x8(acc: &[[f32; 8]; 4]) -> f32 {
    let mut x = [0f32; 8];
    for (l, v) in x.iter_mut().enumerate() {
        *v = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    }
    let t = [x[0] + x[4], x[1] + x[5], x[2] + x[6], x[3] + x[7]];
    (t[0] + t[1]) + (t[2] + t[3])
}

/// ggml `ggml_vec_dot_f32` (AVX: 4 accumulators of 8 lanes, step 32, fused multiply-add).
#[inline(always)]
pub fn vec_dot_f32(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let np = n & !31;
    let mut acc = [[0f32; 8]; 4];
    for (xc, yc) in x[..np].chunks_exact(32).zip(y[..np].chunks_exact(32)) {
        for (j, a) in acc.iter_mut().enumerate() {
            for (l, lane) in a.iter_mut().enumerate() {
                *lane = xc[8 * j + l].mul_add(yc[8 * j + l], *lane);
            }
        }
    }
    let mut s = reduce4x8(&acc);
    for i in np..n {
        s = x[i].mul_add(y[i], s);
    }
    s
}

/// `vec_dot_f32` with AVX and FMA intrinsics: the same four 8-lane accumulators, the same
/// reduction (ggml's own AVX code), so the same bits, in 256-bit registers (LLVM compiles the
/// portable one to 128-bit halves and shuffles).
///
/// # Safety
/// The CPU must have AVX and FMA.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx,fma")]
pub unsafe fn vec_dot_f32_avx(x: &[f32], y: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = x.len().min(y.len());
    let np = n & !31;
    let (px, py) = (x.as_ptr(), y.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i < np {
        for (j, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(
                _mm256_loadu_ps(px.add(i + 8 * j)),
                _mm256_loadu_ps(py.add(i + 8 * j)),
                *a,
            );
        }
        i += 32;
    }
    let x0 = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
    let t = _mm_add_ps(_mm256_castps256_ps128(x0), _mm256_extractf128_ps::<1>(x0));
    let h = _mm_hadd_ps(t, t);
    let mut s = _mm_cvtss_f32(_mm_hadd_ps(h, h));
    for i in np..n {
        s = x[i].mul_add(y[i], s);
    }
    s
}

const fn f(bits: u32) -> f32 {
    f32::from_bits(bits)
}

/// ggml `ggml_v_expf` (from ARM's optimized-routines expf: max error 1.45 + 0.5 ulp), one lane.
/// Every step is the same f32 operation, fused where the vector code fuses.
#[inline(always)]
pub fn expf(x: f32) -> f32 {
    let r = f(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f(0x3fb8_aa3b), r); // log2(e)
    let n = z - r;
    let b = (-n).mul_add(f(0x35bf_be8e), (-n).mul_add(f(0x3f31_7200), x)); // ln2 lo, hi
    let e = z.to_bits() << 23;
    let k = f32::from_bits(e.wrapping_add(1.0f32.to_bits()));
    let u = b * b;
    let j = f(0x3c07_2010)
        .mul_add(b, f(0x3d2b_9f17))
        .mul_add(u, f(0x3e2a_af33).mul_add(b, f(0x3eff_fedb)))
        .mul_add(u, f(0x3f7f_fff6) * b);
    if n.abs() <= 126.0 || n.is_nan() {
        return j.mul_add(k, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    let s2 = f32::from_bits(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// `expf` without its slow path, for loops the compiler vectorizes (the training ops' softmax,
/// cross-entropy and SiLU): the argument clamped to [-87, 87], where the fast path holds; 0 below
/// -87 (f32's exp leaves the normal range there), exp(87) above; NaN stays NaN.
#[inline(always)]
pub fn expf_lanes(x: f32) -> f32 {
    let xc = x.clamp(-87.0, 87.0);
    let r = f(0x4b40_0000);
    let z = xc.mul_add(f(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(f(0x35bf_be8e), (-n).mul_add(f(0x3f31_7200), xc));
    let k = f32::from_bits((z.to_bits() << 23).wrapping_add(1.0f32.to_bits()));
    let u = b * b;
    let j = f(0x3c07_2010)
        .mul_add(b, f(0x3d2b_9f17))
        .mul_add(u, f(0x3e2a_af33).mul_add(b, f(0x3eff_fedb)))
        .mul_add(u, f(0x3f7f_fff6) * b);
    let e = j.mul_add(k, k);
    if x < -87.0 {
        0.0
    } else {
        e
    }
}

/// The widest SIMD level this CPU offers the `simd_fn!` kernels: 2 AVX-512 (with AVX2 and FMA),
/// 1 AVX2 with FMA, 0 neither.
#[inline]
pub fn simd_level() -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static LEVEL: OnceLock<u8> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx2") && has!("fma") {
                2
            } else if has!("avx2") && has!("fma") {
                1
            } else {
                0
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}

/// A function whose body is compiled three times (AVX-512, AVX2+FMA, plain) and run in the widest
/// form the CPU has, so that its loops vectorize at that width and `mul_add` is one instruction.
/// The body must be plain code (no closure doing the work: a closure is compiled apart, without
/// the features).
macro_rules! simd_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                imp($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn narrow($($arg: $ty),*) $(-> $ret)? {
                imp($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY: each form runs only where the CPU has its features (simd_level).
                match $crate::kernels::math::simd_level() {
                    2 => return unsafe { wide($($arg),*) },
                    1 => return unsafe { narrow($($arg),*) },
                    _ => {}
                }
            }
            imp($($arg),*)
        }
    };
}
pub(crate) use simd_fn;

/// The largest value of a row (NaN ignored, as f32::max does), 16 lanes.
#[inline(always)]
fn max_lanes(xs: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for (m, &x) in m.iter_mut().zip(c) {
            *m = if x > *m { x } else { *m };
        }
    }
    let mut r = m.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &x in chunks.remainder() {
        r = r.max(x);
    }
    r
}

/// sum_i exp(x_i - max), in 16 f64 lanes (a whole vocabulary in one f32 sum drifts).
#[inline(always)]
fn sum_exp_lanes(xs: &[f32], max: f32) -> f64 {
    let mut acc = [0f64; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += expf_lanes(x - max) as f64;
        }
    }
    let mut s: f64 = acc.iter().sum();
    for &x in chunks.remainder() {
        s += expf_lanes(x - max) as f64;
    }
    s
}

simd_fn! {
    /// A row's maximum and sum of exp(x - max): its log-sum-exp is max + ln(sum).
    pub fn max_and_sum_exp(xs: &[f32]) -> (f32, f64) {
        let max = max_lanes(xs);
        (max, sum_exp_lanes(xs, max))
    }
}

simd_fn! {
    /// out_i = exp(x_i - max) * scale (a softmax row times a gradient).
    pub fn exp_scaled(out: &mut [f32], xs: &[f32], max: f32, scale: f32) {
        for (o, &x) in out.iter_mut().zip(xs) {
            *o = expf_lanes(x - max) * scale;
        }
    }
}

simd_fn! {
    /// x_i <- exp(x_i - max) in place, and their sum in f64.
    pub fn exp_in_place(xs: &mut [f32], max: f32) -> f64 {
        let mut acc = [0f64; 16];
        let mut chunks = xs.chunks_exact_mut(16);
        for c in &mut chunks {
            for (a, x) in acc.iter_mut().zip(c.iter_mut()) {
                *x = expf_lanes(*x - max);
                *a += *x as f64;
            }
        }
        let mut s: f64 = acc.iter().sum();
        for x in chunks.into_remainder() {
            *x = expf_lanes(*x - max);
            s += *x as f64;
        }
        s
    }
}

simd_fn! {
    /// sum_i x_i^2 in f64 lanes.
    pub fn sum_squares(xs: &[f32]) -> f64 {
        let mut lanes = [0f64; 8];
        let mut it = xs.chunks_exact(8);
        for ch in &mut it {
            for (l, &x) in lanes.iter_mut().zip(ch) {
                *l += (x as f64) * (x as f64);
            }
        }
        lanes.iter().sum::<f64>() + it.remainder().iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>()
    }
}

/// sum_i exp((x_i - max) * scale), with `expf` above; arguments below -87 (where exp is under
/// f32's normal range) count as 0. The sampler's softmax denominator over a whole vocabulary.
pub fn sum_exp(xs: &[f32], max: f32, scale: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if super::has_fma() {
        // SAFETY: the CPU has FMA (checked just above).
        return unsafe { sum_exp_fma(xs, max, scale) };
    }
    sum_exp_impl(xs, max, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn sum_exp_fma(xs: &[f32], max: f32, scale: f32) -> f64 {
    sum_exp_impl(xs, max, scale)
}

#[inline(always)]
fn sum_exp_impl(xs: &[f32], max: f32, scale: f32) -> f64 {
    // 8 partial sums in f64 (a whole vocabulary in f32 drifts): independent chains the CPU can overlap.
    let mut acc = [0f64; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            let t = (x - max) * scale;
            *a += if t > -87.0 { expf(t) as f64 } else { 0.0 };
        }
    }
    let mut s: f64 = acc.iter().sum();
    for &x in chunks.remainder() {
        let t = (x - max) * scale;
        s += if t > -87.0 { expf(t) as f64 } else { 0.0 };
    }
    s
}

/// ggml's CPU GELU (tanh form) on f32: below -10 it is 0, above 10 x, else the input rounded to
/// f16, looked up in a table of f16 GELU values (`ggml_table_gelu_f16`), widened back. The table
/// (65536 entries, built once) holds exactly what `gelu_ggml_uncached` gives.
pub fn gelu_ggml(x: f32) -> f32 {
    if x <= -10.0 {
        return 0.0;
    }
    if x >= 10.0 {
        return x;
    }
    gelu_table()[half::f16::from_f32(x).to_bits() as usize]
}

/// The GELU of every f16 value, by its bits (built once).
fn gelu_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Box<[f32]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|b| gelu_ggml_uncached(half::f16::from_bits(b).to_f32()))
            .collect()
    })
}

/// ggml's GEGLU (`ggml_vec_geglu_f32`): gelu_ggml(x) * g, but exactly 0 (never -0) below -10.
#[inline(always)]
pub fn geglu_ggml(x: f32, g: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else {
        gelu_ggml(x) * g
    }
}

/// `geglu_ggml` over rows: out[i] = geglu_ggml(x[i], g[i]), the same bits, eight at a time with
/// F16C where the CPU has it (the f16 rounding by `vcvtps2ph`, nearest-even as `half`'s) and
/// shared out over the worker pool when long (a prefill's 128 x 2048 values per layer).
pub fn geglu_rows(x: &[f32], g: &[f32], out: &mut [f32]) {
    gelu_ggml(0.0); // the table, built before the workers read it
    pooled_pairs(x, g, out, |x, g, o| {
        #[cfg(target_arch = "x86_64")]
        if has_f16c_fma() {
            // SAFETY: the CPU has AVX2, F16C and FMA (checked just above).
            return unsafe { geglu_f16c(x, g, o) };
        }
        for ((o, &x), &g) in o.iter_mut().zip(x).zip(g) {
            *o = geglu_ggml(x, g);
        }
    })
}

/// out = f(a, b) elementwise, in pieces of 4096 shared out over the worker pool when there are
/// more than 4 of them (each piece runs `f` on its own ranges of a, b and out).
fn pooled_pairs(
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync,
) {
    const CHUNK: usize = 4096;
    let n = out.len().min(a.len()).min(b.len());
    let dst = super::SharedOut(out.as_mut_ptr());
    let work = |r: std::ops::Range<usize>| {
        let dst = dst;
        let (lo, hi) = (r.start * CHUNK, (r.end * CHUNK).min(n));
        // SAFETY: each work item writes its own range of `out` (inside it: hi <= n).
        let o = unsafe { std::slice::from_raw_parts_mut(dst.0.add(lo), hi - lo) };
        f(&a[lo..hi], &b[lo..hi], o)
    };
    let chunks = n.div_ceil(CHUNK);
    if chunks <= 4 {
        work(0..chunks);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(chunks, work);
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn has_f16c_fma() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("f16c")
            && super::has_fma()
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c,fma")]
unsafe fn geglu_f16c(x: &[f32], g: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let table = gelu_table();
    let n8 = out.len() / 8 * 8;
    let (lo, hi) = (_mm256_set1_ps(-10.0), _mm256_set1_ps(10.0));
    for i in (0..n8).step_by(8) {
        let xv = _mm256_loadu_ps(x.as_ptr().add(i));
        let gv = _mm256_loadu_ps(g.as_ptr().add(i));
        let h = _mm256_cvtepu16_epi32(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(xv));
        let t = _mm256_i32gather_ps::<4>(table.as_ptr(), h);
        // x >= 10: x itself; x <= -10: exactly 0 (a NaN compares false both ways: the table)
        let gelu = _mm256_blendv_ps(t, xv, _mm256_cmp_ps::<_CMP_GE_OQ>(xv, hi));
        let y = _mm256_mul_ps(gelu, gv);
        let y = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(xv, lo), y);
        _mm256_storeu_ps(out.as_mut_ptr().add(i), y);
    }
    for i in n8..out.len() {
        out[i] = geglu_ggml(x[i], g[i]);
    }
}

/// `gelu_ggml` computed for one value (|x| < 10), without the table. As ggml's `ggml_gelu_f32`
/// compiled by GCC, which fuses `1 + GELU_COEF_A * x * x` into one multiply-add (the table of
/// llama.cpp's builds holds those values; without the fusion 0.02% of them are an f16 ulp off).
pub fn gelu_ggml_uncached(x: f32) -> f32 {
    let h = half::f16::from_f32(x).to_f32();
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let inner = (0.044715 * h).mul_add(h, 1.0);
    let g = 0.5 * h * (1.0 + (SQRT_2_OVER_PI * h * inner).tanh());
    half::f16::from_f32(g).to_f32()
}

/// ggml `ggml_v_silu`: x / (1 + exp(-x)).
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + expf(0.0 - x))
}

/// ggml `ggml_vec_swiglu_f32`: y = silu(gate) * up, shared out over the worker pool when long.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    pooled_pairs(gate, up, out, |g, u, o| {
        #[cfg(target_arch = "x86_64")]
        if super::has_fma() {
            // SAFETY: the CPU has FMA (checked just above).
            return unsafe { swiglu_fma(g, u, o) };
        }
        swiglu_impl(g, u, o)
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn swiglu_fma(gate: &[f32], up: &[f32], out: &mut [f32]) {
    swiglu_impl(gate, up, out)
}

#[inline(always)]
fn swiglu_impl(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = silu(g) * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_table_equals_the_formula() {
        for i in 0..200_000 {
            let x = -10.5 + i as f32 * 1.05e-4;
            let want = if x <= -10.0 {
                0.0
            } else if x >= 10.0 {
                x
            } else {
                gelu_ggml_uncached(x)
            };
            assert_eq!(gelu_ggml(x).to_bits(), want.to_bits(), "{x}");
        }
    }

    /// The rows version gives geglu_ggml's bits, the edges (+-10, NaN, -0, halfway f16 values)
    /// and a tail of n % 8 included, in one piece and shared out over the pool.
    #[test]
    fn geglu_rows_equals_geglu_ggml() {
        for n in [13, 40_000 + 5] {
            let x: Vec<f32> = (0..n)
                .map(|i| match i % 11 {
                    0 => -10.0,
                    1 => 10.0,
                    2 => f32::NAN,
                    3 => -0.0,
                    4 => 1.0 + (i % 7) as f32 * 2f32.powi(-11), // on and beside f16 halfway points
                    _ => -12.0 + (i as f32 * 0.618).fract() * 24.0,
                })
                .collect();
            let g: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 19) as f32 - 9.0) * 0.37)
                .collect();
            let mut out = vec![0f32; n];
            geglu_rows(&x, &g, &mut out);
            for i in 0..n {
                let want = geglu_ggml(x[i], g[i]);
                assert!(
                    out[i].to_bits() == want.to_bits() || (out[i].is_nan() && want.is_nan()),
                    "{i}: {} {} -> {} want {want}",
                    x[i],
                    g[i],
                    out[i]
                );
            }
        }
    }

    #[test]
    fn expf_lanes_matches_exp() {
        let mut worst = 0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 4.4e-4;
            let (got, want) = (expf_lanes(x) as f64, (x as f64).exp());
            if x < -87.0 {
                assert_eq!(got, 0.0, "{x}");
            } else if x <= 87.0 {
                worst = worst.max((got - want).abs() / want);
            }
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert!(expf_lanes(f32::NAN).is_nan());
        assert_eq!(expf_lanes(f32::NEG_INFINITY), 0.0);
        // the SIMD build of a loop gives what the plain one gives
        let xs: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.37).collect();
        let plain: Vec<f32> = xs.iter().map(|&x| expf_lanes(x - 10.0) * 0.5).collect();
        let mut wide = vec![0f32; xs.len()];
        exp_scaled(&mut wide, &xs, 10.0, 0.5);
        assert_eq!(plain, wide);
        let (max, s) = max_and_sum_exp(&xs);
        assert_eq!(max, 499.0 * 0.37);
        let want: f64 = xs.iter().map(|&x| ((x - max) as f64).exp()).sum();
        assert!((s - want).abs() / want < 1e-6);
        let mut inplace = xs.clone();
        let s2 = exp_in_place(&mut inplace, max);
        assert!((s2 - s).abs() / s < 1e-12);
        assert_eq!(sum_squares(&[1.0, 2.0, 3.0]), 14.0);
    }

    #[test]
    fn expf_is_accurate() {
        for i in -1600..1700 {
            let x = i as f32 * 0.05;
            let (a, b) = (expf(x), (x as f64).exp());
            assert!(((a as f64 - b) / b).abs() < 4e-7, "{x}: {a} vs {b}");
        }
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(-200.0), 0.0);
        assert!(expf(100.0).is_infinite());
    }

    #[test]
    fn sum_exp_is_a_sum_of_exps() {
        let xs: Vec<f32> = (0..1003)
            .map(|i| ((i * 37) % 200) as f32 * 0.1 - 12.0)
            .collect();
        let exact: f64 = xs.iter().map(|&x| ((x as f64 - 8.0) * 0.7).exp()).sum();
        assert!(((sum_exp(&xs, 8.0, 0.7) - exact) / exact).abs() < 1e-6);
    }

    #[test]
    fn dot_is_a_dot() {
        let x: Vec<f32> = (0..100).map(|i| i as f32 * 0.5).collect();
        let y: Vec<f32> = (0..100).map(|i| 1.0 - i as f32 * 0.01).collect();
        let exact: f64 = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum();
        assert!((vec_dot_f32(&x, &y) as f64 - exact).abs() < 1e-3);
    }
}
