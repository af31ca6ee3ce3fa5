//! Requests, for every architecture the same two calls: `Model::start` checks a prompt and makes
//! its state (an encoder-decoder runs its encoder here, once), `Model::step` runs new ids after
//! what each state holds and returns logits. The Generator, beam search, scoring and `logits`
//! run models only through these, so none of them knows which architecture it runs. Requests are
//! checked here, once, and a long prompt is cut into llama.cpp's micro-batches here.

use std::sync::Arc;

use candle_core::Tensor;

use super::recurrent::RecurrentLm;
use super::transformer::{Batch, Trace, Transformer};
use super::Model;
use crate::error::{Error, Result};
use crate::nn::rnn::RnnState;
use crate::nn::{Cache, KvDtype};

/// The micro-batch: the most tokens of one sequence that go through the model as one matrix.
/// Half llama.cpp's default `n_ubatch` (512): as fast (the kernels tile 4 rows at a time, and a
/// layer's weights stay cheap to stream twice), with half a long prompt's activations held at
/// once (Gemma 3 270M, 512-token prompt: peak RSS 375 -> 367 MiB; prefill within noise).
pub const UBATCH: usize = 256;

/// One request's state: the decoder's self-attention caches and, for an encoder-decoder, the
/// encoder's keys and values for every cross-attention layer; for a recurrent LM, its layers'
/// state after the tokens seen.
#[derive(Clone)]
pub struct State {
    memory: Memory,
    /// Computed once by `start`; the beams forked from one request share it.
    encoder: Option<Arc<Cache>>,
    /// The ids the decoder starts from: the prompt (decoders) or the decoder start id.
    prefix: Vec<u32>,
}

/// What a request remembers of the tokens it has seen.
#[derive(Clone)]
enum Memory {
    Attention(Cache),
    /// A recurrent state (its size does not grow), the tokens it has read and the most it may.
    Recurrent {
        state: RnnState,
        len: usize,
        capacity: usize,
    },
}

impl State {
    /// Positions the decoder has seen.
    pub fn len(&self) -> usize {
        match &self.memory {
            Memory::Attention(c) => c.len(),
            Memory::Recurrent { len, .. } => *len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Positions the decoder's caches hold at most.
    pub fn capacity(&self) -> usize {
        match &self.memory {
            Memory::Attention(c) => c.capacity(),
            Memory::Recurrent { capacity, .. } => *capacity,
        }
    }
    /// The ids the decoder's first step runs.
    pub fn prefix(&self) -> &[u32] {
        &self.prefix
    }
    /// Whether the decoder's prefix is the prompt itself (decoders), so that its logits score
    /// the prompt; an encoder-decoder's decoder starts from its start id instead.
    pub fn prefix_is_prompt(&self) -> bool {
        self.encoder.is_none()
    }
    /// Bytes held by the caches (the shared encoder part counted whole).
    pub fn size_in_bytes(&self) -> usize {
        let own = match &self.memory {
            Memory::Attention(c) => c.size_in_bytes(),
            Memory::Recurrent { state, .. } => state.size_in_bytes(),
        };
        own + self
            .encoder
            .as_ref()
            .map(|e| e.size_in_bytes())
            .unwrap_or(0)
    }
}

/// One request of a step: its state and the ids to run after what the state holds.
pub struct Step<'a> {
    pub state: &'a mut State,
    pub ids: &'a [u32],
}

/// Which positions of a step give logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Every new position.
    All,
    /// The last new position of each request (the head runs on those rows only).
    Last,
    /// None: only the caches are filled (a piece of a long prompt before its last).
    None,
}

impl Model {
    /// Ids are there and inside the vocabulary.
    pub(crate) fn check_ids(&self, ids: &[u32], what: &str) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{what} is empty (no tokens)"
            )));
        }
        let vocab = self.config.vocab_size as u32;
        if let Some(bad) = ids.iter().find(|&&i| i >= vocab) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is out of range for a vocabulary of {vocab}"
            )));
        }
        Ok(())
    }

    /// Start a request: check the prompt, encode it (encoder-decoders), and make caches for the
    /// decoder's prefix and `room` more tokens, within the model's context.
    pub fn start(&self, prompt: &[u32], room: usize) -> Result<State> {
        self.require_decoder("generation")?;
        self.check_ids(prompt, "the prompt")?;
        let ctx = self.context_length();
        if prompt.len() > ctx {
            return Err(Error::ContextOverflow(format!(
                "the prompt has {} tokens; the model's context is {ctx} positions",
                prompt.len()
            )));
        }
        let capacity = |prefix: usize| prefix.saturating_add(room).min(ctx).max(prefix);
        let decoder = match (&self.recurrent, &self.decoder) {
            (Some(r), _) => {
                let memory = Memory::Recurrent {
                    state: r.new_state()?,
                    len: 0,
                    capacity: capacity(prompt.len()),
                };
                return Ok(State {
                    memory,
                    encoder: None,
                    prefix: prompt.to_vec(),
                });
            }
            (None, Some(d)) => d,
            (None, None) => return Err(Error::Model("a model without a decoder".into())),
        };
        let encoder = match &self.encoder {
            Some(enc) => {
                let hidden = self.run_encoder(enc, &[prompt], None)?;
                Some(Arc::new(decoder.encoder_kv(&hidden)?))
            }
            None => None,
        };
        let prefix = match encoder {
            Some(_) => vec![self.config.decoder_start_token_id],
            None => prompt.to_vec(),
        };
        let capacity = capacity(prefix.len());
        self.check_cache_fits(decoder, capacity)?;
        Ok(State {
            memory: Memory::Attention(decoder.new_cache(capacity, self.kv_cache_dtype())),
            encoder,
            prefix,
        })
    }

    /// A cache size read from a file or asked for by a user is checked before it is allocated.
    fn check_cache_fits(&self, decoder: &Transformer, capacity: usize) -> Result<()> {
        let per_position: usize = decoder
            .blocks
            .iter()
            .map(|b| 2 * b.attn.num_kv_heads * b.attn.head_dim * self.kv_cache_dtype().bytes())
            .sum();
        let bytes = per_position as u64 * capacity as u64;
        if let Some(mem) = crate::kernels::physical_memory() {
            if bytes > mem {
                return Err(Error::InvalidArgument(format!(
                    "a KV cache of {capacity} positions needs {bytes} bytes, more than this machine's {mem}: ask for fewer tokens"
                )));
            }
        }
        Ok(())
    }

    /// Run each request's new ids after what its state holds: logits [new tokens or 1, vocab]
    /// row-major per request. Requests go through the model together, as one matrix (weights are
    /// read once for all), each attending only to itself. A row does not depend on the other
    /// requests, but for weight types whose summation order llama.cpp chooses by the number of
    /// rows of a matmul (Q4_K, Q6_K): there its last bits follow the batch, as in llama.cpp. A
    /// single request of more than `UBATCH` ids runs in pieces of that size, one after another,
    /// as llama.cpp runs a prompt in micro-batches. Bad input is refused before anything runs.
    pub fn step(&self, steps: &mut [Step<'_>], logits: Logits) -> Result<Vec<Vec<f32>>> {
        self.step_traced(steps, logits, None)
    }

    pub(crate) fn step_traced(
        &self,
        steps: &mut [Step<'_>],
        logits: Logits,
        mut trace: Option<&mut Trace>,
    ) -> Result<Vec<Vec<f32>>> {
        self.require_decoder("generation")?;
        for s in steps.iter() {
            self.check_ids(s.ids, "a step's input")?;
            let (have, cap) = (s.state.len(), s.state.capacity());
            if have + s.ids.len() > cap {
                return Err(Error::ContextOverflow(format!(
                    "{} tokens do not fit: the cache holds {cap} positions (model context {})",
                    have + s.ids.len(),
                    self.context_length()
                )));
            }
            let recurrent = matches!(s.state.memory, Memory::Recurrent { .. });
            if self.encoder.is_some() != s.state.encoder.is_some()
                || self.recurrent.is_some() != recurrent
            {
                return Err(Error::InvalidArgument(
                    "a state started by another model".into(),
                ));
            }
        }
        let decoder = match (&self.recurrent, &self.decoder) {
            (Some(r), _) => {
                if trace.is_some() {
                    return Err(Error::Unsupported(
                        "hidden states and attentions of recurrent models are not built".into(),
                    ));
                }
                return steps
                    .iter_mut()
                    .map(|s| self.run_recurrent(r, s, logits))
                    .collect();
            }
            (None, Some(d)) => d,
            (None, None) => return Err(Error::Model("a model without a decoder".into())),
        };
        if let [one] = steps {
            if one.ids.len() > UBATCH {
                let pieces: Vec<&[u32]> = one.ids.chunks(UBATCH).collect();
                let mut rows = Vec::new();
                for (p, ids) in pieces.iter().enumerate() {
                    let last = p + 1 == pieces.len();
                    let want = match logits {
                        Logits::Last if !last => Logits::None,
                        other => other,
                    };
                    let mut piece = [Step {
                        state: &mut *one.state,
                        ids,
                    }];
                    let r = self.run_decoder(decoder, &mut piece, want, trace.as_deref_mut())?;
                    rows.extend(r.into_iter().next().unwrap_or_default());
                }
                return Ok(vec![rows]);
            }
        }
        self.run_decoder(decoder, steps, logits, trace)
    }

    /// One checked step of a recurrent LM: its state moved past the ids, the head on the rows
    /// asked for.
    fn run_recurrent(
        &self,
        lm: &RecurrentLm,
        s: &mut Step<'_>,
        logits: Logits,
    ) -> Result<Vec<f32>> {
        let Memory::Recurrent { state, len, .. } = &mut s.state.memory else {
            return Err(Error::InvalidArgument(
                "a state started by another model".into(),
            ));
        };
        let hidden = lm.forward(s.ids, state)?;
        *len += s.ids.len();
        match logits {
            Logits::None => Ok(Vec::new()),
            Logits::All => lm.logits(&hidden, None),
            Logits::Last => lm.logits(&hidden, Some(&[s.ids.len() as u32 - 1])),
        }
    }

    /// One pass of checked steps through the decoder stack, then its head on the rows asked for.
    fn run_decoder(
        &self,
        decoder: &Transformer,
        steps: &mut [Step<'_>],
        logits: Logits,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<Vec<f32>>> {
        let ids: Vec<u32> = steps.iter().flat_map(|s| s.ids.iter().copied()).collect();
        let spans: Vec<(usize, usize)> =
            steps.iter().map(|s| (s.state.len(), s.ids.len())).collect();
        let mut caches = Vec::with_capacity(steps.len());
        let mut encoder = Vec::new();
        for s in steps.iter_mut() {
            let State {
                memory,
                encoder: enc,
                ..
            } = &mut *s.state;
            let Memory::Attention(cache) = memory else {
                return Err(Error::InvalidArgument(
                    "a state started by another model".into(),
                ));
            };
            caches.push(cache);
            if let Some(e) = enc {
                encoder.push(&**e);
            }
        }
        let mut batch = Batch {
            spans: spans.clone(),
            caches,
            encoder,
        };
        let hidden = decoder.forward(&ids, &mut batch, trace)?;
        let v = self.config.vocab_size;
        let (rows, per): (Option<Vec<u32>>, Vec<usize>) = match logits {
            Logits::None => return Ok(vec![Vec::new(); spans.len()]),
            Logits::All => (None, spans.iter().map(|&(_, len)| len).collect()),
            Logits::Last => {
                let mut off = 0;
                let last = spans
                    .iter()
                    .map(|&(_, len)| {
                        off += len;
                        (off - 1) as u32
                    })
                    .collect();
                (Some(last), vec![1; spans.len()])
            }
        };
        let flat = decoder.logits(&hidden, rows.as_deref())?;
        let mut out = Vec::with_capacity(per.len());
        let mut row = 0;
        for n in per {
            out.push(flat[row * v..(row + n) * v].to_vec());
            row += n;
        }
        Ok(out)
    }

    /// Whole sequences through an encoder stack, each attending to all of itself (its keys kept
    /// only while each layer runs: the caches an encoder is given hold nothing): hidden states
    /// [1, tokens, hidden], the sequences one after another. Checked by the caller.
    pub(crate) fn run_encoder(
        &self,
        enc: &Transformer,
        seqs: &[&[u32]],
        trace: Option<&mut Trace>,
    ) -> Result<Tensor> {
        let mut caches: Vec<Cache> = seqs
            .iter()
            .map(|_| enc.new_cache(0, KvDtype::F32))
            .collect();
        let ids: Vec<u32> = seqs.iter().flat_map(|s| s.iter().copied()).collect();
        let mut batch = Batch {
            spans: seqs.iter().map(|s| (0, s.len())).collect(),
            caches: caches.iter_mut().collect(),
            encoder: Vec::new(),
        };
        enc.forward(&ids, &mut batch, trace)
    }
}
