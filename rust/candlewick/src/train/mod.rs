//! Pretraining: each architecture's objective (objectives.rs), losses with transformers'
//! semantics on the differentiable path of the same stacks inference runs (loss.rs), AdamW and
//! learning-rate schedules (optim.rs), and the loop with its checkpoints (trainer.rs).

pub mod loss;
pub mod objectives;
pub mod optim;
pub mod trainer;

pub use loss::{LossBatch, StacksRef};
pub use trainer::{train, Data, EvalRecord, Objective, StepRecord, TrainConfig, TrainResult};

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::model::Model;

impl crate::model::Stacks {
    /// The stacks, borrowed (what losses run).
    pub fn refs(&self) -> StacksRef<'_> {
        StacksRef {
            encoder: self.encoder.as_ref(),
            decoder: self.decoder.as_ref(),
            recurrent: self.recurrent.as_ref(),
        }
    }
}

impl Model {
    /// The model's own stacks.
    pub fn stacks(&self) -> StacksRef<'_> {
        StacksRef {
            encoder: self.encoder.as_ref(),
            decoder: self.decoder.as_ref(),
            recurrent: self.recurrent.as_ref(),
        }
    }

    /// transformers' loss for a batch: the mean cross-entropy over the counted labels (causal
    /// LM shifted inside; masked LM not; T5 against its decoder's outputs). An error when no
    /// label is counted (transformers would give NaN).
    pub fn loss(&self, batch: &LossBatch) -> Result<f64> {
        let (sum, n) = self.stacks().loss_t(&self.config, batch)?;
        if n == 0 {
            return Err(Error::InvalidArgument(
                "every label is -100: the loss counts no token".into(),
            ));
        }
        Ok(sum.to_scalar::<f32>()? as f64 / n as f64)
    }

    /// The loss and its gradient with respect to every weight, by checkpoint name (what
    /// training computes each step, before the optimizer).
    /// Also each parameter's shape.
    #[allow(clippy::type_complexity)]
    pub fn loss_and_grads(
        &self,
        batch: &LossBatch,
    ) -> Result<(
        f64,
        BTreeMap<String, Vec<f32>>,
        BTreeMap<String, Vec<usize>>,
    )> {
        let params = trainer::parameters(self)?;
        let tensors: BTreeMap<String, candle_core::Tensor> = params
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        let stacks = crate::model::families::build(
            &self.config,
            &crate::model::builder::Source::Params {
                params: &tensors,
                gguf: self.gguf_names,
            },
        )?;
        let refs = stacks.refs();
        let (sum, n) = refs.loss_t(&self.config, batch)?;
        if n == 0 {
            return Err(Error::InvalidArgument(
                "every label is -100: the loss counts no token".into(),
            ));
        }
        let loss = (sum / n as f64)?;
        let store = loss.backward()?;
        let mut grads = BTreeMap::new();
        let shapes = params
            .iter()
            .map(|(k, v)| (k.clone(), v.dims().to_vec()))
            .collect();
        for (name, var) in &params {
            let g = match store.get(var.as_tensor()) {
                Some(g) => g.flatten_all()?.to_vec1::<f32>()?,
                None => vec![0.0; var.elem_count()],
            };
            grads.insert(name.clone(), g);
        }
        Ok((loss.to_scalar::<f32>()? as f64, grads, shapes))
    }
}
