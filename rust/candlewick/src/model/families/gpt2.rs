//! GPT-2 in HF safetensors (GPT2LMHeadModel, GPT2Model): learned positions (or, built by
//! candlewick, the fixed sinusoids stored in their place), pre-norm LayerNorm blocks, fused
//! q/k/v, GELU (tanh) MLP, LM head tied to the token embeddings. Its Conv1D layers store weights
//! [in, out]; c_attn holds q, k and v side by side.

use super::{activation, activation_name, lm_head, want, Family, HfConfig};
use crate::config::{Activation, Architecture, ModelConfig, Norm, Position};
use crate::error::{Error, Result};
use crate::model::builder::Vb;
use crate::model::transformer::{Block, Embeddings, Norms, Transformer};
use crate::model::Stacks;
use crate::nn::attention::AttentionKind;
use crate::nn::{Attention, Mlp};

pub struct Gpt2;

impl Family for Gpt2 {
    fn name(&self) -> &'static str {
        "gpt2"
    }

    fn hf_model_types(&self) -> &'static [&'static str] {
        &["gpt2"]
    }

    fn preset(&self) -> ModelConfig {
        ModelConfig {
            family: "gpt2".into(),
            activation: Activation::GeluTanh,
            gated_mlp: false,
            norm: Norm::LayerNorm,
            norm_bias: true,
            position: Position::Learned,
            tie_word_embeddings: true,
            attention_bias: true,
            mlp_bias: true,
            intermediate_size: 2048,
            max_position_embeddings: 1024,
            ..ModelConfig::default()
        }
    }

    fn check(&self, c: &ModelConfig) -> Result<()> {
        want(
            c,
            c.architecture == Architecture::Decoder,
            "architecture",
            "are decoders",
        )?;
        want(
            c,
            matches!(c.position, Position::Learned | Position::Sinusoidal),
            "position",
            "use learned (or, built by candlewick, sinusoidal) positions",
        )?;
        want(
            c,
            c.norm == Norm::LayerNorm && c.norm_bias,
            "norm",
            "use layer_norm with bias",
        )?;
        want(c, !c.gated_mlp, "gated_mlp", "have a plain MLP")?;
        want(
            c,
            c.num_kv_heads == c.num_heads,
            "num_kv_heads",
            "use multi-head attention (num_kv_heads = num_heads)",
        )?;
        want(
            c,
            c.head_dim * c.num_heads == c.hidden_size,
            "head_dim",
            "have head_dim * num_heads = hidden_size",
        )?;
        want(
            c,
            c.attention_bias && c.mlp_bias,
            "attention_bias",
            "have biases",
        )?;
        want(
            c,
            c.tie_word_embeddings,
            "tie_word_embeddings",
            "tie the LM head to the embeddings",
        )?;
        want(c, !c.post_norm, "post_norm", "are pre-norm")?;
        want(
            c,
            c.sliding_window.is_none(),
            "sliding_window",
            "attend to the whole context",
        )?;
        want(
            c,
            c.type_vocab_size == 0,
            "type_vocab_size",
            "have no token types",
        )?;
        want(
            c,
            !c.scale_decoder_outputs,
            "scale_decoder_outputs",
            "do not scale their output",
        )
    }

    fn config_from_hf(&self, j: &HfConfig) -> Result<ModelConfig> {
        for (key, standard) in [
            ("scale_attn_weights", true),
            ("scale_attn_by_inverse_layer_idx", false),
        ] {
            if j.bool(key).is_some_and(|x| x != standard) {
                return Err(Error::Unsupported(format!(
                    "config.json: GPT-2 with {key}={} is not built yet",
                    !standard
                )));
            }
        }
        let h = j.need("n_embd")?;
        let nh = j.need("n_head")?;
        Ok(ModelConfig {
            vocab_size: j.need("vocab_size")?,
            hidden_size: h,
            num_layers: j.need("n_layer")?,
            num_heads: nh,
            num_kv_heads: nh,
            head_dim: h.checked_div(nh).unwrap_or(0),
            intermediate_size: j.usize("n_inner").unwrap_or(4 * h),
            activation: activation(j.str("activation_function").unwrap_or("gelu_new"))?,
            norm_eps: j.f64("layer_norm_epsilon").unwrap_or(1e-5),
            position: j.learned_or_sinusoidal(),
            max_position_embeddings: j.usize("n_positions").unwrap_or(1024),
            tie_word_embeddings: j.bool("tie_word_embeddings").unwrap_or(true),
            ..self.preset()
        })
    }

    fn to_hf(&self, c: &ModelConfig) -> Result<serde_json::Value> {
        Ok(serde_json::json!({
            "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
            "vocab_size": c.vocab_size, "n_embd": c.hidden_size, "n_layer": c.num_layers,
            "n_head": c.num_heads, "n_positions": c.max_position_embeddings,
            "n_inner": c.intermediate_size, "layer_norm_epsilon": c.norm_eps,
            "activation_function": activation_name(c.activation), "tie_word_embeddings": true,
        }))
    }

    fn build(&self, c: &ModelConfig, vb: &Vb) -> Result<Stacks> {
        let (h, ff, eps) = (c.hidden_size, c.intermediate_size, c.norm_eps);
        // GPT2LMHeadModel exports prefix everything but the head with "transformer.", GPT2Model not
        let m = if vb.has("transformer.wte.weight") && !vb.has("wte.weight") {
            vb.pp("transformer")
        } else {
            vb.clone()
        };
        let tokens = m.pp("wte").embedding(c.vocab_size, h)?;
        let positions = m.pp("wpe").positions(
            c.max_position_embeddings,
            h,
            c.position == Position::Sinusoidal,
        )?;
        let mut blocks = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let l = m.pp("h").pp(i);
            let attn_norms = Norms::Pre(l.pp("ln_1").layer_norm(h, true, eps)?);
            let mut qkv = l.pp("attn.c_attn").conv1d(h, h, 3)?.into_iter();
            let (q, k, v) = match (qkv.next(), qkv.next(), qkv.next()) {
                (Some(q), Some(k), Some(v)) => (q, k, v),
                _ => return Err(Error::Model("c_attn did not split in three".into())),
            };
            let o = l.pp("attn.c_proj").conv1d(h, h, 1)?.remove(0);
            let attn = Attention::new(
                q,
                k,
                v,
                o,
                (c.num_heads, c.num_kv_heads, c.head_dim),
                AttentionKind::Causal,
            );
            let mlp_norms = Norms::Pre(l.pp("ln_2").layer_norm(h, true, eps)?);
            let up = l.pp("mlp.c_fc").conv1d(h, ff, 1)?.remove(0);
            let down = l.pp("mlp.c_proj").conv1d(ff, h, 1)?.remove(0);
            blocks.push(Block {
                attn,
                attn_norms,
                cross: None,
                mlp: Mlp {
                    gate: None,
                    up,
                    down,
                    activation: c.activation,
                    ggml_gelu: false,
                },
                mlp_norms,
            });
        }
        let norm = m.pp("ln_f").layer_norm(h, true, eps)?;
        let proj = lm_head(c, &tokens, vb, "lm_head")?;
        let embeddings = Embeddings {
            positions: Some(positions),
            ..Embeddings::tokens(tokens)
        };
        Ok(Stacks::decoder(Transformer::decoder(
            embeddings, blocks, norm, proj,
        )))
    }
}
