//! Gemma 3 decoders, read from GGUF (llama.cpp's names and arithmetic): token embeddings scaled
//! by sqrt(hidden), per-head RMS norms on q and k, RoPE on (j, j + head_dim/2) pairs with base
//! `rope.freq_base` on global layers and 10000 on sliding-window ones, every 6th layer global and
//! the others within `attention.sliding_window` positions, "sandwich" norms around attention and
//! the MLP, gated GELU (tanh) as ggml computes it, LM head tied to the embeddings. Norm weights
//! in GGUF already hold HF's (1 + w). The HF names are listed too, so that a Gemma 3 config is
//! counted and sized; reading HF Gemma 3 folders is not built.

use super::{gguf_decoder, lm_head, refuse_gguf_rope_scaling, Family};
use crate::config::{Activation, ModelConfig};
use crate::error::{Error, Result};
use crate::io::gguf::GgufFile;
use crate::model::builder::Vb;
use crate::model::transformer::{Block, Embeddings, Norms, Transformer};
use crate::model::Stacks;
use crate::nn::attention::{AttentionKind, AttentionPositions};
use crate::nn::{Attention, Mlp, Rope};

pub struct Gemma3;

/// llama.cpp: Gemma 3 uses a sliding-window pattern of 6 (layer il is global when il % 6 == 5)
/// and a base of 10000 for the sliding layers' RoPE.
const SWA_PATTERN: usize = 6;
const SWA_ROPE_BASE: f64 = 10_000.0;

/// The checkpoint's tensor names, in each format (Gemma 2 reads the same ones, less q/k norms).
pub(super) struct Names {
    pub(super) embed: &'static str,
    pub(super) layers: &'static str,
    pub(super) q: &'static str,
    pub(super) k: &'static str,
    pub(super) v: &'static str,
    pub(super) o: &'static str,
    pub(super) q_norm: &'static str,
    pub(super) k_norm: &'static str,
    pub(super) attn_norm: &'static str,
    pub(super) post_attn_norm: &'static str,
    pub(super) mlp_norm: &'static str,
    pub(super) post_mlp_norm: &'static str,
    pub(super) gate: &'static str,
    pub(super) up: &'static str,
    pub(super) down: &'static str,
    pub(super) norm: &'static str,
    pub(super) lm_head: &'static str,
}

pub(super) const HF: Names = Names {
    embed: "model.embed_tokens",
    layers: "model.layers",
    q: "self_attn.q_proj",
    k: "self_attn.k_proj",
    v: "self_attn.v_proj",
    o: "self_attn.o_proj",
    q_norm: "self_attn.q_norm",
    k_norm: "self_attn.k_norm",
    attn_norm: "input_layernorm",
    post_attn_norm: "post_attention_layernorm",
    mlp_norm: "pre_feedforward_layernorm",
    post_mlp_norm: "post_feedforward_layernorm",
    gate: "mlp.gate_proj",
    up: "mlp.up_proj",
    down: "mlp.down_proj",
    norm: "model.norm",
    lm_head: "lm_head",
};

pub(super) const GGUF: Names = Names {
    embed: "token_embd",
    layers: "blk",
    q: "attn_q",
    k: "attn_k",
    v: "attn_v",
    o: "attn_output",
    q_norm: "attn_q_norm",
    k_norm: "attn_k_norm",
    attn_norm: "attn_norm",
    post_attn_norm: "post_attention_norm",
    mlp_norm: "ffn_norm",
    post_mlp_norm: "post_ffw_norm",
    gate: "ffn_gate",
    up: "ffn_up",
    down: "ffn_down",
    norm: "output_norm",
    lm_head: "output",
};

impl Family for Gemma3 {
    fn name(&self) -> &'static str {
        "gemma3"
    }

    fn gguf_architectures(&self) -> &'static [&'static str] {
        &["gemma3"]
    }

    fn preset(&self) -> ModelConfig {
        ModelConfig {
            family: "gemma3".into(),
            activation: Activation::GeluTanh,
            norm_eps: 1e-6,
            rope_theta: 1_000_000.0,
            rope_local_theta: SWA_ROPE_BASE,
            sliding_window: Some(512),
            sliding_window_pattern: SWA_PATTERN,
            tie_word_embeddings: true,
            ..ModelConfig::default()
        }
    }

    fn check(&self, _c: &ModelConfig) -> Result<()> {
        Err(Error::Unsupported(
            "gemma3 models are read from GGUF files; building one from a config (or saving it) is not built yet".into(),
        ))
    }

    fn to_hf(&self, c: &ModelConfig) -> Result<serde_json::Value> {
        self.check(c).map(|_| serde_json::Value::Null)
    }

    fn config_from_gguf(&self, g: &GgufFile) -> Result<ModelConfig> {
        let key = |k: &str| format!("gemma3.{k}");
        refuse_gguf_rope_scaling(g, "gemma3")?;
        if g.get(&key("final_logit_softcapping")).is_some() {
            return Err(Error::Unsupported(format!(
                "{}: logit soft-capping",
                g.path().display()
            )));
        }
        Ok(ModelConfig {
            sliding_window: g
                .get(&key("attention.sliding_window"))
                .and_then(|v| v.as_u64())
                .map(|v| v as usize),
            ..gguf_decoder(g, "gemma3", self.preset())?
        })
    }

    fn build(&self, c: &ModelConfig, vb: &Vb) -> Result<Stacks> {
        let n = if vb.is_gguf() { &GGUF } else { &HF };
        let (h, q, kv, ff, hd, eps) = (
            c.hidden_size,
            c.q_dim(),
            c.kv_dim(),
            c.intermediate_size,
            c.head_dim,
            c.norm_eps,
        );
        let tokens = vb.pp(n.embed).embedding(c.vocab_size, h)?;
        let rope = |theta: f64| {
            if vb.is_gguf() {
                Rope::ggml(hd, theta, false)
            } else {
                Rope::hf(hd, theta)
            }
        };
        let local_theta = if c.rope_local_theta > 0.0 {
            c.rope_local_theta
        } else {
            c.rope_theta
        };
        let (global_rope, local_rope) = (rope(c.rope_theta), rope(local_theta));
        let pattern = c.sliding_window_pattern;
        let mut blocks = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let l = vb.pp(n.layers).pp(i);
            // every `pattern`-th layer attends globally with the global base, the others locally
            let global = pattern == 0 || i % pattern == pattern - 1;
            let before_attn = l.pp(n.attn_norm).rms_norm(h, eps)?;
            let mut attn = Attention::new(
                l.pp(n.q).linear(q, h, false)?,
                l.pp(n.k).linear(kv, h, false)?,
                l.pp(n.v).linear(kv, h, false)?,
                l.pp(n.o).linear(h, q, false)?,
                (c.num_heads, c.num_kv_heads, hd),
                AttentionKind::Causal,
            );
            attn.q_norm = Some(l.pp(n.q_norm).rms(hd, eps)?);
            attn.k_norm = Some(l.pp(n.k_norm).rms(hd, eps)?);
            attn.window = if global { None } else { c.sliding_window };
            attn.positions = AttentionPositions::Rope(if global {
                global_rope.clone()
            } else {
                local_rope.clone()
            });
            let attn_norms = Norms::Sandwich {
                before: before_attn,
                after: l.pp(n.post_attn_norm).rms_norm(h, eps)?,
            };
            let before_mlp = l.pp(n.mlp_norm).rms_norm(h, eps)?;
            let mlp = Mlp {
                gate: Some(l.pp(n.gate).linear(ff, h, false)?),
                up: l.pp(n.up).linear(ff, h, false)?,
                down: l.pp(n.down).linear(h, ff, false)?,
                activation: c.activation,
                // llama.cpp computes GELU through an f16 table
                ggml_gelu: vb.is_gguf(),
            };
            let mlp_norms = Norms::Sandwich {
                before: before_mlp,
                after: l.pp(n.post_mlp_norm).rms_norm(h, eps)?,
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
        let embeddings = Embeddings {
            scale: Some((h as f32).sqrt() as f64),
            ..Embeddings::tokens(tokens)
        };
        Ok(Stacks::decoder(Transformer::decoder(
            embeddings, blocks, norm, proj,
        )))
    }
}
