//! Heads on a stack's hidden states, each a type with its own forward.

use candle_core::{IndexOp, Tensor};

use crate::config::Activation;
use crate::error::Result;
use crate::nn::{mlp::activate, Linear, Norm};

/// The language-modelling head: a projection to the vocabulary, tied to the token embeddings or
/// its own.
pub struct LmHead {
    pub proj: Linear,
    /// Multiplies the hidden states first (T5 v1.0, tied head: hidden_size^-0.5).
    pub scale: Option<f64>,
    /// Gemma 2: logits capped softly at +-softcap (cap x tanh(logit / cap)).
    pub softcap: Option<f64>,
}

/// BERT's masked-LM head: dense -> activation -> LayerNorm -> decoder (tied to the word
/// embeddings, with its own bias).
pub struct MlmHead {
    pub dense: Linear,
    pub activation: Activation,
    pub norm: Norm,
    pub decoder: Linear,
}

/// A stack's head.
pub enum Head {
    Lm(LmHead),
    Mlm(MlmHead),
}

/// BERT's pooler: tanh(dense(hidden state of the first token)), BertModel's `pooler_output`.
pub struct Pooler {
    pub dense: Linear,
}

impl LmHead {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match self.scale {
            Some(s) => self.proj.forward(&(x * s)?),
            None => self.proj.forward(x),
        }?;
        self.cap(y)
    }

    /// ggml's order: scale by 1/cap, tanh, scale by cap.
    fn cap(&self, y: Tensor) -> Result<Tensor> {
        Ok(match self.softcap {
            Some(cap) => ((y * (1.0 / cap as f32) as f64)?.tanh()? * cap)?,
            None => y,
        })
    }
}

impl LmHead {
    pub fn forward_t(&self, x: &Tensor) -> Result<Tensor> {
        let y = match self.scale {
            Some(s) => self.proj.forward_t(&(x * s)?),
            None => self.proj.forward_t(x),
        }?;
        self.cap(y)
    }
}

impl MlmHead {
    pub fn forward_t(&self, x: &Tensor) -> Result<Tensor> {
        let t = crate::nn::ops::activation(&self.dense.forward_t(x)?, self.activation)?;
        self.decoder.forward_t(&self.norm.forward_t(&t)?)
    }
}

impl MlmHead {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let t = activate(&self.dense.forward(x)?, self.activation)?;
        self.decoder.forward(&self.norm.forward(&t)?)
    }
}

impl Head {
    /// Logits [1, rows, vocab] for hidden states [1, rows, hidden].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Head::Lm(h) => h.forward(x),
            Head::Mlm(h) => h.forward(x),
        }
    }
}

impl Head {
    /// The differentiable form: logits [batch, tokens, vocab] for [batch, tokens, hidden].
    pub fn forward_t(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Head::Lm(h) => h.forward_t(x),
            Head::Mlm(h) => h.forward_t(x),
        }
    }
}

impl Pooler {
    /// [hidden] from one sequence's hidden states [1, tokens, hidden].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let first = x.i((.., 0..1, ..))?;
        Ok(self.dense.forward(&first)?.tanh()?.flatten_all()?)
    }
}
