//! Rotary position embedding (Su et al. 2021). Frequencies theta^(-2i/d); the rotation pairs are
//! either adjacent dims (GGUF llama: the converter permuted q/k for it, llama.cpp's "normal" rope)
//! or the two halves of the head (HF layout, "neox" style).
//!
//! The cos/sin table is built per position, the way the reference builds it: `Rope::ggml` as
//! ggml's rope cache does (theta_i = p * theta_scale^i by repeated f32 multiplication,
//! theta_scale = base^(-2/d)), `Rope::hf` as transformers does (angle = p * inv_freq_j in f32).
//! Rows are computed when a position is first needed, so a context length read from a file
//! sizes nothing up front.

use std::sync::{Arc, RwLock};

use candle_core::Tensor;

#[derive(Debug, Clone)]
pub struct Rope {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    half: usize,
    interleaved: bool,
    angles: Angles,
    /// [position][head_dim / 2] (cos, sin) pairs, for the positions seen so far.
    table: RwLock<Vec<(f32, f32)>>,
}

#[derive(Debug)]
enum Angles {
    Ggml {
        theta_scale: f32,
        yarn: Yarn,
        freq_factors: Option<Vec<f32>>,
    },
    Hf {
        inv_freq: Vec<f32>,
        attention_factor: f32,
    },
}

/// ggml's `rope_yarn` parameters: theta = freq_scale x theta_extrap, blended back towards
/// theta_extrap over the dimensions below `corr` when ext_factor != 0; cos and sin x mscale.
/// Plain RoPE: freq_scale 1, ext_factor 0, mscale 1 (then every step is exact).
#[derive(Debug, Clone, Copy)]
struct Yarn {
    freq_scale: f32,
    ext_factor: f32,
    corr: [f32; 2],
    mscale: f32,
}

const PLAIN: Yarn = Yarn {
    freq_scale: 1.0,
    ext_factor: 0.0,
    corr: [0.0, 0.0],
    mscale: 1.0,
};

/// How RoPE is scaled for longer contexts (`ModelConfig.rope_scaling` and its parameters).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scaling {
    None,
    /// Positions divided by `factor`.
    Linear {
        factor: f64,
    },
    /// Llama 3.1: frequencies of wavelengths above original / low divided by `factor`, those
    /// below original / high kept, a smooth blend between.
    Llama3 {
        factor: f64,
        low: f64,
        high: f64,
        original: f64,
    },
    /// YaRN: dimensions blended between interpolated and extrapolated by a ramp between the
    /// dimensions that turn `beta_fast` and `beta_slow` times in the original context; cos and
    /// sin x `attention` (0: 0.1 ln(factor) + 1).
    Yarn {
        factor: f64,
        original: f64,
        beta_fast: f64,
        beta_slow: f64,
        attention: f64,
    },
}

impl Scaling {
    pub fn from_config(c: &crate::config::ModelConfig) -> Self {
        use crate::config::RopeScaling as R;
        let original = match c.rope_original_max_position_embeddings {
            0 => c.max_position_embeddings,
            n => n,
        } as f64;
        let factor = c.rope_scaling_factor;
        match c.rope_scaling {
            R::None => Scaling::None,
            R::Linear => Scaling::Linear { factor },
            R::Llama3 => Scaling::Llama3 {
                factor,
                low: c.rope_low_freq_factor,
                high: c.rope_high_freq_factor,
                original,
            },
            R::Yarn => Scaling::Yarn {
                factor,
                original,
                beta_fast: c.rope_beta_fast,
                beta_slow: c.rope_beta_slow,
                attention: c.rope_attention_factor,
            },
        }
    }
}

impl Rope {
    /// ggml's arithmetic; `interleaved` rotates adjacent pairs (GGUF llama), else halves (neox).
    pub fn ggml(head_dim: usize, theta: f64, interleaved: bool) -> Self {
        Self::ggml_scaled(head_dim, theta, interleaved, Scaling::None, None)
    }

    /// ggml's arithmetic with scaling as llama.cpp sets it up: linear and yarn through
    /// freq_scale = 1/factor (yarn with ext_factor 1 and its correction dims and mscale), llama3
    /// through `freq_factors` (the file's rope_freqs tensor: each frequency divided by its factor).
    pub fn ggml_scaled(
        head_dim: usize,
        theta: f64,
        interleaved: bool,
        scaling: Scaling,
        freq_factors: Option<Vec<f32>>,
    ) -> Self {
        let theta_scale = (theta as f32).powf(-2.0 / head_dim as f32);
        let yarn = match scaling {
            Scaling::None | Scaling::Llama3 { .. } => PLAIN,
            Scaling::Linear { factor } => Yarn {
                freq_scale: 1.0 / factor as f32,
                ..PLAIN
            },
            Scaling::Yarn {
                factor,
                original,
                beta_fast,
                beta_slow,
                attention,
            } => {
                let factor = factor as f32;
                let freq_scale = 1.0 / factor;
                // ggml_rope_yarn_corr_dims
                let dim = |rot: f32| {
                    head_dim as f32 * (original as f32 / (rot * 2.0 * std::f32::consts::PI)).ln()
                        / (2.0 * (theta as f32).ln())
                };
                let corr = [
                    dim(beta_fast as f32).floor().max(0.0),
                    dim(beta_slow as f32).ceil().min(head_dim as f32 - 1.0),
                ];
                // llama_context: the attention factor (transformers' get_mscale unless given),
                // divided by the 1 + 0.1 ln(factor) that rope_yarn multiplies back in
                let get_mscale = if factor <= 1.0 {
                    1.0
                } else {
                    0.1 * factor.ln() + 1.0
                };
                let given = if attention > 0.0 {
                    attention as f32
                } else {
                    get_mscale
                };
                let mscale = given * (1.0 / (1.0 + 0.1 * factor.ln()));
                Yarn {
                    freq_scale,
                    ext_factor: 1.0,
                    corr,
                    mscale,
                }
            }
        };
        Self::with(
            head_dim,
            interleaved,
            Angles::Ggml {
                theta_scale,
                yarn,
                freq_factors,
            },
        )
    }

    /// transformers' arithmetic (Llama `rotate_half`: pairs (j, j + head_dim/2)):
    /// inv_freq_j = 1 / theta^(2j / head_dim), angle = position * inv_freq_j in f32.
    pub fn hf(head_dim: usize, theta: f64) -> Self {
        Self::hf_scaled(head_dim, theta, Scaling::None)
    }

    /// transformers' arithmetic with its `ROPE_INIT_FUNCTIONS` for the scaled types (in f32,
    /// as torch computes them), cos and sin times the attention factor.
    pub fn hf_scaled(head_dim: usize, theta: f64, scaling: Scaling) -> Self {
        let half = head_dim / 2;
        let base: Vec<f32> = (0..half)
            .map(|j| (1.0 / theta.powf((2 * j) as f64 / head_dim as f64)) as f32)
            .collect();
        let mut attention_factor = 1.0f32;
        let inv_freq = match scaling {
            Scaling::None => base,
            Scaling::Linear { factor } => base.iter().map(|f| f / factor as f32).collect(),
            Scaling::Llama3 {
                factor,
                low,
                high,
                original,
            } => {
                let (factor, low, high, original) =
                    (factor as f32, low as f32, high as f32, original as f32);
                let (low_wavelen, high_wavelen) = (original / low, original / high);
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        let scaled = if wavelen > low_wavelen { f / factor } else { f };
                        if wavelen < high_wavelen || wavelen > low_wavelen {
                            scaled
                        } else {
                            let smooth = (original / wavelen - low) / (high - low);
                            (1.0 - smooth) * scaled / factor + smooth * scaled
                        }
                    })
                    .collect()
            }
            Scaling::Yarn {
                factor,
                original,
                beta_fast,
                beta_slow,
                attention,
            } => {
                attention_factor = if attention > 0.0 {
                    attention as f32
                } else if factor <= 1.0 {
                    1.0
                } else {
                    (0.1 * factor.ln() + 1.0) as f32
                };
                let dim = |rot: f64| {
                    (head_dim as f64 * (original / (rot * 2.0 * std::f64::consts::PI)).ln())
                        / (2.0 * theta.ln())
                };
                let low = dim(beta_fast).floor().max(0.0);
                let mut high = dim(beta_slow).ceil().min(head_dim as f64 - 1.0);
                if low == high {
                    high += 0.001;
                }
                let factor = factor as f32;
                base.iter()
                    .enumerate()
                    .map(|(j, &extrapolation)| {
                        let pos_freq = 1.0 / extrapolation;
                        let interpolation = 1.0 / (factor * pos_freq);
                        let ramp =
                            ((j as f32 - low as f32) / (high as f32 - low as f32)).clamp(0.0, 1.0);
                        let extrapolation_factor = 1.0 - ramp;
                        interpolation * (1.0 - extrapolation_factor)
                            + extrapolation * extrapolation_factor
                    })
                    .collect()
            }
        };
        Self::with(
            head_dim,
            false,
            Angles::Hf {
                inv_freq,
                attention_factor,
            },
        )
    }

    fn with(head_dim: usize, interleaved: bool, angles: Angles) -> Self {
        Rope {
            inner: Arc::new(Inner {
                half: head_dim / 2,
                interleaved,
                angles,
                table: RwLock::new(Vec::new()),
            }),
        }
    }

    /// Make sure the table holds positions 0..n.
    fn ensure(&self, n: usize) {
        let inner = &self.inner;
        let half = inner.half.max(1);
        // a poisoned lock still holds whole rows: the table only ever grows by complete rows
        if inner.table.read().unwrap_or_else(|e| e.into_inner()).len() / half >= n {
            return;
        }
        let mut table = inner.table.write().unwrap_or_else(|e| e.into_inner());
        let have = table.len() / half;
        // grow geometrically: a decode loop extends the table a few times, not every step
        let want = n.max(2 * have);
        table.reserve((want - have.min(want)) * half);
        for p in have..want {
            match &inner.angles {
                Angles::Ggml {
                    theta_scale,
                    yarn,
                    freq_factors,
                } => {
                    // ggml_rope_cache_init and rope_yarn
                    let mut t = p as f32;
                    for i in 0..inner.half {
                        let ff = freq_factors.as_ref().map_or(1.0, |f| f[i]);
                        let extrap = t / ff;
                        let interp = yarn.freq_scale * extrap;
                        let (mut theta, mut mscale) = (interp, yarn.mscale);
                        if yarn.ext_factor != 0.0 {
                            let y = (i as f32 - yarn.corr[0])
                                / (yarn.corr[1] - yarn.corr[0]).max(0.001);
                            let ramp_mix = (1.0 - y.clamp(0.0, 1.0)) * yarn.ext_factor;
                            theta = interp * (1.0 - ramp_mix) + extrap * ramp_mix;
                            mscale *= 1.0 + 0.1 * (1.0 / yarn.freq_scale).ln();
                        }
                        table.push((theta.cos() * mscale, theta.sin() * mscale));
                        t *= theta_scale;
                    }
                }
                Angles::Hf {
                    inv_freq,
                    attention_factor,
                } => {
                    for &f in inv_freq {
                        let t = p as f32 * f;
                        table.push((t.cos() * attention_factor, t.sin() * attention_factor));
                    }
                }
            }
        }
    }

    /// Rotate x: [tokens][heads][head_dim] in place, token i at position start + i.
    pub fn apply(&self, x: &mut [f32], heads: usize, start: usize) {
        let hd = 2 * self.inner.half;
        if hd == 0 || heads == 0 {
            return;
        }
        let tokens = x.len() / (heads * hd);
        self.ensure(start + tokens);
        let table = self.inner.table.read().unwrap_or_else(|e| e.into_inner());
        let rows = &table[start * self.inner.half..(start + tokens) * self.inner.half];
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::has_fma() {
            // SAFETY: the CPU has FMA (checked just above).
            return unsafe { rotate_fma(x, rows, heads, self.inner.half, self.inner.interleaved) };
        }
        rotate(x, rows, heads, self.inner.half, self.inner.interleaved)
    }
}

impl Rope {
    /// The differentiable rotation of x: [batch, heads, tokens, head_dim], token i at position i,
    /// one fused op with its backward (candle-nn's fused rope records no gradient). The same
    /// table as `apply`.
    pub fn forward_t(&self, x: &Tensor) -> crate::error::Result<Tensor> {
        let (_, _, t, hd) = x.dims4()?;
        let half = self.inner.half;
        if hd != 2 * half {
            return Err(crate::error::Error::Model(format!(
                "RoPE of head size {} on heads of {hd}",
                2 * half
            )));
        }
        self.ensure(t);
        let (cos, sin): (Vec<f32>, Vec<f32>) = {
            let table = self.inner.table.read().unwrap_or_else(|e| e.into_inner());
            table[..t * half].iter().copied().unzip()
        };
        super::ops::rope(x, cos, sin, self.inner.interleaved)
    }

    /// The same rotation in plain candle ops: the reference the fused op is tested against.
    pub fn forward_t_ref(&self, x: &Tensor) -> crate::error::Result<Tensor> {
        let (b, h, t, hd) = x.dims4()?;
        let half = self.inner.half;
        self.ensure(t);
        let (cos, sin): (Vec<f32>, Vec<f32>) = {
            let table = self.inner.table.read().unwrap_or_else(|e| e.into_inner());
            table[..t * half].iter().copied().unzip()
        };
        let cos = Tensor::from_vec(cos, (1, 1, t, half), x.device())?;
        let sin = Tensor::from_vec(sin, (1, 1, t, half), x.device())?;
        let rot = |x0: &Tensor, x1: &Tensor| -> candle_core::Result<(Tensor, Tensor)> {
            Ok((
                (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?,
                (x0.broadcast_mul(&sin)? + x1.broadcast_mul(&cos)?)?,
            ))
        };
        Ok(if self.inner.interleaved {
            let x = x.reshape((b, h, t, half, 2))?;
            let (x0, x1) = (
                x.narrow(4, 0, 1)?.squeeze(4)?,
                x.narrow(4, 1, 1)?.squeeze(4)?,
            );
            let (a, c) = rot(&x0, &x1)?;
            Tensor::stack(&[a, c], 4)?.reshape((b, h, t, hd))?
        } else {
            let (x0, x1) = (x.narrow(3, 0, half)?, x.narrow(3, half, half)?);
            let (a, c) = rot(&x0, &x1)?;
            Tensor::cat(&[a, c], 3)?
        })
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn rotate_fma(
    x: &mut [f32],
    rows: &[(f32, f32)],
    heads: usize,
    half: usize,
    interleaved: bool,
) {
    rotate(x, rows, heads, half, interleaved)
}

#[inline(always)]
fn rotate(x: &mut [f32], rows: &[(f32, f32)], heads: usize, half: usize, interleaved: bool) {
    let hd = 2 * half;
    for (tok, cs) in x.chunks_exact_mut(heads * hd).zip(rows.chunks_exact(half)) {
        for head in tok.chunks_exact_mut(hd) {
            for (j, &(c, s)) in cs.iter().enumerate() {
                let (a, b) = if interleaved {
                    (2 * j, 2 * j + 1)
                } else {
                    (j, j + half)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused differentiable rotation equals its composite twin exactly, forward, and its
    /// gradient to rounding, for both pairings.
    #[test]
    fn fused_rotation_equals_the_composite_one() {
        use candle_core::{Device, Var};
        for rope in [Rope::ggml(8, 10000.0, true), Rope::hf(8, 10000.0)] {
            let x = Var::from_vec(
                (0..2 * 3 * 5 * 8)
                    .map(|i| (i as f32 * 0.37).sin())
                    .collect(),
                (2, 3, 5, 8),
                &Device::Cpu,
            )
            .unwrap();
            let up = Tensor::from_vec(
                (0..240).map(|i| (i as f32 * 0.11).cos()).collect(),
                (2, 3, 5, 8),
                &Device::Cpu,
            )
            .unwrap();
            let (f, r) = (rope.forward_t(&x).unwrap(), rope.forward_t_ref(&x).unwrap());
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(flat(&f), flat(&r));
            let gf = (&f * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let gr = (&r * &up).unwrap().sum_all().unwrap().backward().unwrap();
            for (a, b) in flat(gf.get(&x).unwrap())
                .iter()
                .zip(flat(gr.get(&x).unwrap()))
            {
                assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
    }

    /// Rows computed on demand equal rows computed in one go, whatever order they are asked in.
    #[test]
    fn lazy_table_is_position_by_position() {
        let a = Rope::ggml(8, 10000.0, true);
        let b = Rope::ggml(8, 10000.0, true);
        let mut xa: Vec<f32> = (0..2 * 8 * 5).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut xb = xa.clone();
        b.apply(&mut vec![0.0; 8 * 100], 1, 0); // b builds 100 rows first
        a.apply(&mut xa, 2, 40);
        b.apply(&mut xb, 2, 40);
        assert_eq!(xa, xb);
    }
}
