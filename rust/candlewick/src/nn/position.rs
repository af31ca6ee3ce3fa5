//! T5's relative position bias (Raffel et al. 2020): each (query, key) distance falls into one of
//! `num_buckets` log-spaced buckets (half per direction when bidirectional), and each bucket has a
//! learned bias per head, added to the attention scores. Computed as HF transformers'
//! `T5Attention._relative_position_bucket`.

#[derive(Debug, Clone)]
pub struct RelativeBias {
    /// [num_buckets][num_heads]
    pub table: Vec<f32>,
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

    /// Bias [heads][nq][nk] for queries at positions q_start.. and keys at 0..nk.
    pub fn bias(&self, q_start: usize, nq: usize, nk: usize) -> Vec<f32> {
        let nh = self.num_heads;
        let mut out = vec![0f32; nh * nq * nk];
        for i in 0..nq {
            for j in 0..nk {
                let b = self.bucket(j as i64 - (q_start + i) as i64);
                for h in 0..nh {
                    out[(h * nq + i) * nk + j] = self.table[b * nh + h];
                }
            }
        }
        out
    }
}
