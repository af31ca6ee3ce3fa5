//! The recurrent LM candlewick builds (no HF model type holds one): token embeddings, LSTM or GRU
//! layers with torch's tensor names and gate order (so an nn.LSTM's state_dict loads as it is),
//! an LM head, optionally tied to the embeddings. Saved as config.json (model_type
//! "candlewick_rnn") and model.safetensors.

use super::{want, Family, HfConfig};
use crate::config::{Architecture, Cell, Choice, ModelConfig};
use crate::error::{Error, Result};
use crate::model::builder::{Init, Vb};
use crate::model::recurrent::RecurrentLm;
use crate::model::Stacks;
use crate::nn::rnn::{Rnn, RnnLayer};
use crate::nn::{Embedding, Linear};

pub struct RnnFamily;

impl Family for RnnFamily {
    fn name(&self) -> &'static str {
        "rnn"
    }

    fn hf_model_types(&self) -> &'static [&'static str] {
        &["candlewick_rnn"]
    }

    fn preset(&self) -> ModelConfig {
        ModelConfig {
            family: "rnn".into(),
            architecture: Architecture::Recurrent,
            hidden_size: 512,
            num_layers: 2,
            cell: Cell::Lstm,
            // a state of fixed size reads any length; this bounds what one request may hold
            max_position_embeddings: 8192,
            ..ModelConfig::default()
        }
    }

    fn check(&self, c: &ModelConfig) -> Result<()> {
        want(
            c,
            c.architecture == Architecture::Recurrent,
            "architecture",
            "are recurrent (architecture 'rnn')",
        )
    }

    fn config_from_hf(&self, j: &HfConfig) -> Result<ModelConfig> {
        let cell = match j.str("cell") {
            Some(s) => Cell::parse(s, "config.json: cell")?,
            None => {
                return Err(Error::InvalidArgument(
                    "config.json: cell is missing or not a str".into(),
                ))
            }
        };
        Ok(ModelConfig {
            vocab_size: j.need("vocab_size")?,
            hidden_size: j.need("hidden_size")?,
            num_layers: j.need("num_hidden_layers")?,
            max_position_embeddings: j.usize("max_position_embeddings").unwrap_or(8192),
            tie_word_embeddings: j.bool("tie_word_embeddings").unwrap_or(false),
            cell,
            ..self.preset()
        })
    }

    fn to_hf(&self, c: &ModelConfig) -> Result<serde_json::Value> {
        Ok(serde_json::json!({
            "model_type": "candlewick_rnn", "architectures": ["CandlewickRnnLM"],
            "cell": c.cell.name(), "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
            "num_hidden_layers": c.num_layers, "max_position_embeddings": c.max_position_embeddings,
            "tie_word_embeddings": c.tie_word_embeddings,
        }))
    }

    fn build(&self, c: &ModelConfig, vb: &Vb) -> Result<Stacks> {
        let h = c.hidden_size;
        let g = c.cell.gates() * h;
        // U(-0.1, 0.1) for the embeddings and the head, as torch's word_language_model example
        // starts them (HF's N(0, 0.02) leaves an RNN's inputs too faint to learn from quickly)
        let table = |name: &str| {
            vb.pp(name)
                .tensor("weight", &[c.vocab_size, h], Init::Uniform(100))
        };
        let embed = Embedding::Dense(table("embed")?);
        let r = vb.pp("rnn");
        // torch's initialisation: U(-1/sqrt(hidden), 1/sqrt(hidden)) for every weight and bias
        let init = Init::Uniform(h);
        let layers = (0..c.num_layers)
            .map(|l| {
                let w_ih = r.tensor(&format!("weight_ih_l{l}"), &[g, h], init)?;
                let w_hh = r.tensor(&format!("weight_hh_l{l}"), &[g, h], init)?;
                let b_ih = r.tensor(&format!("bias_ih_l{l}"), &[g], init)?;
                let b_hh = r.tensor(&format!("bias_hh_l{l}"), &[g], init)?;
                Ok(RnnLayer {
                    input: Linear::dense(w_ih, Some(b_ih))?,
                    w_hh,
                    b_hh,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let head = if c.tie_word_embeddings {
            embed.as_linear()?
        } else {
            Linear::dense(table("lm_head")?, None)?
        };
        Ok(Stacks::recurrent(RecurrentLm {
            embed,
            rnn: Rnn {
                cell: c.cell,
                hidden: h,
                layers,
            },
            head,
        }))
    }
}
