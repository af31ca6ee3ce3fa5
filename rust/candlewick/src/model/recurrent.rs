//! The recurrent language model, what came before transformers: token embeddings, a stack of
//! LSTM or GRU layers (nn/rnn.rs), an LM head. It has no positions and no attention: all it knows
//! of the past is its state, a few vectors per layer, which is also what a request carries
//! (model/state.rs) in place of a KV cache.

use candle_core::{Device, Tensor};

use super::transformer::Padded;
use crate::error::{Error, Result};
use crate::nn::rnn::{Rnn, RnnState};
use crate::nn::{Embedding, Linear};

pub struct RecurrentLm {
    pub embed: Embedding,
    pub rnn: Rnn,
    pub head: Linear,
}

impl RecurrentLm {
    /// The state before any token, for one sequence.
    pub fn new_state(&self) -> Result<RnnState> {
        self.rnn.zero_state(1)
    }

    /// One sequence's new tokens after `state`: the last layer's outputs [1, tokens, hidden].
    pub fn forward(&self, ids: &[u32], state: &mut RnnState) -> Result<Tensor> {
        let x = self.embed.forward(ids, &Device::Cpu)?.unsqueeze(0)?;
        self.rnn.forward(&x, state)
    }

    /// The differentiable form over a padded batch (right padding: a real token never follows a
    /// padded one, so padding changes no counted output): [rows, cols, hidden].
    pub fn forward_t(&self, input: &Padded) -> Result<Tensor> {
        if input.rows * input.cols != input.ids.len() {
            return Err(Error::Model(format!(
                "a padded batch of {} ids is not {} x {}",
                input.ids.len(),
                input.rows,
                input.cols
            )));
        }
        if let Some(mask) = input.mask {
            // a state reads every token in order: padding before a real token would change it
            let left_padded = mask
                .chunks(input.cols.max(1))
                .any(|row| row.windows(2).any(|w| w[0] < 0.5 && w[1] > 0.5));
            if left_padded {
                return Err(Error::InvalidArgument(
                    "attention_mask: a recurrent LM reads right-padded rows only (a padded token before a real one)".into(),
                ));
            }
        }
        let x = self.embed.forward_t(input.ids, &Device::Cpu)?;
        let hidden = x.dim(1)?;
        let x = x.reshape((input.rows, input.cols, hidden))?;
        let mut state = self.rnn.zero_state(input.rows)?;
        self.rnn.forward(&x, &mut state)
    }

    /// Logits [.., vocab] of hidden states [.., hidden], recording gradients.
    pub fn logits_t(&self, hidden: &Tensor) -> Result<Tensor> {
        self.head.forward_t(hidden)
    }

    /// Logits of some rows of hidden states [1, tokens, hidden] (all when None), row-major.
    pub fn logits(&self, hidden: &Tensor, rows: Option<&[u32]>) -> Result<Vec<f32>> {
        let x = match rows {
            Some(r) => hidden.index_select(&Tensor::new(r, &Device::Cpu)?, 1)?,
            None => hidden.clone(),
        };
        Ok(self.head.forward(&x)?.flatten_all()?.to_vec1::<f32>()?)
    }
}
