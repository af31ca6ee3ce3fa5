//! What a model is asked for besides generation: logits (of padded batches, of encoder-decoder
//! inputs), scores of continuations (lm-evaluation-harness' loglikelihood), encoder outputs and
//! sentence embeddings, fill-mask, and the traced forward (hidden states and attention weights).
//! Each checks its inputs once and runs the model through `start`/`step` or its encoder.

use super::state::Logits;
use super::transformer::{Trace, Transformer};
use super::{Model, Pooling, Step};
use crate::error::{Error, Result};
use crate::sampling::{argmax, log_sum_exp};

/// Texts per encoder pass in `embed`.
const EMBED_BATCH: usize = 32;

/// How likely a continuation is after a context.
#[derive(Debug, Clone)]
pub struct Score {
    /// Sum of the continuation tokens' natural-log probabilities.
    pub logprob: f64,
    /// Whether greedy decoding from the context would produce exactly this continuation.
    pub is_greedy: bool,
    pub token_logprobs: Vec<f32>,
}

/// Token vectors of a batch of texts, padded to the longest.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub input_ids: Vec<Vec<u32>>,
    /// [batch][longest][hidden], zeros past each row's end.
    pub hidden: Vec<f32>,
    /// [batch][longest]: 1 = a real token.
    pub attention_mask: Vec<i64>,
    pub longest: usize,
}

/// One candidate for a masked position.
#[derive(Debug, Clone)]
pub struct MaskFill {
    pub token: u32,
    pub token_str: String,
    pub score: f64,
    /// The text with the mask filled (special tokens skipped).
    pub sequence: String,
}

/// Python's `str.isspace` (lm-evaluation-harness strips the context's trailing whitespace).
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// An attention mask of a row of `len` ids: 0s and 1s, at least one 1.
fn check_mask(mask: &[i64], len: usize) -> Result<()> {
    if mask.len() != len {
        return Err(Error::InvalidArgument(
            "attention_mask must have the same shape as ids".into(),
        ));
    }
    if mask.iter().any(|&m| m != 0 && m != 1) {
        return Err(Error::InvalidArgument(
            "attention_mask must contain only 0 and 1".into(),
        ));
    }
    if !mask.contains(&1) {
        return Err(Error::InvalidArgument(
            "attention_mask masks every token of a row".into(),
        ));
    }
    Ok(())
}

/// The real tokens [start, end) of a row under its attention mask, which must be contiguous
/// (left or right padding).
fn real_span(mask: &[i64], len: usize) -> Result<(usize, usize)> {
    check_mask(mask, len)?;
    let first = mask.iter().position(|&m| m == 1).unwrap_or(0);
    let end = len - mask.iter().rev().position(|&m| m == 1).unwrap_or(0);
    if mask[first..end].contains(&0) {
        return Err(Error::InvalidArgument(
            "the unmasked tokens of a row must be contiguous (left or right padding)".into(),
        ));
    }
    Ok((first, end))
}

impl Model {
    /// Logits of each row of a batch, [positions, vocab] row-major each, `keep` > 0 keeping only
    /// a row's last `keep` positions (transformers' logits_to_keep). With `masks` (1 = real
    /// token), a decoder or encoder runs each row's real tokens (contiguous: left or right
    /// padding), their positions counted from the first real token as generate counts them, and
    /// padded positions get zero rows; an encoder-decoder drops the masked tokens of its input and
    /// gives the logits of `decoder` ids. A decoder asked for its last real position alone runs
    /// its head on that row only, as generate's prefill does.
    pub fn logits(
        &self,
        rows: &[Vec<u32>],
        masks: Option<&[Vec<i64>]>,
        decoder: Option<&[Vec<u32>]>,
        keep: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let n = rows.first().map(|r| r.len()).unwrap_or(0);
        if rows.is_empty() || n == 0 {
            return Err(Error::InvalidArgument("ids is empty".into()));
        }
        if rows.iter().any(|r| r.len() != n) {
            return Err(Error::InvalidArgument(
                "2-D ids must be rectangular (pad the rows and pass attention_mask)".into(),
            ));
        }
        if masks.is_some_and(|m| m.len() != rows.len())
            || decoder.is_some_and(|d| d.len() != rows.len())
        {
            return Err(Error::InvalidArgument(
                "ids, attention_mask and decoder_input_ids must have the same batch size".into(),
            ));
        }
        let mask = |i: usize| masks.map(|m| m[i].as_slice());
        match (&self.encoder, &self.decoder) {
            (Some(_), Some(_)) => {
                let dec = decoder.ok_or_else(|| {
                    Error::InvalidArgument(
                        "an encoder-decoder needs decoder_input_ids (e.g. [[decoder_start_token_id]])".into(),
                    )
                })?;
                let d = dec[0].len();
                if dec.iter().any(|r| r.len() != d) {
                    return Err(Error::InvalidArgument(
                        "decoder_input_ids must be rectangular".into(),
                    ));
                }
                rows.iter()
                    .enumerate()
                    .map(|(i, r)| {
                        // the encoder reads the input's real tokens (masked ones are dropped)
                        let input: Vec<u32> = match mask(i) {
                            Some(m) => {
                                check_mask(m, r.len())?;
                                r.iter()
                                    .zip(m)
                                    .filter(|(_, &k)| k == 1)
                                    .map(|(&t, _)| t)
                                    .collect()
                            }
                            None => r.clone(),
                        };
                        let out = self.seq2seq_logits(&input, &dec[i])?;
                        Ok(self.keep_last(out, d, keep))
                    })
                    .collect()
            }
            (enc, dec) => {
                let generates = dec.is_some() || self.recurrent.is_some();
                if decoder.is_some() {
                    return Err(Error::InvalidArgument(format!(
                        "decoder_input_ids is for encoder-decoder models; this model is a{}",
                        if generates { " decoder" } else { "n encoder" }
                    )));
                }
                if let (Some(e), None) = (enc, dec) {
                    if e.head.is_none() {
                        return Err(Error::Unsupported(
                            "this encoder has no LM head to give logits: use encode or embed"
                                .into(),
                        ));
                    }
                }
                let v = self.config.vocab_size;
                rows.iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let (a, b) = match mask(i) {
                            Some(m) => real_span(m, n)?,
                            None => (0, n),
                        };
                        // the positions asked for, and the real ones among them
                        let from = if keep == 0 { 0 } else { n - keep.min(n) };
                        let mut out = vec![0f32; (n - from) * v];
                        let (lo, hi) = (a.max(from), b);
                        if lo < hi {
                            // one sequence, all real, asked for its last position: as generate's prefill
                            let last_only = generates
                                && masks.is_none()
                                && rows.len() == 1
                                && lo + 1 == hi
                                && hi == b;
                            let got = self.real_logits(&r[a..b], last_only)?;
                            let first = if last_only { b - 1 } else { a };
                            for p in lo..hi {
                                out[(p - from) * v..(p - from + 1) * v]
                                    .copy_from_slice(&got[(p - first) * v..(p - first + 1) * v]);
                            }
                        }
                        Ok(out)
                    })
                    .collect()
            }
        }
    }

    /// The last `keep` positions (all when 0) of logits [positions, vocab].
    fn keep_last(&self, mut rows: Vec<f32>, positions: usize, keep: usize) -> Vec<f32> {
        if keep > 0 && keep < positions {
            rows.drain(..(positions - keep) * self.config.vocab_size);
        }
        rows
    }

    /// Logits of one sequence of real tokens: a decoder's (every position, or the last), or an
    /// encoder's masked-LM head.
    fn real_logits(&self, ids: &[u32], last_only: bool) -> Result<Vec<f32>> {
        if self.decoder.is_some() || self.recurrent.is_some() {
            let mut state = self.start(ids, 0)?;
            let want = if last_only { Logits::Last } else { Logits::All };
            let mut rows = self.step(
                &mut [Step {
                    state: &mut state,
                    ids,
                }],
                want,
            )?;
            return Ok(rows.pop().unwrap_or_default());
        }
        self.mlm_logits(ids)
    }

    /// Encoder-decoder logits [decoder tokens, vocab] for an input and the decoder's input ids.
    pub fn seq2seq_logits(&self, input_ids: &[u32], decoder_input_ids: &[u32]) -> Result<Vec<f32>> {
        let mut state = self.start(input_ids, decoder_input_ids.len())?;
        let mut rows = self.step(
            &mut [Step {
                state: &mut state,
                ids: decoder_input_ids,
            }],
            Logits::All,
        )?;
        Ok(rows.pop().unwrap_or_default())
    }

    /// Score `continuation` after `context`. Decoders run both as one sequence (too long an
    /// input loses tokens from the left of the context, as lm-evaluation-harness does): the
    /// context in one pass, as generate's prefill, gives the row that predicts the first
    /// continuation token, the continuation but its last token gives the rest. Encoder-decoders
    /// encode the context and decode the continuation after the start id.
    pub fn score(&self, context: &[u32], continuation: &[u32]) -> Result<Score> {
        if context.is_empty() || continuation.is_empty() {
            return Err(Error::InvalidArgument(
                "score needs a non-empty context and continuation".into(),
            ));
        }
        let ctx = self.context_length();
        if continuation.len() >= ctx {
            return Err(Error::ContextOverflow(format!(
                "a continuation of {} tokens does not fit the model's context of {ctx}",
                continuation.len()
            )));
        }
        let rows = if self.encoder.is_some() {
            let mut state = self.start(context, continuation.len())?;
            let ids: Vec<u32> = state
                .prefix()
                .iter()
                .chain(&continuation[..continuation.len() - 1])
                .copied()
                .collect();
            self.step(
                &mut [Step {
                    state: &mut state,
                    ids: &ids,
                }],
                Logits::All,
            )?
            .concat()
        } else {
            let mut ids: Vec<u32> = context.iter().chain(continuation).copied().collect();
            if ids.len() > ctx {
                ids.drain(..ids.len() - ctx);
            }
            let first = ids.len() - continuation.len(); // position of the first continuation token
            let mut state = self.start(&ids[..first], continuation.len())?;
            let mut rows = self
                .step(
                    &mut [Step {
                        state: &mut state,
                        ids: &ids[..first],
                    }],
                    Logits::Last,
                )?
                .concat();
            if continuation.len() > 1 {
                let more = &ids[first..ids.len() - 1];
                rows.extend(
                    self.step(
                        &mut [Step {
                            state: &mut state,
                            ids: more,
                        }],
                        Logits::All,
                    )?
                    .concat(),
                );
            }
            rows
        };
        let vocab = self.config.vocab_size;
        let mut token_logprobs = Vec::with_capacity(continuation.len());
        let mut is_greedy = true;
        for (j, &t) in continuation.iter().enumerate() {
            let row = &rows[j * vocab..(j + 1) * vocab];
            token_logprobs.push((row[t as usize] as f64 - log_sum_exp(row)) as f32);
            is_greedy &= argmax(row) == t;
        }
        Ok(Score {
            logprob: token_logprobs.iter().map(|&l| l as f64).sum(),
            is_greedy,
            token_logprobs,
        })
    }

    /// Score a text continuation with lm-evaluation-harness' boundaries: trailing whitespace of
    /// the context moves to the continuation; a decoder's continuation tokens are those of
    /// tokenize(context + continuation) past the context's (no special tokens), an empty context
    /// becomes the start (or end) of text; an encoder-decoder tokenizes each on its own, with its
    /// special tokens.
    pub fn score_text(&self, context: &str, continuation: &str) -> Result<Score> {
        let tok = self.tokenizer()?;
        if continuation.is_empty() {
            return Err(Error::InvalidArgument(
                "continuations must be non-empty strings".into(),
            ));
        }
        let ctx = context.trim_end_matches(is_space);
        let cont = format!("{}{continuation}", &context[ctx.len()..]);
        if self.encoder.is_some() {
            return self.score(&tok.encode(ctx, true)?, &tok.encode(&cont, true)?);
        }
        let whole = tok.encode(&format!("{ctx}{cont}"), false)?;
        let mut ctx_ids = if ctx.is_empty() {
            Vec::new()
        } else {
            tok.encode(ctx, false)?
        };
        let cont_ids = whole.get(ctx_ids.len()..).unwrap_or_default().to_vec();
        if ctx_ids.is_empty() {
            let start = self.bos_token_id.or(tok.eos_token_id()).ok_or_else(|| {
                Error::InvalidArgument(
                    "an empty context needs a start or end token, and the vocabulary has neither"
                        .into(),
                )
            })?;
            ctx_ids = vec![start];
        }
        self.score(&ctx_ids, &cont_ids)
    }

    /// `score_text` of each continuation; `interrupted` is asked between them (Ctrl-C).
    pub fn score_texts(
        &self,
        context: &str,
        continuations: &[String],
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Vec<Score>> {
        self.require_decoder("score")?;
        if continuations.is_empty() {
            return Err(Error::InvalidArgument(
                "continuations must be a non-empty list of non-empty strings".into(),
            ));
        }
        continuations
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if interrupted() {
                    return Err(Error::Interrupted);
                }
                let s = self.score_text(context, c);
                crate::interrupt::progress(i + 1, continuations.len());
                s
            })
            .collect()
    }

    /// The encoder of an encoder-only model with checked input sequences.
    fn checked_encoder(&self, verb: &str, seqs: &[&[u32]]) -> Result<&Transformer> {
        let enc = self.require_encoder(verb)?;
        let ctx = self.context_length();
        for s in seqs {
            self.check_ids(s, "an input")?;
            if s.len() > ctx {
                return Err(Error::ContextOverflow(format!(
                    "an input of {} tokens is longer than the {ctx} positions the model has (truncate it)",
                    s.len()
                )));
            }
        }
        Ok(enc)
    }

    /// Hidden state of every token of each sequence (encoders): [len, hidden] row-major each.
    /// Sequences run together, each attending only to itself, so no padding is needed.
    pub fn encode(&self, seqs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let enc = self.checked_encoder("encode", &refs)?;
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let flat = self
            .run_encoder(enc, &refs, None)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let h = self.config.hidden_size;
        let mut out = Vec::with_capacity(refs.len());
        let mut off = 0;
        for s in &refs {
            out.push(flat[off * h..(off + s.len()) * h].to_vec());
            off += s.len();
        }
        Ok(out)
    }

    /// Token ids of texts for an encoder: with special tokens, truncated to `max_length` (default:
    /// the model's positions) as HF tokenizers truncates, or refused when longer.
    pub fn encode_texts(
        &self,
        texts: &[String],
        truncation: bool,
        max_length: Option<usize>,
    ) -> Result<Vec<Vec<u32>>> {
        self.require_encoder("encode")?;
        let tok = self.tokenizer()?;
        let ctx = self.context_length();
        let limit = max_length.unwrap_or(ctx);
        if limit == 0 {
            return Err(Error::InvalidArgument(
                "max_length must be positive, got 0".into(),
            ));
        }
        if limit > ctx {
            return Err(Error::InvalidArgument(format!(
                "max_length {limit} exceeds the {ctx} positions the model has"
            )));
        }
        texts
            .iter()
            .map(|t| {
                if truncation {
                    return tok.encode_truncated(t, true, limit);
                }
                let ids = tok.encode(t, true)?;
                if ids.len() > limit {
                    let head: String = t.chars().take(40).collect();
                    return Err(Error::InvalidArgument(format!(
                        "a text of {} tokens is longer than the {limit} positions allowed (model context {ctx}); pass truncation=True or shorten it: {head:?}",
                        ids.len()
                    )));
                }
                Ok(ids)
            })
            .collect()
    }

    /// Token vectors of texts, padded to the longest with its attention mask.
    pub fn encode_padded(
        &self,
        texts: &[String],
        truncation: bool,
        max_length: Option<usize>,
    ) -> Result<Encoded> {
        let ids = self.encode_texts(texts, truncation, max_length)?;
        let states = self.encode(&ids)?;
        let (h, longest) = (
            self.config.hidden_size,
            ids.iter().map(|r| r.len()).max().unwrap_or(0),
        );
        let mut hidden = vec![0f32; ids.len() * longest * h];
        let mut attention_mask = vec![0i64; ids.len() * longest];
        for (i, st) in states.iter().enumerate() {
            hidden[i * longest * h..i * longest * h + st.len()].copy_from_slice(st);
            attention_mask[i * longest..i * longest + st.len() / h]
                .iter_mut()
                .for_each(|m| *m = 1);
        }
        Ok(Encoded {
            input_ids: ids,
            hidden,
            attention_mask,
            longest,
        })
    }

    /// One vector per text, as sentence-transformers computes it: tokens pooled (mean over the
    /// text's tokens, the first token's, or the elementwise max), then L2-normalised when asked.
    /// Defaults come from the folder's sentence-transformers settings (pooling mode,
    /// max_seq_length), else mean pooling and the model's positions.
    pub fn embed(
        &self,
        texts: &[String],
        pooling: Option<Pooling>,
        normalize: bool,
        truncation: bool,
        max_length: Option<usize>,
    ) -> Result<Vec<Vec<f32>>> {
        self.require_encoder("embed")?;
        let st = self.sentence;
        let pooling = pooling
            .or(st.and_then(|s| s.pooling))
            .unwrap_or(Pooling::Mean);
        let max_length = max_length.or(st
            .and_then(|s| s.max_seq_length)
            .map(|m| m.min(self.context_length())));
        let ids = self.encode_texts(texts, truncation, max_length)?;
        let h = self.config.hidden_size;
        // in batches of EMBED_BATCH texts (sentence-transformers' default batch size), so that
        // progress is told and Ctrl-C asked between them and a long list's activations stay small
        let mut hidden = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(EMBED_BATCH) {
            crate::interrupt::check()?;
            hidden.extend(self.encode(chunk)?);
            crate::interrupt::progress(hidden.len(), ids.len());
        }
        Ok(hidden
            .into_iter()
            .map(|s| {
                let rows = s.len() / h;
                let mut v: Vec<f32> = match pooling {
                    Pooling::Cls => s[..h].to_vec(),
                    Pooling::Mean => (0..h)
                        .map(|j| {
                            ((0..rows).map(|r| s[r * h + j] as f64).sum::<f64>() / rows as f64)
                                as f32
                        })
                        .collect(),
                    Pooling::Max => (0..h)
                        .map(|j| {
                            (0..rows)
                                .map(|r| s[r * h + j])
                                .fold(f32::NEG_INFINITY, f32::max)
                        })
                        .collect(),
                };
                if normalize {
                    let n = v
                        .iter()
                        .map(|&x| (x as f64) * (x as f64))
                        .sum::<f64>()
                        .sqrt()
                        .max(1e-12);
                    v.iter_mut().for_each(|x| *x = (*x as f64 / n) as f32);
                }
                v
            })
            .collect())
    }

    /// Masked-LM logits [len, vocab] for one sequence (encoders with an MLM head).
    pub fn mlm_logits(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let enc = self.checked_encoder("masked-LM logits", &[ids])?;
        if enc.head.is_none() {
            return Err(Error::Unsupported(
                "this encoder has no masked-LM head (load a *ForMaskedLM checkpoint)".into(),
            ));
        }
        let hidden = self.run_encoder(enc, &[ids], None)?;
        enc.logits(&hidden, None)
    }

    /// The `top_k` likeliest tokens for each mask token of `text`, in order of the masks.
    pub fn fill_mask(&self, text: &str, top_k: usize) -> Result<Vec<Vec<MaskFill>>> {
        let enc = self.require_encoder("fill_mask")?;
        if enc.head.is_none() {
            return Err(Error::Unsupported(
                "this encoder has no masked-LM head (load a *ForMaskedLM checkpoint)".into(),
            ));
        }
        if top_k == 0 {
            return Err(Error::InvalidArgument(
                "top_k must be positive, got 0".into(),
            ));
        }
        let tok = self.tokenizer()?;
        let mask = tok
            .mask_token_id()
            .ok_or_else(|| Error::Unsupported("the tokenizer has no mask token".into()))?;
        let ids = self
            .encode_texts(&[text.to_string()], false, None)?
            .remove(0);
        let at: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == mask).collect();
        if at.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "text has no mask token ({})",
                tok.decode(&[mask], false)?
            )));
        }
        let logits = self.mlm_logits(&ids)?;
        let v = self.config.vocab_size;
        at.iter()
            .map(|&pos| {
                // softmax in f64; ties keep the lower id first
                let row = &logits[pos * v..(pos + 1) * v];
                let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
                let e: Vec<f64> = row.iter().map(|&x| (x as f64 - max).exp()).collect();
                let z: f64 = e.iter().sum();
                let mut order: Vec<usize> = (0..v).collect();
                order.sort_by(|&a, &b| e[b].total_cmp(&e[a]).then(a.cmp(&b)));
                order
                    .into_iter()
                    .take(top_k)
                    .map(|t| {
                        let mut filled = ids.clone();
                        filled[pos] = t as u32;
                        Ok(MaskFill {
                            token: t as u32,
                            token_str: tok.decode(&[t as u32], false)?.trim().to_string(),
                            score: e[t] / z,
                            sequence: tok.decode(&filled, true)?,
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// One sequence through the model with its hidden states and/or attention weights recorded,
    /// as asked: (logits [tokens, vocab] when the model has a head, the trace). The same
    /// computation as `logits` (decoders: in the same micro-batches), observed.
    pub fn forward_traced(
        &self,
        ids: &[u32],
        hidden_states: bool,
        attentions: bool,
    ) -> Result<(Option<Vec<f32>>, Trace)> {
        match (&self.encoder, &self.decoder) {
            (Some(_), Some(_)) => Err(Error::Unsupported(
                "hidden states and attentions of encoder-decoders are not built yet".into(),
            )),
            (Some(enc), None) => {
                self.checked_encoder("forward", &[ids])?;
                let mut trace = Trace::new(ids.len(), enc.blocks.len(), hidden_states, attentions);
                let hidden = self.run_encoder(enc, &[ids], Some(&mut trace))?;
                let logits = match &enc.head {
                    Some(_) => Some(enc.logits(&hidden, None)?),
                    None => None,
                };
                Ok((logits, trace))
            }
            (None, Some(dec)) => {
                let mut trace = Trace::new(ids.len(), dec.blocks.len(), hidden_states, attentions);
                let mut state = self.start(ids, 0)?;
                let rows = self.step_traced(
                    &mut [Step {
                        state: &mut state,
                        ids,
                    }],
                    Logits::All,
                    Some(&mut trace),
                )?;
                Ok((Some(rows.concat()), trace))
            }
            (None, None) if self.recurrent.is_some() => Err(Error::Unsupported(
                "hidden states and attentions of recurrent models are not built".into(),
            )),
            (None, None) => Err(Error::Model("a model without stacks".into())),
        }
    }
}
