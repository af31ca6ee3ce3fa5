//! Perplexity, computed as transformers' guide "Perplexity of fixed-length models" computes it:
//! each text is read in windows of `max_length` tokens that start every `stride` tokens, so
//! windows overlap by max_length - stride and every token after the first window's is predicted
//! with at least that much context; a window's labels inside the overlap with the previous one
//! are ignored (-100), so each token is counted once. The sum is exact: each counted token's
//! negative log-likelihood is added (the guide weights a window's mean loss by its label count
//! minus one, which is off by one token per window after the first). Windows run through
//! `start`/`step`, so decoders and recurrent LMs are measured alike, in pieces of at most
//! `UBATCH` tokens in all (shared by the windows that run together), so that no more than a
//! piece's logits are ever held.

use super::state::{Logits, UBATCH};
use super::{Model, Step};
use crate::error::{Error, Result};
use crate::sampling::log_sum_exp;

/// How `perplexity` windows its texts.
#[derive(Debug, Clone, Default)]
pub struct PerplexityOptions {
    /// Tokens of a window (None: the model's context).
    pub max_length: Option<usize>,
    /// Tokens between window starts (None: max_length, windows that do not overlap).
    pub stride: Option<usize>,
    /// Windows run through the model together.
    pub batch_size: usize,
    /// Keep every token's negative log-likelihood.
    pub token_nll: bool,
}

/// What `perplexity` measured.
#[derive(Debug, Clone)]
pub struct Perplexity {
    /// exp(nll).
    pub perplexity: f64,
    /// Mean negative log-likelihood (nats) over the counted tokens.
    pub nll: f64,
    /// Tokens predicted and counted (every token of a scored text but its first).
    pub tokens: usize,
    pub windows: usize,
    /// Texts scored, and texts skipped for having fewer than two tokens.
    pub texts: usize,
    pub skipped: usize,
    /// Of each scored text: (summed nll, tokens counted).
    pub per_text: Vec<(f64, usize)>,
    /// With `token_nll`: per scored text, per token, its nll (NaN for the first token, which
    /// nothing predicts).
    pub token_nll: Vec<Vec<f32>>,
}

/// One window of one text: its tokens are text[begin..end], and positions first..end of the
/// text are counted (predicted by the window's rows first - 1 - begin .. end - 1 - begin).
struct Window {
    text: usize,
    begin: usize,
    end: usize,
    first: usize,
}

/// The windows of a text of `n` tokens, as the guide's loop makes them.
fn windows_of(text: usize, n: usize, max_length: usize, stride: usize, out: &mut Vec<Window>) {
    let mut prev_end = 0;
    let mut begin = 0;
    while begin < n {
        let end = (begin + max_length).min(n);
        // the guide's trg_len = end - prev_end labels; the first token of a window has no row
        let first = prev_end.max(begin + 1);
        if first < end {
            out.push(Window {
                text,
                begin,
                end,
                first,
            });
        }
        prev_end = end;
        if end == n {
            break;
        }
        begin += stride;
    }
}

impl Model {
    /// Perplexity of `texts` (token ids each) with sliding windows; texts of fewer than two
    /// tokens are skipped and counted. `interrupted` is asked between pieces (Ctrl-C).
    pub fn perplexity(
        &self,
        texts: &[Vec<u32>],
        o: &PerplexityOptions,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Perplexity> {
        self.require_decoder("perplexity")?;
        if self.encoder.is_some() {
            return Err(Error::Unsupported(
                "perplexity is for decoders and recurrent LMs; an encoder-decoder's loss on a target is model.loss".into(),
            ));
        }
        let ctx = self.context_length();
        let max_length = o.max_length.unwrap_or(ctx);
        if max_length < 2 {
            crate::bail!(InvalidArgument, "max_length must be at least 2 (a window predicts its tokens after the first), got {max_length}");
        }
        if max_length > ctx {
            crate::bail!(
                InvalidArgument,
                "max_length {max_length} is longer than the model's context of {ctx} positions"
            );
        }
        let stride = o.stride.unwrap_or(max_length);
        if stride == 0 {
            crate::bail!(InvalidArgument, "stride must be positive");
        }
        if stride > max_length {
            crate::bail!(InvalidArgument, "stride {stride} is larger than max_length {max_length}: tokens between windows would never be scored");
        }
        if o.batch_size == 0 || o.batch_size > 1 << 16 {
            crate::bail!(
                InvalidArgument,
                "batch_size must be between 1 and 65536, got {}",
                o.batch_size
            );
        }
        let scored: Vec<&Vec<u32>> = texts.iter().filter(|t| t.len() >= 2).collect();
        let skipped = texts.len() - scored.len();
        if scored.is_empty() {
            crate::bail!(
                InvalidArgument,
                "no text has two tokens or more, so nothing can be predicted ({skipped} skipped)"
            );
        }
        for t in &scored {
            self.check_ids(t, "a text")?;
        }
        let mut windows = Vec::new();
        for (i, t) in scored.iter().enumerate() {
            windows_of(i, t.len(), max_length, stride, &mut windows);
        }
        let mut per_text = vec![(0f64, 0usize); scored.len()];
        let mut token_nll: Vec<Vec<f32>> = if o.token_nll {
            scored.iter().map(|t| vec![f32::NAN; t.len()]).collect()
        } else {
            Vec::new()
        };
        let vocab = self.config.vocab_size;
        for (g, group) in windows.chunks(o.batch_size).enumerate() {
            crate::interrupt::progress(g * o.batch_size, windows.len());
            let mut states = group
                .iter()
                .map(|w| self.start(&scored[w.text][w.begin..w.end], 0))
                .collect::<Result<Vec<_>>>()?;
            let longest = group.iter().map(|w| w.end - w.begin).max().unwrap_or(0);
            // the windows of a group share one step's UBATCH tokens, so that a step's logits stay
            // at UBATCH rows however many windows run together
            let piece_len = (UBATCH / group.len()).max(16);
            for piece in (0..longest).step_by(piece_len) {
                if interrupted() {
                    return Err(Error::Interrupted);
                }
                // the requests with tokens in this piece (text positions lo..hi), and whether a
                // counted row is among them
                let span = |w: &Window| {
                    let len = w.end - w.begin;
                    (piece < len).then(|| (w.begin + piece, w.begin + (piece + piece_len).min(len)))
                };
                let live: Vec<(usize, usize, usize)> = group
                    .iter()
                    .enumerate()
                    .filter_map(|(k, w)| span(w).map(|(lo, hi)| (k, lo, hi)))
                    .collect();
                let needed = live
                    .iter()
                    .any(|&(k, lo, hi)| lo.max(group[k].first - 1) < hi.min(group[k].end - 1));
                let mut steps: Vec<Step> = states
                    .iter_mut()
                    .zip(group)
                    .filter_map(|(state, w)| {
                        span(w).map(|(lo, hi)| Step {
                            state,
                            ids: &scored[w.text][lo..hi],
                        })
                    })
                    .collect();
                let rows =
                    self.step(&mut steps, if needed { Logits::All } else { Logits::None })?;
                if !needed {
                    continue;
                }
                for (&(k, lo, hi), r) in live.iter().zip(&rows) {
                    let w = &group[k];
                    let text = scored[w.text];
                    // row j (text position lo + j) predicts the token after it
                    for p in lo.max(w.first - 1)..hi.min(w.end - 1) {
                        let row = &r[(p - lo) * vocab..(p - lo + 1) * vocab];
                        let target = text[p + 1] as usize;
                        let nll = log_sum_exp(row) - row[target] as f64;
                        if !nll.is_finite() {
                            crate::bail!(Model, "the model's logits at position {p} of a text are not finite: no perplexity");
                        }
                        per_text[w.text].0 += nll;
                        per_text[w.text].1 += 1;
                        if o.token_nll {
                            token_nll[w.text][p + 1] = nll as f32;
                        }
                    }
                }
            }
        }
        crate::interrupt::progress(windows.len(), windows.len());
        let tokens: usize = per_text.iter().map(|t| t.1).sum();
        let nll = per_text.iter().map(|t| t.0).sum::<f64>() / tokens as f64;
        Ok(Perplexity {
            perplexity: nll.exp(),
            nll,
            tokens,
            windows: windows.len(),
            texts: scored.len(),
            skipped,
            per_text,
            token_nll,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(n: usize, max_length: usize, stride: usize) -> Vec<usize> {
        let mut w = Vec::new();
        windows_of(0, n, max_length, stride, &mut w);
        let mut seen = vec![0; n];
        for x in &w {
            assert!(x.end - x.begin <= max_length && x.first > x.begin);
            for s in seen.iter_mut().take(x.end).skip(x.first) {
                *s += 1;
            }
        }
        seen
    }

    #[test]
    fn overlapping_windows_count_every_token_but_the_first_once() {
        for (n, m, s) in [
            (10, 4, 2),
            (11, 4, 3),
            (100, 7, 1),
            (2, 8, 8),
            (9, 9, 9),
            (30, 9, 8),
        ] {
            let seen = counted(n, m, s);
            assert_eq!(seen[0], 0, "{n} {m} {s}");
            assert!(seen[1..].iter().all(|&c| c == 1), "{n} {m} {s}: {seen:?}");
        }
    }

    #[test]
    fn disjoint_windows_do_not_predict_their_first_tokens() {
        for (n, m) in [(10, 4), (17, 5), (16, 4)] {
            let seen = counted(n, m, m);
            for (p, &c) in seen.iter().enumerate() {
                assert_eq!(c, usize::from(p % m != 0), "{n} {m}: {seen:?}");
            }
        }
    }

    #[test]
    fn windows_follow_the_guide() {
        // seq 10, max_length 4, stride 2: begins 0, 2, 4, 6; the last ends at 10
        let mut w = Vec::new();
        windows_of(0, 10, 4, 2, &mut w);
        let got: Vec<(usize, usize, usize)> = w.iter().map(|x| (x.begin, x.end, x.first)).collect();
        assert_eq!(got, vec![(0, 4, 1), (2, 6, 4), (4, 8, 6), (6, 10, 8)]);
    }
}
