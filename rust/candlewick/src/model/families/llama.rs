//! Llama-family decoders: Llama 2/3, SmolLM2, TinyLlama, and the HF classes with the same layout,
//! Mistral (a sliding window) and Qwen2 (biases on q, k and v only). RMSNorm, RoPE, GQA, SwiGLU,
//! pre-norm blocks. Read from HF folders (LlamaForCausalLM, MistralForCausalLM,
//! Qwen2ForCausalLM) and GGUF files (llama.cpp's names; its converter permuted q and k so that
//! RoPE rotates adjacent pairs there, while HF rotates the two halves of each head).

use super::{activation, activation_name, gguf_shape, lm_head, refuse_gguf_rope_scaling, want, Family, HfConfig};
use crate::config::{Activation, Architecture, ModelConfig, Norm, Position};
use crate::error::Result;
use crate::io::gguf::GgufFile;
use crate::model::builder::Vb;
use crate::model::transformer::{Block, Embeddings, Norms, Transformer};
use crate::model::Stacks;
use crate::nn::attention::{AttentionKind, AttentionPositions};
use crate::nn::{Attention, Mlp, Rope};

pub struct Llama;

/// The checkpoint's tensor names, in each format.
struct Names {
    embed: &'static str,
    layers: &'static str,
    attn_norm: &'static str,
    q: &'static str,
    k: &'static str,
    v: &'static str,
    o: &'static str,
    mlp_norm: &'static str,
    gate: &'static str,
    up: &'static str,
    down: &'static str,
    norm: &'static str,
    lm_head: &'static str,
}

const HF: Names = Names {
    embed: "model.embed_tokens",
    layers: "model.layers",
    attn_norm: "input_layernorm",
    q: "self_attn.q_proj",
    k: "self_attn.k_proj",
    v: "self_attn.v_proj",
    o: "self_attn.o_proj",
    mlp_norm: "post_attention_layernorm",
    gate: "mlp.gate_proj",
    up: "mlp.up_proj",
    down: "mlp.down_proj",
    norm: "model.norm",
    lm_head: "lm_head",
};

const GGUF: Names = Names {
    embed: "token_embd",
    layers: "blk",
    attn_norm: "attn_norm",
    q: "attn_q",
    k: "attn_k",
    v: "attn_v",
    o: "attn_output",
    mlp_norm: "ffn_norm",
    gate: "ffn_gate",
    up: "ffn_up",
    down: "ffn_down",
    norm: "output_norm",
    lm_head: "output",
};

impl Family for Llama {
    fn name(&self) -> &'static str {
        "llama"
    }

    fn hf_model_types(&self) -> &'static [&'static str] {
        &["llama", "mistral", "qwen2"]
    }

    fn gguf_architecture(&self) -> Option<&'static str> {
        Some("llama")
    }

    fn preset(&self) -> ModelConfig {
        ModelConfig::default()
    }

    fn check(&self, c: &ModelConfig) -> Result<()> {
        want(c, c.architecture == Architecture::Decoder, "architecture", "are decoders")?;
        want(c, c.position == Position::Rope, "position", "use rope")?;
        want(c, c.norm == Norm::RmsNorm, "norm", "use rms_norm")?;
        want(c, c.gated_mlp, "gated_mlp", "use a gated MLP (SwiGLU)")?;
        want(c, !c.post_norm, "post_norm", "are pre-norm")?;
        // saved as Llama, Qwen2 (q/k/v biases) or Mistral (a sliding window)
        want(
            c,
            !c.qkv_bias || (!c.mlp_bias && c.sliding_window.is_none()),
            "qkv_bias",
            "with q/k/v biases (Qwen2) have no MLP bias and no sliding window",
        )?;
        want(
            c,
            c.sliding_window.is_none() || !(c.attention_bias || c.mlp_bias),
            "sliding_window",
            "with a sliding window (Mistral) have no biases",
        )?;
        want(c, c.type_vocab_size == 0, "type_vocab_size", "have no token types")?;
        want(c, !c.scale_decoder_outputs, "scale_decoder_outputs", "do not scale their output")
    }

    fn config_from_hf(&self, j: &HfConfig) -> Result<ModelConfig> {
        let mt = j.str("model_type").unwrap_or("");
        let h = j.need("hidden_size")?;
        let nh = j.need("num_attention_heads")?;
        Ok(ModelConfig {
            vocab_size: j.need("vocab_size")?,
            hidden_size: h,
            num_layers: j.need("num_hidden_layers")?,
            num_heads: nh,
            num_kv_heads: j.usize("num_key_value_heads").unwrap_or(nh),
            head_dim: j.usize("head_dim").unwrap_or(h.checked_div(nh).unwrap_or(0)),
            intermediate_size: j.need("intermediate_size")?,
            activation: activation(j.str("hidden_act").unwrap_or("silu"))?,
            norm_eps: j.f64("rms_norm_eps").unwrap_or(1e-6),
            rope_theta: j.rope_theta()?,
            max_position_embeddings: j.usize("max_position_embeddings").unwrap_or(2048),
            tie_word_embeddings: j.bool("tie_word_embeddings").unwrap_or(false),
            attention_bias: j.bool("attention_bias").unwrap_or(false),
            qkv_bias: mt == "qwen2",
            mlp_bias: j.bool("mlp_bias").unwrap_or(false),
            sliding_window: if mt == "mistral" { j.usize("sliding_window") } else { None },
            ..self.preset()
        })
    }

    fn to_hf(&self, c: &ModelConfig) -> Result<serde_json::Value> {
        // one layout, three HF classes: Mistral (a sliding window), Qwen2 (q/k/v biases only),
        // else Llama (attention and MLP biases as flags)
        let mut j = serde_json::json!({
            "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size, "num_hidden_layers": c.num_layers,
            "num_attention_heads": c.num_heads, "num_key_value_heads": c.num_kv_heads,
            "head_dim": c.head_dim, "max_position_embeddings": c.max_position_embeddings,
            "rms_norm_eps": c.norm_eps, "rope_theta": c.rope_theta,
            "tie_word_embeddings": c.tie_word_embeddings, "hidden_act": activation_name(c.activation),
        });
        let (model_type, class, extra) = if c.sliding_window.is_some() {
            ("mistral", "MistralForCausalLM", serde_json::json!({"sliding_window": c.sliding_window}))
        } else if c.qkv_bias && !c.attention_bias {
            ("qwen2", "Qwen2ForCausalLM", serde_json::json!({"use_sliding_window": false}))
        } else {
            (
                "llama",
                "LlamaForCausalLM",
                serde_json::json!({"attention_bias": c.attention_bias, "mlp_bias": c.mlp_bias}),
            )
        };
        if let (Some(obj), Some(more)) = (j.as_object_mut(), extra.as_object()) {
            obj.insert("model_type".into(), model_type.into());
            obj.insert("architectures".into(), serde_json::json!([class]));
            obj.extend(more.clone());
        }
        Ok(j)
    }

    fn config_from_gguf(&self, g: &GgufFile) -> Result<ModelConfig> {
        let key = |k: &str| format!("llama.{k}");
        let (hidden, num_heads, num_kv_heads, head_dim, vocab_size) = gguf_shape(g, "llama")?;
        refuse_gguf_rope_scaling(g, "llama")?;
        Ok(ModelConfig {
            vocab_size,
            hidden_size: hidden,
            num_layers: g.require_u64(&key("block_count"))? as usize,
            num_heads,
            num_kv_heads,
            head_dim,
            intermediate_size: g.require_u64(&key("feed_forward_length"))? as usize,
            activation: Activation::Silu,
            norm_eps: g.get_f64(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
            rope_theta: g.get_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            max_position_embeddings: g.require_u64(&key("context_length"))? as usize,
            tie_word_embeddings: g.tensor_info("output.weight").is_none(),
            ..self.preset()
        })
    }

    fn build(&self, c: &ModelConfig, vb: &Vb) -> Result<Stacks> {
        let n = if vb.is_gguf() { &GGUF } else { &HF };
        let (h, q, kv, ff, eps) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size, c.norm_eps);
        let tokens = vb.pp(n.embed).embedding(c.vocab_size, h)?;
        // each format in its reference's arithmetic: llama.cpp's for GGUF, transformers' for HF
        let rope = if vb.is_gguf() {
            Rope::ggml(c.head_dim, c.rope_theta, true)
        } else {
            Rope::hf(c.head_dim, c.rope_theta)
        };
        let qkv_bias = c.attention_bias || c.qkv_bias; // Qwen2: biases on q, k and v only
        let mut blocks = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let l = vb.pp(n.layers).pp(i);
            let attn_norms = Norms::Pre(l.pp(n.attn_norm).rms_norm(h, eps)?);
            let mut attn = Attention::new(
                l.pp(n.q).linear(q, h, qkv_bias)?,
                l.pp(n.k).linear(kv, h, qkv_bias)?,
                l.pp(n.v).linear(kv, h, qkv_bias)?,
                l.pp(n.o).linear(h, q, c.attention_bias)?,
                (c.num_heads, c.num_kv_heads, c.head_dim),
                AttentionKind::Causal,
            );
            attn.positions = AttentionPositions::Rope(rope.clone());
            attn.window = c.sliding_window; // Mistral: every layer attends within its window
            let mlp_norms = Norms::Pre(l.pp(n.mlp_norm).rms_norm(h, eps)?);
            let mlp = Mlp {
                gate: Some(l.pp(n.gate).linear(ff, h, c.mlp_bias)?),
                up: l.pp(n.up).linear(ff, h, c.mlp_bias)?,
                down: l.pp(n.down).linear(h, ff, c.mlp_bias)?,
                activation: c.activation,
                ggml_gelu: false,
            };
            blocks.push(Block { attn, attn_norms, cross: None, mlp, mlp_norms });
        }
        let norm = vb.pp(n.norm).rms_norm(h, eps)?;
        let proj = lm_head(c, &tokens, vb, n.lm_head)?;
        Ok(Stacks::decoder(Transformer::decoder(Embeddings::tokens(tokens), blocks, norm, proj)))
    }
}
