//! Quantized matmul kernels for GGUF block types, bit-exact with ggml's CPU backend.
//!
//! y = x W^T with W in Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K or IQ4_XS
//! blocks
//! (or F16 / BF16 values)
//! and x quantized on the fly to 8 bits as ggml does (Q8_1 / Q8_0 blocks of 32 for the blocks of
//! 32, Q8_K blocks of 256 for the K-quants and IQ4_XS). Every float operation of the quantized
//! types follows the order of
//! ggml's AVX2 code:
//! - Q4_0 / IQ4_NL: llama.cpp repacks tensors of 8k rows (`ggml_gemv/gemm_*_8x8_q8_0`): per block
//!   the exact integer dot fused into one accumulator with d_w * d_a; other tensors take their
//!   dot products (Q4_0 as Q8_0 below; IQ4_NL with even and odd blocks in two lane sets);
//! - IQ4_XS, Q3_K and Q2_K: below 8 rows `ggml_vec_dot_iq4_xs_q8_K` / `_q3_K_` / `_q2_K_`
//!   (eight lanes of 4-value dots, scaled, fused with d_w * d_a; Q2_K's lanes of mins x block sums
//!   fused first), from 8 on the tiled matmul (as Q6_K's; Q2_K's as Q5_K's). llama.cpp built for
//!   AVX-512 repacks Q2_K instead, whose order this does not follow (within rounding of it);
//! - F16 / BF16: candlewick's own order (`dot_float_ref`), the activations kept in f32;
//! - Q4_1/Q5_0/Q5_1/Q8_0 (`ggml_vec_dot_*`): eight lanes, each the exact integer dot of four
//!   consecutive quants, accumulated with fused multiply-add, then `hsum_float_8` (+ the mins'
//!   sum for Q4_1/Q5_1);
//! - Q4_K (llama.cpp repacks it for AVX2 and runs `ggml_gemv/gemm_q4_K_8x8_q8_K`): per super-block
//!   one exact integer sum of scale x dot over the eight sub-blocks and one of min x block-sum,
//!   each fused into its own accumulator with d_w * d_a (resp. dmin_w * d_a), the second
//!   accumulator subtracted at the end;
//! - Q6_K: for fewer than 8 activation rows `ggml_vec_dot_q6_K_q8_K`: eight integer lanes per
//!   super-block (lane l: bytes 4l..4l+3 of each 32-quant vector, minus 32 x the scaled block sums
//!   of quants 32l..32l+31), fused into eight float lanes with d_w * d_a, then `hsum_float_8`;
//!   from 8 rows on llama.cpp's tiled K-quant matmul: per super-block the exact integer total,
//!   times d_w, fused into one accumulator with d_a;
//! - Q5_K: below 8 rows `ggml_vec_dot_q5_K_q8_K` (lanes as Q6_K, the mins through a fused float
//!   sum), from 8 on the tiled matmul (d_w * S1 - dmin_w * S2 fused, then fused with d_a).
//!
//! The scalar references below follow those orders too, so the SIMD paths (`quant_x86`: tiles of
//! 4 weight rows x 1-4 activation rows, AVX2 or AVX-512 VNNI) must equal them bit for bit
//! (tested), and rust/candlewick/tests/ggml_kernels.rs checks them against outputs of llama.cpp's
//! own kernels. Weights stay in the memory-mapped file: no copy, no repacking.

use half::f16;

use crate::io::types::{self, TensorType};

#[cfg(target_arch = "x86_64")]
#[path = "quant_x86.rs"]
mod quant_x86;

// Block layouts (sizes from the one table, io::types): Q4_1 d: f16, m: f16, qs: [u8; 16];
// Q8_0 d: f16, qs: [i8; 32]; Q5_0 d: f16, qh: u32 (bit 4 of each value), qs: [u8; 16] (low
// nibbles); Q5_1 d, m: f16, qh: u32, qs: [u8; 16]; Q4_K d, dmin: f16, scales: [u8; 12] (6-bit
// scale and min x 8), qs: [u8; 128]; Q5_K as Q4_K plus qh: [u8; 32] (fifth bits) before qs;
// Q6_K ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16.
pub const QK: usize = types::Q4_1.block_size;
pub const Q4_1_BYTES: usize = types::Q4_1.block_bytes;
pub const Q8_0_BYTES: usize = types::Q8_0.block_bytes;
pub const Q5_0_BYTES: usize = types::Q5_0.block_bytes;
pub const Q5_1_BYTES: usize = types::Q5_1.block_bytes;
/// Elements of a K-quant super-block.
pub const QK_K: usize = types::Q4_K.block_size;
pub const Q4_K_BYTES: usize = types::Q4_K.block_bytes;
pub const Q6_K_BYTES: usize = types::Q6_K.block_bytes;
pub const Q5_K_BYTES: usize = types::Q5_K.block_bytes;
pub const Q4_0_BYTES: usize = types::Q4_0.block_bytes;
pub const IQ4_NL_BYTES: usize = types::IQ4_NL.block_bytes;
pub const IQ4_XS_BYTES: usize = types::IQ4_XS.block_bytes;
pub const Q3_K_BYTES: usize = types::Q3_K.block_bytes;
pub const Q2_K_BYTES: usize = types::Q2_K.block_bytes;

/// The 16 values a 4-bit index of IQ4_NL / IQ4_XS stands for (ggml `kvalues_iq4nl`).
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Activations quantized to 8 bits, one block of 32: q = round(x / d), s = d * sum(q) (Q8_1 only).
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; QK],
}

impl Default for BlockQ8 {
    fn default() -> Self {
        Self {
            d: f16::ZERO,
            s: f16::ZERO,
            qs: [0; QK],
        }
    }
}

/// ggml `quantize_row_q8_1` (AVX2 path: id = 127/amax, round half to even).
pub fn quantize_row_q8(x: &[f32], out: &mut [BlockQ8]) {
    #[cfg(target_arch = "x86_64")]
    if level() != Level::Scalar {
        // SAFETY: avx2/fma/f16c were detected.
        return unsafe { quantize_row_q8_avx2(x, out) };
    }
    quantize_row_q8_impl(x, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_row_q8_avx2(x: &[f32], out: &mut [BlockQ8]) {
    quantize_row_q8_impl(x, out)
}

#[inline(always)]
fn quantize_row_q8_impl(x: &[f32], out: &mut [BlockQ8]) {
    debug_assert_eq!(x.len(), out.len() * QK);
    for (xb, yb) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            let r = (v * id).round_ties_even() as i32;
            *q = r as i8;
            sum += r;
        }
        yb.d = f16::from_f32(d);
        yb.s = f16::from_f32(d * sum as f32);
    }
}

/// Activations for the K-quants: 256 values, q = round(x / d) with d an f32 (not rounded to f16),
/// and the sums of each 16 quants.
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

impl Default for BlockQ8K {
    fn default() -> Self {
        Self {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        }
    }
}

/// ggml `quantize_row_q8_K_ref` (what x86 runs; the 4-row variant llama.cpp uses for prompts gives
/// the same quants): scale -127 / x_max where x_max is the first value of largest magnitude, with
/// its sign; quants rounded half to even and capped at 127.
pub fn quantize_row_q8k(x: &[f32], out: &mut [BlockQ8K]) {
    #[cfg(target_arch = "x86_64")]
    if level() != Level::Scalar {
        // SAFETY: avx2/fma/f16c were detected.
        return unsafe { quantize_row_q8k_avx2(x, out) };
    }
    quantize_row_q8k_impl(x, out)
}

/// The same code, compiled for AVX2 (rounding becomes one instruction; results are identical).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_row_q8k_avx2(x: &[f32], out: &mut [BlockQ8K]) {
    quantize_row_q8k_impl(x, out)
}

#[inline(always)]
fn quantize_row_q8k_impl(x: &[f32], out: &mut [BlockQ8K]) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    for (xb, yb) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *yb = BlockQ8K::default();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        for (s, q) in yb.bsums.iter_mut().zip(yb.qs.chunks_exact(16)) {
            *s = q.iter().map(|&v| v as i16).sum();
        }
        yb.d = 1.0 / iscale;
    }
}

#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// ggml `hsum_float_8`: ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)).
#[inline(always)]
fn hsum8(a: &[f32; 8]) -> f32 {
    let r = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// Reference `ggml_vec_dot_q4_1_q8_1` on one weight row (raw Q4_1 bytes).
pub fn vec_dot_q4_1_q8_1_ref(w: &[u8], a: &[BlockQ8]) -> f32 {
    dot_u_blocks(
        w.chunks_exact(Q4_1_BYTES)
            .map(|b| (f16_at(b, 0), f16_at(b, 2), q4_1_values(b))),
        a,
    )
}

/// The 32 nibbles of 16 bytes in ggml's order: element j in byte j's low half, j + 16 in its
/// high half.
fn nibbles(qs: &[u8]) -> [u8; 32] {
    std::array::from_fn(|e| {
        if e < 16 {
            qs[e] & 0x0F
        } else {
            qs[e - 16] >> 4
        }
    })
}

/// The 32 unsigned 4-bit values of a Q4_1 block.
fn q4_1_values(b: &[u8]) -> [u8; 32] {
    nibbles(&b[4..20])
}

/// The 32 signed values of a Q4_0 block: nibble - 8.
fn q4_0_values(b: &[u8]) -> [i8; 32] {
    nibbles(&b[2..18]).map(|v| v as i8 - 8)
}

/// The 32 values of an IQ4_NL block: each nibble looked up in `KVALUES_IQ4NL`.
fn iq4_nl_values(b: &[u8]) -> [i8; 32] {
    nibbles(&b[2..18]).map(|v| KVALUES_IQ4NL[v as usize])
}

/// The order ggml's AVX2 code sums a row of unsigned-valued blocks with a min (Q4_1, Q5_1)
/// against Q8_1 activations: per block 8 lanes of 4-element integer sums fused with d_w * d_a,
/// and the mins fused into one float sum with m_w * s_a; then the lanes summed, plus the mins.
fn dot_u_blocks(blocks: impl Iterator<Item = (f32, f32, [u8; 32])>, a: &[BlockQ8]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut summs = 0.0f32;
    for ((d, m, v), ab) in blocks.zip(a) {
        summs = m.mul_add(ab.s.to_f32(), summs);
        let d0d1 = d * ab.d.to_f32();
        for (l, lane) in acc.iter_mut().enumerate() {
            let s: i32 = (4 * l..4 * l + 4)
                .map(|e| v[e] as i32 * ab.qs[e] as i32)
                .sum();
            *lane = d0d1.mul_add(s as f32, *lane);
        }
    }
    hsum8(&acc) + summs
}

/// The order ggml's AVX2 code sums a row of int8-valued blocks against Q8 activations: per block,
/// 8 lanes of 4-element integer sums fused into per-lane accumulators with d_w * d_a, then the
/// lanes summed. `blocks` gives each weight block's scale and 32 values.
fn dot_i8_blocks(blocks: impl Iterator<Item = (f32, [i8; 32])>, a: &[BlockQ8]) -> f32 {
    let mut acc = [0.0f32; 8];
    for ((dw, v), ab) in blocks.zip(a) {
        let d = dw * ab.d.to_f32();
        for (l, lane) in acc.iter_mut().enumerate() {
            let s: i32 = (4 * l..4 * l + 4)
                .map(|e| v[e] as i32 * ab.qs[e] as i32)
                .sum();
            *lane = d.mul_add(s as f32, *lane);
        }
    }
    hsum8(&acc)
}

/// Reference `ggml_vec_dot_q8_0_q8_0` on one weight row (raw Q8_0 bytes).
pub fn vec_dot_q8_0_q8_0_ref(w: &[u8], a: &[BlockQ8]) -> f32 {
    dot_i8_blocks(
        w.chunks_exact(Q8_0_BYTES)
            .map(|b| (f16_at(b, 0), std::array::from_fn(|e| b[2 + e] as i8))),
        a,
    )
}

/// The 32 signed 5-bit values of a Q5_0 block: low nibble from qs (element j in byte j's low
/// half, j + 16 in its high half), fifth bit from qh bit j, minus 16.
fn q5_0_values(b: &[u8]) -> [i8; 32] {
    five_bit_values(&b[2..6], &b[6..22]).map(|v| v as i8 - 16)
}

/// 32 five-bit values: a nibble of `qs` (element j in byte j's low half, j + 16 in its high
/// half) and bit j of the little-endian `qh` word as the fifth bit.
fn five_bit_values(qh: &[u8], qs: &[u8]) -> [u8; 32] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let nib = nibbles(qs);
    std::array::from_fn(|e| nib[e] | ((((qh >> e) & 1) as u8) << 4))
}

/// Reference `ggml_vec_dot_q5_1_q8_1` on one weight row (raw Q5_1 bytes): as Q4_1 with the fifth
/// bit from qh (values 0..31).
pub fn vec_dot_q5_1_q8_1_ref(w: &[u8], a: &[BlockQ8]) -> f32 {
    dot_u_blocks(
        w.chunks_exact(Q5_1_BYTES)
            .map(|b| (f16_at(b, 0), f16_at(b, 2), q5_1_values(b))),
        a,
    )
}

/// The 32 unsigned 5-bit values of a Q5_1 block (nibbles as Q5_0, fifth bit from qh).
fn q5_1_values(b: &[u8]) -> [u8; 32] {
    five_bit_values(&b[4..8], &b[8..24])
}

/// Reference `ggml_vec_dot_q5_0_q8_0` on one weight row (raw Q5_0 bytes).
pub fn vec_dot_q5_0_q8_0_ref(w: &[u8], a: &[BlockQ8]) -> f32 {
    dot_i8_blocks(
        w.chunks_exact(Q5_0_BYTES)
            .map(|b| (f16_at(b, 0), q5_0_values(b))),
        a,
    )
}

/// Reference `ggml_vec_dot_q4_0_q8_0` on one weight row (raw Q4_0 blocks): what llama.cpp runs
/// for a tensor whose row count is not a multiple of 8 (the others it repacks).
pub fn vec_dot_q4_0_q8_0_ref(w: &[u8], a: &[BlockQ8]) -> f32 {
    dot_i8_blocks(
        w.chunks_exact(Q4_0_BYTES)
            .map(|b| (f16_at(b, 0), q4_0_values(b))),
        a,
    )
}

/// The order of llama.cpp's repacked kernels for blocks of 32 with one scale
/// (`ggml_gemv/gemm_q4_0_8x8_q8_0` and the IQ4_NL ones, used on AVX2 for tensors of 8k rows):
/// per block the exact integer dot, fused into one accumulator with d_w * d_a.
fn blockwise_dot_i8(blocks: impl Iterator<Item = (f32, [i8; 32])>, a: &[BlockQ8]) -> f32 {
    let mut acc = 0f32;
    for ((dw, v), ab) in blocks.zip(a) {
        let s: i32 = v
            .iter()
            .zip(&ab.qs)
            .map(|(&w, &x)| w as i32 * x as i32)
            .sum();
        acc = (s as f32).mul_add(dw * ab.d.to_f32(), acc);
    }
    acc
}

/// Reference of llama.cpp's repacked Q4_0 kernels on one weight row.
pub fn repacked_dot_q4_0_q8_0_ref(w: &[u8], a: &[BlockQ8]) -> f32 {
    blockwise_dot_i8(
        w.chunks_exact(Q4_0_BYTES)
            .map(|b| (f16_at(b, 0), q4_0_values(b))),
        a,
    )
}

/// Reference of llama.cpp's repacked IQ4_NL kernels on one weight row.
pub fn repacked_dot_iq4_nl_q8_0_ref(w: &[u8], a: &[BlockQ8]) -> f32 {
    blockwise_dot_i8(
        w.chunks_exact(IQ4_NL_BYTES)
            .map(|b| (f16_at(b, 0), iq4_nl_values(b))),
        a,
    )
}

/// Reference `ggml_vec_dot_iq4_nl_q8_0` (AVX2) on one weight row: lanes as Q8_0, but even and
/// odd blocks in two accumulators, added before the horizontal sum; an odd last block is added
/// after it as one fused product.
pub fn vec_dot_iq4_nl_q8_0_ref(w: &[u8], a: &[BlockQ8]) -> f32 {
    let blocks: Vec<_> = w
        .chunks_exact(IQ4_NL_BYTES)
        .map(|b| (f16_at(b, 0), iq4_nl_values(b)))
        .collect();
    let mut acc = [[0.0f32; 8]; 2];
    let pairs = blocks.len() / 2 * 2;
    for (i, ((dw, v), ab)) in blocks[..pairs].iter().zip(a).enumerate() {
        let d = ab.d.to_f32() * dw;
        for (l, lane) in acc[i % 2].iter_mut().enumerate() {
            let s: i32 = (4 * l..4 * l + 4)
                .map(|e| v[e] as i32 * ab.qs[e] as i32)
                .sum();
            *lane = d.mul_add(s as f32, *lane);
        }
    }
    let mut sum = hsum8(&std::array::from_fn(|l| acc[0][l] + acc[1][l]));
    if let (Some((dw, v)), Some(ab)) = (blocks.get(pairs), a.get(pairs)) {
        let s: i32 = v
            .iter()
            .zip(&ab.qs)
            .map(|(&w, &x)| w as i32 * x as i32)
            .sum();
        sum = (ab.d.to_f32() * dw).mul_add(s as f32, sum);
    }
    sum
}

/// The 6-bit scale of sub-block `ib` (0..8) of an IQ4_XS block, minus 32.
#[inline(always)]
fn iq4_xs_scale(b: &[u8], ib: usize) -> i32 {
    let sh = u16::from_le_bytes([b[2], b[3]]) as i32;
    let sl = b[4 + ib / 2] as i32;
    (((sl >> (4 * (ib % 2))) & 0x0F) | (((sh >> (2 * ib)) & 3) << 4)) - 32
}

/// Reference `ggml_vec_dot_iq4_xs_q8_K` (AVX2) on one weight row (raw IQ4_XS blocks: d: f16,
/// scales_h: u16, scales_l: [u8; 4], qs: [u8; 128], sub-blocks of 32 as IQ4_NL's nibbles):
/// per super-block eight integer lanes (lane l: the scaled dots of quants 4l..4l+3 of each
/// sub-block), fused into eight float lanes with d_w * d_a, then `hsum_float_8`.
pub fn vec_dot_iq4_xs_q8_k_ref(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (b, ab) in w.chunks_exact(IQ4_XS_BYTES).zip(a) {
        let lanes = iq4_xs_lanes(b, ab);
        let d = f16_at(b, 0) * ab.d;
        for (lane, &s) in acc.iter_mut().zip(&lanes) {
            *lane = d.mul_add(s as f32, *lane);
        }
    }
    hsum8(&acc)
}

/// The eight integer lanes of one IQ4_XS super-block against its Q8_K block.
fn iq4_xs_lanes(b: &[u8], ab: &BlockQ8K) -> [i32; 8] {
    let mut lanes = [0i32; 8];
    for ib in 0..QK_K / 32 {
        let ls = iq4_xs_scale(b, ib);
        let v = nibbles(&b[8 + 16 * ib..24 + 16 * ib]).map(|n| KVALUES_IQ4NL[n as usize]);
        let q = &ab.qs[32 * ib..32 * ib + 32];
        for (l, lane) in lanes.iter_mut().enumerate() {
            let s: i32 = (4 * l..4 * l + 4).map(|e| v[e] as i32 * q[e] as i32).sum();
            *lane += ls * s;
        }
    }
    lanes
}

/// Reference of llama.cpp's tiled matmul for IQ4_XS (8 activation rows or more): per
/// super-block the exact integer total, times d_w, fused into one accumulator with d_a.
pub fn tiled_dot_iq4_xs_q8_k_ref(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = 0f32;
    for (b, ab) in w.chunks_exact(IQ4_XS_BYTES).zip(a) {
        let total: i32 = iq4_xs_lanes(b, ab).iter().sum();
        acc = (f16_at(b, 0) * total as f32).mul_add(ab.d, acc);
    }
    acc
}

/// The 16 scales of a Q3_K block (6 bits, minus 32): scale g from the low or high nibble of
/// byte g % 8 of `scales` and two bits of byte 8 + g % 4.
pub(super) fn q3_k_scales(b: &[u8]) -> [i32; 16] {
    let sc = &b[96..108];
    std::array::from_fn(|g| {
        let a = g % 4;
        let low = match g / 4 {
            0 => sc[a] & 0x0F,
            1 => sc[4 + a] & 0x0F,
            2 => sc[a] >> 4,
            _ => sc[4 + a] >> 4,
        };
        (low | (((sc[8 + a] >> (2 * (g / 4))) & 3) << 4)) as i32 - 32
    })
}

/// Value e (0..256) of a Q3_K block (layout hmask: [u8; 32], qs: [u8; 64], scales: [u8; 12],
/// d: f16): two bits of qs, less 4 where its bit of hmask is clear (-4..3).
#[inline(always)]
fn q3_k_value(b: &[u8], e: usize) -> i32 {
    let (j, s, i) = (e / 128, e % 128 / 32, e % 32);
    let low = (b[32 + 32 * j + i] >> (2 * s)) & 3;
    let high = (b[i] >> (4 * j + s)) & 1;
    low as i32 - if high == 1 { 0 } else { 4 }
}

/// The eight integer lanes of one Q3_K super-block against its Q8_K block, as
/// `ggml_vec_dot_q3_K_q8_K`'s AVX2 code sums them (lane l: values 4l..4l+3 of each 32, scaled).
fn q3_k_lanes(b: &[u8], ab: &BlockQ8K) -> [i32; 8] {
    let sc = q3_k_scales(b);
    let mut lanes = [0i32; 8];
    for e in 0..QK_K {
        lanes[e % 32 / 4] += sc[e / 16] * q3_k_value(b, e) * ab.qs[e] as i32;
    }
    lanes
}

/// Reference `ggml_vec_dot_q3_K_q8_K` (AVX2) on one weight row: per super-block the eight lanes
/// fused into eight float lanes with d_a * d_w, then `hsum_float_8`.
pub fn vec_dot_q3_k_q8_k_ref(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (b, ab) in w.chunks_exact(Q3_K_BYTES).zip(a) {
        let d = ab.d * f16_at(b, 108);
        for (lane, &s) in acc.iter_mut().zip(&q3_k_lanes(b, ab)) {
            *lane = d.mul_add(s as f32, *lane);
        }
    }
    hsum8(&acc)
}

/// Reference of llama.cpp's tiled matmul for Q3_K (8 activation rows or more), as Q6_K's.
pub fn tiled_dot_q3_k_q8_k_ref(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = 0f32;
    for (b, ab) in w.chunks_exact(Q3_K_BYTES).zip(a) {
        let total: i32 = q3_k_lanes(b, ab).iter().sum();
        acc = (f16_at(b, 108) * total as f32).mul_add(ab.d, acc);
    }
    acc
}

/// Value e (0..256) of a Q2_K block (layout scales: [u8; 16] (scale | min << 4 for each 16
/// values), qs: [u8; 64], d, dmin: f16): two bits of qs (0..3).
#[inline(always)]
fn q2_k_value(b: &[u8], e: usize) -> i32 {
    let (j, s, i) = (e / 128, e % 128 / 32, e % 32);
    ((b[16 + 32 * j + i] >> (2 * s)) & 3) as i32
}

/// One Q2_K super-block against its Q8_K block, as `ggml_vec_dot_q2_K_q8_K`'s AVX2 code sums it:
/// eight lanes of scaled dots (lane l: values 4l..4l+3 of each 32) and eight lanes of mins x
/// block sums (lane l: groups 2l and 2l + 1).
fn q2_k_lanes(b: &[u8], ab: &BlockQ8K) -> ([i32; 8], [i32; 8]) {
    let mut lanes = [0i32; 8];
    for e in 0..QK_K {
        lanes[e % 32 / 4] += (b[e / 16] & 0x0F) as i32 * q2_k_value(b, e) * ab.qs[e] as i32;
    }
    let mins = std::array::from_fn(|l| {
        (b[2 * l] >> 4) as i32 * ab.bsums[2 * l] as i32
            + (b[2 * l + 1] >> 4) as i32 * ab.bsums[2 * l + 1] as i32
    });
    (lanes, mins)
}

/// Reference `ggml_vec_dot_q2_K_q8_K` (AVX2) on one weight row: per super-block the min lanes
/// fused with -d_a * dmin_w, then the scaled lanes with d_a * d_w, into eight float lanes;
/// then `hsum_float_8`.
pub fn vec_dot_q2_k_q8_k_ref(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (b, ab) in w.chunks_exact(Q2_K_BYTES).zip(a) {
        let (d, dmin) = (ab.d * f16_at(b, 80), -ab.d * f16_at(b, 82));
        let (lanes, mins) = q2_k_lanes(b, ab);
        for l in 0..8 {
            acc[l] = dmin.mul_add(mins[l] as f32, acc[l]);
            acc[l] = d.mul_add(lanes[l] as f32, acc[l]);
        }
    }
    hsum8(&acc)
}

/// Reference of llama.cpp's tiled matmul for Q2_K (8 activation rows or more; llama.cpp takes it
/// where it does not repack Q2_K, i.e. without AVX-512): as Q5_K's.
pub fn tiled_dot_q2_k_q8_k_ref(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = 0f32;
    for (b, ab) in w.chunks_exact(Q2_K_BYTES).zip(a) {
        let (lanes, mins) = q2_k_lanes(b, ab);
        let (s1, s2): (i32, i32) = (lanes.iter().sum(), mins.iter().sum());
        let res = (-f16_at(b, 82)).mul_add(s2 as f32, f16_at(b, 80) * s1 as f32);
        acc = res.mul_add(ab.d, acc);
    }
    acc
}

/// The 6-bit scale and min of sub-block j (0..8) of a Q4_K block (ggml `get_scale_min_k4`).
#[inline(always)]
fn q4_k_scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Reference of llama.cpp's Q4_K x Q8_K product on one weight row (raw Q4_K bytes). llama.cpp
/// repacks Q4_K for AVX2 and runs a matmul's rows in groups of four through
/// `ggml_gemm_q4_K_8x8_q8_K`, which fuses a float accumulation per pair of sub-blocks
/// (`per_pair`), and the last m % 4 rows through `ggml_gemv_q4_K_8x8_q8_K`, which fuses one per
/// super-block.
pub fn vec_dot_q4_k_q8_k_ref(w: &[u8], a: &[BlockQ8K], per_pair: bool) -> f32 {
    let (mut acc, mut accm) = (0f32, 0f32);
    for (wb, ab) in w.chunks_exact(Q4_K_BYTES).zip(a) {
        let (d, dmin) = (f16_at(wb, 0), f16_at(wb, 2));
        let (scales, qs) = (&wb[4..16], &wb[16..Q4_K_BYTES]);
        let (mut isum, mut msum) = (0i32, 0i32);
        for j in 0..8 {
            let (sc, m) = q4_k_scale_min(j, scales);
            let dot: i32 = (0..32)
                .map(|e| {
                    let byte = qs[32 * (j / 2) + e];
                    let q = if j % 2 == 0 { byte & 0x0F } else { byte >> 4 };
                    q as i32 * ab.qs[32 * j + e] as i32
                })
                .sum();
            isum += sc as i32 * dot;
            msum += m as i32 * (ab.bsums[2 * j] as i32 + ab.bsums[2 * j + 1] as i32);
            if (per_pair && j % 2 == 1) || j == 7 {
                acc = (isum as f32).mul_add(d * ab.d, acc);
                accm = (msum as f32).mul_add(dmin * ab.d, accm);
                (isum, msum) = (0, 0);
            }
        }
    }
    acc - accm
}

/// The 5-bit quant (0..32) of element e (0..256) of a Q5_K block: a nibble of qs (low for the
/// first 32 of each 64, high for the second) and bit 2j (resp. 2j + 1) of qh for 64-chunk j.
#[inline(always)]
fn q5_k_quant(b: &[u8], e: usize) -> u8 {
    let (j, l, hi) = (e / 64, e % 32, (e % 64) >= 32);
    let byte = b[48 + 32 * j + l];
    let low = if hi { byte >> 4 } else { byte & 0x0F };
    low | (((b[16 + l] >> (2 * j + hi as usize)) & 1) << 4)
}

/// Reference `ggml_vec_dot_q5_K_q8_K` (AVX2 order; llama.cpp below 8 rows) on one weight row:
/// eight integer lanes of scale x quant x activation fused into eight float lanes with
/// d_a * d_w; the mins through one float sum fused with -d_a * dmin_w; hsum_float_8 + mins.
pub fn vec_dot_q5_k_q8_k_ref(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let (mut acc, mut summs) = ([0f32; 8], 0f32);
    for (wb, ab) in w.chunks_exact(Q5_K_BYTES).zip(a) {
        let d = ab.d * f16_at(wb, 0);
        let dmin = -ab.d * f16_at(wb, 2);
        let msum: i32 = (0..8)
            .map(|j| {
                q4_k_scale_min(j, &wb[4..16]).1 as i32
                    * (ab.bsums[2 * j] as i32 + ab.bsums[2 * j + 1] as i32)
            })
            .sum();
        summs = dmin.mul_add(msum as f32, summs);
        let mut lanes = [0i32; 8];
        for e in 0..QK_K {
            let sc = q4_k_scale_min(e / 32, &wb[4..16]).0 as i32;
            lanes[(e % 32) / 4] += sc * q5_k_quant(wb, e) as i32 * ab.qs[e] as i32;
        }
        for (l, lane) in lanes.iter().enumerate() {
            acc[l] = d.mul_add(*lane as f32, acc[l]);
        }
    }
    hsum8(&acc) + summs
}

/// Reference of llama.cpp's tiled Q5_K matmul (from 8 activation rows on): per super-block
/// res = d_w * S1 - dmin_w * S2 (fused), acc += res * d_a (fused), S1 = sum of scale x dot over
/// the sub-blocks, S2 = sum of min x block sum.
pub fn tiled_dot_q5_k_q8_k_ref(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = 0f32;
    for (wb, ab) in w.chunks_exact(Q5_K_BYTES).zip(a) {
        let (mut s1, mut s2) = (0i32, 0i32);
        for j in 0..8 {
            let (sc, m) = q4_k_scale_min(j, &wb[4..16]);
            let dot: i32 = (32 * j..32 * j + 32)
                .map(|e| q5_k_quant(wb, e) as i32 * ab.qs[e] as i32)
                .sum();
            s1 += sc as i32 * dot;
            s2 += m as i32 * (ab.bsums[2 * j] as i32 + ab.bsums[2 * j + 1] as i32);
        }
        let res = (-f16_at(wb, 2)).mul_add(s2 as f32, f16_at(wb, 0) * s1 as f32);
        acc = res.mul_add(ab.d, acc);
    }
    acc
}

/// The unsigned 6-bit quant (0..64, 32 meaning zero) of element e (0..256) of a Q6_K block.
#[inline(always)]
fn q6_k_quant(b: &[u8], e: usize) -> u8 {
    let (j, c, l) = (e / 128, (e % 128) / 32, e % 32);
    let (ql, qh) = (&b[64 * j..64 * j + 64], b[128 + 32 * j + l]);
    let low = if c % 2 == 0 { ql[l] } else { ql[32 + l] };
    let low = if c < 2 { low & 0x0F } else { low >> 4 };
    low | (((qh >> (2 * c)) & 3) << 4)
}

/// Reference of llama.cpp's tiled Q6_K matmul (`ggml_compute_forward_mul_mat_tiled`, used from 8
/// activation rows on) on one weight row: per super-block res = d_w * total, acc += res * d_a fused.
pub fn tiled_dot_q6_k_q8_k_ref(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = 0f32;
    for (wb, ab) in w.chunks_exact(Q6_K_BYTES).zip(a) {
        let total: i32 = (0..QK_K)
            .map(|e| {
                (wb[192 + e / 16] as i8 as i32) * (q6_k_quant(wb, e) as i32 - 32) * ab.qs[e] as i32
            })
            .sum();
        let res = f16_at(wb, 208) * total as f32;
        acc = res.mul_add(ab.d, acc);
    }
    acc
}

/// Reference `ggml_vec_dot_q6_K_q8_K` (AVX2 order) on one weight row (raw Q6_K bytes).
pub fn vec_dot_q6_k_q8_k_ref(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = [0f32; 8];
    for (wb, ab) in w.chunks_exact(Q6_K_BYTES).zip(a) {
        let d = ab.d * f16_at(wb, 208);
        let sc = |g: usize| wb[192 + g] as i8 as i32;
        let mut lanes = [0i32; 8];
        for e in 0..QK_K {
            lanes[(e % 32) / 4] += sc(e / 16) * q6_k_quant(wb, e) as i32 * ab.qs[e] as i32;
        }
        for (l, lane) in lanes.iter_mut().enumerate() {
            *lane -= 32
                * (ab.bsums[2 * l] as i32 * sc(2 * l) + ab.bsums[2 * l + 1] as i32 * sc(2 * l + 1));
            acc[l] = d.mul_add(*lane as f32, acc[l]);
        }
    }
    hsum8(&acc)
}

/// The SIMD level of the quantized kernels on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX2 + AVX-512 VNNI on 256-bit vectors (with AVX-512VL's 32 registers).
    #[cfg(target_arch = "x86_64")]
    Vnni,
}

fn level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
        return *LEVEL.get_or_init(|| {
            use std::arch::is_x86_feature_detected as has;
            if std::env::var_os("CANDLEWICK_NO_VNNI").is_none()
                && has!("avx2")
                && has!("fma")
                && has!("f16c")
                && has!("avx512f")
                && has!("avx512bw")
                && has!("avx512vl")
                && has!("avx512vnni")
            {
                Level::Vnni
            } else if has!("avx2") && has!("fma") && has!("f16c") {
                Level::Avx2
            } else {
                Level::Scalar
            }
        });
    }
    #[allow(unreachable_code)]
    Level::Scalar
}

/// Which implementation the dot products use on this CPU (every path gives the same bits).
pub fn simd_path() -> &'static str {
    match level() {
        Level::Scalar => "scalar",
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => "avx2+fma",
        #[cfg(target_arch = "x86_64")]
        Level::Vnni => "avx512-vnni (256-bit)",
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QType {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    IQ4NL,
    IQ4XS,
    /// Float weights, read from the map as they are (the activations stay f32).
    F16,
    BF16,
}

impl QType {
    /// The weight types these kernels run (the others go to candle's kernels).
    pub fn of(t: &TensorType) -> Option<QType> {
        Some(match t.name {
            "Q4_0" => QType::Q4_0,
            "Q4_1" => QType::Q4_1,
            "Q5_0" => QType::Q5_0,
            "Q5_1" => QType::Q5_1,
            "Q8_0" => QType::Q8_0,
            "Q2_K" => QType::Q2K,
            "Q3_K" => QType::Q3K,
            "Q4_K" => QType::Q4K,
            "Q5_K" => QType::Q5K,
            "Q6_K" => QType::Q6K,
            "IQ4_NL" => QType::IQ4NL,
            "IQ4_XS" => QType::IQ4XS,
            "F16" => QType::F16,
            "BF16" => QType::BF16,
            _ => return None,
        })
    }

    /// This type's row of the tensor-type table.
    pub fn tensor_type(self) -> &'static TensorType {
        match self {
            QType::Q4_0 => &types::Q4_0,
            QType::Q4_1 => &types::Q4_1,
            QType::Q5_0 => &types::Q5_0,
            QType::Q5_1 => &types::Q5_1,
            QType::Q8_0 => &types::Q8_0,
            QType::Q2K => &types::Q2_K,
            QType::Q3K => &types::Q3_K,
            QType::Q4K => &types::Q4_K,
            QType::Q5K => &types::Q5_K,
            QType::Q6K => &types::Q6_K,
            QType::IQ4NL => &types::IQ4_NL,
            QType::IQ4XS => &types::IQ4_XS,
            QType::F16 => &types::F16,
            QType::BF16 => &types::BF16,
        }
    }

    pub fn block_bytes(self) -> usize {
        self.tensor_type().block_bytes
    }

    /// Values per block.
    pub fn block_elems(self) -> usize {
        self.tensor_type().block_size
    }

    /// Bytes of a row of `k` values (`k` a multiple of `block_elems`).
    pub fn row_bytes(self, k: usize) -> usize {
        k / self.block_elems() * self.block_bytes()
    }

    /// Weights of 16-bit floats: products with the f32 activations themselves.
    fn float(self) -> bool {
        matches!(self, QType::F16 | QType::BF16)
    }

    /// Activations go to Q8_K blocks of 256 (else Q8_0/Q8_1 blocks of 32).
    fn super_blocks(self) -> bool {
        matches!(
            self,
            QType::Q2K | QType::Q3K | QType::Q4K | QType::Q5K | QType::Q6K | QType::IQ4XS
        )
    }

    /// llama.cpp repacks this type's tensors of `n` rows on AVX2 (Q4_0 and IQ4_NL, in groups of
    /// 8 rows), which sums in another order than its plain dot product.
    fn repacked(self, n: usize) -> bool {
        matches!(self, QType::Q4_0 | QType::IQ4NL) && n.is_multiple_of(8)
    }
}

/// One activation matrix quantized the way its weight type's ggml dot product expects.
enum Activations {
    /// For float weights: the f32 rows of `k` values as given.
    F32 { x: Vec<f32>, k: usize },
    /// Q8_1 / Q8_0 blocks, with each block's d and s in f32 and its sums of each 4 quants.
    Q8 {
        blocks: Vec<BlockQ8>,
        d: Vec<f32>,
        s: Vec<f32>,
        ls: Vec<[i32; 8]>,
        nb: usize,
        /// Q4_0 / IQ4_NL in llama.cpp's repacked order (`QType::repacked`)
        repacked: bool,
    },
    /// Q8_K blocks; rows below `grouped` take llama.cpp's four-row (gemm) order for Q4_K;
    /// `tiled`: 8 rows or more, where llama.cpp runs Q6_K through its tiled matmul.
    Q8K {
        blocks: Vec<BlockQ8K>,
        nb: usize,
        grouped: usize,
        tiled: bool,
    },
}

impl Activations {
    fn quantize(t: QType, x: &[f32], k: usize, n: usize) -> Self {
        let nb = k / t.block_elems();
        match t {
            _ if t.float() => Activations::F32 { x: x.to_vec(), k },
            _ if t.super_blocks() => {
                let mut blocks = vec![BlockQ8K::default(); x.len() / QK_K];
                for (xr, qr) in x.chunks_exact(k).zip(blocks.chunks_exact_mut(nb)) {
                    quantize_row_q8k(xr, qr);
                }
                let m = x.len() / k;
                Activations::Q8K {
                    blocks,
                    nb,
                    grouped: m - m % 4,
                    tiled: m >= 8,
                }
            }
            _ => {
                let mut blocks = vec![BlockQ8::default(); x.len() / QK];
                for (xr, qr) in x.chunks_exact(k).zip(blocks.chunks_exact_mut(nb)) {
                    quantize_row_q8(xr, qr);
                }
                let d = blocks.iter().map(|b| b.d.to_f32()).collect();
                let s = blocks.iter().map(|b| b.s.to_f32()).collect();
                let ls = blocks
                    .iter()
                    .map(|b| {
                        std::array::from_fn(|l| {
                            b.qs[4 * l..4 * l + 4].iter().map(|&q| q as i32).sum()
                        })
                    })
                    .collect();
                Activations::Q8 {
                    blocks,
                    d,
                    s,
                    ls,
                    nb,
                    repacked: t.repacked(n),
                }
            }
        }
    }

    /// Every activation row (0..m) against a group's 4 weight rows in one call of the SIMD code,
    /// each row's results handed to `put`: false where this machine has no such path for the
    /// type (then `RefTiles` runs the references, or the float tiles).
    fn simd_tiles(
        &self,
        t: QType,
        w: [&[u8]; 4],
        m: usize,
        wide: bool,
        put: &mut dyn FnMut(usize, &[f32; 4]),
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if level() != Level::Scalar {
            let vnni = level() == Level::Vnni;
            match self {
                // IQ4_NL's plain dot product (tensors of rows not a multiple of 8) has no SIMD
                // path here: its reference runs
                Activations::Q8 {
                    blocks,
                    d,
                    s,
                    ls,
                    nb,
                    repacked,
                } if t != QType::IQ4NL || *repacked => {
                    let rows = quant_x86::Rows32 {
                        qs: blocks,
                        d,
                        s,
                        ls,
                        nb: *nb,
                    };
                    // SAFETY: the level's features were detected; `matmul` checked the shapes
                    // (m rows of nb blocks, weight rows of nb blocks).
                    return unsafe {
                        if vnni {
                            quant_x86::tiles_vnni(t, w, &rows, m, *repacked, put)
                        } else {
                            quant_x86::tiles_avx2(t, w, &rows, m, *repacked, put)
                        }
                    };
                }
                Activations::Q8K {
                    blocks,
                    nb,
                    grouped,
                    tiled,
                } => {
                    let order = quant_x86::OrderK {
                        nb: *nb,
                        grouped: *grouped,
                        tiled: *tiled,
                        wide,
                    };
                    // SAFETY: as above.
                    return unsafe {
                        if vnni {
                            quant_x86::tilesk_vnni(t, w, blocks, m, order, put)
                        } else {
                            quant_x86::tilesk_avx2(t, w, blocks, m, order, put)
                        }
                    };
                }
                _ => {}
            }
        }
        let _ = (t, w, m, wide, put);
        false
    }

    /// 4 weight rows of type `t` against activation rows i0..i0 + A (`A` rows from i0 exist; for
    /// Q4_K they lie all below or all at or above `grouped`): the float SIMD tile, or the scalar
    /// references where `simd_tiles` has no path.
    fn tile<const A: usize>(&self, t: QType, w: [&[u8]; 4], i0: usize) -> [[f32; 4]; A] {
        match self {
            Activations::F32 { x, k } => {
                let acts: [&[f32]; A] = std::array::from_fn(|a| &x[(i0 + a) * k..(i0 + a + 1) * k]);
                #[cfg(target_arch = "x86_64")]
                if level() != Level::Scalar {
                    // SAFETY: the level's features were detected; `matmul` checked the shapes.
                    return unsafe {
                        if level() == Level::Vnni {
                            quant_x86::tile_float_vnni(t == QType::BF16, w, acts)
                        } else {
                            quant_x86::tile_float_avx2(t == QType::BF16, w, acts)
                        }
                    };
                }
                acts.map(|xr| w.map(|wr| dot_float_ref(t == QType::BF16, wr, xr)))
            }
            Activations::Q8 {
                blocks,
                nb,
                repacked,
                ..
            } => std::array::from_fn(|a| {
                let act = &blocks[(i0 + a) * nb..(i0 + a + 1) * nb];
                w.map(|wr| dot32_ref(t, wr, act, *repacked))
            }),
            Activations::Q8K {
                blocks,
                nb,
                grouped,
                tiled,
            } => {
                // Q4_K: per pair of sub-blocks (gemm) or not; Q6_K: tiled order or not
                let per_pair = if t == QType::Q4K {
                    i0 < *grouped
                } else {
                    *tiled
                };
                let acts: [&[BlockQ8K]; A] =
                    std::array::from_fn(|a| &blocks[(i0 + a) * nb..(i0 + a + 1) * nb]);
                acts.map(|act| w.map(|wr| dot256_ref(t, wr, act, per_pair, *tiled)))
            }
        }
    }
}

/// One f16 (or, `bf16`, bfloat16) value of a row's bytes as f32.
#[inline(always)]
fn half_at(bf16: bool, b: &[u8], i: usize) -> f32 {
    let bits = u16::from_le_bytes([b[2 * i], b[2 * i + 1]]);
    if bf16 {
        f32::from_bits((bits as u32) << 16)
    } else {
        f16::from_bits(bits).to_f32()
    }
}

/// Reference of the F16 / BF16 product (candlewick's own order; llama.cpp rounds the
/// activations to the weights' type first, which this does not): eight lanes, lane l fusing
/// the products of values 8i + l, then `hsum_float_8`, then the last k % 8 products fused in
/// order.
pub fn dot_float_ref(bf16: bool, w: &[u8], x: &[f32]) -> f32 {
    let k8 = x.len() / 8 * 8;
    let mut acc = [0f32; 8];
    for (e, &xv) in x[..k8].iter().enumerate() {
        acc[e % 8] = half_at(bf16, w, e).mul_add(xv, acc[e % 8]);
    }
    let mut sum = hsum8(&acc);
    for (e, &xv) in x.iter().enumerate().skip(k8) {
        sum = half_at(bf16, w, e).mul_add(xv, sum);
    }
    sum
}

/// The scalar reference of one weight row of a 32-block type against one activation row, in the
/// order llama.cpp takes (`repacked`: see `QType::repacked`).
fn dot32_ref(t: QType, w: &[u8], a: &[BlockQ8], repacked: bool) -> f32 {
    match t {
        QType::Q4_0 if repacked => repacked_dot_q4_0_q8_0_ref(w, a),
        QType::Q4_0 => vec_dot_q4_0_q8_0_ref(w, a),
        QType::IQ4NL if repacked => repacked_dot_iq4_nl_q8_0_ref(w, a),
        QType::IQ4NL => vec_dot_iq4_nl_q8_0_ref(w, a),
        QType::Q4_1 => vec_dot_q4_1_q8_1_ref(w, a),
        QType::Q5_0 => vec_dot_q5_0_q8_0_ref(w, a),
        QType::Q5_1 => vec_dot_q5_1_q8_1_ref(w, a),
        _ => vec_dot_q8_0_q8_0_ref(w, a),
    }
}

/// The same for the super-block types (`per_pair`: Q4_K's gemm order; `tiled`: Q5_K/Q6_K's
/// tiled matmul).
fn dot256_ref(t: QType, w: &[u8], a: &[BlockQ8K], per_pair: bool, tiled: bool) -> f32 {
    match t {
        QType::Q4K => vec_dot_q4_k_q8_k_ref(w, a, per_pair),
        QType::Q5K if tiled => tiled_dot_q5_k_q8_k_ref(w, a),
        QType::Q5K => vec_dot_q5_k_q8_k_ref(w, a),
        QType::Q2K if tiled => tiled_dot_q2_k_q8_k_ref(w, a),
        QType::Q2K => vec_dot_q2_k_q8_k_ref(w, a),
        QType::Q3K if tiled => tiled_dot_q3_k_q8_k_ref(w, a),
        QType::Q3K => vec_dot_q3_k_q8_k_ref(w, a),
        QType::IQ4XS if tiled => tiled_dot_iq4_xs_q8_k_ref(w, a),
        QType::IQ4XS => vec_dot_iq4_xs_q8_k_ref(w, a),
        _ if tiled => tiled_dot_q6_k_q8_k_ref(w, a),
        _ => vec_dot_q6_k_q8_k_ref(w, a),
    }
}

/// out[m, n] = x[m, k] . W[n, k]^T, W given as raw blocks (n rows of k / block_elems blocks).
/// Work items are groups of 4 weight rows, shared out over candle's persistent worker pool (the
/// calling thread works too); each group meets the activation rows A at a time (4 with VNNI's
/// 32 registers, else 2) while its weights are hot.
pub fn matmul(t: QType, w: &[u8], x: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    matmul_parts(&[Part { t, w, n }], x, m, k)
        .pop()
        .unwrap_or_default()
}

/// One weight of a fused product: `n` rows of type `t`.
#[derive(Clone, Copy)]
pub struct Part<'a> {
    pub t: QType,
    pub w: &'a [u8],
    pub n: usize,
}

/// Several weights against the same activations x[m, k] in one pass over the worker pool (q, k
/// and v; gate and up): the activations are quantized once per kind they need and the threads
/// meet once, not once per weight. Each output is the one `matmul` gives, bit for bit.
pub fn matmul_parts(parts: &[Part], x: &[f32], m: usize, k: usize) -> Vec<Vec<f32>> {
    for p in parts {
        assert!(
            k.is_multiple_of(p.t.block_elems())
                && x.len() == m * k
                && p.w.len() == p.n * p.t.row_bytes(k),
            "quant matmul shapes"
        );
    }
    let mut outs: Vec<Vec<f32>> = parts.iter().map(|p| vec![0f32; m * p.n]).collect();
    if m == 0 || parts.iter().all(|p| p.n == 0) {
        return outs;
    }
    // the activations each part reads: one quantization per kind (float; blocks of 32 in
    // ggml's order or in the repacked one; Q8_K)
    let kind = |p: &Part| match p.t {
        t if t.float() => 0,
        t if t.super_blocks() => 3,
        t if t.repacked(p.n) => 2,
        _ => 1,
    };
    let mut acts: [Option<Activations>; 4] = [None, None, None, None];
    for p in parts {
        acts[kind(p)].get_or_insert_with(|| Activations::quantize(p.t, x, k, p.n));
    }
    // work items: each part's groups of 4 rows, one part after another
    let mut first = Vec::with_capacity(parts.len() + 1);
    first.push(0usize);
    for p in parts {
        first.push(first[first.len() - 1] + p.n.div_ceil(4));
    }
    let groups = first[parts.len()];
    let dsts: Vec<super::SharedOut> = outs
        .iter_mut()
        .map(|o| super::SharedOut(o.as_mut_ptr()))
        .collect();
    let profiling = crate::profile::on();
    let busy = std::sync::atomic::AtomicU64::new(0);
    let work = |range: std::ops::Range<usize>| {
        let t0 = profiling.then(std::time::Instant::now);
        for item in range {
            let pi = first.partition_point(|&f| f <= item) - 1;
            let p = &parts[pi];
            let act = acts[kind(p)].as_ref().expect("quantized above");
            // SAFETY: the group writes its own columns of part pi's output (see `group`).
            unsafe { group(p, act, item - first[pi], m, k, dsts[pi]) };
        }
        if let Some(t0) = t0 {
            busy.fetch_add(
                t0.elapsed().as_nanos() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    };
    // Small products are not worth waking the workers for.
    let macs: usize = parts.iter().map(|p| p.n * k * m).sum();
    if macs < 65536 {
        work(0..groups);
    } else {
        let pool = candle_core::utils::barrier_pool();
        let t0 = profiling.then(std::time::Instant::now);
        pool.execute_chunked(groups, work);
        if let Some(t0) = t0 {
            let wall = t0.elapsed().as_nanos() as u64;
            let busy = busy.load(std::sync::atomic::Ordering::Relaxed);
            crate::profile::pool_wait(
                "(in the matmuls: threads waiting)",
                wall,
                busy,
                pool.n_workers() + 1,
            );
        }
    }
    outs
}

/// Group `gi` of a part's weight rows (rows 4gi..4gi + 4) against every activation row: writes
/// out[i, 4gi..4gi + 4] (fewer past the last row) of the [m, n] output at `dst`.
///
/// # Safety
/// `dst` points to m x p.n floats, and no other caller writes this group's columns meanwhile.
unsafe fn group(p: &Part, act: &Activations, gi: usize, m: usize, k: usize, dst: super::SharedOut) {
    let (t, n) = (p.t, p.n);
    let row_bytes = t.row_bytes(k);
    // a group's 4 rows; past the end the last row stands in (its outputs are dropped)
    let row = |j: usize| {
        let j = j.min(n - 1);
        &p.w[j * row_bytes..(j + 1) * row_bytes]
    };
    // Tiles of 4 activation rows: VNNI's 32 registers hold them for every type, AVX2's 16 for
    // the blocks of 32. Q4_K rows below `grouped` take another order than the rest: tiles never
    // straddle it (it is a multiple of 4).
    let wide = {
        #[cfg(target_arch = "x86_64")]
        {
            level() == Level::Vnni || (level() == Level::Avx2 && !t.super_blocks() && !t.float())
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    };
    let j0 = gi * 4;
    let w4 = [row(j0), row(j0 + 1), row(j0 + 2), row(j0 + 3)];
    let cols = (n - j0).min(4);
    let put = |i: usize, r: &[f32; 4]| {
        // SAFETY: (i, j0..j0 + cols) lies inside the output and is this group's (the caller's
        // contract). A whole group's 4 columns as one fixed-size copy, not a call of memmove.
        unsafe {
            let to = dst.0.add(i * n + j0);
            if cols == 4 {
                std::ptr::copy_nonoverlapping(r.as_ptr(), to, 4)
            } else {
                std::ptr::copy_nonoverlapping(r.as_ptr(), to, cols)
            }
        };
    };
    let mut put = put;
    if !act.simd_tiles(t, w4, m, wide, &mut put) {
        let k = RefTiles { act, t, w: w4 };
        // SAFETY: `matmul` checked the shapes; `tile` checks the CPU features itself.
        unsafe { run_tiles(&k, m, wide, &mut put) }
    }
}

/// A tile kernel on one group of 4 weight rows, which `run_tiles` walks over the activation
/// rows: the scalar references and float tiles here, the SIMD tiles in `quant_x86`.
trait Tiles {
    /// Activation rows i0..i0 + A against the group's 4 weight rows. SAFETY: those rows exist,
    /// and the implementation's CPU features were detected.
    unsafe fn tile<const A: usize>(&self, i0: usize) -> [[f32; 4]; A];
}

/// Activation rows 0..m in tiles of 4 (`wide`), 2 and 1, each row's 4 results handed to `put`.
/// SAFETY: as `Tiles::tile`, for m rows.
#[inline(always)]
unsafe fn run_tiles(k: &impl Tiles, m: usize, wide: bool, put: &mut dyn FnMut(usize, &[f32; 4])) {
    let mut i = 0;
    if wide {
        while i + 4 <= m {
            let r = k.tile::<4>(i);
            (0..4).for_each(|a| put(i + a, &r[a]));
            i += 4;
        }
    }
    while i + 2 <= m {
        let r = k.tile::<2>(i);
        (0..2).for_each(|a| put(i + a, &r[a]));
        i += 2;
    }
    if i < m {
        put(i, &k.tile::<1>(i)[0]);
    }
}

/// `Activations::tile` as a `Tiles`.
struct RefTiles<'a> {
    act: &'a Activations,
    t: QType,
    w: [&'a [u8]; 4],
}

impl Tiles for RefTiles<'_> {
    #[inline(always)]
    unsafe fn tile<const A: usize>(&self, i0: usize) -> [[f32; 4]; A] {
        self.act.tile::<A>(self.t, self.w, i0)
    }
}

/// Dequantize a row (embedding lookup), as ggml `dequantize_row_*`.
pub fn dequantize_row(t: QType, row: &[u8], out: &mut [f32]) {
    match t {
        QType::Q4K => {
            for (b, o) in row.chunks_exact(Q4_K_BYTES).zip(out.chunks_exact_mut(QK_K)) {
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                for (j, sub) in o.chunks_exact_mut(32).enumerate() {
                    let (sc, m) = q4_k_scale_min(j, &b[4..16]);
                    let (d1, m1) = (d * sc as f32, dmin * m as f32);
                    for (e, v) in sub.iter_mut().enumerate() {
                        let byte = b[16 + 32 * (j / 2) + e];
                        let q = if j % 2 == 0 { byte & 0x0F } else { byte >> 4 };
                        *v = d1 * q as f32 - m1;
                    }
                }
            }
        }
        QType::Q5K => {
            for (b, o) in row.chunks_exact(Q5_K_BYTES).zip(out.chunks_exact_mut(QK_K)) {
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                for (e, v) in o.iter_mut().enumerate() {
                    let (sc, m) = q4_k_scale_min(e / 32, &b[4..16]);
                    *v = d * sc as f32 * q5_k_quant(b, e) as f32 - dmin * m as f32;
                }
            }
        }
        QType::Q6K => {
            for (b, o) in row.chunks_exact(Q6_K_BYTES).zip(out.chunks_exact_mut(QK_K)) {
                let d = f16_at(b, 208);
                for (e, v) in o.iter_mut().enumerate() {
                    *v = d * (b[192 + e / 16] as i8 as f32) * (q6_k_quant(b, e) as i32 - 32) as f32;
                }
            }
        }
        QType::Q8_0 => {
            for (b, o) in row.chunks_exact(Q8_0_BYTES).zip(out.chunks_exact_mut(QK)) {
                let d = f16_at(b, 0);
                for (j, v) in o.iter_mut().enumerate() {
                    *v = (b[2 + j] as i8) as f32 * d;
                }
            }
        }
        QType::Q5_0 | QType::Q4_0 | QType::IQ4NL => {
            let values = match t {
                QType::Q5_0 => q5_0_values,
                QType::Q4_0 => q4_0_values,
                _ => iq4_nl_values,
            };
            for (b, o) in row
                .chunks_exact(t.block_bytes())
                .zip(out.chunks_exact_mut(QK))
            {
                let d = f16_at(b, 0);
                for (v, x) in values(b).iter().zip(o.iter_mut()) {
                    *x = *v as f32 * d;
                }
            }
        }
        QType::Q2K => {
            // ggml dequantize_row_q2_K: d * scale * q - dmin * min
            for (b, o) in row.chunks_exact(Q2_K_BYTES).zip(out.chunks_exact_mut(QK_K)) {
                let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
                for (e, v) in o.iter_mut().enumerate() {
                    let (dl, ml) = (
                        d * (b[e / 16] & 0x0F) as f32,
                        dmin * (b[e / 16] >> 4) as f32,
                    );
                    *v = dl * q2_k_value(b, e) as f32 - ml;
                }
            }
        }
        QType::Q3K => {
            for (b, o) in row.chunks_exact(Q3_K_BYTES).zip(out.chunks_exact_mut(QK_K)) {
                let (d, sc) = (f16_at(b, 108), q3_k_scales(b));
                for (e, v) in o.iter_mut().enumerate() {
                    *v = d * sc[e / 16] as f32 * q3_k_value(b, e) as f32;
                }
            }
        }
        QType::F16 | QType::BF16 => {
            for (e, v) in out.iter_mut().enumerate() {
                *v = half_at(t == QType::BF16, row, e);
            }
        }
        QType::IQ4XS => {
            for (b, o) in row
                .chunks_exact(IQ4_XS_BYTES)
                .zip(out.chunks_exact_mut(QK_K))
            {
                let d = f16_at(b, 0);
                for (ib, sub) in o.chunks_exact_mut(32).enumerate() {
                    let dl = d * iq4_xs_scale(b, ib) as f32;
                    let v = nibbles(&b[8 + 16 * ib..24 + 16 * ib]);
                    for (x, &n) in sub.iter_mut().zip(&v) {
                        *x = dl * KVALUES_IQ4NL[n as usize] as f32;
                    }
                }
            }
        }
        QType::Q4_1 | QType::Q5_1 => {
            let values = if t == QType::Q4_1 {
                q4_1_values
            } else {
                q5_1_values
            };
            for (b, o) in row
                .chunks_exact(t.block_bytes())
                .zip(out.chunks_exact_mut(QK))
            {
                let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                for (v, x) in values(b).iter().zip(o.iter_mut()) {
                    *x = *v as f32 * d + m;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand_bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 33) as u8
            })
            .collect()
    }

    fn blocks(t: QType, n: usize, seed: u64) -> Vec<u8> {
        if t.float() {
            // finite values in -0.128..0.127, as f16 or bf16
            return rand_bytes(n, seed)
                .iter()
                .flat_map(|&r| {
                    let v = (r as f32 - 128.0) / 1000.0;
                    if t == QType::BF16 {
                        ((v.to_bits() >> 16) as u16).to_le_bytes()
                    } else {
                        f16::from_f32(v).to_le_bytes()
                    }
                })
                .collect();
        }
        let mut b = rand_bytes(n * t.block_bytes(), seed);
        // Sane f16 scales (random bits could be NaN/inf).
        for blk in b.chunks_exact_mut(t.block_bytes()) {
            let (r5, r6) = (blk[5] as f32, blk[6] as f32);
            let d_at = match t {
                QType::Q2K => 80,
                QType::Q6K => 208,
                QType::Q3K => 108,
                _ => 0,
            };
            let d = if matches!(
                t,
                QType::Q2K | QType::Q3K | QType::Q4K | QType::Q5K | QType::Q6K
            ) {
                0.001
            } else {
                0.01
            };
            blk[d_at..d_at + 2].copy_from_slice(&f16::from_f32(d + r5 * 1e-5).to_le_bytes());
            match t {
                QType::Q4_1 | QType::Q5_1 => {
                    blk[2..4].copy_from_slice(&f16::from_f32(-0.05 + r6 * 1e-4).to_le_bytes())
                }
                QType::Q4K | QType::Q5K => {
                    blk[2..4].copy_from_slice(&f16::from_f32(0.002 + r6 * 1e-5).to_le_bytes())
                }
                QType::Q2K => {
                    blk[82..84].copy_from_slice(&f16::from_f32(0.002 + r6 * 1e-5).to_le_bytes())
                }
                _ => {}
            }
        }
        b
    }

    const ALL: [QType; 14] = [
        QType::Q2K,
        QType::Q3K,
        QType::F16,
        QType::BF16,
        QType::Q4_0,
        QType::IQ4NL,
        QType::IQ4XS,
        QType::Q4_1,
        QType::Q5_0,
        QType::Q5_1,
        QType::Q8_0,
        QType::Q4K,
        QType::Q5K,
        QType::Q6K,
    ];

    /// One output by the scalar references (`n`: the weight's rows, which choose Q4_0/IQ4_NL's
    /// order).
    fn reference(
        t: QType,
        w: &[u8],
        x: &[f32],
        k: usize,
        n: usize,
        per_pair: bool,
        tiled: bool,
    ) -> f32 {
        if t.float() {
            return dot_float_ref(t == QType::BF16, w, x);
        }
        if t.super_blocks() {
            let mut a = vec![BlockQ8K::default(); k / QK_K];
            quantize_row_q8k(x, &mut a);
            return dot256_ref(t, w, &a, per_pair, tiled);
        }
        let mut a = vec![BlockQ8::default(); k / QK];
        quantize_row_q8(x, &mut a);
        dot32_ref(t, w, &a, t.repacked(n))
    }

    #[test]
    fn q8k_quantize_matches_ggml_rules() {
        let mut x: Vec<f32> = (0..256).map(|i| ((i as f32) * 0.37).sin() * 3.0).collect();
        x[17] = -4.0; // the largest magnitude, negative
        let mut q = [BlockQ8K::default()];
        quantize_row_q8k(&x, &mut q);
        assert_eq!(q[0].d, 1.0 / (-127.0 / -4.0));
        assert_eq!(q[0].qs[17], -127);
        assert_eq!(
            q[0].bsums[1],
            q[0].qs[16..32].iter().map(|&v| v as i16).sum::<i16>()
        );
        x[3] = 5.0; // now positive: the quants change sign with the scale
        quantize_row_q8k(&x, &mut q);
        assert!(q[0].d < 0.0 && q[0].qs[3] == -127);
        quantize_row_q8k(&[0.0; 256], &mut q);
        assert_eq!((q[0].d, q[0].qs[0], q[0].bsums[0]), (0.0, 0, 0));
    }

    #[test]
    fn quantize_matches_ggml_rules() {
        let x: Vec<f32> = (0..64).map(|i| ((i as f32) * 0.37).sin() * 3.0).collect();
        let mut q = vec![BlockQ8::default(); 2];
        quantize_row_q8(&x, &mut q);
        let amax = x[..32].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_eq!(q[0].d, f16::from_f32(amax / 127.0));
        assert!(q[0].qs.iter().any(|&v| v == 127 || v == -127));
        let s: i32 = q[0].qs.iter().map(|&v| v as i32).sum();
        assert_eq!(q[0].s, f16::from_f32(amax / 127.0 * s as f32));
        // ties go to even, as _mm256_round_ps(_MM_ROUND_NEAREST)
        assert_eq!((2.5f32).round_ties_even(), 2.0);
    }

    #[test]
    fn simd_equals_reference_bit_for_bit() {
        // 6 rows: Q4_K's gemm order for 4, gemv for 2; 11 rows: Q6_K's tiled order; 40 weight
        // rows: Q4_0/IQ4_NL repacked; 37 not (and k = 544: an odd number of IQ4_NL blocks)
        for t in ALL {
            for (m, n) in [(6, 37), (11, 37), (6, 40), (11, 40)] {
                let k = if t.float() {
                    if n == 40 {
                        517
                    } else {
                        512
                    } // a tail of k % 8 values
                } else if t.super_blocks() || n == 40 {
                    512
                } else {
                    544
                };
                let w = blocks(t, n * k / t.block_elems(), 7);
                let x: Vec<f32> = (0..m * k)
                    .map(|i| ((i * 7919 % 1000) as f32 / 250.0) - 2.0)
                    .collect();
                let fast = matmul(t, &w, &x, m, k, n);
                let row = t.row_bytes(k);
                for i in 0..m {
                    for j in 0..n {
                        let (wr, xr) = (&w[j * row..(j + 1) * row], &x[i * k..(i + 1) * k]);
                        let r = reference(t, wr, xr, k, n, i < m - m % 4, m >= 8);
                        assert_eq!(
                            fast[i * n + j].to_bits(),
                            r.to_bits(),
                            "{t:?} m {m} row {i} col {j}"
                        );
                    }
                }
            }
        }
    }

    /// A fused product of several weights (every kind of activations at once) gives each weight
    /// exactly its own product, for one row (decode) and for many.
    #[test]
    fn fused_parts_equal_their_own_products() {
        let k = 512;
        let types = [
            (QType::Q4_1, 12),
            (QType::Q8_0, 5),
            (QType::Q4K, 9),
            (QType::Q4_0, 16),
            (QType::Q4_0, 6),
            (QType::F16, 4),
            (QType::Q6K, 3),
        ];
        let ws: Vec<Vec<u8>> = types
            .iter()
            .enumerate()
            .map(|(s, &(t, n))| blocks(t, n * k / t.block_elems(), s as u64 + 11))
            .collect();
        for m in [1, 7] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919 % 1000) as f32 / 250.0) - 2.0)
                .collect();
            let parts: Vec<Part> = types
                .iter()
                .zip(&ws)
                .map(|(&(t, n), w)| Part { t, w, n })
                .collect();
            let fused = matmul_parts(&parts, &x, m, k);
            for (p, got) in parts.iter().zip(&fused) {
                let want = matmul(p.t, p.w, &x, m, k, p.n);
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{:?} m {m}",
                    p.t
                );
            }
        }
    }

    /// Time of one decode-shaped product (1 x 576 . 576 x 1536, SmolLM2's q projection size
    /// class) per type: `cargo test --release -p candlewick kernel_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn kernel_speed() {
        for t in ALL {
            let (k, n) = (if t.super_blocks() { 512 } else { 576 }, 1536);
            let w = blocks(t, n * k / t.block_elems(), 5);
            let x: Vec<f32> = (0..k).map(|i| (i as f32 * 0.01).sin()).collect();
            let runs = 200;
            let t0 = std::time::Instant::now();
            for _ in 0..runs {
                std::hint::black_box(matmul(t, &w, &x, 1, k, n));
            }
            let dt = t0.elapsed().as_secs_f64() / runs as f64;
            println!(
                "{t:?}: {:.1} us, {:.2} GB/s of weights",
                dt * 1e6,
                w.len() as f64 / dt / 1e9
            );
        }
    }

    #[test]
    fn matmul_is_close_to_dequantized_f32() {
        for t in ALL {
            let (k, n) = (512, 5);
            let w = blocks(t, n * k / t.block_elems(), 3);
            let x: Vec<f32> = (0..k).map(|i| (i as f32 * 0.1).cos()).collect();
            let y = matmul(t, &w, &x, 1, k, n);
            let row = t.row_bytes(k);
            for j in 0..n {
                let mut wf = vec![0f32; k];
                dequantize_row(t, &w[j * row..(j + 1) * row], &mut wf);
                let exact: f32 = wf.iter().zip(&x).map(|(a, b)| a * b).sum();
                let scale: f32 = wf.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum();
                assert!(
                    (y[j] - exact).abs() <= 0.02 * scale.max(1e-3),
                    "{t:?} {j}: {} vs {exact}",
                    y[j]
                );
            }
        }
    }
}
