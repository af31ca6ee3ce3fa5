//! The decode loop: start a request from its prompt, run the decoder's prefix once (a decoder's
//! prompt, an encoder-decoder's start id), then one token per step, until max_new_tokens, an
//! end-of-generation token or a stop string. The model is run only through `Model::start` and
//! `Model::step`, so the loop is the same for every architecture.
//!
//! `Generator` is a step-by-step state machine so that Python can drive it as an iterator (one
//! step per `__next__`, GIL released inside) and stop early by dropping it; `run` loops to the end.

pub mod beam;

use std::sync::Arc;

use crate::config::GenerationConfig;
use crate::error::{Error, Result};
use crate::model::{Logits, Model, State, Step};
use crate::sampling::{log_sum_exp, top_logprobs, History, Sampler};
use crate::tokenizer::StreamDecoder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// max_new_tokens reached (or the context is full).
    Length,
    /// The model produced an end-of-generation token.
    Eos,
    /// A stop string appeared in the text, or a stop id was produced.
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

/// One generated token's log-probability (natural log, the model's distribution before any
/// sampling processor) and the most probable alternatives at that step.
#[derive(Debug, Clone)]
pub struct TokenLogprob {
    pub id: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// A prompt as text (tokenized with the model's special tokens) or as token ids.
#[derive(Debug, Clone)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

impl Prompt {
    pub fn ids(&self, model: &Model) -> Result<Vec<u32>> {
        match self {
            Prompt::Text(t) => model.tokenizer()?.encode(t, true),
            Prompt::Ids(ids) => Ok(ids.clone()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Output {
    /// The generated text only (no prompt, no stop string, no end-of-generation token); empty
    /// for a model without a tokenizer.
    pub text: String,
    pub token_ids: Vec<u32>,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// For prompt tokens 1.. (the first has no context).
    pub prompt_logprobs: Option<Vec<f32>>,
    /// Beam search: the hypothesis' length-normalised score.
    pub score: Option<f64>,
}

pub struct Generator {
    model: Arc<Model>,
    params: GenerationConfig,
    state: State,
    sampler: Sampler,
    /// The decoder's sequence: its prefix (a decoder's prompt, an encoder-decoder's start id),
    /// then the generated tokens.
    seq: Vec<u32>,
    prefix_len: usize,
    prompt_tokens: usize,
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
    pub fn new(model: Arc<Model>, prompt: Vec<u32>, params: GenerationConfig) -> Result<Self> {
        params.validate()?;
        model.require_decoder("generate")?;
        if !params.stop.is_empty() && model.tokenizer.is_none() {
            return Err(Error::Unsupported(
                "stop strings are found in the text, and this model has no tokenizer to write it: use stop_token_ids".into(),
            ));
        }
        let state = model.start(&prompt, params.max_new_tokens)?;
        if params.prompt_logprobs && !state.prefix_is_prompt() {
            return Err(Error::Unsupported(
                "prompt log-probs of an encoder-decoder's input are not built".into(),
            ));
        }
        let ctx = model.context_length();
        if state.prefix().len() >= ctx {
            return Err(Error::ContextOverflow(format!(
                "the prompt has {} tokens; the model's context is {ctx}, leaving no room to generate",
                prompt.len()
            )));
        }
        let sampler = Sampler::new(&params, params.seed)?;
        let seq = state.prefix().to_vec();
        Ok(Self {
            prefix_len: seq.len(),
            prompt_tokens: prompt.len(),
            seq,
            model,
            params,
            state,
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
        &self.seq[self.prefix_len..]
    }

    pub fn prompt_len(&self) -> usize {
        self.prompt_tokens
    }

    /// Bytes held by this request's caches (allocated for its prefix + max_new_tokens positions).
    pub fn kv_cache_bytes(&self) -> usize {
        self.state.size_in_bytes()
    }

    /// Produce one token. None once generation has finished.
    pub fn step(&mut self) -> Result<Option<u32>> {
        if !self.begin_step() {
            return Ok(None);
        }
        let want = self.logits_wanted();
        let model = self.model.clone();
        let rows = model.step(&mut [self.pending()], want)?;
        self.end_step(rows.into_iter().next().unwrap_or_default())
    }

    /// False (and the finish reason set) when no further token may be produced.
    fn begin_step(&mut self) -> bool {
        if self.finish.is_some() {
            return false;
        }
        let full = self.seq.len() >= self.state.capacity();
        if self.generated_ids().len() >= self.params.max_new_tokens || full {
            self.finish = Some(FinishReason::Length);
            return false;
        }
        true
    }

    /// The prefill wants every prompt position's logits when prompt log-probs are asked for.
    fn logits_wanted(&self) -> Logits {
        if self.state.is_empty() && self.params.prompt_logprobs {
            Logits::All
        } else {
            Logits::Last
        }
    }

    /// The ids the state has not seen yet (the whole prefix at first, then the last token).
    fn pending(&mut self) -> Step<'_> {
        Step {
            ids: &self.seq[self.state.len()..],
            state: &mut self.state,
        }
    }

    /// Sample from the forward pass's logits and take the token.
    fn end_step(&mut self, mut rows: Vec<f32>) -> Result<Option<u32>> {
        let _s = crate::profile::span("sampling");
        let vocab = self.model.config().vocab_size;
        if self.prompt_logprobs.is_none() && self.params.prompt_logprobs {
            let n = self.prefix_len;
            if rows.len() < n * vocab {
                // only after a failed step left the prompt half in the cache
                return Err(Error::Model(
                    "prompt log-probs need the whole prompt in one pass; an earlier step failed"
                        .into(),
                ));
            }
            let lp = (1..n)
                .map(|i| {
                    let row = &rows[(i - 1) * vocab..i * vocab];
                    (row[self.seq[i] as usize] as f64 - log_sum_exp(row)) as f32
                })
                .collect();
            self.prompt_logprobs = Some(lp);
            rows.drain(..(n - 1) * vocab);
        }
        if let Some(i) = crate::sampling::first_where(&rows, |x| !x.is_finite()) {
            return Err(Error::Model(format!(
                "the model's logits hold {} (token {i}) after {} generated tokens: its weights are corrupt or the computation overflowed",
                rows[i],
                self.generated_ids().len()
            )));
        }
        self.logits = rows;
        let raw_lse = self.params.logprobs.map(|_| log_sum_exp(&self.logits));
        let raw = self.params.logprobs.map(|n| (self.logits.clone(), n));

        let mut suppress = Vec::new();
        if self.generated_ids().len() < self.params.min_new_tokens {
            suppress.extend_from_slice(self.model.eog_token_ids());
            suppress.extend_from_slice(&self.params.stop_token_ids);
        }
        // the processors see the decoder's own sequence (HF: decoder_input_ids)
        let (prompt, output) = self.seq.split_at(self.prefix_len);
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
        if !self.params.ignore_eos && self.model.is_eog(tok) {
            self.finish = Some(FinishReason::Eos);
            return Ok(None);
        }
        self.seq.push(tok);
        if let Some(tk) = self.model.tokenizer.clone() {
            if let Some(piece) = self.decoder.step(&tk, tok)? {
                self.push_text(&piece);
            }
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
            if let Some(tk) = self.model.tokenizer.clone() {
                if let Some(rest) = self.decoder.flush(&tk)? {
                    self.push_text(&rest);
                }
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
            prompt_tokens: self.prompt_tokens,
            logprobs: self
                .params
                .logprobs
                .map(|_| self.logprobs[..self.generated_ids().len()].to_vec()),
            prompt_logprobs: self.prompt_logprobs.clone(),
            score: None,
        }
    }
}

/// Generate for several requests together: each step runs every unfinished request's new tokens
/// through the model as one batch (no padding; see `Model::step`), then samples each row with its
/// own sampler, so every row's tokens equal what it would get alone. All generators must share
/// one model. `interrupted` is asked between steps (Ctrl-C from Python); true stops with an error.
pub fn run_batch(gens: &mut [Generator], interrupted: &dyn Fn() -> bool) -> Result<Vec<Output>> {
    let Some(model) = gens.first().map(|g| g.model.clone()) else {
        return Ok(Vec::new());
    };
    if gens.iter().any(|g| !Arc::ptr_eq(&g.model, &model)) {
        return Err(Error::InvalidArgument(
            "a batch must run on one model".into(),
        ));
    }
    // progress in tokens: each request's budget, a finished one's counted whole
    let budget: usize = gens.iter().map(|g| g.params.max_new_tokens).sum();
    loop {
        if interrupted() {
            return Err(Error::Interrupted);
        }
        let live: Vec<bool> = gens.iter_mut().map(|g| g.begin_step()).collect();
        let active: Vec<usize> = (0..gens.len()).filter(|&i| live[i]).collect();
        let done: usize = gens
            .iter()
            .zip(&live)
            .map(|(g, &l)| {
                if l {
                    g.generated_ids().len()
                } else {
                    g.params.max_new_tokens
                }
            })
            .sum();
        crate::interrupt::progress(done, budget);
        if active.is_empty() {
            break;
        }
        // Prefills that want every position's logits go in their own pass.
        for want in [Logits::Last, Logits::All] {
            let group: Vec<usize> = active
                .iter()
                .copied()
                .filter(|&i| gens[i].logits_wanted() == want)
                .collect();
            if group.is_empty() {
                continue;
            }
            let rows = {
                let mut steps: Vec<Step<'_>> = gens
                    .iter_mut()
                    .enumerate()
                    .filter(|(i, _)| group.contains(i))
                    .map(|(_, g)| g.pending())
                    .collect();
                model.step(&mut steps, want)?
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

/// Generate for each prompt with one config: `num_return_sequences` results per prompt (request
/// i drawn with seed + i), all requests run together as one batch; or, with num_beams > 1, beam
/// search's best hypotheses. One list of results per prompt.
pub fn generate(
    model: &Arc<Model>,
    prompts: &[Prompt],
    cfg: &GenerationConfig,
    interrupted: &dyn Fn() -> bool,
) -> Result<Vec<Vec<Output>>> {
    cfg.validate()?;
    model.require_decoder("generate")?;
    let prompts = prompts
        .iter()
        .map(|p| p.ids(model))
        .collect::<Result<Vec<_>>>()?;
    let n = cfg.num_return_sequences;
    if cfg.num_beams > 1 {
        return prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let out = beam::beam_search(model, p, cfg, interrupted);
                crate::interrupt::progress(i + 1, prompts.len());
                out
            })
            .collect();
    }
    let mut gens = Vec::with_capacity(prompts.len() * n);
    for p in &prompts {
        for i in 0..n {
            let mut c = cfg.clone();
            c.seed = cfg.seed.map(|s| s.wrapping_add(i as u64));
            gens.push(Generator::new(model.clone(), p.clone(), c)?);
        }
    }
    let mut outs = run_batch(&mut gens, interrupted)?.into_iter();
    Ok(prompts
        .iter()
        .map(|_| outs.by_ref().take(n).collect())
        .collect())
}

/// A generator for streaming one sequence's text.
pub fn stream(model: Arc<Model>, prompt: &Prompt, cfg: GenerationConfig) -> Result<Generator> {
    cfg.validate()?;
    model.require_decoder("stream")?;
    if model.tokenizer.is_none() {
        return Err(Error::Unsupported(
            "stream yields text, and this model has no tokenizer: use generate with token ids"
                .into(),
        ));
    }
    let prompt = prompt.ids(&model)?;
    if cfg.num_return_sequences != 1 {
        return Err(Error::InvalidArgument(
            "stream generates one sequence: num_return_sequences must be 1".into(),
        ));
    }
    if cfg.num_beams != 1 {
        return Err(Error::InvalidArgument(
            "stream does not run beam search: num_beams must be 1".into(),
        ));
    }
    Generator::new(model, prompt, cfg)
}
