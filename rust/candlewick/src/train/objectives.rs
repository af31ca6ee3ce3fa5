//! What each architecture learns from, as data: batches of token ids in, (inputs, labels) out.
//!
//! - `mlm`: BERT's masked LM, with the semantics of transformers' DataCollatorForLanguageModeling
//!   (each token picked independently with `probability`, never a special or pad token; of the
//!   picked, `mask_replace_prob` become the mask token, `random_replace_prob` a token drawn over
//!   the whole vocabulary, the rest stay; labels -100 where not picked), and its whole-word masking
//!   (a word is picked, and replaced, as one).
//! - `clm`: a decoder's causal LM: labels are the inputs (pad ignored); the shift to "predict the
//!   next token" happens in the loss.
//! - `span_corruption`: T5's objective (Raffel et al. 2020, 3.1.4), as its
//!   `random_spans_noise_mask` and `noise_span_to_unique_sentinel` do it: about `noise_density`
//!   of the tokens, in spans of mean length `mean_noise_span_length`, each replaced in the inputs
//!   by one sentinel (counting down from vocab_size - 1, `<extra_id_0>`); the labels hold the
//!   dropped spans, each after its sentinel; EOS ends both.
//! - `pack`: a tokenized corpus concatenated and cut into blocks (transformers' `group_texts`).
//!
//! Batches are row-major [rows][cols] i64 (what numpy hands over); -100 is "no label".

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

/// The label transformers' losses skip.
pub const IGNORE: i64 = -100;

/// A batch of ids: `rows` sequences of `cols` tokens, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Ids {
    pub data: Vec<i64>,
    pub rows: usize,
    pub cols: usize,
}

impl Ids {
    pub fn new(data: Vec<i64>, rows: usize, cols: usize) -> Result<Self> {
        if rows.checked_mul(cols) != Some(data.len()) {
            crate::bail!(
                InvalidArgument,
                "input_ids of {} values is not {rows} x {cols}",
                data.len()
            );
        }
        Ok(Ids { data, rows, cols })
    }

    pub fn row(&self, r: usize) -> &[i64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

/// An RNG from `seed`, or from the OS when there is none.
pub fn rng(seed: Option<u64>) -> StdRng {
    match seed {
        Some(s) => StdRng::seed_from_u64(s),
        None => StdRng::from_os_rng(),
    }
}

fn check_prob(name: &str, p: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        crate::bail!(InvalidArgument, "{name} must be in [0, 1], got {p}");
    }
    Ok(())
}

fn check_vocab(name: &str, ids: &Ids, vocab_size: usize) -> Result<()> {
    if vocab_size == 0 {
        crate::bail!(InvalidArgument, "vocab_size must be positive");
    }
    check_ids(&ids.data, vocab_size, name)
}

/// The first id outside 0..vocab, as an error naming `what`.
pub(crate) fn check_ids(ids: &[i64], vocab: usize, what: &str) -> Result<()> {
    if let Some(&bad) = ids.iter().find(|&&i| i < 0 || i as u64 >= vocab as u64) {
        crate::bail!(
            InvalidArgument,
            "{what} holds token id {bad}, outside the vocabulary of {vocab}"
        );
    }
    Ok(())
}

/// Masked-LM settings (transformers' DataCollatorForLanguageModeling fields).
#[derive(Debug, Clone)]
pub struct Mlm<'a> {
    pub mask_token_id: i64,
    pub vocab_size: usize,
    pub special_token_ids: &'a [i64],
    pub probability: f64,
    pub mask_replace_prob: f64,
    pub random_replace_prob: f64,
    /// Whole-word masking: the word index of every token (negative: no word, never picked).
    pub word_ids: Option<&'a Ids>,
}

impl Mlm<'_> {
    fn check(&self, ids: &Ids) -> Result<()> {
        check_prob("probability", self.probability)?;
        check_prob("mask_replace_prob", self.mask_replace_prob)?;
        check_prob("random_replace_prob", self.random_replace_prob)?;
        if self.mask_replace_prob + self.random_replace_prob > 1.0 + 1e-12 {
            crate::bail!(
                InvalidArgument,
                "mask_replace_prob + random_replace_prob must be at most 1, got {} + {}",
                self.mask_replace_prob,
                self.random_replace_prob
            );
        }
        check_vocab("input_ids", ids, self.vocab_size)?;
        if self.mask_token_id < 0 || self.mask_token_id as u64 >= self.vocab_size as u64 {
            crate::bail!(
                InvalidArgument,
                "mask_token_id {} is outside the vocabulary of {}",
                self.mask_token_id,
                self.vocab_size
            );
        }
        if let Some(w) = self.word_ids {
            if (w.rows, w.cols) != (ids.rows, ids.cols) {
                crate::bail!(
                    InvalidArgument,
                    "word_ids has shape ({}, {}) but input_ids ({}, {})",
                    w.rows,
                    w.cols,
                    ids.rows,
                    ids.cols
                );
            }
        }
        Ok(())
    }

    /// (inputs, labels): the masked batch and what the loss should reconstruct.
    pub fn apply(&self, ids: &Ids, rng: &mut impl Rng) -> Result<(Ids, Ids)> {
        self.check(ids)?;
        let mut inputs = ids.clone();
        let mut labels = Ids {
            data: vec![IGNORE; ids.data.len()],
            ..ids.clone()
        };
        // P(random | not masked) so that the overall random share is random_replace_prob
        let rest = 1.0 - self.mask_replace_prob;
        let random_given_rest = if rest > 0.0 {
            (self.random_replace_prob / rest).min(1.0)
        } else {
            0.0
        };
        let vocab = self.vocab_size as u64;
        let mut replace = |i: usize, decision: Decision, rng: &mut dyn rand::RngCore| {
            labels.data[i] = ids.data[i];
            match decision {
                Decision::Mask => inputs.data[i] = self.mask_token_id,
                Decision::Random => inputs.data[i] = rng.random_range(0..vocab) as i64,
                Decision::Keep => {}
            }
        };
        let decide = |rng: &mut dyn rand::RngCore| {
            if rng.random_bool(self.mask_replace_prob) {
                Decision::Mask
            } else if rng.random_bool(random_given_rest) {
                Decision::Random
            } else {
                Decision::Keep
            }
        };
        let pickable = |id: i64| !self.special_token_ids.contains(&id);
        match self.word_ids {
            None => {
                for i in 0..ids.data.len() {
                    if pickable(ids.data[i]) && rng.random_bool(self.probability) {
                        let d = decide(rng);
                        replace(i, d, rng);
                    }
                }
            }
            Some(words) => {
                for r in 0..ids.rows {
                    let w = words.row(r);
                    let mut c = 0;
                    while c < ids.cols {
                        // a word: the run of tokens with the same non-negative word id
                        let i0 = r * ids.cols + c;
                        if w[c] < 0 || !pickable(ids.data[i0]) {
                            c += 1;
                            continue;
                        }
                        let mut end = c + 1;
                        while end < ids.cols
                            && w[end] == w[c]
                            && pickable(ids.data[r * ids.cols + end])
                        {
                            end += 1;
                        }
                        if rng.random_bool(self.probability) {
                            let d = decide(rng);
                            for j in c..end {
                                replace(r * ids.cols + j, d, rng);
                            }
                        }
                        c = end;
                    }
                }
            }
        }
        Ok((inputs, labels))
    }
}

#[derive(Clone, Copy)]
enum Decision {
    Mask,
    Random,
    Keep,
}

/// Causal LM: (inputs, labels, attention mask); labels are the inputs with pad ignored (the loss
/// shifts them), the mask 0 on pad.
pub fn clm(ids: &Ids, pad_token_id: Option<i64>) -> (Ids, Ids, Ids) {
    let is_pad = |i: i64| Some(i) == pad_token_id;
    let labels = ids
        .data
        .iter()
        .map(|&i| if is_pad(i) { IGNORE } else { i })
        .collect();
    let mask = ids.data.iter().map(|&i| i64::from(!is_pad(i))).collect();
    (
        ids.clone(),
        Ids {
            data: labels,
            ..ids.clone()
        },
        Ids {
            data: mask,
            ..ids.clone()
        },
    )
}

/// Python's round(): halves to even.
fn round_even(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// T5 span corruption settings.
#[derive(Debug, Clone, Copy)]
pub struct SpanCorruption {
    pub vocab_size: usize,
    pub eos_token_id: i64,
    pub noise_density: f64,
    pub mean_noise_span_length: f64,
}

/// (number of noise tokens, number of noise spans) T5 draws for a sequence of `length`.
pub fn noise_counts(
    length: usize,
    noise_density: f64,
    mean_noise_span_length: f64,
) -> (usize, usize) {
    let n = length as i64;
    let noise = round_even(n as f64 * noise_density);
    let nonnoise = n - noise;
    let noise = noise.max(1).min(n - 1);
    let spans = round_even(noise.min(nonnoise) as f64 / mean_noise_span_length).max(1);
    (noise.max(0) as usize, spans as usize)
}

/// `num_items` items cut at random into `num_segments` non-empty segments: their lengths, in order.
fn random_segmentation(num_items: usize, num_segments: usize, rng: &mut impl Rng) -> Vec<usize> {
    // num_segments - 1 cut points among the num_items - 1 gaps, chosen uniformly (a shuffle)
    let gaps = num_items.saturating_sub(1);
    let cuts = (num_segments.saturating_sub(1)).min(gaps);
    let mut first = vec![false; gaps];
    first[..cuts].iter_mut().for_each(|f| *f = true);
    for i in (1..gaps).rev() {
        first.swap(i, rng.random_range(0..=i));
    }
    let mut lengths = vec![1usize];
    for f in first {
        if f {
            lengths.push(1);
        } else if let Some(l) = lengths.last_mut() {
            *l += 1;
        }
    }
    lengths
}

impl SpanCorruption {
    fn check(&self, ids: &Ids) -> Result<()> {
        if !(self.noise_density > 0.0 && self.noise_density < 1.0) {
            crate::bail!(
                InvalidArgument,
                "noise_density must be in (0, 1), got {}",
                self.noise_density
            );
        }
        if !(self.mean_noise_span_length >= 1.0 && self.mean_noise_span_length.is_finite()) {
            crate::bail!(
                InvalidArgument,
                "mean_noise_span_length must be at least 1, got {}",
                self.mean_noise_span_length
            );
        }
        if ids.cols < 2 {
            crate::bail!(
                InvalidArgument,
                "span corruption needs sequences of at least 2 tokens, got {}",
                ids.cols
            );
        }
        check_vocab("input_ids", ids, self.vocab_size)?;
        if self.eos_token_id < 0 || self.eos_token_id as u64 >= self.vocab_size as u64 {
            crate::bail!(
                InvalidArgument,
                "eos_token_id {} is outside the vocabulary of {}",
                self.eos_token_id,
                self.vocab_size
            );
        }
        let (_, spans) = noise_counts(ids.cols, self.noise_density, self.mean_noise_span_length);
        if spans + 1 > self.vocab_size {
            crate::bail!(
                InvalidArgument,
                "{spans} noise spans need {spans} sentinels, more than the vocabulary of {}",
                self.vocab_size
            );
        }
        Ok(())
    }

    /// The noise mask of one sequence of `length` (T5's random_spans_noise_mask): it starts with
    /// a non-noise span and alternates.
    pub fn noise_mask(&self, length: usize, rng: &mut impl Rng) -> Vec<bool> {
        let (noise, spans) = noise_counts(length, self.noise_density, self.mean_noise_span_length);
        let noise_lengths = random_segmentation(noise, spans, rng);
        let nonnoise_lengths = random_segmentation(length - noise, spans, rng);
        let mut mask = Vec::with_capacity(length);
        for (nn, n) in nonnoise_lengths.iter().zip(&noise_lengths) {
            mask.extend(std::iter::repeat_n(false, *nn));
            mask.extend(std::iter::repeat_n(true, *n));
        }
        mask.truncate(length);
        mask
    }

    /// Each run of `drop` tokens replaced by one sentinel (vocab_size - 1, - 2, ...), EOS appended.
    fn sentinel_filter(&self, row: &[i64], drop: &[bool]) -> Vec<i64> {
        let mut out = Vec::with_capacity(row.len() + 1);
        let mut sentinel = self.vocab_size as i64 - 1;
        for (i, (&id, &d)) in row.iter().zip(drop).enumerate() {
            if !d {
                out.push(id);
            } else if i == 0 || !drop[i - 1] {
                out.push(sentinel);
                sentinel -= 1;
            }
        }
        out.push(self.eos_token_id);
        out
    }

    /// (inputs, labels) for a batch of equal-length sequences.
    pub fn apply(&self, ids: &Ids, rng: &mut impl Rng) -> Result<(Ids, Ids)> {
        self.check(ids)?;
        let (mut inputs, mut labels) = (Vec::new(), Vec::new());
        let (mut in_len, mut lab_len) = (0, 0);
        for r in 0..ids.rows {
            let mask = self.noise_mask(ids.cols, rng);
            let keep: Vec<bool> = mask.iter().map(|m| !m).collect();
            let i = self.sentinel_filter(ids.row(r), &mask);
            let l = self.sentinel_filter(ids.row(r), &keep);
            (in_len, lab_len) = (i.len(), l.len());
            inputs.extend(i);
            labels.extend(l);
        }
        Ok((
            Ids::new(inputs, ids.rows, in_len)?,
            Ids::new(labels, ids.rows, lab_len)?,
        ))
    }
}

/// transformers' compute_input_and_target_lengths: the raw length to cut the corpus into so that
/// span corruption gives inputs of `inputs_length` tokens, and the labels' length.
pub fn t5_input_length(
    inputs_length: usize,
    noise_density: f64,
    mean_noise_span_length: f64,
) -> Result<(usize, usize)> {
    if !(noise_density > 0.0 && noise_density < 1.0) {
        crate::bail!(
            InvalidArgument,
            "noise_density must be in (0, 1), got {noise_density}"
        );
    }
    if !(mean_noise_span_length >= 1.0 && mean_noise_span_length.is_finite()) {
        crate::bail!(
            InvalidArgument,
            "mean_noise_span_length must be at least 1, got {mean_noise_span_length}"
        );
    }
    if inputs_length == 0 || inputs_length > 1 << 40 {
        crate::bail!(
            InvalidArgument,
            "target_inputs_length must be in [1, 2^40], got {inputs_length}"
        );
    }
    let lengths = |tokens: u64| {
        let noise = round_even(tokens as f64 * noise_density);
        let nonnoise = tokens as i64 - noise;
        let spans = round_even(noise as f64 / mean_noise_span_length);
        (nonnoise + spans + 1, noise + spans + 1)
    };
    // transformers steps tokens up one at a time while the inputs still fit; the inputs' length
    // never falls as tokens grow, so a binary search finds the same last fit in log steps
    let want = inputs_length as i64;
    let mut tokens = inputs_length as u64;
    if lengths(tokens + 1).0 <= want {
        let (mut lo, mut hi) = (
            tokens + 1,
            ((inputs_length as f64 + 2.0) / (1.0 - noise_density) + 2.0).min(4e18) as u64,
        );
        while lengths(hi).0 <= want {
            hi = hi.saturating_mul(2);
        }
        // lengths(lo) fits, lengths(hi) does not
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if lengths(mid).0 <= want {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        tokens = lo;
    }
    let tokens = usize::try_from(tokens)
        .map_err(|_| Error::InvalidArgument("t5_input_length: the raw length overflows".into()))?;
    let (_, mut targets) = lengths(tokens as u64);
    let mut tokens = tokens;
    if noise_density == 0.5 && targets > inputs_length as i64 {
        tokens -= 1;
        targets -= 1;
    }
    Ok((tokens, targets.max(0) as usize))
}

/// Concatenate token lists and cut them into blocks of `block_size` (the remainder is dropped).
pub fn pack(lists: &[Vec<i64>], block_size: usize) -> Result<Ids> {
    if block_size == 0 {
        crate::bail!(InvalidArgument, "block_size must be positive");
    }
    let total: usize = lists.iter().map(Vec::len).sum();
    let rows = total / block_size;
    let mut data = Vec::with_capacity(rows * block_size);
    for l in lists {
        let room = rows * block_size - data.len();
        data.extend_from_slice(&l[..l.len().min(room)]);
    }
    Ids::new(data, rows, block_size)
}

impl From<Ids> for (Vec<i64>, usize, usize) {
    fn from(i: Ids) -> Self {
        (i.data, i.rows, i.cols)
    }
}

/// An error for an objective name no architecture has.
pub fn unknown(name: &str) -> Error {
    Error::InvalidArgument(format!(
        "objective must be 'clm', 'mlm' or 'span_corruption', got {name:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t5_lengths_match_transformers() {
        // compute_input_and_target_lengths(512, 0.15, 3.0) == (568, 114) in transformers' script
        assert_eq!(t5_input_length(512, 0.15, 3.0).unwrap(), (568, 114));
        assert_eq!(t5_input_length(128, 0.15, 3.0).unwrap(), (141, 29));
    }

    #[test]
    fn spans_alternate_and_sentinels_count_down() {
        let sc = SpanCorruption {
            vocab_size: 100,
            eos_token_id: 1,
            noise_density: 0.15,
            mean_noise_span_length: 3.0,
        };
        let ids = Ids::new((2..62).collect(), 2, 30).unwrap();
        let (i, l) = sc.apply(&ids, &mut rng(Some(3))).unwrap();
        let (noise, spans) = noise_counts(30, 0.15, 3.0);
        assert_eq!(i.cols, 30 - noise + spans + 1);
        assert_eq!(l.cols, noise + spans + 1);
        assert_eq!(*i.row(0).last().unwrap(), 1);
        assert_eq!(l.row(0)[0], 99);
    }
}
