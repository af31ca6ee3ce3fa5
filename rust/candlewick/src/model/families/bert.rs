//! BERT encoders in HF safetensors (BertModel, BertForMaskedLM; sentence-transformers models such
//! as all-MiniLM-L6-v2): learned positions + token types + embedding LayerNorm, post-norm layers
//! with biased projections and a GELU MLP, BertModel's pooler (read and counted; embed pools as
//! sentence-transformers does), the MLM head of BertForMaskedLM (dense -> GELU -> LayerNorm -> decoder tied to the word embeddings, with its
//! own bias).

use super::{activation, activation_name, want, Family, HfConfig};
use crate::config::{Activation, Architecture, ModelConfig, Norm, Position};
use crate::error::Result;
use crate::model::builder::{Init, Vb};
use crate::model::heads::{Head, MlmHead, Pooler};
use crate::model::transformer::{Block, Embeddings, Norms, Transformer};
use crate::model::Stacks;
use crate::nn::attention::AttentionKind;
use crate::nn::{Attention, Embedding, Linear, Mlp};

pub struct Bert;

impl Family for Bert {
    fn name(&self) -> &'static str {
        "bert"
    }

    fn hf_model_types(&self) -> &'static [&'static str] {
        &["bert"]
    }

    fn preset(&self) -> ModelConfig {
        ModelConfig {
            family: "bert".into(),
            architecture: Architecture::Encoder,
            activation: Activation::Gelu,
            gated_mlp: false,
            norm: Norm::LayerNorm,
            norm_bias: true,
            norm_eps: 1e-12,
            position: Position::Learned,
            post_norm: true,
            type_vocab_size: 2,
            tie_word_embeddings: true,
            attention_bias: true,
            mlp_bias: true,
            intermediate_size: 2048,
            max_position_embeddings: 512,
            ..ModelConfig::default()
        }
    }

    fn check(&self, c: &ModelConfig) -> Result<()> {
        want(
            c,
            c.architecture == Architecture::Encoder,
            "architecture",
            "are encoders",
        )?;
        want(
            c,
            matches!(c.position, Position::Learned | Position::Sinusoidal),
            "position",
            "use learned (or, built by candlewick, sinusoidal) positions",
        )?;
        want(c, c.norm == Norm::LayerNorm, "norm", "use layer_norm")?;
        want(c, c.post_norm, "post_norm", "are post-norm")?;
        want(c, !c.gated_mlp, "gated_mlp", "have a plain MLP")?;
        want(
            c,
            c.tie_word_embeddings,
            "tie_word_embeddings",
            "tie the MLM decoder to the embeddings",
        )?;
        want(
            c,
            c.num_kv_heads == c.num_heads,
            "num_kv_heads",
            "use multi-head attention (num_kv_heads = num_heads)",
        )?;
        want(
            c,
            c.sliding_window.is_none(),
            "sliding_window",
            "attend to the whole sequence",
        )?;
        want(
            c,
            !c.scale_decoder_outputs,
            "scale_decoder_outputs",
            "have no decoder",
        )
    }

    fn config_from_hf(&self, j: &HfConfig) -> Result<ModelConfig> {
        let h = j.need("hidden_size")?;
        let nh = j.need("num_attention_heads")?;
        let mlm = j.class_is(&["MaskedLM", "ForPreTraining"]);
        Ok(ModelConfig {
            vocab_size: j.need("vocab_size")?,
            hidden_size: h,
            num_layers: j.need("num_hidden_layers")?,
            num_heads: nh,
            num_kv_heads: nh,
            head_dim: h.checked_div(nh).unwrap_or(0),
            intermediate_size: j.need("intermediate_size")?,
            activation: activation(j.str("hidden_act").unwrap_or("gelu"))?,
            norm_eps: j.f64("layer_norm_eps").unwrap_or(1e-12),
            position: j.learned_or_sinusoidal(),
            max_position_embeddings: j.usize("max_position_embeddings").unwrap_or(512),
            type_vocab_size: j.usize("type_vocab_size").unwrap_or(2),
            pooler: !mlm,
            mlm_head: mlm,
            ..self.preset()
        })
    }

    fn to_hf(&self, c: &ModelConfig) -> Result<serde_json::Value> {
        Ok(serde_json::json!({
            "model_type": "bert",
            "architectures": [if c.mlm_head { "BertForMaskedLM" } else { "BertModel" }],
            "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
            "num_hidden_layers": c.num_layers, "num_attention_heads": c.num_heads,
            "intermediate_size": c.intermediate_size, "hidden_act": activation_name(c.activation),
            "max_position_embeddings": c.max_position_embeddings,
            "type_vocab_size": c.type_vocab_size, "layer_norm_eps": c.norm_eps,
            "tie_word_embeddings": true,
        }))
    }

    fn build(&self, c: &ModelConfig, vb: &Vb) -> Result<Stacks> {
        let (h, ff, inner, eps, b) = (
            c.hidden_size,
            c.intermediate_size,
            c.q_dim(),
            c.norm_eps,
            c.norm_bias,
        );
        // BertForMaskedLM (and files saved from any BERT with a head) prefix the encoder "bert."
        let prefixed = c.mlm_head
            || (vb.has("bert.embeddings.word_embeddings.weight")
                && !vb.has("embeddings.word_embeddings.weight"));
        let m = if prefixed { vb.pp("bert") } else { vb.clone() };
        let e = m.pp("embeddings");
        let word = e
            .pp("word_embeddings")
            .tensor("weight", &[c.vocab_size, h], Init::Normal)?;
        let positions = match c.position {
            Position::Learned | Position::Sinusoidal => {
                Some(e.pp("position_embeddings").positions(
                    c.max_position_embeddings,
                    h,
                    c.position == Position::Sinusoidal,
                )?)
            }
            _ => None,
        };
        let token_types = if c.type_vocab_size > 0 {
            Some(
                e.pp("token_type_embeddings")
                    .embedding(c.type_vocab_size, h)?,
            )
        } else {
            None
        };
        let embed_norm = Some(e.pp("LayerNorm").layer_norm(h, b, eps)?);
        let mut blocks = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let l = m.pp("encoder.layer").pp(i);
            let a = l.pp("attention");
            let attn = Attention::new(
                a.pp("self.query").linear(inner, h, c.attention_bias)?,
                a.pp("self.key").linear(inner, h, c.attention_bias)?,
                a.pp("self.value").linear(inner, h, c.attention_bias)?,
                a.pp("output.dense").linear(h, inner, c.attention_bias)?,
                (c.num_heads, c.num_kv_heads, c.head_dim),
                AttentionKind::Bidirectional,
            );
            blocks.push(Block {
                attn,
                attn_norms: Norms::Post(a.pp("output.LayerNorm").layer_norm(h, b, eps)?),
                cross: None,
                mlp: Mlp {
                    gate: None,
                    up: l.pp("intermediate.dense").linear(ff, h, c.mlp_bias)?,
                    down: l.pp("output.dense").linear(h, ff, c.mlp_bias)?,
                    activation: c.activation,
                    ggml_gelu: false,
                },
                mlp_norms: Norms::Post(l.pp("output.LayerNorm").layer_norm(h, b, eps)?),
            });
        }
        // BertModel checkpoints hold a pooler (exported without one when add_pooling_layer=False)
        let pooler = if c.pooler && m.has("pooler.dense.weight") {
            Some(Pooler {
                dense: m.pp("pooler.dense").linear(h, h, true)?,
            })
        } else {
            None
        };
        let head = if c.mlm_head {
            let p = vb.pp("cls.predictions");
            let dense = p.pp("transform.dense").linear(h, h, true)?;
            let norm = p.pp("transform.LayerNorm").layer_norm(h, b, eps)?;
            let bias = p.tensor("bias", &[c.vocab_size], Init::Zeros)?;
            let weight = if !c.tie_word_embeddings && p.has("decoder.weight") {
                p.pp("decoder")
                    .tensor("weight", &[c.vocab_size, h], Init::Normal)?
            } else {
                word.clone()
            };
            Some(Head::Mlm(MlmHead {
                dense,
                activation: c.activation,
                norm,
                decoder: Linear::dense(weight, Some(bias))?,
            }))
        } else {
            None
        };
        Ok(Stacks::encoder(Transformer {
            embeddings: Embeddings {
                tokens: Embedding::Dense(word),
                scale: None,
                positions,
                token_types,
                norm: embed_norm,
            },
            blocks,
            norm: None,
            head,
            pooler,
        }))
    }
}
