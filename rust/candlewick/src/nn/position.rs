//! Fixed sinusoidal positions (Vaswani et al. 2017, "Attention is all you need", 3.5):
//! PE(pos, 2i) = sin(pos / 10000^(2i / d)), PE(pos, 2i + 1) = cos(pos / 10000^(2i / d)), added to
//! the token embeddings like a learned table (and stored as one, so that a checkpoint in a
//! learned-position layout carries it).
//!
//! T5's relative position bias (Raffel et al. 2020): each (query, key) distance falls into one of
//! `num_buckets` log-spaced buckets (half per direction when bidirectional), and each bucket has a
//! learned bias per head, added to the attention scores. Computed as HF transformers'
//! `T5Attention._relative_position_bucket`.

use candle_core::Tensor;

#[derive(Debug, Clone)]
pub struct RelativeBias {
    /// [num_buckets][num_heads]
    pub table: Vec<f32>,
    /// The same table as a tensor [num_buckets, num_heads], for the differentiable path.
    pub tensor: Option<Tensor>,
    pub num_buckets: usize,
    pub num_heads: usize,
    pub max_distance: usize,
    pub bidirectional: bool,
}

impl RelativeBias {
    pub fn bucket(&self, relative: i64) -> usize {
        let mut buckets = self.num_buckets as i64;
        let mut ret = 0i64;
        let mut n = relative;
        if self.bidirectional {
            buckets /= 2;
            if n > 0 {
                ret += buckets;
            }
            n = n.abs();
        } else {
            n = (-n).max(0);
        }
        let max_exact = buckets / 2;
        if n < max_exact {
            ret += n;
        } else {
            let large = max_exact
                + ((n as f32 / max_exact as f32).ln()
                    / (self.max_distance as f32 / max_exact as f32).ln()
                    * (buckets - max_exact) as f32) as i64;
            ret += large.min(buckets - 1);
        }
        ret as usize
    }

    /// The bias of every distance key - query in min..=max, by head: [heads][max - min + 1].
    pub fn by_distance(&self, min: i64, max: i64) -> Vec<f32> {
        let nh = self.num_heads;
        let span = (max - min + 1).max(0) as usize;
        let mut out = vec![0f32; nh * span];
        for (d, distance) in (min..=max).enumerate() {
            let b = self.bucket(distance);
            for h in 0..nh {
                out[h * span + d] = self.table[b * nh + h];
            }
        }
        out
    }
}

impl RelativeBias {
    /// The differentiable bias of queries 0..q_len over keys 0..k_len: [heads, q_len, k_len],
    /// rows of the table picked by bucket (index_select: the gradient reaches the table).
    pub fn forward_t(&self, q_len: usize, k_len: usize) -> crate::error::Result<Tensor> {
        let table = self.tensor.as_ref().ok_or_else(|| {
            crate::error::Error::Model("a relative bias whose table was not read".into())
        })?;
        let buckets: Vec<u32> = (0..q_len)
            .flat_map(|i| (0..k_len).map(move |j| (j as i64 - i as i64, ())))
            .map(|(d, ())| self.bucket(d) as u32)
            .collect();
        let idx = Tensor::from_vec(buckets, q_len * k_len, table.device())?;
        let b = table
            .index_select(&idx, 0)?
            .reshape((q_len, k_len, self.num_heads))?;
        Ok(b.permute((2, 0, 1))?)
    }
}

/// The [n_pos, dim] sinusoidal table, row-major, computed in f64.
pub fn sinusoidal_table(n_pos: usize, dim: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n_pos * dim);
    for pos in 0..n_pos {
        for j in 0..dim {
            let angle = pos as f64 / 10000f64.powf((2 * (j / 2)) as f64 / dim as f64);
            out.push(if j % 2 == 0 { angle.sin() } else { angle.cos() } as f32);
        }
    }
    out
}
