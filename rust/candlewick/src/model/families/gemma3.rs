//! Gemma 3 decoders in GGUF (llama.cpp names and arithmetic): token embeddings scaled by
//! sqrt(hidden), per-head RMS norms on q and k, RoPE on (j, j + head_dim/2) pairs with base
//! `rope.freq_base` on global layers and 10000 on sliding-window ones, every 6th layer global and
//! the others within `attention.sliding_window` positions, "sandwich" norms around attention and
//! the MLP, gated GELU (tanh) as ggml computes it, LM head tied to the embeddings. Norm weights
//! in GGUF already hold HF's (1 + w).

use candle_core::Device;

use crate::config::{Activation, Architecture, ModelConfig, Norm, Position};
use crate::error::{Error, Result};
use crate::io::gguf::GgufFile;
use crate::model::transformer::{Block, Transformer};
use crate::nn::{
    self, attention::AttentionExtras, Attention, Embedding, Linear, Mlp, RmsNorm, Rope,
};

/// llama.cpp: Gemma 3 uses a sliding-window pattern of 6 (layer il is global when il % 6 == 5)
/// and a base of 10000 for the sliding layers' RoPE.
const SWA_PATTERN: usize = 6;
const SWA_ROPE_BASE: f64 = 10_000.0;

pub fn config_from_gguf(g: &GgufFile) -> Result<ModelConfig> {
    let key = |k: &str| format!("gemma3.{k}");
    let (hidden, heads, kv, head_dim, vocab_size) = super::gguf_shape(g, "gemma3")?;
    let cfg = ModelConfig {
        family: "gemma3".into(),
        architecture: Architecture::Decoder,
        vocab_size,
        hidden_size: hidden,
        num_layers: g.require_u64(&key("block_count"))? as usize,
        num_heads: heads,
        num_kv_heads: kv,
        head_dim,
        intermediate_size: g.require_u64(&key("feed_forward_length"))? as usize,
        activation: Activation::GeluTanh,
        gated_mlp: true,
        norm: Norm::RmsNorm,
        norm_eps: g
            .get_f64(&key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-6),
        position: Position::Rope,
        rope_theta: g.get_f64(&key("rope.freq_base"))?.unwrap_or(1_000_000.0),
        max_position_embeddings: g.require_u64(&key("context_length"))? as usize,
        tie_word_embeddings: g.tensor_info("output.weight").is_none(),
        sliding_window: g
            .get(&key("attention.sliding_window"))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize),
        sliding_window_pattern: SWA_PATTERN,
        rope_local_theta: SWA_ROPE_BASE,
        ..ModelConfig::default_for("gemma3")
    };
    cfg.validate()
        .map_err(|e| Error::invalid_file(g.path(), format!("inconsistent gemma3 metadata: {e}")))?;
    if g.get(&key("final_logit_softcapping")).is_some()
        || g.get(&key("rope.scaling.type"))
            .and_then(|v| v.as_str())
            .is_some_and(|t| t != "none")
    {
        return Err(Error::Unsupported(format!(
            "{}: logit soft-capping or RoPE scaling",
            g.path().display()
        )));
    }
    Ok(cfg)
}

pub fn load_gguf(g: &GgufFile, device: &Device) -> Result<Transformer> {
    let cfg = config_from_gguf(g)?;
    let (h, q, kv, ff, hd) = (
        cfg.hidden_size,
        cfg.num_heads * cfg.head_dim,
        cfg.num_kv_heads * cfg.head_dim,
        cfg.intermediate_size,
        cfg.head_dim,
    );
    let lin = |name: &str, out: usize, inp: usize| Linear::from_gguf(g, name, out, inp, device);
    let rms = |name: &str, d: usize| -> Result<RmsNorm> {
        RmsNorm::new(
            g.qtensor_shaped(name, &[d], device)?.dequantize(device)?,
            cfg.norm_eps,
        )
    };
    let norm = |name: &str| -> Result<nn::Norm> { Ok(nn::Norm::Rms(rms(name, h)?)) };
    let embed = Embedding::from_gguf(g, "token_embd.weight", cfg.vocab_size, h, device)?;
    let lm_head = if cfg.tie_word_embeddings {
        embed.as_linear()?
    } else {
        lin("output.weight", cfg.vocab_size, h)?
    };
    let ctx = cfg.max_position_embeddings;
    let global_rope = Rope::new(hd, cfg.rope_theta, ctx, false);
    let local_rope = Rope::new(hd, cfg.rope_local_theta, ctx, false);
    let mut blocks = Vec::with_capacity(cfg.num_layers);
    for i in 0..cfg.num_layers {
        let p = |s: &str| format!("blk.{i}.{s}.weight");
        let global = i % SWA_PATTERN == SWA_PATTERN - 1;
        blocks.push(Block {
            attn_norm: norm(&p("attn_norm"))?,
            attn: Attention {
                q: lin(&p("attn_q"), q, h)?,
                k: lin(&p("attn_k"), kv, h)?,
                v: lin(&p("attn_v"), kv, h)?,
                o: lin(&p("attn_output"), h, q)?,
                num_heads: cfg.num_heads,
                num_kv_heads: cfg.num_kv_heads,
                head_dim: hd,
                extra: AttentionExtras {
                    q_norm: Some(rms(&p("attn_q_norm"), hd)?),
                    k_norm: Some(rms(&p("attn_k_norm"), hd)?),
                    window: if global { None } else { cfg.sliding_window },
                    rope: Some(if global {
                        global_rope.clone()
                    } else {
                        local_rope.clone()
                    }),
                },
            },
            post_attn_norm: Some(norm(&p("post_attention_norm"))?),
            mlp_norm: norm(&p("ffn_norm"))?,
            mlp: Mlp {
                gate: Some(lin(&p("ffn_gate"), ff, h)?),
                up: lin(&p("ffn_up"), ff, h)?,
                down: lin(&p("ffn_down"), h, ff)?,
                activation: cfg.activation,
                ggml_gelu: true,
            },
            post_mlp_norm: Some(norm(&p("post_ffw_norm"))?),
            cross: None,
        });
    }
    Ok(Transformer {
        embed_scale: Some((h as f32).sqrt() as f64),
        norm: Some(norm("output_norm.weight")?),
        lm_head: Some(lm_head),
        ..Transformer::bare(cfg, embed, blocks, device)
    })
}
