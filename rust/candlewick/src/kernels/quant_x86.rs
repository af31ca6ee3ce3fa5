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
    run_tiles, BlockQ8, BlockQ8K, Tiles, IQ4_NL_BYTES, IQ4_XS_BYTES, KVALUES_IQ4NL, Q2_K_BYTES,
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

/// One block of each of a group's 4 weight rows of a 32-block type, unpacked once for the many
/// activation tiles of a prompt: each row's 32 bytes as `tile32` feeds them to its integer dot,
/// and the rows' scales (and mins) in the lanes it reads them from.
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct Unpacked32 {
    u: [[u8; 32]; 4],
    dm: [f32; 8],
}

/// One super-block of each of a group's 4 Q4_K rows, unpacked so: row r's nibbles of pair p
/// (`q[r][2p]` low, `q[r][2p + 1]` high), each sub-block's scale broadcast to 16 lanes,
/// for each pair p the 4 rows' two mins as i16 (r0's of sub-blocks 2p and 2p + 1, then r1's,
/// ...: one `vpmaddwd` with the activation's two sub-block sums gives the 4 rows' min terms),
/// and the rows' d and dmin.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct UnpackedQ4K {
    q: [[[u8; 32]; 8]; 4],
    sc: [[[i16; 16]; 8]; 4],
    minsw: [[i16; 8]; 4],
    d: [f32; 4],
    dmin: [f32; 4],
}

/// One super-block of each of a group's 4 Q6_K rows, unpacked so: row r's 8 vectors of 32
/// unsigned quants (0..63), each vector's two scales in its 16-bit lanes, the 16 scales as i16
/// (for the offset through the activation's block sums), and the rows' d.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct UnpackedQ6K {
    q: [[[u8; 32]; 8]; 4],
    s: [[[i16; 16]; 8]; 4],
    sc16: [[i16; 16]; 4],
    d: [f32; 8],
}

thread_local! {
    /// The unpacked weight group of the product this thread works on (`unpacked`).
    static UNPACKED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// This thread's buffer of `n` entries of `U` (contents unspecified), for a group's unpacked
/// weights: valid until the next call on this thread (a group's tiles make none). The work on
/// it runs in the caller, not in a closure here: a closure would not inherit the caller's
/// target features, and its intrinsics would become calls. SAFETY: `U` is plain data (any
/// bytes are a value) with an alignment of at most 32.
#[inline(always)]
unsafe fn unpacked<'a, U: Copy>(n: usize) -> &'a mut [U] {
    let p = UNPACKED.with_borrow_mut(|buf| {
        let bytes = n * std::mem::size_of::<U>() + 32;
        if buf.len() < bytes {
            buf.resize(bytes, 0);
        }
        let p = buf.as_mut_ptr();
        p.add(p.align_offset(32)) as *mut U
    });
    std::slice::from_raw_parts_mut(p, n)
}

/// Every activation row of a product quantized to 32-blocks (`nb` blocks a row), as `Act32`
/// gives one.
pub struct Rows32<'a> {
    pub qs: &'a [BlockQ8],
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub ls: &'a [[i32; 8]],
    pub nb: usize,
}

impl Rows32<'_> {
    /// Row `i`. SAFETY: i < the rows held.
    #[inline(always)]
    unsafe fn row(&self, i: usize) -> Act32<'_> {
        let r = i * self.nb..(i + 1) * self.nb;
        Act32 {
            qs: self.qs.get_unchecked(r.clone()),
            d: self.d.get_unchecked(r.clone()),
            s: self.s.get_unchecked(r.clone()),
            ls: self.ls.get_unchecked(r),
        }
    }
}

/// Activation rows 0..m of `a` against a group's 4 weight rows of a 32-block type, in tiles of
/// 4, 2 and 1 rows, each row's 4 results handed to `put`: `quant::run_tiles` inside one call
/// of the SIMD code (a call per tile cost about a sixth of a prompt's product).
///
/// With many rows (8 or more) the weight rows are unpacked once first, not once per tile.
#[inline(always)]
unsafe fn tiles32<const T: u8, const VNNI: bool>(
    w: [&[u8]; 4],
    a: &Rows32,
    m: usize,
    blockwise: bool,
    put: &mut dyn FnMut(usize, &[f32; 4]),
) {
    let pre = if m >= 8 {
        let buf = unpacked::<Unpacked32>(a.nb);
        unpack_rows32::<T, VNNI>(w, buf);
        Some(&*buf)
    } else {
        None
    };
    let k = Tiles32::<T, VNNI> {
        w,
        pre,
        a,
        blockwise,
    };
    run_tiles(&k, m, true, put)
}

/// `tile32` on one group as a `Tiles` (`pre`: its rows unpacked).
struct Tiles32<'a, const T: u8, const VNNI: bool> {
    w: [&'a [u8]; 4],
    pre: Option<&'a [Unpacked32]>,
    a: &'a Rows32<'a>,
    blockwise: bool,
}

impl<const T: u8, const VNNI: bool> Tiles for Tiles32<'_, T, VNNI> {
    #[inline(always)]
    unsafe fn tile<const A: usize>(&self, i0: usize) -> [[f32; 4]; A] {
        let acts: [Act32; A] = std::array::from_fn(|x| self.a.row(i0 + x));
        tile32::<T, VNNI, A>(
            self.w,
            self.pre,
            std::array::from_fn(|x| &acts[x]),
            self.blockwise,
        )
    }
}

/// How a product with super-block weights orders its sums (see `quant::Activations::Q8K`): Q4_K
/// rows below `grouped` in its gemm order, the rest in its gemv order; the other types in their
/// tiled order where `tiled`.
#[derive(Clone, Copy)]
pub struct OrderK {
    pub nb: usize,
    pub grouped: usize,
    pub tiled: bool,
    /// tiles of 4 activation rows (else at most 2: AVX2's 16 registers)
    pub wide: bool,
}

/// A group's super-block rows as unpacked for a prompt, where the type has such a form.
#[derive(Clone, Copy)]
enum PreK<'a> {
    None,
    Q4K(&'a [UnpackedQ4K]),
    Q6K(&'a [UnpackedQ6K]),
}

/// The super-block tiles on one group as a `Tiles`: tiles never straddle Q4_K's `grouped` (a
/// multiple of 4).
struct TilesK<'a, const VNNI: bool> {
    t: super::QType,
    w: [&'a [u8]; 4],
    pre: PreK<'a>,
    a: &'a [BlockQ8K],
    o: OrderK,
}

impl<const VNNI: bool> Tiles for TilesK<'_, VNNI> {
    #[inline(always)]
    unsafe fn tile<const A: usize>(&self, i0: usize) -> [[f32; 4]; A] {
        use super::QType;
        let (t, w, nb) = (self.t, self.w, self.o.nb);
        let a: [&[BlockQ8K]; A] =
            std::array::from_fn(|x| self.a.get_unchecked((i0 + x) * nb..(i0 + x + 1) * nb));
        let per_pair = if t == QType::Q4K {
            i0 < self.o.grouped
        } else {
            self.o.tiled
        };
        match (t, self.pre) {
            (QType::Q2K, _) => tile_q2k::<VNNI, A>(w, a, per_pair),
            (QType::Q3K, _) => tile_q3k::<VNNI, A>(w, a, per_pair),
            (QType::Q4K, PreK::Q4K(p)) => tile_q4k::<VNNI, A, true>(w, p, a, per_pair),
            (QType::Q4K, _) => tile_q4k::<VNNI, A, false>(w, &[], a, per_pair),
            (QType::Q5K, _) => tile_q5k::<VNNI, A>(w, a, per_pair),
            (QType::IQ4XS, _) => tile_iq4xs::<VNNI, A>(w, a, per_pair),
            (_, PreK::Q6K(p)) => tile_q6k::<VNNI, A, true>(w, p, a, per_pair),
            _ => tile_q6k::<VNNI, A, false>(w, &[], a, per_pair),
        }
    }
}

/// `tiles32` for the super-block types (tiles of 2 at most unless `o.wide`). With many rows (8
/// or more) Q4_K and Q6_K rows are unpacked once first.
#[inline(always)]
unsafe fn tilesk<const VNNI: bool>(
    t: super::QType,
    w: [&[u8]; 4],
    a: &[BlockQ8K],
    m: usize,
    o: OrderK,
    put: &mut dyn FnMut(usize, &[f32; 4]),
) {
    use super::QType;
    let pre = match t {
        QType::Q4K if m >= 8 => {
            let buf = unpacked::<UnpackedQ4K>(o.nb);
            unpack_q4k(w, buf);
            PreK::Q4K(buf)
        }
        QType::Q6K if m >= 8 => {
            let buf = unpacked::<UnpackedQ6K>(o.nb);
            unpack_q6k(w, buf);
            PreK::Q6K(buf)
        }
        _ => PreK::None,
    };
    let k = TilesK::<VNNI> { t, w, pre, a, o };
    run_tiles(&k, m, o.wide, put)
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

/// A group's 4 Q4_K rows unpacked, super-block by super-block (`UnpackedQ4K`).
#[inline(always)]
unsafe fn unpack_q4k(w: [&[u8]; 4], out: &mut [UnpackedQ4K]) {
    let low = _mm256_set1_epi8(0x0F);
    for (i, o) in out.iter_mut().enumerate() {
        for r in 0..4 {
            let wb = w[r].as_ptr().add(i * Q4_K_BYTES);
            o.d[r] = h2f(wb);
            o.dmin[r] = h2f(wb.add(2));
            let (sc, mn) = q4_k_scales(wb.add(4));
            for p in 0..4 {
                let raw = _mm256_loadu_si256(wb.add(16 + 32 * p) as *const __m256i);
                let q = o.q[r].as_mut_ptr();
                _mm256_store_si256(q.add(2 * p) as *mut __m256i, _mm256_and_si256(raw, low));
                _mm256_store_si256(
                    q.add(2 * p + 1) as *mut __m256i,
                    _mm256_and_si256(_mm256_srli_epi16(raw, 4), low),
                );
            }
            for j in 0..8 {
                o.sc[r][j] = [sc[j]; 16];
                // mins are 6-bit
                o.minsw[j / 2][2 * r + j % 2] = mn[j] as i16;
            }
        }
    }
}

/// Q4_K: 4 weight rows x A activation rows (rows of Q8_K blocks); `per_pair`: llama.cpp's gemm
/// order (a float accumulation per pair of sub-blocks) rather than its gemv order (one per
/// super-block). `PRE`: the rows taken from `pre` (`unpack_q4k`), not decoded here.
#[inline(always)]
unsafe fn tile_q4k<const VNNI: bool, const A: usize, const PRE: bool>(
    w: [&[u8]; 4],
    pre: &[UnpackedQ4K],
    a: [&[BlockQ8K]; A],
    per_pair: bool,
) -> [[f32; 4]; A] {
    let ahead = prefetch_ahead(w[0].len());
    let mut acc = [_mm_setzero_ps(); A]; // the 4 weight rows in the 4 lanes
    let mut accm = [_mm_setzero_ps(); A];
    let low = _mm256_set1_epi8(0x0F);
    for i in 0..a[0].len() {
        let mut wb = [std::ptr::null::<u8>(); 4];
        let mut sc = [[0i16; 8]; 4];
        let mut mins = [_mm_setzero_si128(); 8];
        let (dv, dminv);
        let b = if PRE {
            pre.get_unchecked(i) as *const UnpackedQ4K
        } else {
            std::ptr::null()
        };
        if PRE {
            dv = _mm_load_ps((*b).d.as_ptr());
            dminv = _mm_load_ps((*b).dmin.as_ptr());
        } else {
            prefetch_span(
                w[0].as_ptr().wrapping_add(ahead + 4 * i * Q4_K_BYTES),
                4 * Q4_K_BYTES,
            );
            let (mut d, mut dmin) = ([0f32; 4], [0f32; 4]);
            let mut mn = [[0i32; 8]; 4];
            for r in 0..4 {
                wb[r] = w[r].as_ptr().add(i * Q4_K_BYTES);
                d[r] = h2f(wb[r]);
                dmin[r] = h2f(wb[r].add(2));
                (sc[r], mn[r]) = q4_k_scales(wb[r].add(4));
            }
            (dv, dminv) = (_mm_loadu_ps(d.as_ptr()), _mm_loadu_ps(dmin.as_ptr()));
            for (j, m) in mins.iter_mut().enumerate() {
                *m = _mm_set_epi32(mn[3][j], mn[2][j], mn[1][j], mn[0][j]);
            }
        }
        for ai in 0..A {
            let ab = a[ai].get_unchecked(i);
            let q8 = ab.qs.as_ptr();
            let da = _mm_set1_ps(ab.d);
            let (scale, scale_min) = (_mm_mul_ps(dv, da), _mm_mul_ps(dminv, da));
            let mut isum = [_mm256_setzero_si256(); 4];
            let mut msum = _mm_setzero_si128();
            // the activation's 8 sums of 32 quants (each within i16: at most 32 x 128)
            let sub = if PRE {
                let bs = ab.bsums.as_ptr() as *const __m128i;
                _mm_hadd_epi16(_mm_loadu_si128(bs), _mm_loadu_si128(bs.add(1)))
            } else {
                _mm_setzero_si128()
            };
            for p in 0..4 {
                let y0 = _mm256_loadu_si256(q8.add(64 * p) as *const __m256i);
                let y1 = _mm256_loadu_si256(q8.add(64 * p + 32) as *const __m256i);
                for r in 0..4 {
                    let (lo, hi, s0, s1) = if PRE {
                        let q = (*b).q[r].as_ptr();
                        let s = (*b).sc[r].as_ptr();
                        (
                            _mm256_load_si256(q.add(2 * p) as *const __m256i),
                            _mm256_load_si256(q.add(2 * p + 1) as *const __m256i),
                            _mm256_load_si256(s.add(2 * p) as *const __m256i),
                            _mm256_load_si256(s.add(2 * p + 1) as *const __m256i),
                        )
                    } else {
                        let raw = _mm256_loadu_si256(wb[r].add(16 + 32 * p) as *const __m256i);
                        (
                            _mm256_and_si256(raw, low),
                            _mm256_and_si256(_mm256_srli_epi16(raw, 4), low),
                            _mm256_set1_epi16(sc[r][2 * p]),
                            _mm256_set1_epi16(sc[r][2 * p + 1]),
                        )
                    };
                    isum[r] = dot_i16::<VNNI>(isum[r], _mm256_maddubs_epi16(lo, y0), s0);
                    isum[r] = dot_i16::<VNNI>(isum[r], _mm256_maddubs_epi16(hi, y1), s1);
                }
                if PRE {
                    // sub-blocks 2p and 2p + 1's sums in every 32-bit lane
                    let pair = match p {
                        0 => _mm_shuffle_epi32::<0x00>(sub),
                        1 => _mm_shuffle_epi32::<0x55>(sub),
                        2 => _mm_shuffle_epi32::<0xAA>(sub),
                        _ => _mm_shuffle_epi32::<0xFF>(sub),
                    };
                    let mw = _mm_load_si128((*b).minsw[p].as_ptr() as *const __m128i);
                    msum = _mm_add_epi32(msum, _mm_madd_epi16(mw, pair));
                } else {
                    let b0 = ab.bsums[4 * p] as i32 + ab.bsums[4 * p + 1] as i32;
                    let b1 = ab.bsums[4 * p + 2] as i32 + ab.bsums[4 * p + 3] as i32;
                    msum = _mm_add_epi32(
                        msum,
                        _mm_add_epi32(
                            _mm_mullo_epi32(mins[2 * p], _mm_set1_epi32(b0)),
                            _mm_mullo_epi32(mins[2 * p + 1], _mm_set1_epi32(b1)),
                        ),
                    );
                }
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

/// One Q6_K super-block of a row (at `wb`) as `tile_q6k` feeds it: the 8 vectors of 32
/// unsigned quants (0..63), each vector's i16 scales (2v for its first 16 quants, 2v + 1 for the
/// rest), the 16 scales as i16, and d.
#[inline(always)]
unsafe fn unpack_q6k_block(wb: *const u8) -> ([__m256i; 8], [__m256i; 8], __m256i, f32) {
    let m15 = _mm256_set1_epi8(15);
    let m3 = _mm256_set1_epi8(3);
    let ones = 0x0101010101010101u64 as i64;
    let dw = h2f(wb.add(208));
    let scales = _mm_loadu_si128(wb.add(192) as *const __m128i);
    let sc16 = _mm256_cvtepi8_epi16(scales);
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
        let shuffle = _mm_set_epi64x(ones * (2 * v as i64 + 1), ones * (2 * v as i64));
        *sv = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuffle));
    }
    (q, s, sc16, dw)
}

/// A group's 4 Q6_K rows unpacked, super-block by super-block (`UnpackedQ6K`).
#[inline(always)]
unsafe fn unpack_q6k(w: [&[u8]; 4], out: &mut [UnpackedQ6K]) {
    for (i, o) in out.iter_mut().enumerate() {
        for r in 0..4 {
            let (q, s, sc16, dw) = unpack_q6k_block(w[r].as_ptr().add(i * Q6_K_BYTES));
            for v in 0..8 {
                _mm256_store_si256(o.q[r][v].as_mut_ptr() as *mut __m256i, q[v]);
                _mm256_store_si256(o.s[r][v].as_mut_ptr() as *mut __m256i, s[v]);
            }
            _mm256_store_si256(o.sc16[r].as_mut_ptr() as *mut __m256i, sc16);
            o.d[r] = dw;
        }
    }
}

/// Q6_K: 4 weight rows x A activation rows, in `ggml_vec_dot_q6_K_q8_K`'s lanes or (`tiled`)
/// llama.cpp's tiled order (one integer total per super-block). `PRE`: the rows taken from
/// `pre` (`unpack_q6k`), not decoded here.
#[inline(always)]
unsafe fn tile_q6k<const VNNI: bool, const A: usize, const PRE: bool>(
    w: [&[u8]; 4],
    pre: &[UnpackedQ6K],
    a: [&[BlockQ8K]; A],
    tiled: bool,
) -> [[f32; 4]; A] {
    let ahead = prefetch_ahead(w[0].len());
    let mut acc = [[_mm256_setzero_ps(); 4]; A];
    // tiled order: the 4 rows' accumulators in the lanes of one vector per activation row
    let mut acc4 = [_mm_setzero_ps(); A];
    let mut totals = [[_mm256_setzero_si256(); 4]; A];
    let mut dws = [0f32; 4];
    for i in 0..a[0].len() {
        if !PRE {
            prefetch_span(
                w[0].as_ptr().wrapping_add(ahead + 4 * i * Q6_K_BYTES),
                4 * Q6_K_BYTES,
            );
        }
        for r in 0..4 {
            let (q, s, sc16, dw) = if PRE {
                let b = pre.get_unchecked(i);
                let ld = |v: &[i16; 16]| _mm256_load_si256(v.as_ptr() as *const __m256i);
                (
                    std::array::from_fn(
                        |v| _mm256_load_si256(b.q[r][v].as_ptr() as *const __m256i),
                    ),
                    std::array::from_fn(|v| ld(&b.s[r][v])),
                    ld(&b.sc16[r]),
                    b.d[r],
                )
            } else {
                unpack_q6k_block(w[r].as_ptr().add(i * Q6_K_BYTES))
            };
            dws[r] = dw;
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
    ($tilesk:ident, $tiles:ident, $feat:literal, $vnni:literal) => {
        /// `tilesk` for a super-block type `t` (false: not one). SAFETY: the caller checked the
        /// CPU features of this path, and `a` holds m rows of as many blocks as the weight rows.
        #[target_feature(enable = $feat)]
        pub unsafe fn $tilesk(
            t: super::QType,
            w: [&[u8]; 4],
            a: &[BlockQ8K],
            m: usize,
            order: OrderK,
            put: &mut dyn FnMut(usize, &[f32; 4]),
        ) -> bool {
            if !t.super_blocks() {
                return false;
            }
            tilesk::<$vnni>(t, w, a, m, order, put);
            true
        }

        /// `tiles32` for type `t` (false: not a 32-block type). SAFETY: as above (`a`: m rows).
        #[target_feature(enable = $feat)]
        pub unsafe fn $tiles(
            t: super::QType,
            w: [&[u8]; 4],
            a: &Rows32,
            m: usize,
            blockwise: bool,
            put: &mut dyn FnMut(usize, &[f32; 4]),
        ) -> bool {
            use super::QType;
            match t {
                QType::Q4_0 => tiles32::<T_Q4_0, $vnni>(w, a, m, blockwise, put),
                QType::IQ4NL => tiles32::<T_IQ4NL, $vnni>(w, a, m, blockwise, put),
                QType::Q4_1 => tiles32::<T_Q4_1, $vnni>(w, a, m, false, put),
                QType::Q5_0 => tiles32::<T_Q5_0, $vnni>(w, a, m, false, put),
                QType::Q5_1 => tiles32::<T_Q5_1, $vnni>(w, a, m, false, put),
                QType::Q8_0 => tiles32::<T_Q8_0, $vnni>(w, a, m, false, put),
                _ => return false,
            }
            true
        }
    };
}

entry!(tilesk_avx2, tiles_avx2, "avx2,fma,f16c", false);

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
    tilesk_vnni,
    tiles_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    true
);
