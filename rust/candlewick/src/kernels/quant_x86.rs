//! x86 SIMD paths of the quantized matmuls in `quant`: tiles of 4 weight rows x A activation
//! rows, so that each weight block is loaded and unpacked once for A activation rows and each
//! activation block once for 4 weight rows.
//!
//! Every output keeps its own float accumulators, fed in the order of the scalar references in
//! `quant` (which follow ggml's AVX2 code), so tiling changes no bit. The integer parts are exact,
//! so they may be computed any way: with AVX-512 VNNI (`vpdpbusd`/`vpdpwssd` on 256-bit vectors,
//! which also gives 32 vector registers) or with AVX2 (`vpmaddubsw` + `vpmaddwd`). Signed
//! weights are offset to unsigned bytes where that fits (Q5_0: +16; Q8_0 with VNNI: +128) and the
//! offset is taken back through the activation block's sums of each 4 quants.
use std::arch::x86_64::*;

use super::{
    BlockQ8, BlockQ8K, Unpacked32, IQ4_NL_BYTES, IQ4_XS_BYTES, KVALUES_IQ4NL, Q2_K_BYTES,
    Q3_K_BYTES, Q4_0_BYTES, Q4_1_BYTES, Q4_K_BYTES, Q5_0_BYTES, Q5_1_BYTES, Q5_K_BYTES, Q6_K_BYTES,
    Q8_0_BYTES,
};

/// How far ahead the weights are prefetched (bytes). A group's 4 rows are adjacent in memory and
/// the groups a thread takes follow each other, so its weights are one sequential stream; but
/// the tile reads it as 4 interleaved row streams, each too short (a row is 0.5-2 KiB) for the
/// hardware prefetchers to lock on. So each step of the tile prefetches the next stretch of the
/// stream as a whole (`prefetch_span`): every line once, about 8 KiB before it is read (at least
/// one group on). Measured on Zen 4, one thread, a 178 MB Q8_0 weight: 2.1x the read rate of
/// one prefetch per row and block (that skipped lines of the blocks wider than a line: K-quants),
/// and the rate of a plain sequential read. A prefetch past the end of the weight is harmless:
/// prefetches never fault.
#[inline(always)]
fn prefetch_ahead(row_bytes: usize) -> usize {
    8192usize.max(4 * row_bytes)
}

/// Prefetch the `len` bytes at `p` (their cache lines: one per 64 bytes, from `p`; consecutive
/// calls over adjacent spans leave no line out, as each line of a span begins within 64 bytes
/// of a prefetched address or is the next span's first).
#[inline(always)]
unsafe fn prefetch_span(p: *const u8, len: usize) {
    let mut off = 0;
    while off < len {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off) as *const i8);
        off += 64;
    }
}

pub const T_Q4_1: u8 = 0;
pub const T_Q5_0: u8 = 1;
pub const T_Q8_0: u8 = 2;
pub const T_Q5_1: u8 = 3;
pub const T_Q4_0: u8 = 4;
pub const T_IQ4NL: u8 = 5;

/// `KVALUES_IQ4NL` in both 128-bit halves, for `_mm256_shuffle_epi8` lookups.
#[inline(always)]
unsafe fn iq4_table() -> __m256i {
    _mm256_broadcastsi128_si256(_mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i))
}

/// One activation row quantized to 32-blocks: the blocks, their d and s in f32, and for each
/// block the sums of each 4 consecutive quants (one per 32-bit lane).
pub struct Act32<'a> {
    pub qs: &'a [BlockQ8],
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub ls: &'a [[i32; 8]],
}

/// f16 -> f32 with the F16C instruction (as ggml's GGML_CPU_FP16_TO_FP32).
#[inline(always)]
unsafe fn h2f(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// ggml `hsum_float_8`.
#[inline(always)]
unsafe fn hsum8(x: __m256) -> f32 {
    let mut r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

/// acc + per 32-bit lane the sum of four u8 x i8 products.
#[inline(always)]
unsafe fn dot_u8<const VNNI: bool>(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    if VNNI {
        _mm256_dpbusd_epi32(acc, u, s)
    } else {
        _mm256_add_epi32(
            acc,
            _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)),
        )
    }
}

/// acc + per 32-bit lane the sum of two i16 x i16 products.
#[inline(always)]
unsafe fn dot_i16<const VNNI: bool>(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    if VNNI {
        _mm256_dpwssd_epi32(acc, a, b)
    } else {
        _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
    }
}

/// The totals of four i32x8 vectors, as one i32x4.
#[inline(always)]
unsafe fn hsum4x8(v: [__m256i; 4]) -> __m128i {
    let h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1))
}

#[inline(always)]
fn block_bytes32<const T: u8>() -> usize {
    match T {
        T_Q4_0 => Q4_0_BYTES,
        T_IQ4NL => IQ4_NL_BYTES,
        T_Q4_1 => Q4_1_BYTES,
        T_Q5_0 => Q5_0_BYTES,
        T_Q5_1 => Q5_1_BYTES,
        _ => Q8_0_BYTES,
    }
}

/// A group's 4 rows of a 32-block type `T` unpacked into `out` (one entry per block), for the
/// many activation tiles of a prompt: each tile then loads the bytes instead of unpacking them
/// again (`tile32`'s `pre`).
#[inline(always)]
unsafe fn unpack_rows32<const T: u8, const VNNI: bool>(w: [&[u8]; 4], out: &mut [Unpacked32]) {
    let bytes = block_bytes32::<T>();
    for (i, o) in out.iter_mut().enumerate() {
        let wb: [*const u8; 4] = std::array::from_fn(|r| w[r].as_ptr().add(i * bytes));
        let (u, dm) = unpack32::<T, VNNI>(wb);
        for r in 0..4 {
            _mm256_store_si256(o.u[r].as_mut_ptr() as *mut __m256i, u[r]);
        }
        _mm256_store_ps(o.dm.as_mut_ptr(), dm);
    }
}

/// One block of each of a group's 4 rows of a 32-block type `T` (at `wb`), as the tile feeds
/// them to the integer dot: the bytes (unsigned where the type has an offset, see the module
/// note) and the scales (and mins) in one vector, lanes d0 m0 d1 m1 .. for the types with a min,
/// d0 d1 d2 d3 for the others.
#[inline(always)]
unsafe fn unpack32<const T: u8, const VNNI: bool>(wb: [*const u8; 4]) -> ([__m256i; 4], __m256) {
    let has_min = T == T_Q4_1 || T == T_Q5_1;
    let table = iq4_table();
    let low = _mm256_set1_epi8(0x0F);
    // Q5_0: byte j of the expanded qh tests bit j (ggml bytes_from_bits_32)
    let shuf = _mm256_set_epi64x(
        0x0303030303030303,
        0x0202020202020202,
        0x0101010101010101,
        0,
    );
    let bits = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe_u64 as i64);
    let mut u = [_mm256_setzero_si256(); 4];
    // the 4 rows' scales (and mins) in one conversion: lanes d0 m0 d1 m1 .. for the types
    // with a min, d0 d1 d2 d3 for the others
    let dm = if has_min {
        let rd = |p: *const u8| (p as *const i32).read_unaligned();
        _mm256_cvtph_ps(_mm_set_epi32(rd(wb[3]), rd(wb[2]), rd(wb[1]), rd(wb[0])))
    } else {
        let rd = |p: *const u8| (p as *const i16).read_unaligned();
        _mm256_castps128_ps256(_mm_cvtph_ps(_mm_set_epi16(
            0,
            0,
            0,
            0,
            rd(wb[3]),
            rd(wb[2]),
            rd(wb[1]),
            rd(wb[0]),
        )))
    };
    for r in 0..4 {
        let wb = wb[r];
        u[r] = match T {
            T_Q4_0 | T_IQ4NL => {
                let raw = _mm_loadu_si128(wb.add(2) as *const __m128i);
                let nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low);
                if T == T_Q4_0 {
                    nib // value + 8
                } else if VNNI {
                    // value + 128
                    _mm256_xor_si256(
                        _mm256_shuffle_epi8(table, nib),
                        _mm256_set1_epi8(0x80u8 as i8),
                    )
                } else {
                    _mm256_shuffle_epi8(table, nib)
                }
            }
            T_Q4_1 => {
                let raw = _mm_loadu_si128(wb.add(4) as *const __m128i);
                _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low)
            }
            T_Q5_0 | T_Q5_1 => {
                // nibble + 16 x fifth bit, 0..31 (for Q5_0 the value is that - 16)
                let at = if T == T_Q5_1 { 4 } else { 2 };
                let qh = u32::from_le_bytes([
                    *wb.add(at),
                    *wb.add(at + 1),
                    *wb.add(at + 2),
                    *wb.add(at + 3),
                ]);
                let raw = _mm_loadu_si128(wb.add(at + 4) as *const __m128i);
                let nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low);
                let x = _mm256_shuffle_epi8(_mm256_set1_epi32(qh as i32), shuf);
                let set = _mm256_cmpeq_epi8(_mm256_or_si256(x, bits), _mm256_set1_epi64x(-1));
                _mm256_or_si256(nib, _mm256_and_si256(set, _mm256_set1_epi8(0x10)))
            }
            _ => {
                let q = _mm256_loadu_si256(wb.add(2) as *const __m256i);
                if VNNI {
                    _mm256_xor_si256(q, _mm256_set1_epi8(0x80u8 as i8)) // q + 128
                } else {
                    q
                }
            }
        };
    }
    (u, dm)
}

/// The blocks of 32 (`T`): 4 weight rows x A activation rows; `blockwise`: llama.cpp's
/// repacked order for Q4_0 / IQ4_NL (one integer total per block, see `quant::blockwise_dot_i8`)
/// rather than the eight lanes of its dot products.
#[inline(always)]
unsafe fn tile32<const T: u8, const VNNI: bool, const A: usize>(
    w: [&[u8]; 4],
    pre: Option<&[Unpacked32]>,
    a: [&Act32; A],
    blockwise: bool,
) -> [[f32; 4]; A] {
    let ahead = prefetch_ahead(w[0].len());
    let bytes = block_bytes32::<T>();
    // signed weight bytes (the others are unsigned, offset where the type has one)
    let signed = T == T_Q8_0 || T == T_IQ4NL;
    let mut acc = [[_mm256_setzero_ps(); 4]; A];
    let mut acc4 = [_mm_setzero_ps(); A];
    let has_min = T == T_Q4_1 || T == T_Q5_1;
    let mut summs = [_mm256_setzero_ps(); A];
    for i in 0..a[0].qs.len() {
        let (u, dm) = match pre {
            Some(p) => {
                let b = p.get_unchecked(i);
                let u: [__m256i; 4] =
                    std::array::from_fn(|r| _mm256_load_si256(b.u[r].as_ptr() as *const __m256i));
                (u, _mm256_load_ps(b.dm.as_ptr()))
            }
            None => {
                let wb: [*const u8; 4] = std::array::from_fn(|r| w[r].as_ptr().add(i * bytes));
                prefetch_span(w[0].as_ptr().wrapping_add(ahead + 4 * i * bytes), 4 * bytes);
                unpack32::<T, VNNI>(wb)
            }
        };
        for (ai, act) in a.iter().enumerate() {
            let qy = _mm256_loadu_si256(act.qs.get_unchecked(i).qs.as_ptr() as *const __m256i);
            // d_w * d_a per row (lane by lane, as ggml's scalar product)
            let prod = _mm256_mul_ps(dm, _mm256_set1_ps(*act.d.get_unchecked(i)));
            if has_min {
                // m_w * s_a fused into each row's sum of mins, in the odd lanes
                summs[ai] = _mm256_fmadd_ps(dm, _mm256_set1_ps(*act.s.get_unchecked(i)), summs[ai]);
            }
            let ls = _mm256_loadu_si256(act.ls.get_unchecked(i).as_ptr() as *const __m256i);
            let init = match T {
                T_Q4_0 => _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(ls, 3)),
                T_Q5_0 => _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(ls, 4)),
                T_Q8_0 | T_IQ4NL if VNNI => {
                    _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(ls, 7))
                }
                _ => _mm256_setzero_si256(),
            };
            let mut ints = [_mm256_setzero_si256(); 4];
            for r in 0..4 {
                let int = if signed && !VNNI {
                    // ggml's sign trick: |w| x (a with w's sign), as u8 x i8
                    let p = _mm256_maddubs_epi16(
                        _mm256_sign_epi8(u[r], u[r]),
                        _mm256_sign_epi8(qy, u[r]),
                    );
                    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
                } else {
                    dot_u8::<VNNI>(init, u[r], qy)
                };
                if blockwise {
                    ints[r] = int;
                    continue;
                }
                let lane = _mm256_set1_epi32(if has_min { 2 * r as i32 } else { r as i32 });
                acc[ai][r] = _mm256_fmadd_ps(
                    _mm256_permutevar8x32_ps(prod, lane),
                    _mm256_cvtepi32_ps(int),
                    acc[ai][r],
                );
            }
            if blockwise {
                let scale = _mm256_castps256_ps128(prod);
                acc4[ai] = _mm_fmadd_ps(_mm_cvtepi32_ps(hsum4x8(ints)), scale, acc4[ai]);
            }
        }
    }
    let mut out = [[0f32; 4]; A];
    if blockwise {
        for ai in 0..A {
            _mm_storeu_ps(out[ai].as_mut_ptr(), acc4[ai]);
        }
        return out;
    }
    for ai in 0..A {
        let mut mins = [0f32; 8];
        _mm256_storeu_ps(mins.as_mut_ptr(), summs[ai]);
        for r in 0..4 {
            out[ai][r] = if has_min {
                hsum8(acc[ai][r]) + mins[2 * r + 1]
            } else {
                hsum8(acc[ai][r])
            };
        }
    }
    out
}

/// The 6-bit scales and mins of a Q4_K block, as i16 (scales) and i32 (mins).
#[inline(always)]
unsafe fn q4_k_scales(q: *const u8) -> ([i16; 8], [i32; 8]) {
    let q = std::slice::from_raw_parts(q, 12);
    let (mut sc, mut mn) = ([0i16; 8], [0i32; 8]);
    for j in 0..8 {
        let (s, m) = super::q4_k_scale_min(j, q);
        sc[j] = s as i16;
        mn[j] = m as i32;
    }
    (sc, mn)
}

/// Q4_K: 4 weight rows x A activation rows (rows of Q8_K blocks); `per_pair`: llama.cpp's gemm
/// order (a float accumulation per pair of sub-blocks) rather than its gemv order (one per
/// super-block).
#[inline(always)]
unsafe fn tile_q4k<const VNNI: bool, const A: usize>(
    w: [&[u8]; 4],
    a: [&[BlockQ8K]; A],
    per_pair: bool,
) -> [[f32; 4]; A] {
    let ahead = prefetch_ahead(w[0].len());
    let mut acc = [_mm_setzero_ps(); A]; // the 4 weight rows in the 4 lanes
    let mut accm = [_mm_setzero_ps(); A];
    let low = _mm256_set1_epi8(0x0F);
    for i in 0..a[0].len() {
        prefetch_span(
            w[0].as_ptr().wrapping_add(ahead + 4 * i * Q4_K_BYTES),
            4 * Q4_K_BYTES,
        );
        let mut wb = [std::ptr::null::<u8>(); 4];
        let (mut d, mut dmin) = ([0f32; 4], [0f32; 4]);
        let mut sc = [[0i16; 8]; 4];
        let mut mn = [[0i32; 8]; 4];
        for r in 0..4 {
            wb[r] = w[r].as_ptr().add(i * Q4_K_BYTES);
            d[r] = h2f(wb[r]);
            dmin[r] = h2f(wb[r].add(2));
            (sc[r], mn[r]) = q4_k_scales(wb[r].add(4));
        }
        let (dv, dminv) = (_mm_loadu_ps(d.as_ptr()), _mm_loadu_ps(dmin.as_ptr()));
        let mut mins = [_mm_setzero_si128(); 8];
        for (j, m) in mins.iter_mut().enumerate() {
            *m = _mm_set_epi32(mn[3][j], mn[2][j], mn[1][j], mn[0][j]);
        }
        for ai in 0..A {
            let ab = a[ai].get_unchecked(i);
            let q8 = ab.qs.as_ptr();
            let da = _mm_set1_ps(ab.d);
            let (scale, scale_min) = (_mm_mul_ps(dv, da), _mm_mul_ps(dminv, da));
            let mut isum = [_mm256_setzero_si256(); 4];
            let mut msum = _mm_setzero_si128();
            for p in 0..4 {
                let y0 = _mm256_loadu_si256(q8.add(64 * p) as *const __m256i);
                let y1 = _mm256_loadu_si256(q8.add(64 * p + 32) as *const __m256i);
                for r in 0..4 {
                    let raw = _mm256_loadu_si256(wb[r].add(16 + 32 * p) as *const __m256i);
                    let lo = _mm256_and_si256(raw, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
                    isum[r] = dot_i16::<VNNI>(
                        isum[r],
                        _mm256_maddubs_epi16(lo, y0),
                        _mm256_set1_epi16(sc[r][2 * p]),
                    );
                    isum[r] = dot_i16::<VNNI>(
                        isum[r],
                        _mm256_maddubs_epi16(hi, y1),
                        _mm256_set1_epi16(sc[r][2 * p + 1]),
                    );
                }
                let b0 = ab.bsums[4 * p] as i32 + ab.bsums[4 * p + 1] as i32;
                let b1 = ab.bsums[4 * p + 2] as i32 + ab.bsums[4 * p + 3] as i32;
                msum = _mm_add_epi32(
                    msum,
                    _mm_add_epi32(
                        _mm_mullo_epi32(mins[2 * p], _mm_set1_epi32(b0)),
                        _mm_mullo_epi32(mins[2 * p + 1], _mm_set1_epi32(b1)),
                    ),
                );
                if per_pair || p == 3 {
                    acc[ai] = _mm_fmadd_ps(_mm_cvtepi32_ps(hsum4x8(isum)), scale, acc[ai]);
                    accm[ai] = _mm_fmadd_ps(_mm_cvtepi32_ps(msum), scale_min, accm[ai]);
                    isum = [_mm256_setzero_si256(); 4];
                    msum = _mm_setzero_si128();
                }
            }
        }
    }
    let mut out = [[0f32; 4]; A];
    for ai in 0..A {
        _mm_storeu_ps(out[ai].as_mut_ptr(), _mm_sub_ps(acc[ai], accm[ai]));
    }
    out
}

/// Q6_K: 4 weight rows x A activation rows, in `ggml_vec_dot_q6_K_q8_K`'s lanes or (`tiled`)
/// llama.cpp's tiled order (one integer total per super-block).
#[inline(always)]
unsafe fn tile_q6k<const VNNI: bool, const A: usize>(
    w: [&[u8]; 4],
    a: [&[BlockQ8K]; A],
    tiled: bool,
) -> [[f32; 4]; A] {
    let ahead = prefetch_ahead(w[0].len());
    let mut acc = [[_mm256_setzero_ps(); 4]; A];
    // tiled order: the 4 rows' accumulators in the lanes of one vector per activation row
    let mut acc4 = [_mm_setzero_ps(); A];
    let mut totals = [[_mm256_setzero_si256(); 4]; A];
    let mut dws = [0f32; 4];
    let m15 = _mm256_set1_epi8(15);
    let m3 = _mm256_set1_epi8(3);
    let ones = 0x0101010101010101u64 as i64;
    for i in 0..a[0].len() {
        prefetch_span(
            w[0].as_ptr().wrapping_add(ahead + 4 * i * Q6_K_BYTES),
            4 * Q6_K_BYTES,
        );
        for r in 0..4 {
            let wb = w[r].as_ptr().add(i * Q6_K_BYTES);
            let dw = h2f(wb.add(208));
            dws[r] = dw;
            let scales = _mm_loadu_si128(wb.add(192) as *const __m128i);
            let sc16 = _mm256_cvtepi8_epi16(scales);
            // the 8 vectors of 32 unsigned quants (0..63) and their i16 scales
            let mut q = [_mm256_setzero_si256(); 8];
            let mut s = [_mm256_setzero_si256(); 8];
            for j in 0..2 {
                let b1 = _mm256_loadu_si256(wb.add(64 * j) as *const __m256i);
                let b2 = _mm256_loadu_si256(wb.add(64 * j + 32) as *const __m256i);
                let bh = _mm256_loadu_si256(wb.add(128 + 32 * j) as *const __m256i);
                q[4 * j] = _mm256_or_si256(
                    _mm256_and_si256(b1, m15),
                    _mm256_slli_epi16(_mm256_and_si256(bh, m3), 4),
                );
                q[4 * j + 1] = _mm256_or_si256(
                    _mm256_and_si256(b2, m15),
                    _mm256_slli_epi16(_mm256_and_si256(bh, _mm256_set1_epi8(12)), 2),
                );
                q[4 * j + 2] = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(b1, 4), m15),
                    _mm256_and_si256(bh, _mm256_set1_epi8(48)),
                );
                q[4 * j + 3] = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(b2, 4), m15),
                    _mm256_srli_epi16(_mm256_and_si256(bh, _mm256_set1_epi8(-64)), 2),
                );
            }
            for (v, sv) in s.iter_mut().enumerate() {
                // scale 2v for the vector's first 16 quants, 2v + 1 for the rest
                let shuffle = _mm_set_epi64x(ones * (2 * v as i64 + 1), ones * (2 * v as i64));
                *sv = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuffle));
            }
            for ai in 0..A {
                let ab = a[ai].get_unchecked(i);
                let bsums = _mm256_loadu_si256(ab.bsums.as_ptr() as *const __m256i);
                let offset = _mm256_slli_epi32(_mm256_madd_epi16(bsums, sc16), 5);
                let mut sumi = _mm256_setzero_si256();
                for v in 0..8 {
                    let y = _mm256_loadu_si256(ab.qs.as_ptr().add(32 * v) as *const __m256i);
                    sumi = dot_i16::<VNNI>(sumi, s[v], _mm256_maddubs_epi16(q[v], y));
                }
                sumi = _mm256_sub_epi32(sumi, offset);
                if tiled {
                    totals[ai][r] = sumi;
                } else {
                    acc[ai][r] = _mm256_fmadd_ps(
                        _mm256_set1_ps(ab.d * dw),
                        _mm256_cvtepi32_ps(sumi),
                        acc[ai][r],
                    );
                }
            }
        }
        if tiled {
            // res = d_w * total, acc += res * d_a: four rows at once, lane by lane as scalars
            let dw4 = _mm_loadu_ps(dws.as_ptr());
            for ai in 0..A {
                let s4 = _mm_cvtepi32_ps(hsum4x8(totals[ai]));
                let da = _mm_set1_ps(a[ai].get_unchecked(i).d);
                acc4[ai] = _mm_fmadd_ps(_mm_mul_ps(dw4, s4), da, acc4[ai]);
            }
        }
    }
    if tiled {
        let mut out = [[0f32; 4]; A];
        for ai in 0..A {
            _mm_storeu_ps(out[ai].as_mut_ptr(), acc4[ai]);
        }
        return out;
    }
    let mut out = [[0f32; 4]; A];
    for ai in 0..A {
        for r in 0..4 {
            out[ai][r] = hsum8(acc[ai][r]);
        }
    }
    out
}

/// Q5_K: 4 weight rows x A activation rows, in `ggml_vec_dot_q5_K_q8_K`'s lanes or (`tiled`)
/// llama.cpp's tiled order (`tiled_dot_q5_k_q8_k_ref`).
#[inline(always)]
unsafe fn tile_q5k<const VNNI: bool, const A: usize>(
    w: [&[u8]; 4],
    a: [&[BlockQ8K]; A],
    tiled: bool,
) -> [[f32; 4]; A] {
    let ahead = prefetch_ahead(w[0].len());
    let mut acc = [[_mm256_setzero_ps(); 4]; A];
    let mut summs = [[0f32; 4]; A];
    // tiled order: the 4 rows in the lanes of one vector per activation row
    let mut acc4 = [_mm_setzero_ps(); A];
    let mut totals = [[_mm256_setzero_si256(); 4]; A];
    let mut msums = [[0i32; 4]; A];
    let (mut ds, mut dmins) = ([0f32; 4], [0f32; 4]);
    let low = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    for i in 0..a[0].len() {
        prefetch_span(
            w[0].as_ptr().wrapping_add(ahead + 4 * i * Q5_K_BYTES),
            4 * Q5_K_BYTES,
        );
        for r in 0..4 {
            let wb = w[r].as_ptr().add(i * Q5_K_BYTES);
            let (d, dmin) = (h2f(wb), h2f(wb.add(2)));
            (ds[r], dmins[r]) = (d, dmin);
            let (sc, mn) = q4_k_scales(wb.add(4));
            let qh = _mm256_loadu_si256(wb.add(16) as *const __m256i);
            // the 8 sub-blocks' 32 quants (0..31): a nibble plus the sub-block's bit of qh as 16
            // (a loop, not a closure: closures do not inherit this function's target features)
            let mut q = [_mm256_setzero_si256(); 8];
            for (s, qs) in q.iter_mut().enumerate() {
                let raw = _mm256_loadu_si256(wb.add(48 + 32 * (s / 2)) as *const __m256i);
                let nib = if s % 2 == 0 {
                    raw
                } else {
                    _mm256_srli_epi16(raw, 4)
                };
                let bit = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(s as i32)), one);
                *qs = _mm256_or_si256(_mm256_and_si256(nib, low), _mm256_slli_epi16(bit, 4));
            }
            for ai in 0..A {
                let ab = a[ai].get_unchecked(i);
                let mut sumi = _mm256_setzero_si256();
                let mut msum = 0i32;
                for s in 0..8 {
                    let y = _mm256_loadu_si256(ab.qs.as_ptr().add(32 * s) as *const __m256i);
                    sumi = dot_i16::<VNNI>(
                        sumi,
                        _mm256_set1_epi16(sc[s]),
                        _mm256_maddubs_epi16(q[s], y),
                    );
                    msum += mn[s] * (ab.bsums[2 * s] as i32 + ab.bsums[2 * s + 1] as i32);
                }
                if tiled {
                    (totals[ai][r], msums[ai][r]) = (sumi, msum);
                } else {
                    summs[ai][r] = (-ab.d * dmin).mul_add(msum as f32, summs[ai][r]);
                    acc[ai][r] = _mm256_fmadd_ps(
                        _mm256_set1_ps(ab.d * d),
                        _mm256_cvtepi32_ps(sumi),
                        acc[ai][r],
                    );
                }
            }
        }
        if tiled {
            // res = d_w * S1 - dmin_w * S2 (fused), acc += res * d_a: lane by lane as scalars
            let (d4, dmin4) = (_mm_loadu_ps(ds.as_ptr()), _mm_loadu_ps(dmins.as_ptr()));
            let neg_dmin4 = _mm_sub_ps(_mm_setzero_ps(), dmin4);
            for ai in 0..A {
                let s1 = _mm_cvtepi32_ps(hsum4x8(totals[ai]));
                let s2 = _mm_cvtepi32_ps(_mm_loadu_si128(msums[ai].as_ptr() as *const __m128i));
                let res = _mm_fmadd_ps(neg_dmin4, s2, _mm_mul_ps(d4, s1));
                acc4[ai] = _mm_fmadd_ps(res, _mm_set1_ps(a[ai].get_unchecked(i).d), acc4[ai]);
            }
        }
    }
    if tiled {
        let mut out = [[0f32; 4]; A];
        for ai in 0..A {
            _mm_storeu_ps(out[ai].as_mut_ptr(), acc4[ai]);
        }
        return out;
    }
    std::array::from_fn(|ai| std::array::from_fn(|r| hsum8(acc[ai][r]) + summs[ai][r]))
}

/// Q2_K: 4 weight rows x A activation rows, in `ggml_vec_dot_q2_K_q8_K`'s lanes (the mins'
/// lanes fused first, then the scaled dots') or (`tiled`) llama.cpp's tiled order
/// (`tiled_dot_q2_k_q8_k_ref`).
#[inline(always)]
unsafe fn tile_q2k<const VNNI: bool, const A: usize>(
    w: [&[u8]; 4],
    a: [&[BlockQ8K]; A],
    tiled: bool,
) -> [[f32; 4]; A] {
    let ahead = prefetch_ahead(w[0].len());
    let mut acc = [[_mm256_setzero_ps(); 4]; A];
    let mut acc4 = [_mm_setzero_ps(); A];
    let mut totals = [[_mm256_setzero_si256(); 4]; A];
    let mut min_totals = [[_mm256_setzero_si256(); 4]; A];
    let (mut ds, mut dmins) = ([0f32; 4], [0f32; 4]);
    let m3 = _mm256_set1_epi8(3);
    let m4 = _mm_set1_epi8(0x0F);
    let ones = 0x0101010101010101u64 as i64;
    for i in 0..a[0].len() {
        prefetch_span(
            w[0].as_ptr().wrapping_add(ahead + 4 * i * Q2_K_BYTES),
            4 * Q2_K_BYTES,
        );
        for r in 0..4 {
            let wb = w[r].as_ptr().add(i * Q2_K_BYTES);
            let (d, dmin) = (h2f(wb.add(80)), h2f(wb.add(82)));
            (ds[r], dmins[r]) = (d, dmin);
            let sm = _mm_loadu_si128(wb as *const __m128i);
            let scales = _mm_and_si128(sm, m4);
            let mins = _mm256_cvtepi8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), m4));
            let mut low = [_mm256_setzero_si256(); 8];
            let mut s16 = [_mm256_setzero_si256(); 8];
            for j in 0..2 {
                let q2 = _mm256_loadu_si256(wb.add(16 + 32 * j) as *const __m256i);
                for sh in 0..4 {
                    let v = 4 * j + sh;
                    low[v] = _mm256_and_si256(
                        _mm256_srl_epi16(q2, _mm_cvtsi32_si128(2 * sh as i32)),
                        m3,
                    );
                    let shuffle = _mm_set_epi64x(ones * (2 * v as i64 + 1), ones * (2 * v as i64));
                    s16[v] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuffle));
                }
            }
            for ai in 0..A {
                let ab = a[ai].get_unchecked(i);
                let bsums = _mm256_loadu_si256(ab.bsums.as_ptr() as *const __m256i);
                let prod = _mm256_madd_epi16(mins, bsums);
                let mut sumi = _mm256_setzero_si256();
                for v in 0..8 {
                    let y = _mm256_loadu_si256(ab.qs.as_ptr().add(32 * v) as *const __m256i);
                    sumi = dot_i16::<VNNI>(sumi, s16[v], _mm256_maddubs_epi16(low[v], y));
                }
                if tiled {
                    (totals[ai][r], min_totals[ai][r]) = (sumi, prod);
                } else {
                    acc[ai][r] = _mm256_fmadd_ps(
                        _mm256_set1_ps(-ab.d * dmin),
                        _mm256_cvtepi32_ps(prod),
                        acc[ai][r],
                    );
                    acc[ai][r] = _mm256_fmadd_ps(
                        _mm256_set1_ps(ab.d * d),
                        _mm256_cvtepi32_ps(sumi),
                        acc[ai][r],
                    );
                }
            }
        }
        if tiled {
            let (d4, dmin4) = (_mm_loadu_ps(ds.as_ptr()), _mm_loadu_ps(dmins.as_ptr()));
            let neg_dmin4 = _mm_sub_ps(_mm_setzero_ps(), dmin4);
            for ai in 0..A {
                let s1 = _mm_cvtepi32_ps(hsum4x8(totals[ai]));
                let s2 = _mm_cvtepi32_ps(hsum4x8(min_totals[ai]));
                let res = _mm_fmadd_ps(neg_dmin4, s2, _mm_mul_ps(d4, s1));
                acc4[ai] = _mm_fmadd_ps(res, _mm_set1_ps(a[ai].get_unchecked(i).d), acc4[ai]);
            }
        }
    }
    let mut out = [[0f32; 4]; A];
    for ai in 0..A {
        if tiled {
            _mm_storeu_ps(out[ai].as_mut_ptr(), acc4[ai]);
        } else {
            for r in 0..4 {
                out[ai][r] = hsum8(acc[ai][r]);
            }
        }
    }
    out
}

/// Q3_K: 4 weight rows x A activation rows, in `ggml_vec_dot_q3_K_q8_K`'s lanes (its two
/// bits and its high bit's 4 multiplied apart and subtracted, as ggml does) or (`tiled`)
/// llama.cpp's tiled order (`tiled_dot_q3_k_q8_k_ref`).
#[inline(always)]
unsafe fn tile_q3k<const VNNI: bool, const A: usize>(
    w: [&[u8]; 4],
    a: [&[BlockQ8K]; A],
    tiled: bool,
) -> [[f32; 4]; A] {
    let ahead = prefetch_ahead(w[0].len());
    let mut acc = [[_mm256_setzero_ps(); 4]; A];
    let mut acc4 = [_mm_setzero_ps(); A];
    let mut totals = [[_mm256_setzero_si256(); 4]; A];
    let mut dws = [0f32; 4];
    let m3 = _mm256_set1_epi8(3);
    let one = _mm256_set1_epi8(1);
    let ones = 0x0101010101010101u64 as i64;
    for i in 0..a[0].len() {
        prefetch_span(
            w[0].as_ptr().wrapping_add(ahead + 4 * i * Q3_K_BYTES),
            4 * Q3_K_BYTES,
        );
        for r in 0..4 {
            let wb = w[r].as_ptr().add(i * Q3_K_BYTES);
            let dw = h2f(wb.add(108));
            dws[r] = dw;
            let sc = super::q3_k_scales(std::slice::from_raw_parts(wb, Q3_K_BYTES));
            let sc8: [i8; 16] = std::array::from_fn(|g| sc[g] as i8);
            let scales = _mm_loadu_si128(sc8.as_ptr() as *const __m128i);
            let hbits = _mm256_loadu_si256(wb as *const __m256i);
            // the 8 vectors of 32 values: their two low bits, 4 where the high bit is clear, and
            // the i16 scales (scale 2v for the first 16 values, 2v + 1 for the rest)
            let mut low = [_mm256_setzero_si256(); 8];
            let mut high = [_mm256_setzero_si256(); 8];
            let mut s16 = [_mm256_setzero_si256(); 8];
            for j in 0..2 {
                let q3 = _mm256_loadu_si256(wb.add(32 + 32 * j) as *const __m256i);
                for sh in 0..4 {
                    let v = 4 * j + sh;
                    let shift = _mm_cvtsi32_si128(2 * sh as i32);
                    low[v] = _mm256_and_si256(_mm256_srl_epi16(q3, shift), m3);
                    let bit = _mm_cvtsi32_si128(v as i32);
                    let set = _mm256_and_si256(_mm256_srl_epi16(hbits, bit), one);
                    high[v] = _mm256_slli_epi16(_mm256_xor_si256(set, one), 2);
                    let shuffle = _mm_set_epi64x(ones * (2 * v as i64 + 1), ones * (2 * v as i64));
                    s16[v] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuffle));
                }
            }
            for ai in 0..A {
                let ab = a[ai].get_unchecked(i);
                let mut sumi = _mm256_setzero_si256();
                for v in 0..8 {
                    let y = _mm256_loadu_si256(ab.qs.as_ptr().add(32 * v) as *const __m256i);
                    let p = _mm256_sub_epi16(
                        _mm256_maddubs_epi16(low[v], y),
                        _mm256_maddubs_epi16(high[v], y),
                    );
                    sumi = dot_i16::<VNNI>(sumi, s16[v], p);
                }
                if tiled {
                    totals[ai][r] = sumi;
                } else {
                    acc[ai][r] = _mm256_fmadd_ps(
                        _mm256_set1_ps(ab.d * dw),
                        _mm256_cvtepi32_ps(sumi),
                        acc[ai][r],
                    );
                }
            }
        }
        if tiled {
            let dw4 = _mm_loadu_ps(dws.as_ptr());
            for ai in 0..A {
                let s4 = _mm_cvtepi32_ps(hsum4x8(totals[ai]));
                let da = _mm_set1_ps(a[ai].get_unchecked(i).d);
                acc4[ai] = _mm_fmadd_ps(_mm_mul_ps(dw4, s4), da, acc4[ai]);
            }
        }
    }
    let mut out = [[0f32; 4]; A];
    for ai in 0..A {
        if tiled {
            _mm_storeu_ps(out[ai].as_mut_ptr(), acc4[ai]);
        } else {
            out[ai] = std::array::from_fn(|r| hsum8(acc[ai][r]));
        }
    }
    out
}

/// IQ4_XS: 4 weight rows x A activation rows, in `ggml_vec_dot_iq4_xs_q8_K`'s lanes or
/// (`tiled`) llama.cpp's tiled order (`tiled_dot_iq4_xs_q8_k_ref`).
#[inline(always)]
unsafe fn tile_iq4xs<const VNNI: bool, const A: usize>(
    w: [&[u8]; 4],
    a: [&[BlockQ8K]; A],
    tiled: bool,
) -> [[f32; 4]; A] {
    let ahead = prefetch_ahead(w[0].len());
    let mut acc = [[_mm256_setzero_ps(); 4]; A];
    let mut acc4 = [_mm_setzero_ps(); A];
    let mut totals = [[_mm256_setzero_si256(); 4]; A];
    let mut dws = [0f32; 4];
    let table = iq4_table();
    let low = _mm256_set1_epi8(0x0F);
    for i in 0..a[0].len() {
        prefetch_span(
            w[0].as_ptr().wrapping_add(ahead + 4 * i * IQ4_XS_BYTES),
            4 * IQ4_XS_BYTES,
        );
        for r in 0..4 {
            let wb = w[r].as_ptr().add(i * IQ4_XS_BYTES);
            let dw = h2f(wb);
            dws[r] = dw;
            let sh = u16::from_le_bytes([*wb.add(2), *wb.add(3)]) as i32;
            // the 8 sub-blocks: |value| and value's sign, and the scale
            let mut q = [_mm256_setzero_si256(); 8];
            let mut ls = [0i16; 8];
            for s in 0..8 {
                let raw = _mm_loadu_si128(wb.add(8 + 16 * s) as *const __m128i);
                let nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low);
                q[s] = _mm256_shuffle_epi8(table, nib);
                let sl = *wb.add(4 + s / 2) as i32;
                ls[s] =
                    ((((sl >> (4 * (s % 2))) & 0x0F) | (((sh >> (2 * s)) & 3) << 4)) - 32) as i16;
            }
            let mut aq = [_mm256_setzero_si256(); 8];
            for (a, &v) in aq.iter_mut().zip(&q) {
                *a = _mm256_sign_epi8(v, v);
            }
            for ai in 0..A {
                let ab = a[ai].get_unchecked(i);
                let mut sumi = _mm256_setzero_si256();
                for s in 0..8 {
                    let y = _mm256_loadu_si256(ab.qs.as_ptr().add(32 * s) as *const __m256i);
                    let p16 = _mm256_maddubs_epi16(aq[s], _mm256_sign_epi8(y, q[s]));
                    sumi = dot_i16::<VNNI>(sumi, p16, _mm256_set1_epi16(ls[s]));
                }
                if tiled {
                    totals[ai][r] = sumi;
                } else {
                    acc[ai][r] = _mm256_fmadd_ps(
                        _mm256_set1_ps(dw * ab.d),
                        _mm256_cvtepi32_ps(sumi),
                        acc[ai][r],
                    );
                }
            }
        }
        if tiled {
            let dw4 = _mm_loadu_ps(dws.as_ptr());
            for ai in 0..A {
                let s4 = _mm_cvtepi32_ps(hsum4x8(totals[ai]));
                let da = _mm_set1_ps(a[ai].get_unchecked(i).d);
                acc4[ai] = _mm_fmadd_ps(_mm_mul_ps(dw4, s4), da, acc4[ai]);
            }
        }
    }
    let mut out = [[0f32; 4]; A];
    for ai in 0..A {
        if tiled {
            _mm_storeu_ps(out[ai].as_mut_ptr(), acc4[ai]);
        } else {
            out[ai] = std::array::from_fn(|r| hsum8(acc[ai][r]));
        }
    }
    out
}

/// F16 / BF16 (`bf16`) weights: 4 rows x A f32 activation rows, in `quant::dot_float_ref`'s
/// order (eight lanes fused, `hsum_float_8`, the tail of k % 8 fused in order).
#[inline(always)]
unsafe fn tile_float<const A: usize>(bf16: bool, w: [&[u8]; 4], x: [&[f32]; A]) -> [[f32; 4]; A] {
    let ahead = prefetch_ahead(w[0].len());
    // no closures here: they would not inherit the caller's target features (F16C, AVX2)
    let k = x[0].len();
    let k8 = k / 8 * 8;
    let mut acc = [[_mm256_setzero_ps(); 4]; A];
    let mut wv = [_mm256_setzero_ps(); 4];
    let mut e = 0;
    while e < k8 {
        // 4 rows x 8 values x 2 bytes a step
        prefetch_span(w[0].as_ptr().wrapping_add(ahead + 8 * e), 64);
        for r in 0..4 {
            let p = w[r].as_ptr().add(2 * e);
            let h = _mm_loadu_si128(p as *const __m128i);
            wv[r] = if bf16 {
                _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
            } else {
                _mm256_cvtph_ps(h)
            };
        }
        for ai in 0..A {
            let xv = _mm256_loadu_ps(x[ai].as_ptr().add(e));
            for r in 0..4 {
                acc[ai][r] = _mm256_fmadd_ps(wv[r], xv, acc[ai][r]);
            }
        }
        e += 8;
    }
    let mut out = [[0f32; 4]; A];
    for ai in 0..A {
        for r in 0..4 {
            let mut sum = hsum8(acc[ai][r]);
            for e in k8..k {
                let bits =
                    u16::from_le_bytes([*w[r].as_ptr().add(2 * e), *w[r].as_ptr().add(2 * e + 1)]);
                let wv = if bf16 {
                    f32::from_bits((bits as u32) << 16)
                } else {
                    half::f16::from_bits(bits).to_f32()
                };
                sum = wv.mul_add(x[ai][e], sum);
            }
            out[ai][r] = sum;
        }
    }
    out
}

macro_rules! entry {
    ($name:ident, $unpack:ident, $feat:literal, $vnni:literal) => {
        /// 4 weight rows x A activation rows (`per_pair`: Q4_K's gemm order, Q5_K/Q6_K/IQ4_XS's
        /// tiled order, Q4_0/IQ4_NL's repacked order). SAFETY: the caller checked the CPU features of this path, and every row
        /// holds as many blocks as the activation rows.
        #[target_feature(enable = $feat)]
        pub unsafe fn $name<const A: usize>(
            t: super::QType,
            w: [&[u8]; 4],
            pre: Option<&[Unpacked32]>,
            a32: Option<[&Act32; A]>,
            ak: Option<[&[BlockQ8K]; A]>,
            per_pair: bool,
        ) -> [[f32; 4]; A] {
            use super::QType;
            match (t, a32, ak) {
                (QType::Q4_0, Some(a), _) => tile32::<T_Q4_0, $vnni, A>(w, pre, a, per_pair),
                (QType::IQ4NL, Some(a), _) => tile32::<T_IQ4NL, $vnni, A>(w, pre, a, per_pair),
                (QType::Q4_1, Some(a), _) => tile32::<T_Q4_1, $vnni, A>(w, pre, a, false),
                (QType::Q5_0, Some(a), _) => tile32::<T_Q5_0, $vnni, A>(w, pre, a, false),
                (QType::Q5_1, Some(a), _) => tile32::<T_Q5_1, $vnni, A>(w, pre, a, false),
                (QType::Q8_0, Some(a), _) => tile32::<T_Q8_0, $vnni, A>(w, pre, a, false),
                (QType::Q2K, _, Some(a)) => tile_q2k::<$vnni, A>(w, a, per_pair),
                (QType::Q3K, _, Some(a)) => tile_q3k::<$vnni, A>(w, a, per_pair),
                (QType::Q4K, _, Some(a)) => tile_q4k::<$vnni, A>(w, a, per_pair),
                (QType::Q5K, _, Some(a)) => tile_q5k::<$vnni, A>(w, a, per_pair),
                (QType::Q6K, _, Some(a)) => tile_q6k::<$vnni, A>(w, a, per_pair),
                (QType::IQ4XS, _, Some(a)) => tile_iq4xs::<$vnni, A>(w, a, per_pair),
                _ => [[f32::NAN; 4]; A], // unreachable: matmul pairs each type with its activations
            }
        }

        /// A group's 4 rows of a 32-block type unpacked for `tile`'s `pre` (false: the type
        /// has no such form). SAFETY: as above; `out` has one entry per block of the rows.
        #[target_feature(enable = $feat)]
        pub unsafe fn $unpack(t: super::QType, w: [&[u8]; 4], out: &mut [Unpacked32]) -> bool {
            use super::QType;
            match t {
                QType::Q4_0 => unpack_rows32::<T_Q4_0, $vnni>(w, out),
                QType::IQ4NL => unpack_rows32::<T_IQ4NL, $vnni>(w, out),
                QType::Q4_1 => unpack_rows32::<T_Q4_1, $vnni>(w, out),
                QType::Q5_0 => unpack_rows32::<T_Q5_0, $vnni>(w, out),
                QType::Q5_1 => unpack_rows32::<T_Q5_1, $vnni>(w, out),
                QType::Q8_0 => unpack_rows32::<T_Q8_0, $vnni>(w, out),
                _ => return false,
            }
            true
        }
    };
}

entry!(tile_avx2, unpack_avx2, "avx2,fma,f16c", false);

/// Float weights on the AVX2 path. SAFETY: as the entries above.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn tile_float_avx2<const A: usize>(
    bf16: bool,
    w: [&[u8]; 4],
    x: [&[f32]; A],
) -> [[f32; 4]; A] {
    tile_float::<A>(bf16, w, x)
}

/// Float weights with AVX-512VL's 32 registers (the same arithmetic). SAFETY: as above.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn tile_float_vnni<const A: usize>(
    bf16: bool,
    w: [&[u8]; 4],
    x: [&[f32]; A],
) -> [[f32; 4]; A] {
    tile_float::<A>(bf16, w, x)
}
entry!(
    tile_vnni,
    unpack_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    true
);
