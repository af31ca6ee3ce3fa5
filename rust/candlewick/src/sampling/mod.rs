//! Turning logits into a token.
//!
//! One documented chain, HF transformers' order:
//!   logit processors: logit_bias -> repetition_penalty (prompt + output, HF) -> presence and
//!   frequency penalties (output only, OpenAI) -> no_repeat_ngram_size -> suppressed ids
//!   (end-of-generation before min_new_tokens);
//!   then greedy argmax, or the warpers: temperature -> top-k -> top-p -> min-p -> typical-p -> draw.
//! Works on plain slices: no tensor ops, no full sort of the vocabulary.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::GenerationConfig;
use crate::error::{Error, Result};

/// What the processors know about the sequence so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct History<'a> {
    pub prompt: &'a [u32],
    pub output: &'a [u32],
    /// Ids that may not be chosen at this step (end-of-generation before min_new_tokens).
    pub suppress: &'a [u32],
}

/// Processors and warpers of one request, with its random state. Reads its controls from the
/// request's `GenerationConfig` (in f32, the precision the logits are in).
pub struct Sampler {
    params: GenerationConfig,
    rng: StdRng,
    // Scratch buffers reused across steps.
    idx: Vec<u32>,
    probs: Vec<f32>,
    cand: Vec<(f32, u32)>,
}

/// The k-th largest value (1 <= k <= len), with a min-heap of the k largest seen so far: one
/// comparison for most elements when k is small.
fn kth_largest(xs: &[f32], k: usize) -> f32 {
    use std::cmp::Reverse;
    // f32 -> u32 with the same order (total_cmp's), so the heap compares integers.
    let key = |x: f32| {
        let b = x.to_bits();
        if b >> 31 == 1 {
            !b
        } else {
            b | 0x8000_0000
        }
    };
    let unkey = |u: u32| f32::from_bits(if u >> 31 == 1 { u & 0x7fff_ffff } else { !u });
    if k > 1024 {
        let mut v = xs.to_vec();
        return *v.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a)).1;
    }
    let mut heap = std::collections::BinaryHeap::with_capacity(k);
    for &x in xs {
        let u = key(x);
        if heap.len() < k {
            heap.push(Reverse(u));
        } else if let Some(mut top) = heap.peek_mut() {
            if u > top.0 {
                *top = Reverse(u);
            }
        }
    }
    heap.peek().map(|r| unkey(r.0)).unwrap_or(f32::NEG_INFINITY)
}

/// The first index whose value is `bad`: a branch-free pass over chunks first (it vectorizes: a
/// 262k vocabulary in tens of µs, where an early-exit scan takes hundreds), the position only
/// inside the chunk that holds one.
pub fn first_where(xs: &[f32], bad: impl Fn(f32) -> bool) -> Option<usize> {
    const CHUNK: usize = 4096;
    let c = xs
        .chunks(CHUNK)
        .position(|c| c.iter().fold(false, |b, &x| b | bad(x)))?;
    xs[c * CHUNK..]
        .iter()
        .position(|&x| bad(x))
        .map(|i| c * CHUNK + i)
}

/// Logits must be numbers: NaN or +inf (from corrupt weights or an overflow) is an error, never
/// a token picked by accident.
pub fn check_finite(xs: &[f32]) -> Result<()> {
    match first_where(xs, |x| x.is_nan() || x == f32::INFINITY) {
        None => Ok(()),
        Some(i) => Err(Error::InvalidArgument(format!(
            "logits must be finite numbers (or -inf): {} at token {i}",
            xs[i]
        ))),
    }
}

/// Argmax of processed logits, refusing a vocabulary where every token is banned (all -inf).
fn greedy(xs: &[f32]) -> Result<u32> {
    let i = argmax(xs);
    if xs[i as usize] == f32::NEG_INFINITY {
        return Err(Error::InvalidArgument(
            "no token can be generated: logit_bias, bad words or suppression ban every token in the vocabulary".into(),
        ));
    }
    Ok(i)
}

/// Index of the largest value (the first one on ties, as torch.argmax and llama.cpp do).
pub fn argmax(xs: &[f32]) -> u32 {
    // the largest value in 8 lanes (the select compiles to vector max; NaN is never taken, as
    // in the plain loop), then its first position
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let best_v = lanes
        .iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    xs.iter().position(|&v| v == best_v).unwrap_or(0) as u32
}

/// log(sum(exp(logits))), in f64: the normaliser of the model's own distribution.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    max + logits
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln()
}

/// The `n` most probable ids with their natural-log probabilities, most probable first.
pub fn top_logprobs(logits: &[f32], n: usize, lse: f64) -> Vec<(u32, f32)> {
    let n = n.min(logits.len());
    if n == 0 {
        return Vec::new();
    }
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let desc = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    idx.select_nth_unstable_by(n - 1, desc);
    idx.truncate(n);
    idx.sort_by(desc);
    idx.into_iter()
        .map(|i| (i, (logits[i as usize] as f64 - lse) as f32))
        .collect()
}

/// HF `RepetitionPenaltyLogitsProcessor`: each token seen gets its logit divided by the penalty
/// when positive, multiplied when negative (once, however often it was seen).
pub fn apply_repetition_penalty(logits: &mut [f32], seen: impl Iterator<Item = u32>, penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut done = vec![false; logits.len()];
    for t in seen {
        let t = t as usize;
        if t < logits.len() && !done[t] {
            done[t] = true;
            let l = &mut logits[t];
            *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
        }
    }
}

/// HF `NoRepeatNGramLogitsProcessor`: the tokens that would complete an n-gram already present.
pub fn banned_ngram_tokens(seq: &[u32], n: usize) -> Vec<u32> {
    if n == 0 || seq.len() + 1 < n {
        return Vec::new();
    }
    let prefix = &seq[seq.len() + 1 - n..];
    seq.windows(n)
        .filter(|w| &w[..n - 1] == prefix)
        .map(|w| w[n - 1])
        .collect()
}

impl Sampler {
    /// `seed = None` draws a seed from the OS.
    pub fn new(params: &GenerationConfig, seed: Option<u64>) -> Result<Self> {
        params.validate()?;
        let params = params.clone();
        let rng = match seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Ok(Self {
            params,
            rng,
            idx: Vec::new(),
            probs: Vec::new(),
            cand: Vec::new(),
        })
    }

    pub fn params(&self) -> &GenerationConfig {
        &self.params
    }

    /// The logit processors (everything before temperature), in place.
    pub fn process(&self, logits: &mut [f32], h: History) -> Result<()> {
        let p = &self.params;
        let n = logits.len();
        for (&id, &b) in &p.logit_bias {
            let l = logits.get_mut(id as usize).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "logit_bias names token {id}, outside the vocabulary of {n}"
                ))
            })?;
            *l += b as f32;
        }
        apply_repetition_penalty(
            logits,
            h.prompt.iter().chain(h.output).copied(),
            p.repetition_penalty as f32,
        );
        if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
            let mut counts = std::collections::HashMap::<u32, u32>::new();
            for &t in h.output {
                *counts.entry(t).or_default() += 1;
            }
            for (t, c) in counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= p.presence_penalty as f32 + p.frequency_penalty as f32 * c as f32;
                }
            }
        }
        if p.no_repeat_ngram_size > 0 {
            let seq: Vec<u32> = h.prompt.iter().chain(h.output).copied().collect();
            for t in banned_ngram_tokens(&seq, p.no_repeat_ngram_size) {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        for &t in h.suppress {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Pick the next token. `logits` is modified in place by the processors.
    pub fn sample(&mut self, logits: &mut [f32], h: History) -> Result<u32> {
        if logits.is_empty() {
            return Err(Error::InvalidArgument("empty logits".into()));
        }
        check_finite(logits)?;
        self.process(logits, h)?;
        if self.params.is_greedy() {
            return greedy(logits);
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
        self.idx
            .last()
            .copied()
            .ok_or_else(|| Error::InvalidArgument("no candidate token left".into()))
    }

    /// The distribution the sampler draws from: (token ids, probabilities summing to 1), most
    /// probable first. Exposed for tests and `cw.sample`.
    pub fn distribution(&mut self, logits: &[f32]) -> Result<(Vec<u32>, Vec<f32>)> {
        let mut l = logits.to_vec();
        check_finite(&l)?;
        self.process(&mut l, History::default())?;
        if self.params.is_greedy() {
            return Ok((vec![greedy(&l)?], vec![1.0]));
        }
        self.filtered_distribution(&mut l)?;
        let total: f32 = self.probs.iter().sum();
        Ok((
            self.idx.clone(),
            self.probs.iter().map(|p| p / total).collect(),
        ))
    }

    /// The distribution after each step of the sampler, as far as `params` sets each: the plain
    /// softmax, then temperature, top-k, top-p and min-p, each step the sampler itself with the
    /// controls up to that step. [(step name, probabilities over the vocabulary; 0 = cut)].
    pub fn stages(logits: &[f32], params: &GenerationConfig) -> Result<Vec<(String, Vec<f32>)>> {
        params.validate()?;
        if logits.is_empty() {
            return Err(Error::InvalidArgument("logits is empty".into()));
        }
        let plain = GenerationConfig {
            do_sample: true,
            ..Default::default()
        };
        let mut cur = plain.clone();
        let mut steps = vec![("softmax".to_string(), plain)];
        if params.temperature != 1.0 {
            cur.temperature = params.temperature;
            steps.push((format!("temperature {}", params.temperature), cur.clone()));
        }
        if params.top_k > 0 {
            cur.top_k = params.top_k;
            steps.push((format!("top-k {}", params.top_k), cur.clone()));
        }
        if params.top_p < 1.0 {
            cur.top_p = params.top_p;
            steps.push((format!("top-p {}", params.top_p), cur.clone()));
        }
        if params.min_p > 0.0 {
            cur.min_p = params.min_p;
            steps.push((format!("min-p {}", params.min_p), cur.clone()));
        }
        steps
            .into_iter()
            .map(|(name, cfg)| {
                let (ids, probs) = Sampler::new(&cfg, Some(0))?.distribution(logits)?;
                let mut dense = vec![0f32; logits.len()];
                for (i, p) in ids.into_iter().zip(probs) {
                    dense[i as usize] = p;
                }
                Ok((name, dense))
            })
            .collect()
    }

    /// Fill `idx`/`probs` with the candidates left after temperature, top-k, top-p and min-p,
    /// sorted by probability (descending), probabilities unnormalised.
    fn filtered_distribution(&mut self, logits: &mut [f32]) -> Result<()> {
        let p = &self.params;
        let (top_k, top_p, min_p, typical_p) =
            (p.top_k, p.top_p as f32, p.min_p as f32, p.typical_p as f32);
        let n = logits.len();
        let inv_t = 1.0 / p.temperature as f32;
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            return Err(Error::InvalidArgument(
                "no token can be generated: every logit is -inf after logit_bias and the penalties, or NaN".into(),
            ));
        }
        // Candidates are gathered in one pass over the vocabulary with a lower bound on the logit
        // that no kept token can be under, so only they are ever sorted.
        // Softmax denominator (relative to the max logit) of the distribution top-p is taken over:
        // the full vocabulary, or the top-k candidates when top-k ran first. None = sum the candidates.
        let mut z_full: Option<f64> = None;
        let mut floor = f32::NEG_INFINITY;
        if top_k > 0 && top_k < n {
            // The k-th largest logit (HF keeps ties with it).
            floor = kth_largest(logits, top_k);
        } else if top_p < 1.0 && n > 1 {
            // llama2.c's trick: a token with probability below (1 - top_p) / (n - 1) can never be
            // inside the nucleus: p_i < c <=> logit_i < max + ln(c * z) * T.
            let z = crate::kernels::math::sum_exp(logits, max, inv_t);
            let cutoff = (1.0 - top_p) / (n - 1) as f32;
            floor = max + (cutoff as f64 * z).ln() as f32 / inv_t;
            z_full = Some(z);
        }
        // min-p keeps p >= min_p * p_max, i.e. logit >= max + ln(min_p) * T; top-k and top-p
        // never drop the top token, so dropping those early changes nothing after. (Not before
        // top-p's denominator over the top-k survivors is taken.)
        let min_floor = if min_p > 0.0 {
            max + min_p.ln() / inv_t
        } else {
            f32::NEG_INFINITY
        };
        let topk_then_topp = top_k > 0 && top_k < n && top_p < 1.0;
        if !topk_then_topp {
            floor = floor.max(min_floor);
        }
        // (logit, id) pairs: sorting them compares in place, without a lookup per comparison.
        let cand = &mut self.cand;
        cand.clear();
        cand.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, &l)| l >= floor)
                .map(|(i, &l)| (l, i as u32)),
        );
        if cand.is_empty() {
            let i = argmax(logits);
            cand.push((logits[i as usize], i));
        }
        if topk_then_topp {
            // top-p renormalises over all top-k survivors.
            z_full = Some(
                cand.iter()
                    .map(|&(l, _)| ((l - max) * inv_t).exp() as f64)
                    .sum(),
            );
            cand.retain(|&(l, _)| l >= min_floor);
        }
        let desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        // Top-p usually ends within the first few hundred candidates: sort those first, and the
        // rest only when their mass falls short of top_p.
        const HEAD: usize = 256;
        let mut sorted = false;
        if top_p < 1.0 && cand.len() > 2 * HEAD {
            let total: f64 = match z_full {
                Some(z) => z,
                None => cand
                    .iter()
                    .map(|&(l, _)| ((l - max) * inv_t).exp() as f64)
                    .sum(),
            };
            cand.select_nth_unstable_by(HEAD - 1, desc);
            cand[..HEAD].sort_unstable_by(desc);
            let head: f64 = cand[..HEAD]
                .iter()
                .map(|&(l, _)| ((l - max) * inv_t).exp() as f64)
                .sum();
            if head / total >= top_p as f64 {
                cand.truncate(HEAD);
                sorted = true;
            }
        }
        if !sorted {
            cand.sort_unstable_by(desc);
        }
        self.idx.clear();
        self.idx.extend(cand.iter().map(|&(_, i)| i));

        // Softmax with temperature over the candidates (the max is the same logit for all).
        let top = logits[self.idx[0] as usize];
        self.probs.clear();
        self.probs.extend(
            self.idx
                .iter()
                .map(|&i| ((logits[i as usize] - top) * inv_t).exp()),
        );

        if top_p < 1.0 {
            // HF TopPLogitsWarper over the renormalised candidates: keep a token while the mass of
            // the tokens ahead of it is below top_p (so at least one token is kept).
            // The running mass in f64: over tens of thousands of candidates an f32 sum drifts
            // enough to move the boundary.
            let total: f64 = z_full.unwrap_or_else(|| self.probs.iter().map(|&q| q as f64).sum());
            let mut before = 0.0f64;
            let mut keep = self.probs.len();
            for (i, &q) in self.probs.iter().enumerate() {
                if before / total >= top_p as f64 {
                    keep = i;
                    break;
                }
                before += q as f64;
            }
            self.idx.truncate(keep.max(1));
            self.probs.truncate(keep.max(1));
        }
        if min_p > 0.0 {
            // HF MinPLogitsWarper: keep tokens with probability >= min_p * the top probability.
            let threshold = min_p * self.probs[0];
            let keep = self
                .probs
                .iter()
                .take_while(|&&q| q >= threshold)
                .count()
                .max(1);
            self.idx.truncate(keep);
            self.probs.truncate(keep);
        }
        if typical_p < 1.0 && self.idx.len() > 1 {
            // HF TypicalLogitsWarper over the remaining candidates: rank tokens by how far their
            // information content is from the entropy, keep the closest up to typical_p mass.
            let total: f32 = self.probs.iter().sum();
            let logp: Vec<f32> = self.probs.iter().map(|q| (q / total).ln()).collect();
            let ent: f32 = -logp
                .iter()
                .zip(&self.probs)
                .map(|(l, q)| l * q / total)
                .sum::<f32>();
            let shifted: Vec<f32> = logp.iter().map(|l| (-l - ent).abs()).collect();
            let mut order: Vec<usize> = (0..shifted.len()).collect();
            order.sort_by(|&a, &b| shifted[a].total_cmp(&shifted[b]));
            let mut cum = 0.0f32;
            let mut last = 0usize;
            for &o in &order {
                cum += self.probs[o] / total;
                if cum < typical_p {
                    last += 1;
                } else {
                    break;
                }
            }
            let threshold = shifted[order[last.min(order.len() - 1)]];
            let (idx, probs): (Vec<u32>, Vec<f32>) = self
                .idx
                .iter()
                .zip(&self.probs)
                .zip(&shifted)
                .filter(|(_, &s)| s <= threshold)
                .map(|((&i, &q), _)| (i, q))
                .unzip();
            self.idx = idx;
            self.probs = probs;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain first-largest scan `argmax` must agree with.
    fn argmax_plain(xs: &[f32]) -> u32 {
        let (mut best, mut best_v) = (0usize, f32::NEG_INFINITY);
        for (i, &v) in xs.iter().enumerate() {
            if v > best_v {
                (best, best_v) = (i, v);
            }
        }
        best as u32
    }

    #[test]
    fn argmax_is_the_first_largest_on_ties_nan_and_tails() {
        let mut cases: Vec<Vec<f32>> = vec![
            vec![],
            vec![f32::NEG_INFINITY; 13],
            vec![1.0, 3.0, 3.0, 2.0],
            vec![f32::NAN, 1.0, f32::NAN, 1.0, 0.5],
            vec![f32::NAN; 9],
        ];
        // ties across lanes, chunks and the tail, at lengths around multiples of 8
        for n in [1usize, 7, 8, 9, 16, 17, 31, 4097] {
            for at in [0, n / 2, n - 1] {
                let mut v: Vec<f32> = (0..n).map(|i| ((i * 37) % 11) as f32 - 20.0).collect();
                v[at] = 5.0;
                v[n - 1 - at / 2] = 5.0;
                cases.push(v);
            }
        }
        for c in &cases {
            assert_eq!(argmax(c), argmax_plain(c), "{c:?}");
        }
    }

    #[test]
    fn check_finite_names_the_first_bad_value() {
        let mut v = vec![0.5f32; 10_000];
        v[0] = f32::NEG_INFINITY; // allowed: a banned token
        assert!(check_finite(&v).is_ok());
        v[9000] = f32::INFINITY;
        v[9500] = f32::NAN;
        let e = check_finite(&v).unwrap_err().to_string();
        assert!(e.contains("token 9000"), "{e}");
        v[4100] = f32::NAN;
        let e = check_finite(&v).unwrap_err().to_string();
        assert!(e.contains("NaN at token 4100"), "{e}");
    }
}
