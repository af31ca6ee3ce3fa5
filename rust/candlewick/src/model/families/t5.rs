//! T5 in HF safetensors (T5ForConditionalGeneration): an encoder stack and a decoder stack of
//! pre-norm RMSNorm blocks over shared embeddings, the decoder's blocks cross-attending to the
//! encoder output; relative position bias stored in the first layer of each stack and shared by
//! all its layers; attention scores not scaled by 1/sqrt(head_dim); ReLU or gated (GELU, SiLU)
//! MLPs; an LM head tied (T5 v1.0, decoder output scaled by d_model^-0.5) or its own (v1.1).

use super::{activation, activation_name, lm_head, want, Family, HfConfig};
use crate::config::{Activation, Architecture, ModelConfig, Norm, Position};
use crate::error::Result;
use crate::model::builder::{Init, Vb};
use crate::model::heads::{Head, LmHead};
use crate::model::transformer::{Block, Embeddings, Norms, Transformer};
use crate::model::Stacks;
use crate::nn::attention::{AttentionKind, AttentionPositions};
use crate::nn::{Attention, Embedding, Mlp, RelativeBias};

pub struct T5;

impl Family for T5 {
    fn name(&self) -> &'static str {
        "t5"
    }

    fn hf_model_types(&self) -> &'static [&'static str] {
        &["t5"]
    }

    fn preset(&self) -> ModelConfig {
        ModelConfig {
            family: "t5".into(),
            architecture: Architecture::EncoderDecoder,
            activation: Activation::Relu,
            gated_mlp: false,
            norm_eps: 1e-6,
            position: Position::RelativeBias,
            relative_attention_num_buckets: 32,
            tie_word_embeddings: true,
            scale_decoder_outputs: true,
            intermediate_size: 2048,
            max_position_embeddings: 512,
            num_decoder_layers: 4,
            ..ModelConfig::default()
        }
    }

    /// As many decoder layers as encoder layers, and a tied head scales the decoder output
    /// (HF's T5Config), unless given.
    fn derive(&self, c: &mut ModelConfig, given: &[String]) {
        let has = |k: &str| given.iter().any(|g| g == k);
        if !has("num_decoder_layers") {
            c.num_decoder_layers = c.num_layers;
        }
        if !has("scale_decoder_outputs") {
            c.scale_decoder_outputs = c.tie_word_embeddings;
        }
    }

    fn check(&self, c: &ModelConfig) -> Result<()> {
        want(
            c,
            c.architecture == Architecture::EncoderDecoder,
            "architecture",
            "are encoder-decoders",
        )?;
        want(
            c,
            c.position == Position::RelativeBias,
            "position",
            "use relative_bias",
        )?;
        want(c, c.norm == Norm::RmsNorm, "norm", "use rms_norm")?;
        want(c, !c.post_norm, "post_norm", "are pre-norm")?;
        want(
            c,
            c.num_kv_heads == c.num_heads,
            "num_kv_heads",
            "use multi-head attention (num_kv_heads = num_heads)",
        )?;
        want(
            c,
            !c.attention_bias && !c.mlp_bias,
            "attention_bias",
            "have no biases",
        )?;
        want(
            c,
            !(c.gated_mlp && c.activation == Activation::Gelu),
            "activation",
            "gate GELU with its tanh form (gelu_tanh, T5's gated-gelu)",
        )?;
        want(
            c,
            c.type_vocab_size == 0,
            "type_vocab_size",
            "have no token types",
        )?;
        want(
            c,
            c.sliding_window.is_none(),
            "sliding_window",
            "attend to the whole sequence",
        )
    }

    fn config_from_hf(&self, j: &HfConfig) -> Result<ModelConfig> {
        let ff = j.str("feed_forward_proj").unwrap_or("relu");
        let layers = j.need("num_layers")?;
        let tied = j.bool("tie_word_embeddings").unwrap_or(true);
        Ok(ModelConfig {
            vocab_size: j.need("vocab_size")?,
            hidden_size: j.need("d_model")?,
            num_layers: layers,
            num_decoder_layers: j.usize("num_decoder_layers").unwrap_or(layers),
            num_heads: j.need("num_heads")?,
            num_kv_heads: j.need("num_heads")?,
            head_dim: j.need("d_kv")?,
            intermediate_size: j.need("d_ff")?,
            // HF maps "gated-gelu" to gelu_new (tanh), "relu" to relu.
            activation: if ff == "gated-gelu" {
                Activation::GeluTanh
            } else {
                activation(ff.trim_start_matches("gated-"))?
            },
            gated_mlp: ff.starts_with("gated-"),
            norm_eps: j.f64("layer_norm_epsilon").unwrap_or(1e-6),
            relative_attention_num_buckets: j.usize("relative_attention_num_buckets").unwrap_or(32),
            relative_attention_max_distance: j
                .usize("relative_attention_max_distance")
                .unwrap_or(128),
            max_position_embeddings: j.usize("n_positions").unwrap_or(512),
            tie_word_embeddings: tied,
            decoder_start_token_id: j.usize("decoder_start_token_id").unwrap_or(0) as u32,
            // transformers 5 reads whether to scale from here; older files scale a tied head
            scale_decoder_outputs: j.bool("scale_decoder_outputs").unwrap_or(tied),
            ..self.preset()
        })
    }

    fn to_hf(&self, c: &ModelConfig) -> Result<serde_json::Value> {
        let ff = match (c.gated_mlp, c.activation) {
            (true, Activation::GeluTanh) => "gated-gelu",
            (true, Activation::Relu) => "gated-relu",
            (true, _) => "gated-silu",
            (false, a) => activation_name(a),
        };
        Ok(serde_json::json!({
            "model_type": "t5", "architectures": ["T5ForConditionalGeneration"],
            "is_encoder_decoder": true, "vocab_size": c.vocab_size, "d_model": c.hidden_size,
            "d_kv": c.head_dim, "d_ff": c.intermediate_size, "num_layers": c.num_layers,
            "num_decoder_layers": c.num_decoder_layers, "num_heads": c.num_heads,
            "relative_attention_num_buckets": c.relative_attention_num_buckets,
            "relative_attention_max_distance": c.relative_attention_max_distance,
            "feed_forward_proj": ff, "layer_norm_epsilon": c.norm_eps,
            "n_positions": c.max_position_embeddings,
            "tie_word_embeddings": c.tie_word_embeddings,
            "scale_decoder_outputs": c.scale_decoder_outputs,
            "decoder_start_token_id": c.decoder_start_token_id, "pad_token_id": 0, "dropout_rate": 0.0,
        }))
    }

    fn build(&self, c: &ModelConfig, vb: &Vb) -> Result<Stacks> {
        let h = c.hidden_size;
        let shared = vb
            .pp("shared")
            .tensor("weight", &[c.vocab_size, h], Init::Normal)?;
        let mut encoder = stack(c, &vb.pp("encoder"), c.num_layers, &shared, false)?;
        let mut decoder = stack(c, &vb.pp("decoder"), c.num_decoder_layers, &shared, true)?;
        encoder.head = None;
        let proj = lm_head(c, &decoder.embeddings.tokens, vb, "lm_head")?;
        let scale = c.scale_decoder_outputs.then(|| (h as f64).powf(-0.5));
        decoder.head = Some(Head::Lm(LmHead {
            proj,
            scale,
            softcap: None,
        }));
        Ok(Stacks {
            encoder: Some(encoder),
            decoder: Some(decoder),
            recurrent: None,
        })
    }
}

/// One stack: `layers` blocks under `vb` ("encoder" or "decoder"), the decoder's with
/// cross-attention and causal self-attention.
fn stack(
    c: &ModelConfig,
    vb: &Vb,
    layers: usize,
    shared: &candle_core::Tensor,
    decoder: bool,
) -> Result<Transformer> {
    let (h, ff, inner, eps) = (c.hidden_size, c.intermediate_size, c.q_dim(), c.norm_eps);
    let heads = (c.num_heads, c.num_kv_heads, c.head_dim);
    let attention = |p: &Vb, kind| -> Result<Attention> {
        let mut a = Attention::new(
            p.pp("q").linear(inner, h, false)?,
            p.pp("k").linear(inner, h, false)?,
            p.pp("v").linear(inner, h, false)?,
            p.pp("o").linear(h, inner, false)?,
            heads,
            kind,
        );
        a.scale = 1.0;
        Ok(a)
    };
    let mut bias: Option<RelativeBias> = None;
    let mut blocks = Vec::with_capacity(layers);
    for i in 0..layers {
        let l = vb.pp("block").pp(i).pp("layer");
        let kind = if decoder {
            AttentionKind::Causal
        } else {
            AttentionKind::Bidirectional
        };
        let mut attn = attention(&l.pp("0.SelfAttention"), kind)?;
        if bias.is_none() {
            // the first layer stores the stack's relative position bias; every layer uses it
            let table = l.pp("0.SelfAttention.relative_attention_bias").tensor(
                "weight",
                &[c.relative_attention_num_buckets, c.num_heads],
                Init::Normal,
            )?;
            bias = Some(RelativeBias {
                table: if vb.is_listing() {
                    Vec::new()
                } else {
                    table.flatten_all()?.to_vec1::<f32>()?
                },
                tensor: (!vb.is_listing()).then(|| table.clone()),
                num_buckets: c.relative_attention_num_buckets,
                num_heads: c.num_heads,
                max_distance: c.relative_attention_max_distance,
                bidirectional: !decoder,
            });
        }
        if let Some(b) = &bias {
            attn.positions = AttentionPositions::RelativeBias(b.clone());
        }
        let attn_norms = Norms::Pre(l.pp("0.layer_norm").rms_norm(h, eps)?);
        let (cross, m) = if decoder {
            let cross = attention(&l.pp("1.EncDecAttention"), AttentionKind::Cross)?;
            (
                Some((cross, Norms::Pre(l.pp("1.layer_norm").rms_norm(h, eps)?))),
                l.pp("2"),
            )
        } else {
            (None, l.pp("1"))
        };
        let d = m.pp("DenseReluDense");
        let mlp = if c.gated_mlp {
            Mlp {
                gate: Some(d.pp("wi_0").linear(ff, h, false)?),
                up: d.pp("wi_1").linear(ff, h, false)?,
                down: d.pp("wo").linear(h, ff, false)?,
                activation: c.activation,
                ggml_gelu: false,
            }
        } else {
            Mlp {
                gate: None,
                up: d.pp("wi").linear(ff, h, false)?,
                down: d.pp("wo").linear(h, ff, false)?,
                activation: c.activation,
                ggml_gelu: false,
            }
        };
        let mlp_norms = Norms::Pre(m.pp("layer_norm").rms_norm(h, eps)?);
        blocks.push(Block {
            attn,
            attn_norms,
            cross,
            mlp,
            mlp_norms,
        });
    }
    Ok(Transformer {
        // T5 adds no positions to its embeddings
        embeddings: Embeddings::tokens(Embedding::Dense(shared.clone())),
        blocks,
        norm: Some(vb.pp("final_layer_norm").rms_norm(h, eps)?),
        head: None,
        pooler: None,
    })
}
