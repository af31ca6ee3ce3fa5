//! Gemma 2 decoders: token embeddings scaled by sqrt(hidden), RoPE on the two halves of each head,
//! GQA, "sandwich" norms around attention and the MLP, gated GELU (tanh), scores scaled by
//! query_pre_attn_scalar^-0.5 and soft-capped (cap x tanh(score / cap)), even layers within a
//! sliding window and odd ones global, logits soft-capped too, LM head tied to the embeddings.
//! Read from HF folders (Gemma2ForCausalLM, whose RMSNorms multiply by 1 + w) and GGUF files of
//! architecture gemma2 (llama.cpp's names and arithmetic; its norm weights hold 1 + w already).

use super::{
    activation, activation_name, gguf_decoder, refuse_gguf_rope_scaling, want, Family, HfConfig,
};
use crate::config::{Activation, Architecture, ModelConfig, Norm, Position, RopeScaling};
use crate::error::{Error, Result};
use crate::io::gguf::GgufFile;
use crate::model::builder::Vb;
use crate::model::heads::Head;
use crate::model::transformer::{Block, Embeddings, Norms, Transformer};
use crate::model::Stacks;
use crate::nn::attention::{AttentionKind, AttentionPositions};
use crate::nn::{Attention, Mlp, Rope};

pub struct Gemma2;

/// Every 2nd layer attends globally (layer i when i % 2 == 1), the others within the window.
const SWA_PATTERN: usize = 2;

// the tensor names are Gemma 3's (which adds per-head q/k norms)
use super::gemma3::{GGUF, HF};

impl Family for Gemma2 {
    fn name(&self) -> &'static str {
        "gemma2"
    }

    fn hf_model_types(&self) -> &'static [&'static str] {
        &["gemma2"]
    }

    fn gguf_architectures(&self) -> &'static [&'static str] {
        &["gemma2"]
    }

    fn preset(&self) -> ModelConfig {
        ModelConfig {
            family: "gemma2".into(),
            activation: Activation::GeluTanh,
            norm_eps: 1e-6,
            sliding_window: Some(4096),
            sliding_window_pattern: SWA_PATTERN,
            attn_logit_softcapping: 50.0,
            final_logit_softcapping: 30.0,
            tie_word_embeddings: true,
            ..ModelConfig::default()
        }
    }

    fn derive(&self, c: &mut ModelConfig, given: &[String]) {
        // what transformers' configs state and llama.cpp assumes for every Gemma 2 but the 27B
        if !given.iter().any(|g| g == "query_pre_attn_scalar") {
            c.query_pre_attn_scalar = c.head_dim as f64;
        }
    }

    fn check(&self, c: &ModelConfig) -> Result<()> {
        want(
            c,
            c.architecture == Architecture::Decoder,
            "architecture",
            "are decoders",
        )?;
        want(c, c.position == Position::Rope, "position", "use rope")?;
        want(
            c,
            c.rope_scaling == RopeScaling::None,
            "rope_scaling",
            "use plain RoPE",
        )?;
        want(c, c.norm == Norm::RmsNorm, "norm", "use rms_norm")?;
        want(c, c.gated_mlp, "gated_mlp", "use a gated MLP")?;
        want(
            c,
            c.tie_word_embeddings,
            "tie_word_embeddings",
            "tie their LM head to the embeddings",
        )?;
        want(
            c,
            !(c.attention_bias || c.qkv_bias || c.mlp_bias || c.qk_norm),
            "attention_bias",
            "have no biases or q/k norms",
        )?;
        want(
            c,
            c.sliding_window_pattern == SWA_PATTERN,
            "sliding_window_pattern",
            "alternate local and global layers (2)",
        )?;
        want(
            c,
            !c.rope_adjacent_pairs,
            "rope_adjacent_pairs",
            "rotate the two halves of each head",
        )?;
        want(
            c,
            c.type_vocab_size == 0 && !c.scale_decoder_outputs && !c.post_norm,
            "post_norm",
            "are pre-norm with sandwich norms",
        )
    }

    fn config_from_hf(&self, j: &HfConfig) -> Result<ModelConfig> {
        let h = j.need("hidden_size")?;
        let nh = j.need("num_attention_heads")?;
        let act = j
            .str("hidden_activation")
            .or_else(|| j.str("hidden_act"))
            .unwrap_or("gelu_pytorch_tanh");
        let head_dim = j.usize("head_dim").unwrap_or(256);
        let mut c = ModelConfig {
            vocab_size: j.need("vocab_size")?,
            hidden_size: h,
            num_layers: j.need("num_hidden_layers")?,
            num_heads: nh,
            num_kv_heads: j.usize("num_key_value_heads").unwrap_or(nh),
            head_dim,
            intermediate_size: j.need("intermediate_size")?,
            activation: activation(act)?,
            norm_eps: j.f64("rms_norm_eps").unwrap_or(1e-6),
            max_position_embeddings: j.usize("max_position_embeddings").unwrap_or(8192),
            sliding_window: Some(j.usize("sliding_window").unwrap_or(4096)),
            attn_logit_softcapping: j.f64("attn_logit_softcapping").unwrap_or(0.0),
            final_logit_softcapping: j.f64("final_logit_softcapping").unwrap_or(0.0),
            query_pre_attn_scalar: j.f64("query_pre_attn_scalar").unwrap_or(256.0),
            ..self.preset()
        };
        if j.bool("tie_word_embeddings") == Some(false) {
            return Err(Error::Unsupported(
                "config.json: a Gemma 2 with an untied LM head".into(),
            ));
        }
        if j.bool("attention_bias") == Some(true) {
            return Err(Error::Unsupported(
                "config.json: a Gemma 2 with attention biases".into(),
            ));
        }
        j.rope(&mut c)?;
        if c.rope_scaling != RopeScaling::None {
            return Err(Error::Unsupported(
                "config.json: a Gemma 2 with RoPE scaling".into(),
            ));
        }
        Ok(c)
    }

    fn to_hf(&self, c: &ModelConfig) -> Result<serde_json::Value> {
        Ok(serde_json::json!({
            "model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"],
            "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size, "num_hidden_layers": c.num_layers,
            "num_attention_heads": c.num_heads, "num_key_value_heads": c.num_kv_heads,
            "head_dim": c.head_dim, "max_position_embeddings": c.max_position_embeddings,
            "rms_norm_eps": c.norm_eps, "rope_theta": c.rope_theta, "sliding_window": c.sliding_window,
            "attn_logit_softcapping": nonzero(c.attn_logit_softcapping),
            "final_logit_softcapping": nonzero(c.final_logit_softcapping),
            "query_pre_attn_scalar": if c.query_pre_attn_scalar > 0.0 { c.query_pre_attn_scalar } else { c.head_dim as f64 },
            "hidden_activation": activation_name(c.activation), "tie_word_embeddings": true,
        }))
    }

    fn config_from_gguf(&self, g: &GgufFile) -> Result<ModelConfig> {
        let key = |k: &str| format!("gemma2.{k}");
        refuse_gguf_rope_scaling(g, "gemma2")?;
        if let Some(base) = g.get_f64(&key("rope.freq_base_swa"))? {
            if Some(base) != g.get_f64(&key("rope.freq_base"))? {
                return Err(Error::Unsupported(format!(
                    "{}: a separate RoPE base for the sliding layers",
                    g.path().display()
                )));
            }
        }
        let c = gguf_decoder(g, "gemma2", self.preset())?;
        Ok(ModelConfig {
            sliding_window: Some(match g.get(&key("attention.sliding_window")) {
                Some(v) => v.as_u64().ok_or_else(|| {
                    Error::invalid_file(
                        g.path(),
                        format!(
                            "{} is {v:?}, not an unsigned integer",
                            key("attention.sliding_window")
                        ),
                    )
                })? as usize,
                None => 4096,
            }),
            attn_logit_softcapping: g.get_f64(&key("attn_logit_softcapping"))?.unwrap_or(0.0),
            final_logit_softcapping: g.get_f64(&key("final_logit_softcapping"))?.unwrap_or(0.0),
            // llama.cpp: Gemma 2 27B (46 layers) scales by (hidden / heads)^-0.5, the others by head_dim^-0.5
            query_pre_attn_scalar: if c.num_layers == 46 {
                (c.hidden_size / c.num_heads.max(1)) as f64
            } else {
                c.head_dim as f64
            },
            ..c
        })
    }

    fn build(&self, c: &ModelConfig, vb: &Vb) -> Result<Stacks> {
        let gguf = vb.is_gguf();
        let n = if gguf { &GGUF } else { &HF };
        let (h, q, kv, ff, hd, eps) = (
            c.hidden_size,
            c.q_dim(),
            c.kv_dim(),
            c.intermediate_size,
            c.head_dim,
            c.norm_eps,
        );
        let norm = |l: &Vb, name: &str| {
            if gguf {
                l.pp(name).rms_norm(h, eps)
            } else {
                l.pp(name).rms_norm_one_plus(h, eps)
            }
        };
        let tokens = vb.pp(n.embed).embedding(c.vocab_size, h)?;
        let rope = if gguf {
            Rope::ggml(hd, c.rope_theta, false)
        } else {
            Rope::hf(hd, c.rope_theta)
        };
        let scalar = if c.query_pre_attn_scalar > 0.0 {
            c.query_pre_attn_scalar
        } else {
            hd as f64
        };
        let mut blocks = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let l = vb.pp(n.layers).pp(i);
            let global = i % SWA_PATTERN == SWA_PATTERN - 1;
            let mut attn = Attention::new(
                l.pp(n.q).linear(q, h, false)?,
                l.pp(n.k).linear(kv, h, false)?,
                l.pp(n.v).linear(kv, h, false)?,
                l.pp(n.o).linear(h, q, false)?,
                (c.num_heads, c.num_kv_heads, hd),
                AttentionKind::Causal,
            );
            attn.scale = (1.0 / scalar.sqrt()) as f32;
            attn.softcap = c.attn_logit_softcapping as f32;
            attn.window = if global { None } else { c.sliding_window };
            attn.positions = AttentionPositions::Rope(rope.clone());
            let attn_norms = Norms::Sandwich {
                before: norm(&l, n.attn_norm)?,
                after: norm(&l, n.post_attn_norm)?,
            };
            let mlp = Mlp {
                gate: Some(l.pp(n.gate).linear(ff, h, false)?),
                up: l.pp(n.up).linear(ff, h, false)?,
                down: l.pp(n.down).linear(h, ff, false)?,
                activation: c.activation,
                // llama.cpp computes GELU through an f16 table
                ggml_gelu: gguf,
            };
            let mlp_norms = Norms::Sandwich {
                before: norm(&l, n.mlp_norm)?,
                after: norm(&l, n.post_mlp_norm)?,
            };
            blocks.push(Block {
                attn,
                attn_norms,
                cross: None,
                mlp,
                mlp_norms,
            });
        }
        let final_norm = norm(vb, n.norm)?;
        let proj = tokens.as_linear()?;
        let embeddings = Embeddings {
            scale: Some((h as f32).sqrt() as f64),
            ..Embeddings::tokens(tokens)
        };
        let mut t = Transformer::decoder(embeddings, blocks, final_norm, proj);
        if let Some(Head::Lm(head)) = &mut t.head {
            head.softcap = (c.final_logit_softcapping > 0.0).then_some(c.final_logit_softcapping);
        }
        Ok(Stacks::decoder(t))
    }
}

fn nonzero(v: f64) -> serde_json::Value {
    if v > 0.0 {
        v.into()
    } else {
        serde_json::Value::Null
    }
}
