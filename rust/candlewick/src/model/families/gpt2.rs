//! GPT-2 in HF safetensors: learned positions, pre-norm LayerNorm blocks, fused q/k/v, GELU
//! (tanh) MLP, LM head tied to the token embeddings. Its Conv1D layers store weights [in, out]:
//! they are transposed to [out, in] here, and c_attn is split into q, k and v.

use candle_core::{IndexOp, Tensor};

use super::Tensors;
use crate::config::ModelConfig;
use crate::error::Result;
use crate::model::transformer::{Block, Transformer};
use crate::nn::{Attention, Embedding, Linear, Mlp};

/// A Conv1D: weight [in, out] -> Linear with weight [out, in].
fn conv1d(t: &Tensors, name: &str, inp: usize, out: usize) -> Result<(Tensor, Tensor)> {
    let w = t
        .get(&format!("{name}.weight"), &[inp, out])?
        .t()?
        .contiguous()?;
    let b = t.get(&format!("{name}.bias"), &[out])?;
    Ok((w, b))
}

pub fn load(cfg: ModelConfig, t: &Tensors) -> Result<Transformer> {
    let (h, ff) = (cfg.hidden_size, cfg.intermediate_size);
    // Some exports prefix everything with "transformer." (GPT2LMHeadModel), some do not (GPT2Model).
    let pre = if t.has("transformer.wte.weight") {
        "transformer."
    } else {
        ""
    };
    let ln = |name: &str| t.layer_norm(&format!("{pre}{name}"), h, true, cfg.norm_eps);
    let embed = Embedding::Dense(t.get(&format!("{pre}wte.weight"), &[cfg.vocab_size, h])?);
    let positions = Embedding::Dense(t.get(
        &format!("{pre}wpe.weight"),
        &[cfg.max_position_embeddings, h],
    )?);
    let mut blocks = Vec::with_capacity(cfg.num_layers);
    for i in 0..cfg.num_layers {
        let p = format!("{pre}h.{i}");
        let (w, b) = conv1d(t, &format!("{p}.attn.c_attn"), h, 3 * h)?;
        let part = |j: usize| -> Result<Linear> {
            Linear::dense(
                w.i(j * h..(j + 1) * h)?.contiguous()?,
                Some(b.i(j * h..(j + 1) * h)?.contiguous()?),
            )
        };
        let (ow, ob) = conv1d(t, &format!("{p}.attn.c_proj"), h, h)?;
        let (fw, fb) = conv1d(t, &format!("{p}.mlp.c_fc"), h, ff)?;
        let (pw, pb) = conv1d(t, &format!("{p}.mlp.c_proj"), ff, h)?;
        blocks.push(Block {
            post_attn_norm: None,
            post_mlp_norm: None,
            cross: None,
            attn_norm: ln(&format!("h.{i}.ln_1"))?,
            attn: Attention {
                q: part(0)?,
                k: part(1)?,
                v: part(2)?,
                o: Linear::dense(ow, Some(ob))?,
                num_heads: cfg.num_heads,
                num_kv_heads: cfg.num_kv_heads,
                head_dim: cfg.head_dim,
                extra: Default::default(),
            },
            mlp_norm: ln(&format!("h.{i}.ln_2"))?,
            mlp: Mlp {
                ggml_gelu: false,
                gate: None,
                up: Linear::dense(fw, Some(fb))?,
                down: Linear::dense(pw, Some(pb))?,
                activation: cfg.activation,
            },
        });
    }
    let lm_head = if !cfg.tie_word_embeddings && t.has("lm_head.weight") {
        t.linear("lm_head", cfg.vocab_size, h, false)?
    } else {
        embed.as_linear()?
    };
    Ok(Transformer {
        norm: Some(ln("ln_f")?),
        positions: Some(positions),
        lm_head: Some(lm_head),
        ..Transformer::bare(cfg, embed, blocks, t.device)
    })
}
