//! The decode loop: prefill the prompt once, then one token per step through the KV cache, until
//! max_new_tokens, an end-of-generation token or a stop string.
//!
//! `Generator` is a step-by-step state machine so that Python can drive it as an iterator (one
//! step per `__next__`, GIL released inside) and stop early by dropping it; `run` loops to the end.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::{Cache, Model};
use crate::sampling::{Sampler, SamplingParams};
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
    pub ignore_eos: bool,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self { max_new_tokens: 256, sampling: SamplingParams::default(), seed: None, stop: Vec::new(), ignore_eos: false }
    }
}

impl GenerationParams {
    pub fn validate(&self) -> Result<()> {
        self.sampling.validate()?;
        if self.stop.iter().any(|s| s.is_empty()) {
            return Err(Error::InvalidArgument("stop strings must not be empty".into()));
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
}

pub struct Generator {
    model: Arc<Model>,
    params: GenerationParams,
    cache: Cache,
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
}

impl Generator {
    pub fn new(model: Arc<Model>, prompt: Vec<u32>, params: GenerationParams) -> Result<Self> {
        params.validate()?;
        if prompt.is_empty() {
            return Err(Error::InvalidArgument("the prompt is empty (no tokens)".into()));
        }
        let ctx = model.context_length();
        if prompt.len() >= ctx {
            return Err(Error::ContextOverflow(format!(
                "the prompt has {} tokens; the model's context is {ctx}, leaving no room to generate",
                prompt.len()
            )));
        }
        let vocab = model.config().vocab_size as u32;
        if let Some(bad) = prompt.iter().find(|&&t| t >= vocab) {
            return Err(Error::InvalidArgument(format!("token id {bad} is out of range for a vocabulary of {vocab}")));
        }
        let capacity = (prompt.len() + params.max_new_tokens).min(ctx);
        let cache = model.transformer.new_cache(capacity)?;
        let sampler = Sampler::new(params.sampling.clone(), params.seed)?;
        Ok(Self {
            prompt_len: prompt.len(),
            tokens: prompt,
            model,
            params,
            cache,
            sampler,
            finish: None,
            decoder: StreamDecoder::new(true),
            text: String::new(),
            released: 0,
            logits: Vec::new(),
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

    /// Produce one token. None once generation has finished.
    pub fn step(&mut self) -> Result<Option<u32>> {
        if self.finish.is_some() {
            return Ok(None);
        }
        let n_gen = self.tokens.len() - self.prompt_len;
        if n_gen >= self.params.max_new_tokens || self.tokens.len() >= self.cache.capacity() {
            self.finish = Some(FinishReason::Length);
            return Ok(None);
        }
        // Prefill on the first step (the whole prompt), then one token at a time.
        let new = &self.tokens[self.cache.len()..];
        let logits = self.model.transformer.forward(new, &mut self.cache, true)?;
        self.logits = logits.flatten_all()?.to_vec1::<f32>()?;
        let tok = self.sampler.sample(&mut self.logits, &self.tokens)?;
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
        if matches!(self.finish, Some(FinishReason::Length) | Some(FinishReason::Eos)) {
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
        }
    }
}
