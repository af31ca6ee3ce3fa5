//! Turning logits into a token.
//!
//! The processor chain follows HF transformers' order: repetition penalty -> temperature -> top-k ->
//! top-p -> min-p -> draw. Greedy (do_sample = false, or temperature 0) takes the argmax after the
//! penalty. Works on plain slices: no tensor ops, no full sort of the vocabulary.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub do_sample: bool,
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1.0 = off.
    pub top_p: f32,
    /// 0.0 = off.
    pub min_p: f32,
    /// 1.0 = off; HF semantics over prompt and output.
    pub repetition_penalty: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { do_sample: false, temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0 }
    }
}

impl SamplingParams {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(Error::InvalidArgument(format!("temperature must be >= 0, got {}", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::InvalidArgument(format!("top_p must be in (0, 1], got {}", self.top_p)));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(Error::InvalidArgument(format!("min_p must be in [0, 1], got {}", self.min_p)));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "repetition_penalty must be > 0, got {}",
                self.repetition_penalty
            )));
        }
        Ok(())
    }

    fn is_greedy(&self) -> bool {
        !self.do_sample || self.temperature == 0.0 || self.top_k == 1
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    // Scratch buffers reused across steps.
    idx: Vec<u32>,
    probs: Vec<f32>,
}

/// Index of the largest value (the first one on ties, as torch.argmax and llama.cpp do).
pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in xs.iter().enumerate() {
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    best as u32
}

/// HF `RepetitionPenaltyLogitsProcessor`: each token seen gets its logit divided by the penalty
/// when positive, multiplied when negative (once, however often it was seen).
pub fn apply_repetition_penalty(logits: &mut [f32], history: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = vec![false; logits.len()];
    for &t in history {
        let t = t as usize;
        if t < logits.len() && !seen[t] {
            seen[t] = true;
            let l = &mut logits[t];
            *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
        }
    }
}

impl Sampler {
    /// `seed = None` draws a seed from the OS.
    pub fn new(params: SamplingParams, seed: Option<u64>) -> Result<Self> {
        params.validate()?;
        let rng = match seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Ok(Self { params, rng, idx: Vec::new(), probs: Vec::new() })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Pick the next token. `logits` is modified in place (penalties); `history` is prompt + output.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> Result<u32> {
        if logits.is_empty() {
            return Err(Error::InvalidArgument("empty logits".into()));
        }
        apply_repetition_penalty(logits, history, self.params.repetition_penalty);
        if self.params.is_greedy() {
            return Ok(argmax(logits));
        }
        self.filtered_distribution(logits)?;
        // Draw: u in [0, total) over the kept, unnormalised probabilities.
        let total: f32 = self.probs.iter().sum();
        let u: f32 = self.rng.random::<f32>() * total;
        let mut acc = 0.0f32;
        for (i, &p) in self.probs.iter().enumerate() {
            acc += p;
            if u < acc {
                return Ok(self.idx[i]);
            }
        }
        // Rounding can leave u at the very top of the range: take the last kept token.
        self.idx.last().copied().ok_or_else(|| Error::InvalidArgument("no candidate token left".into()))
    }

    /// The distribution the sampler draws from: (token ids, probabilities summing to 1), most
    /// probable first. Exposed for tests and `cw.sample`.
    pub fn distribution(&mut self, logits: &[f32]) -> Result<(Vec<u32>, Vec<f32>)> {
        let mut l = logits.to_vec();
        if self.params.is_greedy() {
            return Ok((vec![argmax(&l)], vec![1.0]));
        }
        self.filtered_distribution(&mut l)?;
        let total: f32 = self.probs.iter().sum();
        Ok((self.idx.clone(), self.probs.iter().map(|p| p / total).collect()))
    }

    /// Fill `idx`/`probs` with the candidates left after temperature, top-k, top-p and min-p,
    /// sorted by probability (descending), probabilities unnormalised.
    fn filtered_distribution(&mut self, logits: &mut [f32]) -> Result<()> {
        let p = &self.params;
        let n = logits.len();
        let inv_t = 1.0 / p.temperature;
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            return Err(Error::InvalidArgument("logits contain no finite value (or NaN)".into()));
        }
        self.idx.clear();
        self.idx.extend(0..n as u32);
        let by_logit_desc = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
        // Softmax denominator (relative to the max logit) of the distribution top-p is taken over:
        // the full vocabulary, or the top-k candidates when top-k ran first. None = sum the candidates.
        let mut z_full: Option<f32> = None;

        if p.top_k > 0 && p.top_k < n {
            // Partial selection: O(n) to find the k largest, then sort only those.
            self.idx.select_nth_unstable_by(p.top_k - 1, by_logit_desc);
            self.idx.truncate(p.top_k);
        } else if p.top_p < 1.0 && n > 1 {
            // llama2.c's trick: a token with probability below (1 - top_p) / (n - 1) can never be
            // inside the nucleus, so drop those before sorting. Needs the softmax denominator.
            let z: f32 = logits.iter().map(|&l| ((l - max) * inv_t).exp()).sum();
            let cutoff = (1.0 - p.top_p) / (n - 1) as f32;
            self.idx.retain(|&i| ((logits[i as usize] - max) * inv_t).exp() / z >= cutoff);
            z_full = Some(z);
        }
        self.idx.sort_unstable_by(by_logit_desc);

        // Softmax with temperature over the candidates (the max is the same logit for all).
        let top = logits[self.idx[0] as usize];
        self.probs.clear();
        self.probs.extend(self.idx.iter().map(|&i| ((logits[i as usize] - top) * inv_t).exp()));

        if p.top_p < 1.0 {
            // HF TopPLogitsWarper over the renormalised candidates: keep a token while the mass of
            // the tokens ahead of it is below top_p (so at least one token is kept).
            let total: f32 = z_full.unwrap_or_else(|| self.probs.iter().sum());
            let mut before = 0.0f32;
            let mut keep = self.probs.len();
            for (i, &q) in self.probs.iter().enumerate() {
                if before / total >= p.top_p {
                    keep = i;
                    break;
                }
                before += q;
            }
            self.idx.truncate(keep.max(1));
            self.probs.truncate(keep.max(1));
        }
        if p.min_p > 0.0 {
            // HF MinPLogitsWarper: keep tokens with probability >= min_p * the top probability.
            let threshold = p.min_p * self.probs[0];
            let keep = self.probs.iter().take_while(|&&q| q >= threshold).count().max(1);
            self.idx.truncate(keep);
            self.probs.truncate(keep);
        }
        Ok(())
    }
}
