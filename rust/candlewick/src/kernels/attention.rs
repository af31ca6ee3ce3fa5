//! Causal self-attention over a KV cache, on plain slices, in ggml's order of operations
//! (llama.cpp without flash attention): scores by `ggml_vec_dot_f32`, softmax with `ggml_v_expf`
//! and a double-precision sum of 8-lane partial sums, then P.V by tinyBLAS (8 lanes over key
//! positions) when the batch has several tokens, by `ggml_vec_dot_f32` when it has one.

use super::math::{expf, hsum8, vec_dot_f32, vec_dot_f32_by};

#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Positions the cache buffers hold (stride between KV heads).
    pub capacity: usize,
}

/// q: [seq][num_heads][head_dim] at positions start..start+seq; k, v: [num_kv_heads][capacity][head_dim]
/// holding positions 0..start+seq. Returns [seq][num_heads][head_dim].
pub fn causal(q: &[f32], k: &[f32], v: &[f32], sh: Shape, start: usize, seq: usize, scale: f32) -> Vec<f32> {
    let (nh, hd) = (sh.num_heads, sh.head_dim);
    let n_rep = nh / sh.num_kv_heads;
    let mut out = vec![0f32; seq * nh * hd];
    let mut p = vec![0f32; start + seq];
    for i in 0..seq {
        let n = start + i + 1; // keys this query may see
        for h in 0..nh {
            let g = h / n_rep;
            let kh = &k[g * sh.capacity * hd..];
            let vh = &v[g * sh.capacity * hd..];
            let qh = &q[(i * nh + h) * hd..(i * nh + h + 1) * hd];
            // softmax(scale * q.k) over the visible keys; masked keys are exactly 0.
            let mut max = f32::NEG_INFINITY;
            for (t, pt) in p[..n].iter_mut().enumerate() {
                *pt = vec_dot_f32(&kh[t * hd..(t + 1) * hd], qh) * scale;
                max = max.max(*pt);
            }
            let mut sum = 0f64;
            for chunk in p[..n].chunks_mut(8) {
                let mut lanes = [0f32; 8];
                for (l, pt) in chunk.iter_mut().enumerate() {
                    *pt = expf(*pt - max);
                    lanes[l] = *pt;
                }
                sum += hsum8(&lanes) as f64;
            }
            let inv = (1.0 / sum) as f32;
            p[..n].iter_mut().for_each(|pt| *pt *= inv);

            let o = &mut out[(i * nh + h) * hd..(i * nh + h + 1) * hd];
            for (d, od) in o.iter_mut().enumerate() {
                *od = if seq >= 2 {
                    let mut acc = [0f32; 8];
                    for t in 0..n {
                        acc[t % 8] = vh[t * hd + d].mul_add(p[t], acc[t % 8]);
                    }
                    hsum8(&acc)
                } else {
                    vec_dot_f32_by(n.next_multiple_of(32), |t| if t < n { (vh[t * hd + d], p[t]) } else { (0.0, 0.0) })
                };
            }
        }
    }
    out
}
