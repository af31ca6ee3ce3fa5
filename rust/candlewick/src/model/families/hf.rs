//! The tensors an HF checkpoint of each family holds, by name and shape, from a ModelConfig.
//! One list serves parameter counting (memory estimation) and, with the architectures issue,
//! loading and saving safetensors. Buffers (BERT's position_ids) are not parameters and are
//! not listed; tied weights are listed once.

use crate::config::{Architecture, ModelConfig, Position};
use crate::error::{Error, Result};

type Shapes = Vec<(String, Vec<usize>)>;

pub fn tensor_shapes(c: &ModelConfig) -> Result<Shapes> {
    match c.family.as_str() {
        "llama" => Ok(llama(c)),
        "bert" => Ok(bert(c)),
        "gpt2" => Ok(gpt2(c)),
        "t5" => Ok(t5(c)),
        "gemma3" => Ok(gemma3(c)),
        other => Err(Error::Unsupported(format!(
            "tensor layout of family '{other}' (known: llama, bert, gpt2, t5)"
        ))),
    }
}

/// The learned position table of a gpt2 or bert layout (sinusoidal positions are stored there).
pub fn is_position_table(name: &str) -> bool {
    name == "wpe.weight" || name.ends_with("embeddings.position_embeddings.weight")
}

fn push(v: &mut Shapes, name: String, shape: &[usize]) {
    v.push((name, shape.to_vec()));
}

fn linear(v: &mut Shapes, name: &str, out: usize, inp: usize, bias: bool) {
    push(v, format!("{name}.weight"), &[out, inp]);
    if bias {
        push(v, format!("{name}.bias"), &[out]);
    }
}

fn norm(v: &mut Shapes, name: &str, h: usize, bias: bool) {
    push(v, format!("{name}.weight"), &[h]);
    if bias {
        push(v, format!("{name}.bias"), &[h]);
    }
}

fn llama(c: &ModelConfig) -> Shapes {
    let (h, q, kv, ff) = (
        c.hidden_size,
        c.num_heads * c.head_dim,
        c.num_kv_heads * c.head_dim,
        c.intermediate_size,
    );
    let mut v = Shapes::new();
    push(
        &mut v,
        "model.embed_tokens.weight".into(),
        &[c.vocab_size, h],
    );
    for i in 0..c.num_layers {
        let p = format!("model.layers.{i}");
        linear(
            &mut v,
            &format!("{p}.self_attn.q_proj"),
            q,
            h,
            c.attention_bias || c.qkv_bias,
        );
        linear(
            &mut v,
            &format!("{p}.self_attn.k_proj"),
            kv,
            h,
            c.attention_bias || c.qkv_bias,
        );
        linear(
            &mut v,
            &format!("{p}.self_attn.v_proj"),
            kv,
            h,
            c.attention_bias || c.qkv_bias,
        );
        linear(
            &mut v,
            &format!("{p}.self_attn.o_proj"),
            h,
            q,
            c.attention_bias,
        );
        linear(&mut v, &format!("{p}.mlp.gate_proj"), ff, h, c.mlp_bias);
        linear(&mut v, &format!("{p}.mlp.up_proj"), ff, h, c.mlp_bias);
        linear(&mut v, &format!("{p}.mlp.down_proj"), h, ff, c.mlp_bias);
        norm(&mut v, &format!("{p}.input_layernorm"), h, false);
        norm(&mut v, &format!("{p}.post_attention_layernorm"), h, false);
    }
    norm(&mut v, "model.norm", h, false);
    if !c.tie_word_embeddings {
        push(&mut v, "lm_head.weight".into(), &[c.vocab_size, h]);
    }
    v
}

fn bert(c: &ModelConfig) -> Shapes {
    let (h, ff) = (c.hidden_size, c.intermediate_size);
    let inner = c.num_heads * c.head_dim;
    let pre = if c.mlm_head { "bert." } else { "" };
    let mut v = Shapes::new();
    push(
        &mut v,
        format!("{pre}embeddings.word_embeddings.weight"),
        &[c.vocab_size, h],
    );
    if matches!(c.position, Position::Learned | Position::Sinusoidal) {
        push(
            &mut v,
            format!("{pre}embeddings.position_embeddings.weight"),
            &[c.max_position_embeddings, h],
        );
    }
    if c.type_vocab_size > 0 {
        push(
            &mut v,
            format!("{pre}embeddings.token_type_embeddings.weight"),
            &[c.type_vocab_size, h],
        );
    }
    norm(
        &mut v,
        &format!("{pre}embeddings.LayerNorm"),
        h,
        c.norm_bias,
    );
    for i in 0..c.num_layers {
        let p = format!("{pre}encoder.layer.{i}");
        linear(
            &mut v,
            &format!("{p}.attention.self.query"),
            inner,
            h,
            c.attention_bias,
        );
        linear(
            &mut v,
            &format!("{p}.attention.self.key"),
            inner,
            h,
            c.attention_bias,
        );
        linear(
            &mut v,
            &format!("{p}.attention.self.value"),
            inner,
            h,
            c.attention_bias,
        );
        linear(
            &mut v,
            &format!("{p}.attention.output.dense"),
            h,
            inner,
            c.attention_bias,
        );
        norm(
            &mut v,
            &format!("{p}.attention.output.LayerNorm"),
            h,
            c.norm_bias,
        );
        linear(
            &mut v,
            &format!("{p}.intermediate.dense"),
            ff,
            h,
            c.mlp_bias,
        );
        linear(&mut v, &format!("{p}.output.dense"), h, ff, c.mlp_bias);
        norm(&mut v, &format!("{p}.output.LayerNorm"), h, c.norm_bias);
    }
    if c.pooler {
        linear(&mut v, &format!("{pre}pooler.dense"), h, h, true);
    }
    if c.mlm_head {
        linear(&mut v, "cls.predictions.transform.dense", h, h, true);
        norm(
            &mut v,
            "cls.predictions.transform.LayerNorm",
            h,
            c.norm_bias,
        );
        push(&mut v, "cls.predictions.bias".into(), &[c.vocab_size]);
        if !c.tie_word_embeddings {
            push(
                &mut v,
                "cls.predictions.decoder.weight".into(),
                &[c.vocab_size, h],
            );
        }
    }
    v
}

fn gpt2(c: &ModelConfig) -> Shapes {
    // Conv1D weights are stored [in, out].
    let (h, ff) = (c.hidden_size, c.intermediate_size);
    let mut v = Shapes::new();
    push(&mut v, "wte.weight".into(), &[c.vocab_size, h]);
    push(&mut v, "wpe.weight".into(), &[c.max_position_embeddings, h]);
    for i in 0..c.num_layers {
        let p = format!("h.{i}");
        norm(&mut v, &format!("{p}.ln_1"), h, true);
        push(&mut v, format!("{p}.attn.c_attn.weight"), &[h, 3 * h]);
        push(&mut v, format!("{p}.attn.c_attn.bias"), &[3 * h]);
        push(&mut v, format!("{p}.attn.c_proj.weight"), &[h, h]);
        push(&mut v, format!("{p}.attn.c_proj.bias"), &[h]);
        norm(&mut v, &format!("{p}.ln_2"), h, true);
        push(&mut v, format!("{p}.mlp.c_fc.weight"), &[h, ff]);
        push(&mut v, format!("{p}.mlp.c_fc.bias"), &[ff]);
        push(&mut v, format!("{p}.mlp.c_proj.weight"), &[ff, h]);
        push(&mut v, format!("{p}.mlp.c_proj.bias"), &[h]);
    }
    norm(&mut v, "ln_f", h, true);
    if !c.tie_word_embeddings {
        push(&mut v, "lm_head.weight".into(), &[c.vocab_size, h]);
    }
    v
}

fn t5(c: &ModelConfig) -> Shapes {
    let (h, ff, inner) = (c.hidden_size, c.intermediate_size, c.num_heads * c.head_dim);
    let mut v = Shapes::new();
    push(&mut v, "shared.weight".into(), &[c.vocab_size, h]);
    let attn = |v: &mut Shapes, p: &str, first: bool| {
        for n in ["q", "k", "v"] {
            push(v, format!("{p}.{n}.weight"), &[inner, h]);
        }
        push(v, format!("{p}.o.weight"), &[h, inner]);
        if first {
            push(
                v,
                format!("{p}.relative_attention_bias.weight"),
                &[c.relative_attention_num_buckets, c.num_heads],
            );
        }
    };
    let mlp = |v: &mut Shapes, p: &str| {
        if c.gated_mlp {
            push(v, format!("{p}.DenseReluDense.wi_0.weight"), &[ff, h]);
            push(v, format!("{p}.DenseReluDense.wi_1.weight"), &[ff, h]);
        } else {
            push(v, format!("{p}.DenseReluDense.wi.weight"), &[ff, h]);
        }
        push(v, format!("{p}.DenseReluDense.wo.weight"), &[h, ff]);
        push(v, format!("{p}.layer_norm.weight"), &[h]);
    };
    for i in 0..c.num_layers {
        let p = format!("encoder.block.{i}.layer");
        attn(&mut v, &format!("{p}.0.SelfAttention"), i == 0);
        push(&mut v, format!("{p}.0.layer_norm.weight"), &[h]);
        mlp(&mut v, &format!("{p}.1"));
    }
    push(&mut v, "encoder.final_layer_norm.weight".into(), &[h]);
    if c.architecture == Architecture::EncoderDecoder {
        for i in 0..c.num_decoder_layers {
            let p = format!("decoder.block.{i}.layer");
            attn(&mut v, &format!("{p}.0.SelfAttention"), i == 0);
            push(&mut v, format!("{p}.0.layer_norm.weight"), &[h]);
            attn(&mut v, &format!("{p}.1.EncDecAttention"), false);
            push(&mut v, format!("{p}.1.layer_norm.weight"), &[h]);
            mlp(&mut v, &format!("{p}.2"));
        }
        push(&mut v, "decoder.final_layer_norm.weight".into(), &[h]);
    }
    if !c.tie_word_embeddings {
        push(&mut v, "lm_head.weight".into(), &[c.vocab_size, h]);
    }
    v
}

fn gemma3(c: &ModelConfig) -> Shapes {
    let (h, q, kv, ff, hd) = (
        c.hidden_size,
        c.num_heads * c.head_dim,
        c.num_kv_heads * c.head_dim,
        c.intermediate_size,
        c.head_dim,
    );
    let mut v = Shapes::new();
    push(
        &mut v,
        "model.embed_tokens.weight".into(),
        &[c.vocab_size, h],
    );
    for i in 0..c.num_layers {
        let p = format!("model.layers.{i}");
        linear(&mut v, &format!("{p}.self_attn.q_proj"), q, h, false);
        linear(&mut v, &format!("{p}.self_attn.k_proj"), kv, h, false);
        linear(&mut v, &format!("{p}.self_attn.v_proj"), kv, h, false);
        linear(&mut v, &format!("{p}.self_attn.o_proj"), h, q, false);
        norm(&mut v, &format!("{p}.self_attn.q_norm"), hd, false);
        norm(&mut v, &format!("{p}.self_attn.k_norm"), hd, false);
        linear(&mut v, &format!("{p}.mlp.gate_proj"), ff, h, false);
        linear(&mut v, &format!("{p}.mlp.up_proj"), ff, h, false);
        linear(&mut v, &format!("{p}.mlp.down_proj"), h, ff, false);
        for n in [
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ] {
            norm(&mut v, &format!("{p}.{n}"), h, false);
        }
    }
    norm(&mut v, "model.norm", h, false);
    if !c.tie_word_embeddings {
        push(&mut v, "lm_head.weight".into(), &[c.vocab_size, h]);
    }
    v
}
