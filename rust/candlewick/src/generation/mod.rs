//! The decode loop: prefill the prompt once, then one token per step through the KV cache, until
//! max_new_tokens, an end-of-generation token or a stop string.
//!
//! `Generator` is a step-by-step state machine so that Python can drive it as an iterator (one
//! step per `__next__`, GIL released inside) and stop early by dropping it; `run` loops to the end.

pub mod beam;

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::{Cache, Model, Segment};
use crate::sampling::{log_sum_exp, top_logprobs, History, Sampler, SamplingParams};
use crate::tokenizer::StreamDecoder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// max_new_tokens reached (or the context is full).
    Length,
    /// The model produced an end-of-generation token.
    Eos,
    /// A stop string appeared in the text.
    Stop,
}

impl FinishReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::Eos => "eos",
            FinishReason::Stop => "stop",
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenerationParams {
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    pub seed: Option<u64>,
    /// Strings that end generation; they are not part of the returned text.
    pub stop: Vec<String>,
    /// Ids that end generation like a stop string (finish reason "stop"; not in the output).
    pub stop_token_ids: Vec<u32>,
    pub ignore_eos: bool,
    /// End-of-generation and stop ids are suppressed until this many tokens are generated.
    pub min_new_tokens: usize,
    /// Natural-log probability of each generated token under the model, with this many
    /// alternatives (None = off).
    pub logprobs: Option<usize>,
    /// Log-probability of each prompt token given the ones before it.
    pub prompt_logprobs: bool,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            sampling: SamplingParams::default(),
            seed: None,
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            ignore_eos: false,
            min_new_tokens: 0,
            logprobs: None,
            prompt_logprobs: false,
        }
    }
}

/// One generated token's log-probability (natural log, the model's distribution before any
/// sampling processor) and the most probable alternatives at that step.
#[derive(Debug, Clone)]
pub struct TokenLogprob {
    pub id: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

impl GenerationParams {
    pub fn validate(&self) -> Result<()> {
        self.sampling.validate()?;
        if self.stop.iter().any(|s| s.is_empty()) {
            return Err(Error::InvalidArgument(
                "stop strings must not be empty".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Output {
    /// The generated text only (no prompt, no stop string, no end-of-generation token).
    pub text: String,
    pub token_ids: Vec<u32>,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// For prompt tokens 1.. (the first has no context).
    pub prompt_logprobs: Option<Vec<f32>>,
}

pub struct Generator {
    model: Arc<Model>,
    params: GenerationParams,
    cache: Cache,
    /// Encoder-decoders: the decoder's state (the prompt was encoded once); `cache` is unused.
    seq2seq: Option<crate::model::seq2seq::Seq2SeqState>,
    sampler: Sampler,
    /// Prompt followed by the generated tokens.
    tokens: Vec<u32>,
    prompt_len: usize,
    finish: Option<FinishReason>,
    decoder: StreamDecoder,
    /// Generated text so far (cut at a stop string once one is found).
    text: String,
    /// Bytes of `text` already handed out by `take_text`.
    released: usize,
    logits: Vec<f32>,
    logprobs: Vec<TokenLogprob>,
    prompt_logprobs: Option<Vec<f32>>,
}

impl Generator {
    pub fn new(model: Arc<Model>, prompt: Vec<u32>, params: GenerationParams) -> Result<Self> {
        params.validate()?;
        if prompt.is_empty() {
            return Err(Error::InvalidArgument(
                "the prompt is empty (no tokens)".into(),
            ));
        }
        let ctx = model.context_length();
        let vocab = model.config().vocab_size as u32;
        if let Some(bad) = prompt.iter().find(|&&t| t >= vocab) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is out of range for a vocabulary of {vocab}"
            )));
        }
        // Decoders keep a KV cache for prompt + output; encoder-decoders encode the prompt once
        // and keep the decoder's state (their cache is unused).
        let (cache, seq2seq) = match &model.seq2seq {
            Some(ed) => {
                if params.prompt_logprobs {
                    return Err(Error::Unsupported(
                        "prompt log-probs of an encoder-decoder's input are not built".into(),
                    ));
                }
                if prompt.len() > ctx {
                    return Err(Error::ContextOverflow(format!(
                        "the prompt has {} tokens; the model has {ctx} positions",
                        prompt.len()
                    )));
                }
                (model.transformer.new_cache(1)?, Some(ed.start(&prompt)?))
            }
            None => {
                if prompt.len() >= ctx {
                    return Err(Error::ContextOverflow(format!(
                        "the prompt has {} tokens; the model's context is {ctx}, leaving no room to generate",
                        prompt.len()
                    )));
                }
                (
                    model
                        .transformer
                        .new_cache((prompt.len() + params.max_new_tokens).min(ctx))?,
                    None,
                )
            }
        };
        let sampler = Sampler::new(params.sampling.clone(), params.seed)?;
        Ok(Self {
            prompt_len: prompt.len(),
            tokens: prompt,
            model,
            params,
            cache,
            seq2seq,
            sampler,
            finish: None,
            decoder: StreamDecoder::new(true),
            text: String::new(),
            released: 0,
            logits: Vec::new(),
            logprobs: Vec::new(),
            prompt_logprobs: None,
        })
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    pub fn generated_ids(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    /// Bytes held by this request's KV cache (allocated for prompt + max_new_tokens positions).
    pub fn kv_cache_bytes(&self) -> usize {
        self.cache.size_in_bytes()
    }

    /// Produce one token. None once generation has finished.
    pub fn step(&mut self) -> Result<Option<u32>> {
        if !self.begin_step() {
            return Ok(None);
        }
        if self.seq2seq.is_some() {
            let rows = self.seq2seq_forward()?;
            return self.end_step(rows);
        }
        let last_only = !self.wants_all_positions();
        let model = self.model.clone();
        let rows = model
            .transformer
            .forward_batch(&mut [self.segment()], last_only)?;
        self.end_step(rows.into_iter().next().unwrap_or_default())
    }

    /// False (and the finish reason set) when no further token may be produced.
    fn begin_step(&mut self) -> bool {
        if self.finish.is_some() {
            return false;
        }
        let n_gen = self.tokens.len() - self.prompt_len;
        let full = self.seq2seq.is_none() && self.tokens.len() >= self.cache.capacity();
        if n_gen >= self.params.max_new_tokens || full {
            self.finish = Some(FinishReason::Length);
            return false;
        }
        true
    }

    /// The prefill wants every prompt position's logits when prompt log-probs are asked for.
    fn wants_all_positions(&self) -> bool {
        self.seq2seq.is_none() && self.cache.is_empty() && self.params.prompt_logprobs
    }

    /// Encoder-decoders: run the decoder tokens it has not seen ([start] + generated) and return
    /// the last position's logits.
    fn seq2seq_forward(&mut self) -> Result<Vec<f32>> {
        let ed = self
            .model
            .seq2seq
            .as_ref()
            .ok_or_else(|| Error::Model("not an encoder-decoder".into()))?;
        let st = self
            .seq2seq
            .as_mut()
            .ok_or_else(|| Error::Model("no decoder state".into()))?;
        let dec: Vec<u32> = std::iter::once(ed.decoder_start_token_id)
            .chain(self.tokens[self.prompt_len..].iter().copied())
            .collect();
        let seen = st.len();
        let rows = ed.step(st, &dec[seen..])?;
        let vocab = self.model.config().vocab_size;
        Ok(rows[rows.len() - vocab..].to_vec())
    }

    /// The tokens the cache has not seen yet (the whole prompt at first, then the last token).
    fn segment(&mut self) -> Segment<'_> {
        Segment {
            ids: &self.tokens[self.cache.len()..],
            cache: &mut self.cache,
        }
    }

    /// Sample from the forward pass's logits and take the token.
    fn end_step(&mut self, mut rows: Vec<f32>) -> Result<Option<u32>> {
        if self.prompt_logprobs.is_none() && self.params.prompt_logprobs {
            let vocab = self.model.config().vocab_size;
            if rows.len() < self.prompt_len * vocab {
                // only after a failed step left the prompt half in the cache
                return Err(Error::Model(
                    "prompt log-probs need the whole prompt in one pass; an earlier step failed"
                        .into(),
                ));
            }
            let lp = (1..self.prompt_len)
                .map(|i| {
                    let row = &rows[(i - 1) * vocab..i * vocab];
                    (row[self.tokens[i] as usize] as f64 - log_sum_exp(row)) as f32
                })
                .collect();
            self.prompt_logprobs = Some(lp);
            rows.drain(..(self.prompt_len - 1) * vocab);
        }
        self.logits = rows;
        let raw_lse = self.params.logprobs.map(|_| log_sum_exp(&self.logits));
        let raw = self.params.logprobs.map(|n| (self.logits.clone(), n));

        let n_gen = self.tokens.len() - self.prompt_len;
        let mut suppress = Vec::new();
        if n_gen < self.params.min_new_tokens {
            suppress.extend_from_slice(self.model.tokenizer.eog_token_ids());
            suppress.extend_from_slice(&self.params.stop_token_ids);
        }
        let (prompt, output) = self.tokens.split_at(self.prompt_len);
        // Encoder-decoders: processors see the decoder's sequence, not the encoder's input (HF).
        let prompt = if self.seq2seq.is_some() {
            &[][..]
        } else {
            prompt
        };
        let tok = self.sampler.sample(
            &mut self.logits,
            History {
                prompt,
                output,
                suppress: &suppress,
            },
        )?;
        if let (Some((raw, n)), Some(lse)) = (raw, raw_lse) {
            let logprob = (raw[tok as usize] as f64 - lse) as f32;
            self.logprobs.push(TokenLogprob {
                id: tok,
                logprob,
                top: top_logprobs(&raw, n, lse),
            });
        }
        if self.params.stop_token_ids.contains(&tok) {
            self.finish = Some(FinishReason::Stop);
            return Ok(None);
        }
        if !self.params.ignore_eos && self.model.tokenizer.is_eog(tok) {
            self.finish = Some(FinishReason::Eos);
            return Ok(None);
        }
        self.tokens.push(tok);
        if let Some(piece) = self.decoder.step(&self.model.tokenizer, tok)? {
            self.push_text(&piece);
        }
        Ok(Some(tok))
    }

    fn push_text(&mut self, piece: &str) {
        // A stop string can straddle tokens: search from just before the new piece.
        let longest = self.params.stop.iter().map(|s| s.len()).max().unwrap_or(0);
        let from = self.text.len().saturating_sub(longest.saturating_sub(1));
        self.text.push_str(piece);
        let hit = self
            .params
            .stop
            .iter()
            .filter_map(|s| {
                let mut f = from;
                while !self.text.is_char_boundary(f) {
                    f -= 1;
                }
                self.text[f..].find(s.as_str()).map(|i| f + i)
            })
            .min();
        if let Some(pos) = hit {
            self.text.truncate(pos.max(self.released));
            self.finish = Some(FinishReason::Stop);
        }
    }

    /// Text that is safe to show now: complete characters that cannot turn out to be the start of
    /// a stop string. After the end, everything that is left.
    pub fn take_text(&mut self) -> Result<String> {
        if matches!(
            self.finish,
            Some(FinishReason::Length) | Some(FinishReason::Eos)
        ) {
            if let Some(rest) = self.decoder.flush(&self.model.tokenizer)? {
                self.push_text(&rest);
            }
        }
        let mut end = self.text.len();
        if self.finish.is_none() {
            // Hold back the longest tail that is a prefix of some stop string.
            let held = self
                .params
                .stop
                .iter()
                .map(|s| {
                    (1..s.len().min(self.text.len() + 1))
                        .rev()
                        .find(|&k| s.is_char_boundary(k) && self.text.ends_with(&s[..k]))
                        .unwrap_or(0)
                })
                .max()
                .unwrap_or(0);
            end -= held;
        }
        let out = self.text[self.released..end.max(self.released)].to_string();
        self.released = end.max(self.released);
        Ok(out)
    }

    /// Run to the end, calling `on_text` with each piece of text as it becomes final.
    pub fn run(&mut self, mut on_text: impl FnMut(&str) -> Result<()>) -> Result<Output> {
        while self.step()?.is_some() {
            let t = self.take_text()?;
            if !t.is_empty() {
                on_text(&t)?;
            }
        }
        let t = self.take_text()?;
        if !t.is_empty() {
            on_text(&t)?;
        }
        Ok(self.output())
    }

    pub fn output(&self) -> Output {
        Output {
            text: self.text.clone(),
            token_ids: self.generated_ids().to_vec(),
            finish_reason: self.finish.unwrap_or(FinishReason::Length),
            prompt_tokens: self.prompt_len,
            logprobs: self
                .params
                .logprobs
                .map(|_| self.logprobs[..self.generated_ids().len()].to_vec()),
            prompt_logprobs: self.prompt_logprobs.clone(),
        }
    }
}

/// Generate for several requests together: each step runs every unfinished request's new tokens
/// through the model as one batch (no padding; see `Transformer::forward_batch`), then samples
/// each row with its own sampler, so every row's tokens equal what it would get alone. All
/// generators must share one model.
pub fn run_batch(gens: &mut [Generator]) -> Result<Vec<Output>> {
    let Some(model) = gens.first().map(|g| g.model.clone()) else {
        return Ok(Vec::new());
    };
    if gens.iter().any(|g| !Arc::ptr_eq(&g.model, &model)) {
        return Err(Error::InvalidArgument(
            "a batch must run on one model".into(),
        ));
    }
    loop {
        let active: Vec<usize> = (0..gens.len()).filter(|&i| gens[i].begin_step()).collect();
        if active.is_empty() {
            break;
        }
        if model.seq2seq.is_some() {
            // Encoder-decoders: each row's decoder steps on its own state.
            for i in active {
                let rows = gens[i].seq2seq_forward()?;
                gens[i].end_step(rows)?;
            }
            continue;
        }
        // Prefills that want every position's logits go in their own pass.
        for all_positions in [false, true] {
            let group: Vec<usize> = active
                .iter()
                .copied()
                .filter(|&i| gens[i].wants_all_positions() == all_positions)
                .collect();
            if group.is_empty() {
                continue;
            }
            let rows = {
                let mut segs: Vec<Segment<'_>> = gens
                    .iter_mut()
                    .enumerate()
                    .filter(|(i, _)| group.contains(i))
                    .map(|(_, g)| g.segment())
                    .collect();
                model.transformer.forward_batch(&mut segs, !all_positions)?
            };
            for (i, r) in group.into_iter().zip(rows) {
                gens[i].end_step(r)?;
            }
        }
    }
    gens.iter_mut()
        .map(|g| {
            g.take_text()?;
            Ok(g.output())
        })
        .collect()
}
