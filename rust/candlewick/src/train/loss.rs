//! Losses with transformers' semantics, on the differentiable path of the same stacks inference
//! runs: a causal LM's labels are shifted inside (position t predicts label t + 1), a masked LM's
//! are not, an encoder-decoder's decoder reads the labels shifted right after its start token;
//! -100 is never counted, and the loss is the mean over the counted tokens.

use candle_core::Tensor;

use super::objectives::IGNORE;
use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};
use crate::model::recurrent::RecurrentLm;
use crate::model::transformer::Padded;
use crate::model::Transformer;

/// One batch for a loss: `rows` sequences of `cols` input ids, their padding mask, labels
/// ([rows, label_cols]: the inputs' shape, or the decoder's for an encoder-decoder) and, for an
/// encoder-decoder, the decoder's inputs (None: the labels shifted right).
#[derive(Debug, Clone)]
pub struct LossBatch {
    pub input_ids: Vec<u32>,
    pub rows: usize,
    pub cols: usize,
    pub attention_mask: Option<Vec<f32>>,
    pub labels: Vec<i64>,
    pub label_cols: usize,
    pub decoder_input_ids: Option<Vec<u32>>,
}

/// A model's stacks, as inference holds them or as training builds them from its parameters.
#[derive(Clone, Copy)]
pub struct StacksRef<'a> {
    pub encoder: Option<&'a Transformer>,
    pub decoder: Option<&'a Transformer>,
    pub recurrent: Option<&'a RecurrentLm>,
}

/// The stack whose head gives the logits: a transformer's, or a recurrent LM's.
#[derive(Clone, Copy)]
enum Headed<'a> {
    Transformer(&'a Transformer),
    Recurrent(&'a RecurrentLm),
}

impl Headed<'_> {
    fn logits_t(&self, hidden: &Tensor) -> Result<Tensor> {
        match self {
            Headed::Transformer(t) => t.logits_t(hidden),
            Headed::Recurrent(r) => r.logits_t(hidden),
        }
    }
}

impl LossBatch {
    /// Check the batch against a model: shapes, ids and labels in the vocabulary, lengths within
    /// the model's positions. Errors name the argument.
    pub fn check(&self, cfg: &ModelConfig) -> Result<()> {
        let v = cfg.vocab_size;
        if self.rows == 0 || self.cols == 0 {
            crate::bail!(InvalidArgument, "input_ids is empty");
        }
        if self.input_ids.len() != self.rows * self.cols {
            crate::bail!(
                InvalidArgument,
                "input_ids of {} values is not {} x {}",
                self.input_ids.len(),
                self.rows,
                self.cols
            );
        }
        if let Some(&bad) = self.input_ids.iter().find(|&&i| i as usize >= v) {
            crate::bail!(
                InvalidArgument,
                "input_ids holds id {bad}, outside the vocabulary of {v}"
            );
        }
        if let Some(m) = &self.attention_mask {
            if m.len() != self.input_ids.len() {
                crate::bail!(
                    InvalidArgument,
                    "attention_mask has {} values but input_ids {}",
                    m.len(),
                    self.input_ids.len()
                );
            }
        }
        if self.label_cols == 0 || self.labels.len() != self.rows * self.label_cols {
            crate::bail!(
                InvalidArgument,
                "labels of {} values do not fit {} rows of {} (input_ids is {} x {})",
                self.labels.len(),
                self.rows,
                self.label_cols,
                self.rows,
                self.cols
            );
        }
        if cfg.architecture != Architecture::EncoderDecoder && self.label_cols != self.cols {
            crate::bail!(
                InvalidArgument,
                "labels has shape ({}, {}) but input_ids ({}, {})",
                self.rows,
                self.label_cols,
                self.rows,
                self.cols
            );
        }
        if let Some(&bad) = self
            .labels
            .iter()
            .find(|&&l| l != IGNORE && (l < 0 || l as u64 >= v as u64))
        {
            crate::bail!(InvalidArgument, "labels holds {bad}, outside the vocabulary of {v} (use -100 for tokens not counted)");
        }
        if let Some(d) = &self.decoder_input_ids {
            if d.len() != self.rows * self.label_cols {
                crate::bail!(
                    InvalidArgument,
                    "decoder_input_ids of {} values do not match labels of {} x {}",
                    d.len(),
                    self.rows,
                    self.label_cols
                );
            }
            if let Some(&bad) = d.iter().find(|&&i| i as usize >= v) {
                crate::bail!(
                    InvalidArgument,
                    "decoder_input_ids holds id {bad}, outside the vocabulary of {v}"
                );
            }
        }
        let positions = cfg.max_position_embeddings;
        let longest = self
            .cols
            .max(if cfg.architecture == Architecture::EncoderDecoder {
                self.label_cols
            } else {
                0
            });
        if longest > positions {
            crate::bail!(
                InvalidArgument,
                "sequences of {longest} tokens are longer than the model's {positions} positions"
            );
        }
        Ok(())
    }

    /// T5's decoder inputs: the labels shifted right after the start token, -100 read as pad
    /// (T5's pad is its start token).
    fn decoder_inputs(&self, start: u32) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.labels.len());
        for r in 0..self.rows {
            out.push(start);
            for &l in &self.labels[r * self.label_cols..(r + 1) * self.label_cols - 1] {
                out.push(if l == IGNORE { start } else { l as u32 });
            }
        }
        out
    }
}

impl<'a> StacksRef<'a> {
    /// The last hidden states [rows, cols, hidden] of the stack that carries the LM head, that
    /// stack, and whether its labels shift (a causal LM predicts the next token).
    fn hidden_t(&self, cfg: &ModelConfig, b: &LossBatch) -> Result<(Tensor, Headed<'a>, bool)> {
        let input = Padded {
            ids: &b.input_ids,
            rows: b.rows,
            cols: b.cols,
            mask: b.attention_mask.as_deref(),
        };
        if let Some(r) = self.recurrent {
            return Ok((r.forward_t(&input)?, Headed::Recurrent(r), true));
        }
        match (self.encoder, self.decoder) {
            (Some(enc), None) => Ok((
                enc.forward_t(&input, None)?,
                Headed::Transformer(enc),
                false,
            )),
            (None, Some(dec)) => Ok((dec.forward_t(&input, None)?, Headed::Transformer(dec), true)),
            (Some(enc), Some(dec)) => {
                let encoded = enc.forward_t(&input, None)?;
                let dec_ids = match &b.decoder_input_ids {
                    Some(d) => d.clone(),
                    None => b.decoder_inputs(cfg.decoder_start_token_id),
                };
                let dec_input = Padded {
                    ids: &dec_ids,
                    rows: b.rows,
                    cols: b.label_cols,
                    mask: None,
                };
                let h = dec.forward_t(&dec_input, Some((&encoded, b.attention_mask.as_deref())))?;
                Ok((h, Headed::Transformer(dec), false))
            }
            (None, None) => Err(Error::Model("a model without stacks".into())),
        }
    }

    /// The logits [rows, cols, vocab] of a batch, on the differentiable path, and whether the
    /// labels shift.
    pub fn logits_t(&self, cfg: &ModelConfig, b: &LossBatch) -> Result<(Tensor, bool)> {
        let (h, stack, shift) = self.hidden_t(cfg, b)?;
        Ok((stack.logits_t(&h)?, shift))
    }

    /// The loss's numerator and denominator: the summed negative log-likelihood of the counted
    /// labels (a scalar that records gradients) and how many were counted. The LM head runs on
    /// the counted positions only (the head is per position, so this changes no value): a masked
    /// LM counts about 15% of them, and the head's matmul over the vocabulary is the largest.
    pub fn loss_t(&self, cfg: &ModelConfig, b: &LossBatch) -> Result<(Tensor, usize)> {
        b.check(cfg)?;
        let (h, stack, shift) = self.hidden_t(cfg, b)?;
        let (rows, cols, hidden) = h.dims3()?;
        let targets = row_targets(rows, cols, &b.labels, shift);
        let counted: Vec<u32> = (0..targets.len())
            .filter(|&i| targets[i] >= 0)
            .map(|i| i as u32)
            .collect();
        let n = counted.len();
        if n == targets.len() {
            let logits = stack.logits_t(&h)?;
            let vocab = logits.dim(2)?;
            let per_row = crate::nn::ops::cross_entropy_rows(
                &logits.reshape((rows * cols, vocab))?,
                targets,
            )?;
            return Ok((per_row.sum_all()?, n));
        }
        if n == 0 {
            // nothing counted: a zero that still records the (zero) gradient path
            return Ok(((h.sum_all()? * 0.0)?, 0));
        }
        let picked = h
            .reshape((rows * cols, hidden))?
            .index_select(&Tensor::new(counted.as_slice(), h.device())?, 0)?;
        let logits = stack.logits_t(&picked.unsqueeze(0)?)?;
        let vocab = logits.dim(2)?;
        let kept: Vec<i64> = counted.iter().map(|&i| targets[i as usize]).collect();
        let per_row = crate::nn::ops::cross_entropy_rows(&logits.reshape((n, vocab))?, kept)?;
        Ok((per_row.sum_all()?, n))
    }
}

/// Each position's target for the logits it predicts (-1: not counted), shifted for a causal LM.
fn row_targets(rows: usize, cols: usize, labels: &[i64], shift: bool) -> Vec<i64> {
    (0..rows * cols)
        .map(|i| {
            let t = i % cols;
            let l = if shift {
                if t + 1 >= cols {
                    IGNORE
                } else {
                    labels[i + 1]
                }
            } else {
                labels[i]
            };
            if l == IGNORE {
                -1
            } else {
                l
            }
        })
        .collect()
}

/// Summed cross-entropy of logits [rows, cols, vocab] against labels [rows * cols] (-100 not
/// counted), shifted for a causal LM, and the number counted: one fused op over the rows (its
/// backward softmax - onehot), no copy of the counted rows.
pub fn cross_entropy_sum(logits: &Tensor, labels: &[i64], shift: bool) -> Result<(Tensor, usize)> {
    let (rows, cols, vocab) = logits.dims3()?;
    let targets = row_targets(rows, cols, labels, shift);
    let n = targets.iter().filter(|&&t| t >= 0).count();
    let per_row =
        crate::nn::ops::cross_entropy_rows(&logits.reshape((rows * cols, vocab))?, targets)?;
    Ok((per_row.sum_all()?, n))
}
