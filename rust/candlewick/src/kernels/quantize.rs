//! Weight quantizers: f32 rows into GGUF blocks, in the arithmetic of ggml's reference quantizers
//! (`quantize_row_*_ref` and the float conversions llama.cpp's quantize tool runs when no
//! importance matrix is given), so that a file candlewick quantizes holds the very bytes
//! llama.cpp's would (tested against files llama.cpp made).

use half::{bf16, f16};

use crate::io::types::{self, TensorType};

/// A type these quantizers write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    F32,
    F16,
    Bf16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4K,
    Q5K,
    Q6K,
}

impl Target {
    pub fn tensor_type(self) -> &'static TensorType {
        match self {
            Target::F32 => &types::F32,
            Target::F16 => &types::F16,
            Target::Bf16 => &types::BF16,
            Target::Q8_0 => &types::Q8_0,
            Target::Q4_0 => &types::Q4_0,
            Target::Q4_1 => &types::Q4_1,
            Target::Q5_0 => &types::Q5_0,
            Target::Q5_1 => &types::Q5_1,
            Target::Q4K => &types::Q4_K,
            Target::Q5K => &types::Q5_K,
            Target::Q6K => &types::Q6_K,
        }
    }

    /// Whether a row of `n` values splits into this type's blocks.
    pub fn fits(self, n: usize) -> bool {
        n.is_multiple_of(self.tensor_type().block_size)
    }

    /// One row (a multiple of the block size) as this type's bytes, appended to `out`.
    pub fn quantize_row(self, x: &[f32], out: &mut Vec<u8>) {
        match self {
            Target::F32 => x
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            Target::F16 => x
                .iter()
                .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
            Target::Bf16 => x
                .iter()
                .for_each(|v| out.extend_from_slice(&to_bf16(*v).to_le_bytes())),
            Target::Q8_0 => x.chunks_exact(32).for_each(|b| q8_0_block(b, out)),
            Target::Q4_0 => x.chunks_exact(32).for_each(|b| q4_0_block(b, out)),
            Target::Q4_1 => x.chunks_exact(32).for_each(|b| q_1_block(b, false, out)),
            Target::Q5_0 => x.chunks_exact(32).for_each(|b| q5_0_block(b, out)),
            Target::Q5_1 => x.chunks_exact(32).for_each(|b| q_1_block(b, true, out)),
            Target::Q4K => x.chunks_exact(256).for_each(|b| q45_k_block(b, false, out)),
            Target::Q5K => x.chunks_exact(256).for_each(|b| q45_k_block(b, true, out)),
            Target::Q6K => x.chunks_exact(256).for_each(|b| q6_k_block(b, out)),
        }
    }
}

/// ggml_compute_fp32_to_bf16: round to nearest even; NaN kept quiet.
fn to_bf16(v: f32) -> bf16 {
    let u = v.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return bf16::from_bits(((u >> 16) | 64) as u16);
    }
    bf16::from_bits((u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16)
}

/// ggml's nearest_int: round half to even through the 1.5 x 2^23 trick.
#[inline]
fn nearest_int(f: f32) -> i32 {
    let v = f + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// quantize_row_q8_0_ref: d = amax / 127, q = round(x / d) (half away from zero).
fn q8_0_block(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend(x.iter().map(|v| (v * id).round() as i8 as u8));
}

/// quantize_row_q4_0_ref: d = (the value of largest magnitude) / -8, nibbles of x / d + 8 (the
/// first half of the block in the low nibbles).
fn q4_0_block(x: &[f32], out: &mut Vec<u8>) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    out.extend((0..16).map(|j| q(x[j]) | (q(x[16 + j]) << 4)));
}

/// quantize_row_q5_0_ref: as Q4_0 with d = max / -16 and the fifth bits in a u32 qh.
fn q5_0_block(x: &[f32], out: &mut Vec<u8>) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let q = |v: f32| ((v * id + 16.5) as i8).min(31) as u8;
    put_five_bits(f16::from_f32(d), None, (0..32).map(|j| q(x[j])), out);
}

/// quantize_row_q4_1_ref / quantize_row_q5_1_ref: d = (max - min) / (2^bits - 1), m = min,
/// q = (x - min) / d + 0.5 truncated.
fn q_1_block(x: &[f32], five: bool, out: &mut Vec<u8>) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let levels = if five { 31.0 } else { 15.0 };
    let d = (max - min) / levels;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (d, m) = (f16::from_f32(d), f16::from_f32(min));
    if five {
        put_five_bits(
            d,
            Some(m),
            (0..32).map(|j| ((x[j] - min) * id + 0.5) as u8),
            out,
        );
    } else {
        let q = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
        out.extend_from_slice(&d.to_le_bytes());
        out.extend_from_slice(&m.to_le_bytes());
        out.extend((0..16).map(|j| q(x[j]) | (q(x[16 + j]) << 4)));
    }
}

/// A Q5_0 / Q5_1 block: d (and m), the fifth bits of the 32 quants as a u32, their low nibbles
/// (the first half of the block in the low nibbles).
fn put_five_bits(d: f16, m: Option<f16>, q: impl Iterator<Item = u8>, out: &mut Vec<u8>) {
    let q: Vec<u8> = q.collect();
    out.extend_from_slice(&d.to_le_bytes());
    if let Some(m) = m {
        out.extend_from_slice(&m.to_le_bytes());
    }
    let mut qh = 0u32;
    for j in 0..16 {
        qh |= (((q[j] & 0x10) >> 4) as u32) << j;
        qh |= (((q[16 + j] & 0x10) >> 4) as u32) << (j + 16);
    }
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend((0..16).map(|j| (q[j] & 0x0F) | ((q[16 + j] & 0x0F) << 4)));
}

/// Below this a group is all zeros (ggml's GROUP_MAX_EPS).
const GROUP_MAX_EPS: f32 = 1e-15;

/// make_qx_quants with rmse_type 1 and no weights: the scale of 16 values quantized to
/// [-nmax, nmax), searched over 19 candidate scales for the least weighted (x^2) error.
fn make_qx_quants(x: &[f32], nmax: i32, l: &mut [i8]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.iter_mut().for_each(|q| *q = 0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let quant = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let q = quant(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * q;
            suml2 += w * q * q;
        }
        (sumlx, suml2)
    };
    let mut iscale = -nmaxf / max;
    for (q, &v) in l.iter_mut().zip(x) {
        *q = (quant(iscale, v) + nmax) as i8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&i| i != 0) {
        iscale = -(nmaxf + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (q, &v) in l.iter_mut().zip(x) {
                *q = (quant(iscale, v) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// make_qkx2_quants without MAD: 32 values to [0, nmax] with a scale and a min, searched over
/// nstep + 1 candidate scales for the least weighted squared error. Returns (scale, -min).
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    x: &[f32],
    w: &[f32],
    nmax: i32,
    l: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = w[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..x.len() {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.iter_mut().for_each(|q| *q = 0);
        return (0.0, -min);
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..x.len() {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        let diff = scale * q as f32 + min - x[i];
        best_error += w[i] * (diff * diff);
    }
    let mut aux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..x.len() {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = q as u8;
            let lf = q as f32;
            sum_l += w[i] * lf;
            sum_l2 += w[i] * lf * lf;
            sum_xl += w[i] * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..x.len() {
                let diff = this_scale * aux[i] as f32 + this_min - x[i];
                cur_error += w[i] * (diff * diff);
            }
            if cur_error < best_error {
                l[..x.len()].copy_from_slice(&aux[..x.len()]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// quantize_row_q4_K_ref / quantize_row_q5_K_ref: 8 sub-blocks of 32, each a 6-bit scale and
/// min under f16 super-scales, 4-bit (Q4_K) or 5-bit (Q5_K, the fifth bits in qh) quants.
fn q45_k_block(x: &[f32], five: bool, out: &mut Vec<u8>) {
    let (nmax, rmin, nstep) = if five { (31, -0.5, 15) } else { (15, -1.0, 20) };
    let mut l = [0u8; 256];
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0f32;
        for v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let w: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        let (s, m) = make_qkx2_quants(xs, &w, nmax, &mut l[32 * j..32 * j + 32], rmin, 0.1, nstep);
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut sc = [0u8; 12];
    for j in 0..8 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            sc[j - 4] |= (ls >> 4) << 6;
            sc[j] |= (lm >> 4) << 6;
        }
    }
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    for j in 0..8 {
        // get_scale_min_k4
        let (s, m) = if j < 4 {
            (sc[j] & 63, sc[j + 4] & 63)
        } else {
            (
                (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4),
                (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4),
            )
        };
        let dj = d.to_f32() * s as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * m as f32;
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&dmin.to_le_bytes());
    out.extend_from_slice(&sc);
    let mut qs = [0u8; 128];
    if five {
        let mut qh = [0u8; 32];
        let (mut m1, mut m2) = (1u8, 2u8);
        for (c, n) in (0..256).step_by(64).enumerate() {
            for j in 0..32 {
                let (mut l1, mut l2) = (l[n + j], l[n + j + 32]);
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                qs[32 * c + j] = l1 | (l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
        out.extend_from_slice(&qh);
    } else {
        for (c, j) in (0..256).step_by(64).enumerate() {
            for i in 0..32 {
                qs[32 * c + i] = l[j + i] | (l[j + i + 32] << 4);
            }
        }
    }
    out.extend_from_slice(&qs);
}

/// quantize_row_q6_K_ref: 16 scales of 16 values (make_qx_quants, 6 bits), one f16 super-scale.
fn q6_k_block(x: &[f32], out: &mut Vec<u8>) {
    let mut l = [0i8; 256];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
    for ib in 0..16 {
        let s = make_qx_quants(&x[16 * ib..16 * ib + 16], 32, &mut l[16 * ib..16 * ib + 16]);
        scales[ib] = s;
        if s.abs() > max_abs_scale {
            max_abs_scale = s.abs();
            max_scale = s;
        }
    }
    // layout: ql [128], qh [64], scales [16] (i8), d (f16)
    if max_abs_scale < GROUP_MAX_EPS {
        out.extend(std::iter::repeat_n(0u8, 210));
        return;
    }
    let iscale = -128.0 / max_scale;
    let d = f16::from_f32(1.0 / iscale);
    let sc: [i8; 16] = std::array::from_fn(|ib| nearest_int(iscale * scales[ib]).min(127) as i8);
    for j in 0..16 {
        let dj = d.to_f32() * sc[j] as f32;
        if dj == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let q = nearest_int(x[16 * j + ii] / dj).clamp(-32, 31);
            l[16 * j + ii] = (q + 32) as i8;
        }
    }
    let mut ql = [0u8; 128];
    let mut qh = [0u8; 64];
    for (half, j) in (0..256).step_by(128).enumerate() {
        let (ql, qh) = (
            &mut ql[64 * half..64 * half + 64],
            &mut qh[32 * half..32 * half + 32],
        );
        for i in 0..32 {
            let q = |o: usize| l[j + i + o] as u8;
            ql[i] = (q(0) & 0xF) | ((q(64) & 0xF) << 4);
            ql[i + 32] = (q(32) & 0xF) | ((q(96) & 0xF) << 4);
            qh[i] = (q(0) >> 4) | ((q(32) >> 4) << 2) | ((q(64) >> 4) << 4) | ((q(96) >> 4) << 6);
        }
    }
    out.extend_from_slice(&ql);
    out.extend_from_slice(&qh);
    out.extend(sc.iter().map(|&s| s as u8));
    out.extend_from_slice(&d.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::quant::{dequantize_row, QType};

    fn row(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed)) as f32 / u32::MAX as f32
                    - 0.5)
                    * 0.3
            })
            .collect()
    }

    /// Each block type's round trip lands within its step of the input.
    #[test]
    fn quantized_rows_dequantize_close_to_the_input() {
        for (t, q, tol) in [
            (Target::Q8_0, QType::Q8_0, 0.002),
            (Target::Q4K, QType::Q4K, 0.02),
            (Target::Q5K, QType::Q5K, 0.01),
            (Target::Q6K, QType::Q6K, 0.004),
        ] {
            let x = row(512, 7);
            let mut bytes = Vec::new();
            t.quantize_row(&x, &mut bytes);
            assert_eq!(bytes.len(), q.row_bytes(512));
            let mut back = vec![0f32; 512];
            dequantize_row(q, &bytes, &mut back);
            let err = x
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < tol, "{t:?}: {err}");
        }
    }

    #[test]
    fn float_conversions_round_to_nearest_even() {
        assert_eq!(to_bf16(1.0).to_bits(), 0x3f80);
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8000)).to_bits(), 0x3f80); // a tie: to even
        assert_eq!(to_bf16(f32::from_bits(0x3f81_8000)).to_bits(), 0x3f82);
        assert!(f32::from(to_bf16(f32::NAN)).is_nan());
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-3.5), -4);
    }
}
