//! Phi-3 / Phi-3.5 mini decoders: the Llama block (RMSNorm, RoPE on the two halves of each head,
//! GQA, SwiGLU, pre-norm) with q, k and v in one fused projection and the MLP's gate and up in
//! another (gate first). Read from HF folders (Phi3ForCausalLM: qkv_proj, gate_up_proj) and GGUF
//! files of architecture phi3 (attn_qkv, ffn_up holding gate and up). LongRoPE (the 128k models'
//! rope_factors_long/short) is not built and refused. llama.cpp does not apply Phi-3's sliding
//! window, so a GGUF model attends to its whole context; an HF one uses the config's window, as
//! transformers does.

use super::{
    activation, activation_name, gguf_decoder, gguf_rope_scaling, lm_head, want, Family, HfConfig,
};
use crate::config::{Architecture, ModelConfig, Norm, Position, RopeScaling};
use crate::error::{Error, Result};
use crate::io::gguf::GgufFile;
use crate::model::builder::Vb;
use crate::model::transformer::{Block, Embeddings, Norms, Transformer};
use crate::model::Stacks;
use crate::nn::attention::{AttentionKind, AttentionPositions};
use crate::nn::rope::Scaling;
use crate::nn::{Attention, Mlp, Rope};

pub struct Phi3;

struct Names {
    embed: &'static str,
    layers: &'static str,
    attn_norm: &'static str,
    qkv: &'static str,
    o: &'static str,
    mlp_norm: &'static str,
    gate_up: &'static str,
    down: &'static str,
    norm: &'static str,
    lm_head: &'static str,
}

const HF: Names = Names {
    embed: "model.embed_tokens",
    layers: "model.layers",
    attn_norm: "input_layernorm",
    qkv: "self_attn.qkv_proj",
    o: "self_attn.o_proj",
    mlp_norm: "post_attention_layernorm",
    gate_up: "mlp.gate_up_proj",
    down: "mlp.down_proj",
    norm: "model.norm",
    lm_head: "lm_head",
};

const GGUF: Names = Names {
    embed: "token_embd",
    layers: "blk",
    attn_norm: "attn_norm",
    qkv: "attn_qkv",
    o: "attn_output",
    mlp_norm: "ffn_norm",
    gate_up: "ffn_up",
    down: "ffn_down",
    norm: "output_norm",
    lm_head: "output",
};

impl Family for Phi3 {
    fn name(&self) -> &'static str {
        "phi3"
    }

    fn hf_model_types(&self) -> &'static [&'static str] {
        &["phi3"]
    }

    fn gguf_architectures(&self) -> &'static [&'static str] {
        &["phi3"]
    }

    fn preset(&self) -> ModelConfig {
        ModelConfig {
            family: "phi3".into(),
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
        want(c, c.position == Position::Rope, "position", "use rope")?;
        want(c, c.norm == Norm::RmsNorm, "norm", "use rms_norm")?;
        want(c, c.gated_mlp, "gated_mlp", "use a gated MLP (SwiGLU)")?;
        want(c, !c.post_norm, "post_norm", "are pre-norm")?;
        want(
            c,
            !(c.attention_bias || c.qkv_bias || c.mlp_bias),
            "attention_bias",
            "have no biases",
        )?;
        want(c, !c.qk_norm, "qk_norm", "have no q/k norms")?;
        want(
            c,
            !c.rope_adjacent_pairs,
            "rope_adjacent_pairs",
            "rotate the two halves of each head",
        )?;
        want(
            c,
            c.type_vocab_size == 0,
            "type_vocab_size",
            "have no token types",
        )?;
        want(
            c,
            c.sliding_window_pattern == 0,
            "sliding_window_pattern",
            "treat every layer alike",
        )?;
        want(
            c,
            !c.scale_decoder_outputs,
            "scale_decoder_outputs",
            "do not scale their output",
        )
    }

    fn config_from_hf(&self, j: &HfConfig) -> Result<ModelConfig> {
        let h = j.need("hidden_size")?;
        let nh = j.need("num_attention_heads")?;
        if j.f64("partial_rotary_factor").is_some_and(|f| f != 1.0) {
            return Err(Error::Unsupported(
                "config.json: partial_rotary_factor (partial rotary embeddings are not built)"
                    .into(),
            ));
        }
        let mut c = ModelConfig {
            vocab_size: j.need("vocab_size")?,
            hidden_size: h,
            num_layers: j.need("num_hidden_layers")?,
            num_heads: nh,
            num_kv_heads: j.usize("num_key_value_heads").unwrap_or(nh),
            head_dim: h.checked_div(nh).unwrap_or(0),
            intermediate_size: j.need("intermediate_size")?,
            activation: activation(j.str("hidden_act").unwrap_or("silu"))?,
            norm_eps: j.f64("rms_norm_eps").unwrap_or(1e-5),
            max_position_embeddings: j.usize("max_position_embeddings").unwrap_or(4096),
            tie_word_embeddings: j.bool("tie_word_embeddings").unwrap_or(false),
            sliding_window: j.usize("sliding_window"),
            ..self.preset()
        };
        j.rope(&mut c)?;
        Ok(c)
    }

    fn to_hf(&self, c: &ModelConfig) -> Result<serde_json::Value> {
        if c.rope_scaling != RopeScaling::None {
            return Err(Error::Unsupported(
                "saving a phi3 model with RoPE scaling is not built".into(),
            ));
        }
        Ok(serde_json::json!({
            "model_type": "phi3", "architectures": ["Phi3ForCausalLM"],
            "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size, "num_hidden_layers": c.num_layers,
            "num_attention_heads": c.num_heads, "num_key_value_heads": c.num_kv_heads,
            "max_position_embeddings": c.max_position_embeddings,
            "original_max_position_embeddings": c.max_position_embeddings,
            "rms_norm_eps": c.norm_eps, "rope_theta": c.rope_theta, "sliding_window": c.sliding_window,
            "tie_word_embeddings": c.tie_word_embeddings, "hidden_act": activation_name(c.activation),
        }))
    }

    fn config_from_gguf(&self, g: &GgufFile) -> Result<ModelConfig> {
        // (phi3.attention.sliding_window is not applied: llama.cpp disables Phi's SWA)
        let mut c = gguf_decoder(g, "phi3", self.preset())?;
        gguf_rope_scaling(g, "phi3", &mut c)?;
        if c.rope_scaling == RopeScaling::Llama3 {
            return Err(Error::Unsupported(format!(
                "{}: rope_freqs in a phi3 file",
                g.path().display()
            )));
        }
        if g.tensor_info("rope_factors_long.weight").is_some() {
            return Err(Error::Unsupported(format!(
                "{}: LongRoPE (rope_factors_long/short, the 128k-context Phi-3 models) is not built",
                g.path().display()
            )));
        }
        Ok(c)
    }

    fn build(&self, c: &ModelConfig, vb: &Vb) -> Result<Stacks> {
        let n = if vb.is_gguf() { &GGUF } else { &HF };
        let (h, q, kv, ff, eps) = (
            c.hidden_size,
            c.q_dim(),
            c.kv_dim(),
            c.intermediate_size,
            c.norm_eps,
        );
        let tokens = vb.pp(n.embed).embedding(c.vocab_size, h)?;
        let scaling = Scaling::from_config(c);
        let rope = if vb.is_gguf() {
            Rope::ggml_scaled(c.head_dim, c.rope_theta, false, scaling, None)
        } else {
            Rope::hf_scaled(c.head_dim, c.rope_theta, scaling)
        };
        let mut blocks = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let l = vb.pp(n.layers).pp(i);
            let attn_norms = Norms::Pre(l.pp(n.attn_norm).rms_norm(h, eps)?);
            // llama.cpp also reads Phi-3 files with q, k and v apart
            let [wq, wk, wv]: [_; 3] = if vb.is_gguf() && !l.has("attn_qkv.weight") {
                [
                    l.pp("attn_q").linear(q, h, false)?,
                    l.pp("attn_k").linear(kv, h, false)?,
                    l.pp("attn_v").linear(kv, h, false)?,
                ]
            } else {
                split3(
                    l.pp(n.qkv)
                        .linear(q + 2 * kv, h, false)?
                        .split_rows(&[q, kv, kv])?,
                )?
            };
            let mut attn = Attention::new(
                wq,
                wk,
                wv,
                l.pp(n.o).linear(h, q, false)?,
                (c.num_heads, c.num_kv_heads, c.head_dim),
                AttentionKind::Causal,
            );
            attn.positions = AttentionPositions::Rope(rope.clone());
            attn.window = if vb.is_gguf() { None } else { c.sliding_window };
            let mlp_norms = Norms::Pre(l.pp(n.mlp_norm).rms_norm(h, eps)?);
            let mut gate_up = l
                .pp(n.gate_up)
                .linear(2 * ff, h, false)?
                .split_rows(&[ff, ff])?
                .into_iter();
            let (Some(gate), Some(up)) = (gate_up.next(), gate_up.next()) else {
                return Err(Error::Model("gate_up split".into()));
            };
            let mlp = Mlp {
                gate: Some(gate),
                up,
                down: l.pp(n.down).linear(h, ff, false)?,
                activation: c.activation,
                ggml_gelu: false,
            };
            blocks.push(Block {
                attn,
                attn_norms,
                cross: None,
                mlp,
                mlp_norms,
            });
        }
        let norm = vb.pp(n.norm).rms_norm(h, eps)?;
        let proj = lm_head(c, &tokens, vb, n.lm_head)?;
        Ok(Stacks::decoder(Transformer::decoder(
            Embeddings::tokens(tokens),
            blocks,
            norm,
            proj,
        )))
    }
}

fn split3<T>(v: Vec<T>) -> Result<[T; 3]> {
    v.try_into().map_err(|_| Error::Model("qkv split".into()))
}
