//! Llama-family decoders in GGUF (llama.cpp names): SmolLM2, Llama 2/3, TinyLlama, ...
//! RMSNorm, RoPE on adjacent pairs (the GGUF converter permuted q/k for it), GQA, SwiGLU.

use candle_core::Device;

use crate::config::{Activation, Architecture, ModelConfig, Norm, Position};
use crate::error::{Error, Result};
use crate::io::gguf::GgufFile;
use crate::model::transformer::{Block, Transformer};
use crate::nn::{self, Attention, Embedding, Linear, Mlp, RmsNorm, Rope};

/// Read the model's shape from `llama.*` metadata.
pub fn config_from_gguf(g: &GgufFile) -> Result<ModelConfig> {
    let key = |k: &str| format!("llama.{k}");
    let (hidden, num_heads, num_kv_heads, head_dim, vocab_size) = super::gguf_shape(g, "llama")?;
    let cfg = ModelConfig {
        family: "llama".into(),
        architecture: Architecture::Decoder,
        vocab_size,
        hidden_size: hidden,
        num_layers: g.require_u64(&key("block_count"))? as usize,
        num_heads,
        num_kv_heads,
        head_dim,
        intermediate_size: g.require_u64(&key("feed_forward_length"))? as usize,
        activation: Activation::Silu,
        gated_mlp: true,
        norm: Norm::RmsNorm,
        norm_eps: g
            .get_f64(&key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5),
        position: Position::Rope,
        rope_theta: g.get_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0),
        max_position_embeddings: g.require_u64(&key("context_length"))? as usize,
        tie_word_embeddings: g.tensor_info("output.weight").is_none(),
        attention_bias: false,
        sliding_window: None,
        ..ModelConfig::default_for("llama")
    };
    cfg.validate()
        .map_err(|e| Error::invalid_file(g.path(), format!("inconsistent llama metadata: {e}")))?;
    if g.get(&key("rope.scaling.type"))
        .and_then(|v| v.as_str())
        .is_some_and(|t| t != "none")
    {
        return Err(Error::Unsupported(format!(
            "{}: RoPE scaling",
            g.path().display()
        )));
    }
    Ok(cfg)
}

pub fn load_gguf(g: &GgufFile, device: &Device) -> Result<Transformer> {
    let cfg = config_from_gguf(g)?;
    let (h, q, kv, ff) = (
        cfg.hidden_size,
        cfg.num_heads * cfg.head_dim,
        cfg.num_kv_heads * cfg.head_dim,
        cfg.intermediate_size,
    );
    let lin = |name: &str, out: usize, inp: usize| Linear::from_gguf(g, name, out, inp, device);
    let norm = |name: &str| -> Result<nn::Norm> {
        let w = g.qtensor_shaped(name, &[h], device)?.dequantize(device)?;
        Ok(nn::Norm::Rms(RmsNorm::new(w, cfg.norm_eps)?))
    };
    let embed = Embedding::from_gguf(g, "token_embd.weight", cfg.vocab_size, h, device)?;
    let lm_head = if cfg.tie_word_embeddings {
        embed.as_linear()?
    } else {
        lin("output.weight", cfg.vocab_size, h)?
    };
    let mut blocks = Vec::with_capacity(cfg.num_layers);
    for i in 0..cfg.num_layers {
        let p = |s: &str| format!("blk.{i}.{s}.weight");
        blocks.push(Block {
            post_attn_norm: None,
            post_mlp_norm: None,
            cross: None,
            attn_norm: norm(&p("attn_norm"))?,
            attn: Attention {
                q: lin(&p("attn_q"), q, h)?,
                k: lin(&p("attn_k"), kv, h)?,
                v: lin(&p("attn_v"), kv, h)?,
                o: lin(&p("attn_output"), h, q)?,
                num_heads: cfg.num_heads,
                num_kv_heads: cfg.num_kv_heads,
                head_dim: cfg.head_dim,
                extra: Default::default(),
            },
            mlp_norm: norm(&p("ffn_norm"))?,
            mlp: Mlp {
                ggml_gelu: false,
                gate: Some(lin(&p("ffn_gate"), ff, h)?),
                up: lin(&p("ffn_up"), ff, h)?,
                down: lin(&p("ffn_down"), h, ff)?,
                activation: cfg.activation,
            },
        });
    }
    let rope = Rope::new(
        cfg.head_dim,
        cfg.rope_theta,
        cfg.max_position_embeddings,
        true,
    );
    Ok(Transformer {
        norm: Some(norm("output_norm.weight")?),
        lm_head: Some(lm_head),
        rope: Some(rope),
        ..Transformer::bare(cfg, embed, blocks, device)
    })
}

/// HF LlamaForCausalLM in safetensors (q/k not permuted: RoPE on (j, j + head_dim/2) pairs).
pub fn load_safetensors(cfg: ModelConfig, t: &super::Tensors) -> Result<Transformer> {
    let (h, q, kv, ff) = (
        cfg.hidden_size,
        cfg.num_heads * cfg.head_dim,
        cfg.num_kv_heads * cfg.head_dim,
        cfg.intermediate_size,
    );
    let embed = Embedding::Dense(t.get("model.embed_tokens.weight", &[cfg.vocab_size, h])?);
    let lm_head = if cfg.tie_word_embeddings || !t.has("lm_head.weight") {
        embed.as_linear()?
    } else {
        t.linear("lm_head", cfg.vocab_size, h, false)?
    };
    let mut blocks = Vec::with_capacity(cfg.num_layers);
    for i in 0..cfg.num_layers {
        let p = format!("model.layers.{i}");
        let (ab, mb) = (cfg.attention_bias, cfg.mlp_bias);
        let qkv = ab || cfg.qkv_bias; // Qwen2: biases on q, k and v only
        blocks.push(Block {
            post_attn_norm: None,
            post_mlp_norm: None,
            cross: None,
            attn_norm: t.rms_norm(&format!("{p}.input_layernorm.weight"), h, cfg.norm_eps)?,
            attn: Attention {
                q: t.linear(&format!("{p}.self_attn.q_proj"), q, h, qkv)?,
                k: t.linear(&format!("{p}.self_attn.k_proj"), kv, h, qkv)?,
                v: t.linear(&format!("{p}.self_attn.v_proj"), kv, h, qkv)?,
                o: t.linear(&format!("{p}.self_attn.o_proj"), h, q, ab)?,
                num_heads: cfg.num_heads,
                num_kv_heads: cfg.num_kv_heads,
                head_dim: cfg.head_dim,
                // Mistral: every layer attends within its window
                extra: nn::attention::AttentionExtras {
                    window: cfg.sliding_window,
                    ..Default::default()
                },
            },
            mlp_norm: t.rms_norm(
                &format!("{p}.post_attention_layernorm.weight"),
                h,
                cfg.norm_eps,
            )?,
            mlp: Mlp {
                ggml_gelu: false,
                gate: Some(t.linear(&format!("{p}.mlp.gate_proj"), ff, h, mb)?),
                up: t.linear(&format!("{p}.mlp.up_proj"), ff, h, mb)?,
                down: t.linear(&format!("{p}.mlp.down_proj"), h, ff, mb)?,
                activation: cfg.activation,
            },
        });
    }
    let norm = Some(t.rms_norm("model.norm.weight", h, cfg.norm_eps)?);
    let rope = Some(Rope::new_hf(
        cfg.head_dim,
        cfg.rope_theta,
        cfg.max_position_embeddings,
    ));
    Ok(Transformer {
        norm,
        rope,
        lm_head: Some(lm_head),
        ..Transformer::bare(cfg, embed, blocks, t.device)
    })
}
