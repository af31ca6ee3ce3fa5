//! BERT encoders in HF safetensors (BertModel, BertForMaskedLM; sentence-transformers models such
//! as all-MiniLM-L6-v2): learned positions + token types + embedding LayerNorm, post-norm layers
//! with biased projections and a GELU MLP, optional MLM head (dense -> GELU -> LayerNorm ->
//! decoder tied to the word embeddings, with its own bias).

use super::Tensors;
use crate::config::ModelConfig;
use crate::error::Result;
use crate::model::transformer::{Block, MlmHead, Transformer};
use crate::nn::{Attention, Embedding, Linear, Mlp};

pub fn load(cfg: ModelConfig, t: &Tensors) -> Result<Transformer> {
    let (h, ff, inner) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_heads * cfg.head_dim,
    );
    let pre = if t.has("bert.embeddings.word_embeddings.weight") {
        "bert."
    } else {
        ""
    };
    let ln = |name: &str| t.layer_norm(name, h, cfg.norm_bias, cfg.norm_eps);
    let word = t.get(
        &format!("{pre}embeddings.word_embeddings.weight"),
        &[cfg.vocab_size, h],
    )?;
    let positions = t.get(
        &format!("{pre}embeddings.position_embeddings.weight"),
        &[cfg.max_position_embeddings, h],
    )?;
    let token_types = if cfg.type_vocab_size > 0 {
        Some(Embedding::Dense(t.get(
            &format!("{pre}embeddings.token_type_embeddings.weight"),
            &[cfg.type_vocab_size, h],
        )?))
    } else {
        None
    };
    let mut blocks = Vec::with_capacity(cfg.num_layers);
    for i in 0..cfg.num_layers {
        let p = format!("{pre}encoder.layer.{i}");
        let b = cfg.attention_bias;
        blocks.push(Block {
            post_attn_norm: None,
            post_mlp_norm: None,
            cross: None,
            attn: Attention {
                q: t.linear(&format!("{p}.attention.self.query"), inner, h, b)?,
                k: t.linear(&format!("{p}.attention.self.key"), inner, h, b)?,
                v: t.linear(&format!("{p}.attention.self.value"), inner, h, b)?,
                o: t.linear(&format!("{p}.attention.output.dense"), h, inner, b)?,
                num_heads: cfg.num_heads,
                num_kv_heads: cfg.num_kv_heads,
                head_dim: cfg.head_dim,
                extra: Default::default(),
            },
            attn_norm: ln(&format!("{p}.attention.output.LayerNorm"))?,
            mlp: Mlp {
                ggml_gelu: false,
                gate: None,
                up: t.linear(&format!("{p}.intermediate.dense"), ff, h, cfg.mlp_bias)?,
                down: t.linear(&format!("{p}.output.dense"), h, ff, cfg.mlp_bias)?,
                activation: cfg.activation,
            },
            mlp_norm: ln(&format!("{p}.output.LayerNorm"))?,
        });
    }
    let mlm_head = if cfg.mlm_head {
        let decoder_w = if t.has("cls.predictions.decoder.weight") && !cfg.tie_word_embeddings {
            t.get("cls.predictions.decoder.weight", &[cfg.vocab_size, h])?
        } else {
            word.clone()
        };
        Some(MlmHead {
            dense: t.linear("cls.predictions.transform.dense", h, h, true)?,
            activation: cfg.activation,
            norm: ln("cls.predictions.transform.LayerNorm")?,
            decoder: Linear::dense(
                decoder_w,
                Some(t.get("cls.predictions.bias", &[cfg.vocab_size])?),
            )?,
        })
    } else {
        None
    };
    let embed_norm = Some(ln(&format!("{pre}embeddings.LayerNorm"))?);
    let device = t.device.clone();
    Ok(Transformer {
        positions: Some(Embedding::Dense(positions)),
        token_types,
        embed_norm,
        mlm_head,
        ..Transformer::bare(cfg, Embedding::Dense(word), blocks, &device)
    })
}
