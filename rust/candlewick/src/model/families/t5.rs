//! T5 in HF safetensors (T5ForConditionalGeneration): shared embeddings, relative position bias
//! in the first layer of each stack, RMS layer norms without bias, ReLU or gated-GELU MLPs, LM
//! head tied or its own, decoder output scaled by d_model^-0.5 (T5 v1.0) or not (v1.1).

use super::Tensors;
use crate::config::ModelConfig;
use crate::error::Result;
use crate::model::seq2seq::EncoderDecoder;
use crate::model::transformer::Block;
use crate::nn::{Attention, Embedding, Mlp, RelativeBias};

/// `scale_outputs`: multiply the decoder output by d_model^-0.5 before the head (T5 v1.0; the
/// config says so with `scale_decoder_outputs`, or in older files with tie_word_embeddings).
pub fn load(
    cfg: ModelConfig,
    t: &Tensors,
    decoder_start_token_id: u32,
    scale_outputs: bool,
) -> Result<EncoderDecoder> {
    let (h, ff, inner, nh) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_heads * cfg.head_dim,
        cfg.num_heads,
    );
    let norm = |name: &str| t.rms_norm(name, h, cfg.norm_eps);
    let attn = |p: &str| -> Result<Attention> {
        Ok(Attention {
            q: t.linear(&format!("{p}.q"), inner, h, false)?,
            k: t.linear(&format!("{p}.k"), inner, h, false)?,
            v: t.linear(&format!("{p}.v"), inner, h, false)?,
            o: t.linear(&format!("{p}.o"), h, inner, false)?,
            num_heads: nh,
            num_kv_heads: nh,
            head_dim: cfg.head_dim,
            extra: Default::default(),
        })
    };
    let mlp = |p: &str| -> Result<Mlp> {
        Ok(if cfg.gated_mlp {
            Mlp {
                ggml_gelu: false,
                gate: Some(t.linear(&format!("{p}.DenseReluDense.wi_0"), ff, h, false)?),
                up: t.linear(&format!("{p}.DenseReluDense.wi_1"), ff, h, false)?,
                down: t.linear(&format!("{p}.DenseReluDense.wo"), h, ff, false)?,
                activation: cfg.activation,
            }
        } else {
            Mlp {
                ggml_gelu: false,
                gate: None,
                up: t.linear(&format!("{p}.DenseReluDense.wi"), ff, h, false)?,
                down: t.linear(&format!("{p}.DenseReluDense.wo"), h, ff, false)?,
                activation: cfg.activation,
            }
        })
    };
    let bias = |stack: &str, bidirectional: bool| -> Result<RelativeBias> {
        let name = format!("{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
        let table = t
            .get(&name, &[cfg.relative_attention_num_buckets, nh])?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(RelativeBias {
            table,
            num_buckets: cfg.relative_attention_num_buckets,
            num_heads: nh,
            max_distance: cfg.relative_attention_max_distance,
            bidirectional,
        })
    };
    let mut encoder = Vec::with_capacity(cfg.num_layers);
    for i in 0..cfg.num_layers {
        let p = format!("encoder.block.{i}.layer");
        encoder.push(Block::new(
            norm(&format!("{p}.0.layer_norm.weight"))?,
            attn(&format!("{p}.0.SelfAttention"))?,
            norm(&format!("{p}.1.layer_norm.weight"))?,
            mlp(&format!("{p}.1"))?,
        ));
    }
    let mut decoder = Vec::with_capacity(cfg.num_decoder_layers);
    for i in 0..cfg.num_decoder_layers {
        let p = format!("decoder.block.{i}.layer");
        decoder.push(Block {
            cross: Some((
                norm(&format!("{p}.1.layer_norm.weight"))?,
                attn(&format!("{p}.1.EncDecAttention"))?,
            )),
            ..Block::new(
                norm(&format!("{p}.0.layer_norm.weight"))?,
                attn(&format!("{p}.0.SelfAttention"))?,
                norm(&format!("{p}.2.layer_norm.weight"))?,
                mlp(&format!("{p}.2"))?,
            )
        });
    }
    let embed = Embedding::Dense(t.get("shared.weight", &[cfg.vocab_size, h])?);
    let lm_head = if !cfg.tie_word_embeddings && t.has("lm_head.weight") {
        t.linear("lm_head", cfg.vocab_size, h, false)?
    } else {
        embed.as_linear()?
    };
    let lm_scale = if scale_outputs {
        (h as f64).powf(-0.5)
    } else {
        1.0
    };
    Ok(EncoderDecoder {
        encoder_bias: bias("encoder", true)?,
        encoder_norm: norm("encoder.final_layer_norm.weight")?,
        decoder_bias: bias("decoder", false)?,
        decoder_norm: norm("decoder.final_layer_norm.weight")?,
        embed,
        encoder,
        decoder,
        lm_head,
        lm_scale,
        decoder_start_token_id,
        device: t.device.clone(),
        config: cfg,
    })
}
