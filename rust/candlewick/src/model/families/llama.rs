//! Llama-family decoders: Llama 2/3 (with linear, llama3 or yarn RoPE scaling), SmolLM2,
//! TinyLlama, and the classes with the same layout: Mistral (a sliding window), Qwen2 (biases on
//! q, k and v only) and Qwen3 (per-head RMS norms on q and k). RMSNorm, RoPE, GQA, SwiGLU,
//! pre-norm blocks. Read from HF folders (LlamaForCausalLM, MistralForCausalLM,
//! Qwen2ForCausalLM, Qwen3ForCausalLM) and GGUF files of architecture llama, qwen2 or qwen3
//! (llama.cpp's names; for llama its converter permuted q and k so that RoPE rotates adjacent
//! pairs, while HF, qwen2 and qwen3 rotate the two halves of each head).

use super::{
    activation, activation_name, gguf_decoder, gguf_decoder_metadata, gguf_rope_scaling, lm_head,
    want, Family, GgufParts, HfConfig,
};
use crate::config::{Architecture, ModelConfig, Norm, Position, RopeScaling};
use crate::error::{Error, Result};
use crate::io::gguf::GgufFile;
use crate::io::gguf::Value;
use crate::model::builder::Init;
use crate::model::builder::Vb;
use crate::model::transformer::{Block, Embeddings, Norms, Transformer};
use crate::model::Stacks;
use crate::nn::attention::{AttentionKind, AttentionPositions};
use crate::nn::rope::Scaling;
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
    q_norm: &'static str,
    k_norm: &'static str,
    mlp_norm: &'static str,
    gate: &'static str,
    up: &'static str,
    down: &'static str,
    norm: &'static str,
    lm_head: &'static str,
}

impl Names {
    /// The tensors outside the layers.
    fn top(&self) -> [&'static str; 3] {
        [self.embed, self.norm, self.lm_head]
    }

    /// The tensors of each layer.
    fn layer(&self) -> [&'static str; 11] {
        [
            self.attn_norm,
            self.q,
            self.k,
            self.v,
            self.o,
            self.q_norm,
            self.k_norm,
            self.mlp_norm,
            self.gate,
            self.up,
            self.down,
        ]
    }
}

/// An HF tensor name's GGUF name (None: not a tensor of this family).
fn gguf_name(hf: &str) -> Option<String> {
    let (stem, suffix) = hf.rsplit_once('.')?;
    if let Some((_, g)) = HF.top().iter().zip(GGUF.top()).find(|(h, _)| stem == **h) {
        return Some(format!("{g}.{suffix}"));
    }
    let (i, leaf) = stem
        .strip_prefix(HF.layers)?
        .strip_prefix('.')?
        .split_once('.')?;
    let i: usize = i.parse().ok()?;
    let (_, g) = HF
        .layer()
        .into_iter()
        .zip(GGUF.layer())
        .find(|(h, _)| leaf == *h)?;
    Some(format!("{}.{i}.{g}.{suffix}", GGUF.layers))
}

/// The rows of a q or k projection of `heads` heads reordered so that RoPE on adjacent pairs
/// (llama.cpp's llama graph) computes what RoPE on each head's two halves (HF) computes on the
/// original: within each head, row 2j + p takes row p * head_dim / 2 + j (llama.cpp's
/// converter's `permute`).
fn halves_to_pairs(
    t: &candle_core::Tensor,
    heads: usize,
    head_dim: usize,
) -> Result<candle_core::Tensor> {
    let inp = t.dim(1)?;
    Ok(t.reshape((heads, 2, head_dim / 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((heads * head_dim, inp))?)
}

const HF: Names = Names {
    embed: "model.embed_tokens",
    layers: "model.layers",
    attn_norm: "input_layernorm",
    q: "self_attn.q_proj",
    k: "self_attn.k_proj",
    v: "self_attn.v_proj",
    o: "self_attn.o_proj",
    q_norm: "self_attn.q_norm",
    k_norm: "self_attn.k_norm",
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
    q_norm: "attn_q_norm",
    k_norm: "attn_k_norm",
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
        &["llama", "mistral", "qwen2", "qwen3"]
    }

    fn gguf_architectures(&self) -> &'static [&'static str] {
        &["llama", "qwen2", "qwen3"]
    }

    fn preset(&self) -> ModelConfig {
        ModelConfig::default()
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
        // saved as Llama, Qwen2 (q/k/v biases), Qwen3 (q/k norms) or Mistral (a sliding window)
        want(
            c,
            !c.qkv_bias || (!c.mlp_bias && c.sliding_window.is_none() && !c.qk_norm),
            "qkv_bias",
            "with q/k/v biases (Qwen2) have no MLP bias, no sliding window and no q/k norms",
        )?;
        want(
            c,
            !c.qk_norm || (!c.mlp_bias && c.sliding_window.is_none()),
            "qk_norm",
            "with q/k norms (Qwen3) have no MLP bias and no sliding window",
        )?;
        want(
            c,
            c.rope_scaling == RopeScaling::None
                || !(c.qkv_bias || c.qk_norm || c.sliding_window.is_some()),
            "rope_scaling",
            "with RoPE scaling are saved as Llama (no q/k/v biases, q/k norms or sliding window)",
        )?;
        want(
            c,
            c.sliding_window.is_none() || !(c.attention_bias || c.mlp_bias),
            "sliding_window",
            "with a sliding window (Mistral) have no biases",
        )?;
        want(
            c,
            c.type_vocab_size == 0,
            "type_vocab_size",
            "have no token types",
        )?;
        want(
            c,
            !c.scale_decoder_outputs,
            "scale_decoder_outputs",
            "do not scale their output",
        )
    }

    fn config_from_hf(&self, j: &HfConfig) -> Result<ModelConfig> {
        let mt = j.str("model_type").unwrap_or("");
        let h = j.need("hidden_size")?;
        let nh = j.need("num_attention_heads")?;
        if mt == "qwen3" && j.bool("use_sliding_window").unwrap_or(false) {
            return Err(Error::Unsupported(
                "config.json: Qwen3 with use_sliding_window".into(),
            ));
        }
        let mut c = ModelConfig {
            vocab_size: j.need("vocab_size")?,
            hidden_size: h,
            num_layers: j.need("num_hidden_layers")?,
            num_heads: nh,
            num_kv_heads: j.usize("num_key_value_heads").unwrap_or(nh),
            head_dim: j
                .usize("head_dim")
                .unwrap_or(h.checked_div(nh).unwrap_or(0)),
            intermediate_size: j.need("intermediate_size")?,
            activation: activation(j.str("hidden_act").unwrap_or("silu"))?,
            norm_eps: j.f64("rms_norm_eps").unwrap_or(1e-6),
            max_position_embeddings: j.usize("max_position_embeddings").unwrap_or(2048),
            tie_word_embeddings: j.bool("tie_word_embeddings").unwrap_or(false),
            attention_bias: j.bool("attention_bias").unwrap_or(false),
            qkv_bias: mt == "qwen2",
            qk_norm: mt == "qwen3",
            mlp_bias: j.bool("mlp_bias").unwrap_or(false),
            sliding_window: if mt == "mistral" {
                j.usize("sliding_window")
            } else {
                None
            },
            ..self.preset()
        };
        j.rope(&mut c)?;
        Ok(c)
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
            (
                "mistral",
                "MistralForCausalLM",
                serde_json::json!({"sliding_window": c.sliding_window}),
            )
        } else if c.qkv_bias && !c.attention_bias {
            (
                "qwen2",
                "Qwen2ForCausalLM",
                serde_json::json!({"use_sliding_window": false}),
            )
        } else if c.qk_norm {
            (
                "qwen3",
                "Qwen3ForCausalLM",
                serde_json::json!({"attention_bias": c.attention_bias, "use_sliding_window": false}),
            )
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
            if let Some(scaling) = hf_rope_scaling(c) {
                obj.insert("rope_scaling".into(), scaling);
            }
        }
        Ok(j)
    }

    fn config_from_gguf(&self, g: &GgufFile) -> Result<ModelConfig> {
        let arch = g.get_str("general.architecture").unwrap_or("llama");
        let key = |k: &str| format!("{arch}.{k}");
        if let Some(v) = g.get_f64(&key("attention.scale"))? {
            if v != 0.0 {
                return Err(Error::Unsupported(format!(
                    "{}: {} = {v} (a custom attention scale is not built)",
                    g.path().display(),
                    key("attention.scale")
                )));
            }
        }
        let mut c = ModelConfig {
            // llama.cpp's llama graph rotates adjacent pairs, its qwen graphs halves
            rope_adjacent_pairs: arch == "llama",
            qkv_bias: arch == "qwen2",
            qk_norm: arch == "qwen3",
            ..gguf_decoder(g, arch, self.preset())?
        };
        gguf_rope_scaling(g, arch, &mut c)?;
        if c.rope_scaling == RopeScaling::Llama3 && arch != "llama" {
            return Err(Error::Unsupported(format!(
                "{}: rope_freqs in a {arch} file",
                g.path().display()
            )));
        }
        Ok(c)
    }

    fn to_gguf(
        &self,
        c: &ModelConfig,
        tensors: Vec<(String, candle_core::Tensor)>,
    ) -> Result<GgufParts> {
        // the architecture llama.cpp reads this layout as (to_hf's three classes, less Mistral)
        let arch = if c.qk_norm {
            "qwen3"
        } else if c.qkv_bias {
            "qwen2"
        } else {
            "llama"
        };
        let refuse = |what: &str| {
            Err(Error::Unsupported(format!(
                "writing a llama-family model with {what} as GGUF is not built yet"
            )))
        };
        if c.sliding_window.is_some() {
            return refuse("a sliding window (Mistral: llama.cpp's llama has none)");
        }
        if c.attention_bias || c.mlp_bias {
            return refuse("attention or MLP biases");
        }
        if c.rope_adjacent_pairs && arch != "llama" {
            return refuse("RoPE on adjacent pairs and q/k/v biases or q/k norms");
        }
        let mut metadata = vec![(
            "general.architecture".to_string(),
            Value::String(arch.into()),
        )];
        metadata.extend(gguf_decoder_metadata(arch, c)?);
        let permute = arch == "llama" && !c.rope_adjacent_pairs;
        let mut out = Vec::with_capacity(tensors.len() + 1);
        if c.rope_scaling == RopeScaling::Llama3 {
            out.push((
                "rope_freqs.weight".to_string(),
                candle_core::Tensor::new(llama3_factors(c), &candle_core::Device::Cpu)?,
            ));
        }
        for (name, t) in tensors {
            let g = gguf_name(&name).ok_or_else(|| {
                Error::Model(format!(
                    "{name} is not a tensor of a llama-family checkpoint"
                ))
            })?;
            let t = match g.rsplit('.').nth(1) {
                Some("attn_q") if permute && g.ends_with(".weight") => {
                    halves_to_pairs(&t, c.num_heads, c.head_dim)?
                }
                Some("attn_k") if permute && g.ends_with(".weight") => {
                    halves_to_pairs(&t, c.num_kv_heads, c.head_dim)?
                }
                _ => t,
            };
            out.push((g, t));
        }
        Ok(GgufParts {
            metadata,
            tensors: out,
        })
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
        // each format in its reference's arithmetic: llama.cpp's for GGUF, transformers' for HF
        let scaling = Scaling::from_config(c);
        let rope = if vb.is_gguf() {
            Rope::ggml_scaled(
                c.head_dim,
                c.rope_theta,
                c.rope_adjacent_pairs,
                scaling,
                ggml_rope_factors(c, vb)?,
            )
        } else {
            Rope::hf_scaled(c.head_dim, c.rope_theta, scaling)
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
            if c.qk_norm {
                attn.q_norm = Some(l.pp(n.q_norm).rms(c.head_dim, eps)?);
                attn.k_norm = Some(l.pp(n.k_norm).rms(c.head_dim, eps)?);
            }
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

/// llama3 scaling in llama.cpp's form: one factor per frequency (theta_i / factor_i), the GGUF
/// file's `rope_freqs.weight`, or computed from the config as llama.cpp's converter computes it.
fn ggml_rope_factors(c: &ModelConfig, vb: &Vb) -> Result<Option<Vec<f32>>> {
    if c.rope_scaling != RopeScaling::Llama3 {
        return Ok(None);
    }
    let half = c.head_dim / 2;
    let root = Vb::root_of(vb);
    if root.stored("rope_freqs.weight") {
        let f = root
            .tensor("rope_freqs.weight", &[half], Init::Ones)?
            .to_vec1::<f32>()?;
        if let Some(bad) = f.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
            return Err(Error::Model(format!(
                "rope_freqs.weight holds {bad}, not a positive factor"
            )));
        }
        return Ok(Some(f));
    }
    Ok(Some(llama3_factors(c)))
}

/// llama3 scaling's per-frequency factors, as llama.cpp's converter computes them from the HF
/// config (its `rope_freqs.weight`).
fn llama3_factors(c: &ModelConfig) -> Vec<f32> {
    let half = c.head_dim / 2;
    let (factor, low, high) = (
        c.rope_scaling_factor,
        c.rope_low_freq_factor,
        c.rope_high_freq_factor,
    );
    let original = match c.rope_original_max_position_embeddings {
        0 => c.max_position_embeddings,
        n => n,
    } as f64;
    let factors = (0..half)
        .map(|i| {
            let freq =
                (1.0 / (c.rope_theta as f32).powf((2 * i) as f32 / c.head_dim as f32)) as f64;
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < original / high {
                1.0
            } else if wavelen > original / low {
                factor as f32
            } else {
                let smooth = (original / wavelen - low) / (high - low);
                (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
            }
        })
        .collect();
    factors
}

/// The HF `rope_scaling` of a config's scaling (None for plain RoPE).
fn hf_rope_scaling(c: &ModelConfig) -> Option<serde_json::Value> {
    let original = match c.rope_original_max_position_embeddings {
        0 => c.max_position_embeddings,
        n => n,
    };
    Some(match c.rope_scaling {
        RopeScaling::None => return None,
        RopeScaling::Linear => {
            serde_json::json!({"rope_type": "linear", "factor": c.rope_scaling_factor})
        }
        RopeScaling::Llama3 => serde_json::json!({
            "rope_type": "llama3", "factor": c.rope_scaling_factor,
            "low_freq_factor": c.rope_low_freq_factor, "high_freq_factor": c.rope_high_freq_factor,
            "original_max_position_embeddings": original,
        }),
        RopeScaling::Yarn => {
            let mut j = serde_json::json!({
                "rope_type": "yarn", "factor": c.rope_scaling_factor,
                "original_max_position_embeddings": original,
                "beta_fast": c.rope_beta_fast, "beta_slow": c.rope_beta_slow,
            });
            if c.rope_attention_factor > 0.0 {
                j["attention_factor"] = c.rope_attention_factor.into();
            }
            j
        }
    })
}
