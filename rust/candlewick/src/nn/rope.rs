//! Rotary position embedding (Su et al. 2021). Frequencies theta^(-2i/d); the rotation pairs are
//! either adjacent dims (GGUF llama: the converter permuted q/k for it, llama.cpp's "normal" rope)
//! or the two halves of the head (HF layout, "neox" style).
//! The cos/sin table is built as ggml's rope cache builds it: theta_i = p * theta_scale^i by
//! repeated f32 multiplication, theta_scale = base^(-2/d).

#[derive(Debug, Clone)]
pub struct Rope {
    /// [max_len][head_dim / 2] interleaved (cos, sin) pairs.
    table: std::sync::Arc<Vec<(f32, f32)>>,
    half: usize,
    interleaved: bool,
}

impl Rope {
    pub fn new(head_dim: usize, theta: f64, max_len: usize, interleaved: bool) -> Self {
        let half = head_dim / 2;
        let theta_scale = (theta as f32).powf(-2.0 / head_dim as f32);
        let mut table = Vec::with_capacity(max_len * half);
        for p in 0..max_len {
            let mut t = p as f32;
            for _ in 0..half {
                table.push((t.cos(), t.sin()));
                t *= theta_scale;
            }
        }
        Self {
            table: std::sync::Arc::new(table),
            half,
            interleaved,
        }
    }

    /// RoPE as HF transformers computes it (Llama `rotate_half`: pairs (j, j + head_dim/2)):
    /// inv_freq_j = 1 / theta^(2j / head_dim), angle = position * inv_freq_j in f32.
    pub fn new_hf(head_dim: usize, theta: f64, max_len: usize) -> Self {
        let half = head_dim / 2;
        let inv: Vec<f32> = (0..half)
            .map(|j| (1.0 / theta.powf((2 * j) as f64 / head_dim as f64)) as f32)
            .collect();
        let mut table = Vec::with_capacity(max_len * half);
        for p in 0..max_len {
            for &f in &inv {
                let t = p as f32 * f;
                table.push((t.cos(), t.sin()));
            }
        }
        Self {
            table: std::sync::Arc::new(table),
            half,
            interleaved: false,
        }
    }

    pub fn max_len(&self) -> usize {
        self.table.len() / self.half.max(1)
    }

    /// Rotate x: [seq][heads][head_dim] in place, token i at position start + i.
    pub fn apply(&self, x: &mut [f32], heads: usize, start: usize) {
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::has_fma() {
            // SAFETY: the CPU has FMA (checked just above).
            return unsafe { self.apply_fma(x, heads, start) };
        }
        self.apply_impl(x, heads, start)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "fma")]
    unsafe fn apply_fma(&self, x: &mut [f32], heads: usize, start: usize) {
        self.apply_impl(x, heads, start)
    }

    #[inline(always)]
    fn apply_impl(&self, x: &mut [f32], heads: usize, start: usize) {
        let hd = 2 * self.half;
        for (i, tok) in x.chunks_exact_mut(heads * hd).enumerate() {
            let cs = &self.table[(start + i) * self.half..(start + i + 1) * self.half];
            for head in tok.chunks_exact_mut(hd) {
                for (j, &(c, s)) in cs.iter().enumerate() {
                    let (a, b) = if self.interleaved {
                        (2 * j, 2 * j + 1)
                    } else {
                        (j, j + self.half)
                    };
                    let (x0, x1) = (head[a], head[b]);
                    // ggml `rotate_pairs`; its C++ is built with FP contraction, which fuses the
                    // first product of each expression.
                    head[a] = x0.mul_add(c, -(x1 * s));
                    head[b] = x0.mul_add(s, x1 * c);
                }
            }
        }
    }
}
