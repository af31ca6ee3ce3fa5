//! Recurrent layers, as torch's nn.LSTM and nn.GRU compute them: per layer an input projection
//! W_ih x + b_ih and a recurrent one W_hh h + b_hh, their gates in torch's order (LSTM: input,
//! forget, cell, output; GRU: reset, update, new), the first layer reading the input and each
//! next layer the previous one's outputs. One code path serves inference and training: the
//! input projection of a whole sequence is one matmul, then the cell steps through time, and
//! every op records gradients when the weights are variables.

use candle_core::{DType, Device, IndexOp, Tensor};

use super::Linear;
use crate::config::Cell;
use crate::error::{Error, Result};

impl Cell {
    /// Gates per hidden unit: the rows of W_ih and W_hh are `gates() * hidden`.
    pub fn gates(&self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

/// One layer's weights: `input` is W_ih [gates * hidden, in] with b_ih, `recurrent` W_hh
/// [gates * hidden, hidden] with b_hh.
pub struct RnnLayer {
    pub input: Linear,
    pub recurrent: Linear,
}

/// A stack of recurrent layers of one cell type.
pub struct Rnn {
    pub cell: Cell,
    pub hidden: usize,
    pub layers: Vec<RnnLayer>,
}

/// What a stack carries from one token to the next, for `rows` sequences: each layer's hidden
/// state h [rows, hidden] and, for an LSTM, its cell state c [rows, hidden]. Tensors are shared
/// on clone (a forked beam copies nothing until it steps).
#[derive(Clone, Debug)]
pub struct RnnState {
    pub layers: Vec<(Tensor, Option<Tensor>)>,
}

impl RnnState {
    pub fn size_in_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|(h, c)| (h.elem_count() + c.as_ref().map_or(0, |c| c.elem_count())) * 4)
            .sum()
    }
}

fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::sigmoid(x)?)
}

impl Rnn {
    /// The state before any token: zeros, as torch starts without (h0, c0).
    pub fn zero_state(&self, rows: usize) -> Result<RnnState> {
        let z = Tensor::zeros((rows, self.hidden), DType::F32, &Device::Cpu)?;
        Ok(RnnState {
            layers: self
                .layers
                .iter()
                .map(|_| (z.clone(), (self.cell == Cell::Lstm).then(|| z.clone())))
                .collect(),
        })
    }

    /// x [rows, tokens, in] after `state`: the last layer's outputs [rows, tokens, hidden], and
    /// `state` moved past the tokens.
    pub fn forward(&self, x: &Tensor, state: &mut RnnState) -> Result<Tensor> {
        let (rows, tokens, _) = x.dims3()?;
        if state.layers.len() != self.layers.len() || state.layers.iter().any(|(h, _)| h.dims() != [rows, self.hidden]) {
            return Err(Error::Model(format!(
                "a recurrent state of {} layers for {} layers of {rows} rows",
                state.layers.len(),
                self.layers.len()
            )));
        }
        let mut x = x.clone();
        for (layer, (h, c)) in self.layers.iter().zip(state.layers.iter_mut()) {
            // the input's share of every gate, for all tokens at once
            let xp = layer.input.forward_t(&x)?;
            let mut outs = Vec::with_capacity(tokens);
            for t in 0..tokens {
                let xt = xp.i((.., t))?;
                let hp = layer.recurrent.forward_t(h)?;
                *h = match (self.cell, c.as_mut()) {
                    (Cell::Lstm, Some(c)) => {
                        let (i, f, g, o) = lstm_gates(&(xt + hp)?, self.hidden)?;
                        *c = ((f * &*c)? + (i * g)?)?;
                        (o * c.tanh()?)?
                    }
                    (Cell::Gru, _) => gru(&xt, &hp, h, self.hidden)?,
                    (Cell::Lstm, None) => return Err(Error::Model("an LSTM state without its cell state".into())),
                };
                outs.push(h.clone());
            }
            x = Tensor::stack(&outs, 1)?;
        }
        Ok(x)
    }
}

/// An LSTM's gates from their pre-activations [rows, 4 * hidden]: sigmoid(i), sigmoid(f),
/// tanh(g), sigmoid(o).
fn lstm_gates(z: &Tensor, h: usize) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    Ok((
        sigmoid(&z.narrow(1, 0, h)?)?,
        sigmoid(&z.narrow(1, h, h)?)?,
        z.narrow(1, 2 * h, h)?.tanh()?,
        sigmoid(&z.narrow(1, 3 * h, h)?)?,
    ))
}

/// A GRU step: r = sigmoid(x_r + h_r), z = sigmoid(x_z + h_z), n = tanh(x_n + r * h_n),
/// h' = (1 - z) * n + z * h, from the input's and the state's projections [rows, 3 * hidden].
fn gru(xp: &Tensor, hp: &Tensor, h_prev: &Tensor, h: usize) -> Result<Tensor> {
    let r = sigmoid(&(xp.narrow(1, 0, h)? + hp.narrow(1, 0, h)?)?)?;
    let z = sigmoid(&(xp.narrow(1, h, h)? + hp.narrow(1, h, h)?)?)?;
    let n = (xp.narrow(1, 2 * h, h)? + (r * hp.narrow(1, 2 * h, h)?)?)?.tanh()?;
    Ok((&n + (z * (h_prev - &n)?)?)?)
}
