//! `ModelConfig`: one description for encoder, decoder and encoder-decoder transformers.
//!
//! Issue 2 runs the Llama-family decoder; the fields already name the options the other
//! architectures need so that families only fill in a config, never grow their own.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    Encoder,
    Decoder,
    EncoderDecoder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Gelu,
    GeluTanh,
    Relu,
    Silu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    LayerNorm,
    RmsNorm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    Learned,
    Sinusoidal,
    Rope,
    RelativeBias,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Checkpoint family: "llama" (more with the architectures issue).
    pub family: String,
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub activation: Activation,
    /// Gated feed-forward (SwiGLU / GeGLU): down(act(gate(x)) * up(x)).
    pub gated_mlp: bool,
    pub norm: Norm,
    pub norm_eps: f64,
    pub position: Position,
    pub rope_theta: f64,
    /// Context length the model was trained for.
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    /// Biases on the q, k and v projections only, none on the output projection (Qwen2).
    #[serde(default)]
    pub qkv_bias: bool,
    pub sliding_window: Option<usize>,
    /// Norm after each residual addition (BERT, original transformer) instead of before each
    /// sub-layer (GPT-2, Llama).
    #[serde(default)]
    pub post_norm: bool,
    /// Token-type (segment) embeddings, BERT: 2; 0 = none.
    #[serde(default)]
    pub type_vocab_size: usize,
    /// LayerNorm with a bias (BERT, GPT-2); RMSNorm never has one.
    #[serde(default)]
    pub norm_bias: bool,
    /// Biases on the feed-forward projections.
    #[serde(default)]
    pub mlp_bias: bool,
    /// BERT pooler (dense + tanh on the first token).
    #[serde(default)]
    pub pooler: bool,
    /// BERT masked-LM head (transform + LayerNorm + decoder tied to the embeddings, with a bias).
    #[serde(default)]
    pub mlm_head: bool,
    /// Encoder-decoder: layers of the decoder stack (num_layers is the encoder's).
    #[serde(default)]
    pub num_decoder_layers: usize,
    /// T5 relative position buckets (per stack, stored in its first layer).
    #[serde(default)]
    pub relative_attention_num_buckets: usize,
    /// T5: distances from this on share the last logarithmic bucket.
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: usize,
    /// Gemma 3: every n-th layer attends globally, the others within `sliding_window`; 0 = all global.
    #[serde(default)]
    pub sliding_window_pattern: usize,
    /// RoPE base of the sliding-window layers (Gemma 3: 10000); 0 = rope_theta.
    #[serde(default)]
    pub rope_local_theta: f64,
}

/// RoPE base from an HF config: `rope_theta`, or transformers 5's `rope_parameters.rope_theta`.
/// Scaled RoPE (`rope_type` / `rope_scaling` other than "default") is refused rather than run
/// wrong.
fn rope_theta(v: &serde_json::Value) -> Result<f64> {
    let params = v.get("rope_parameters").filter(|p| p.is_object());
    for scaling in [params, v.get("rope_scaling").filter(|p| p.is_object())]
        .into_iter()
        .flatten()
    {
        let kind = scaling
            .get("rope_type")
            .or_else(|| scaling.get("type"))
            .and_then(|t| t.as_str())
            .unwrap_or("default");
        if kind != "default" {
            return Err(Error::Unsupported(format!(
                "config.json: RoPE scaling '{kind}' is not built yet (only plain RoPE)"
            )));
        }
    }
    Ok(params
        .and_then(|p| p.get("rope_theta"))
        .or_else(|| v.get("rope_theta"))
        .and_then(|x| x.as_f64())
        .unwrap_or(10_000.0))
}

fn default_max_distance() -> usize {
    128
}

/// Checkpoint layouts candlewick knows (families/hf.rs).
pub const KNOWN_FAMILIES: &[&str] = &["llama", "gpt2", "bert", "t5", "gemma3"];

fn field_err(field: &str, msg: String) -> Error {
    Error::InvalidArgument(format!("ModelConfig.{field}: {msg}"))
}

impl ModelConfig {
    /// Check that the options agree with each other; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if !KNOWN_FAMILIES.contains(&self.family.as_str()) {
            return Err(field_err(
                "family",
                format!(
                    "unknown family '{}' (known: {})",
                    self.family,
                    KNOWN_FAMILIES.join(", ")
                ),
            ));
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return Err(field_err(name, "must be positive".into()));
            }
        }
        if self.num_heads % self.num_kv_heads != 0 {
            return Err(field_err(
                "num_kv_heads",
                format!(
                    "{} does not divide num_heads {}",
                    self.num_kv_heads, self.num_heads
                ),
            ));
        }
        if self.position == Position::Rope && self.head_dim % 2 != 0 {
            return Err(field_err(
                "head_dim",
                format!("RoPE needs an even head_dim, got {}", self.head_dim),
            ));
        }
        if !(self.norm_eps > 0.0 && self.norm_eps.is_finite()) {
            return Err(field_err(
                "norm_eps",
                format!("must be a small positive number, got {}", self.norm_eps),
            ));
        }
        if self.position == Position::Rope
            && !(self.rope_theta > 0.0 && self.rope_theta.is_finite())
        {
            return Err(field_err(
                "rope_theta",
                format!("must be positive, got {}", self.rope_theta),
            ));
        }
        if self.architecture == Architecture::EncoderDecoder && self.num_decoder_layers == 0 {
            return Err(field_err(
                "num_decoder_layers",
                "an encoder-decoder needs decoder layers".into(),
            ));
        }
        if self.position == Position::RelativeBias && self.relative_attention_num_buckets < 2 {
            return Err(field_err(
                "relative_attention_num_buckets",
                "relative position bias needs at least 2 buckets".into(),
            ));
        }
        if self.position == Position::RelativeBias && self.relative_attention_max_distance == 0 {
            return Err(field_err(
                "relative_attention_max_distance",
                "must be positive".into(),
            ));
        }
        if self.mlm_head && self.architecture != Architecture::Encoder {
            return Err(field_err(
                "mlm_head",
                "a masked-LM head belongs to an encoder".into(),
            ));
        }
        if let Some(0) = self.sliding_window {
            return Err(field_err(
                "sliding_window",
                "must be positive when set".into(),
            ));
        }
        Ok(())
    }

    /// Parameters as this config describes them: the sum of the family's checkpoint tensors
    /// (`families::hf::tensor_shapes`), tied embeddings counted once, buffers not counted.
    pub fn num_parameters(&self) -> Result<usize> {
        Ok(crate::model::families::hf::tensor_shapes(self)?
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum())
    }
}

impl ModelConfig {
    /// A small Llama-shaped decoder; families start from it and set what differs.
    pub fn default_for(family: &str) -> Self {
        ModelConfig {
            family: family.into(),
            architecture: Architecture::Decoder,
            vocab_size: 32000,
            hidden_size: 512,
            num_layers: 4,
            num_heads: 8,
            num_kv_heads: 8,
            head_dim: 64,
            intermediate_size: 1376,
            activation: Activation::Silu,
            gated_mlp: true,
            norm: Norm::RmsNorm,
            norm_eps: 1e-5,
            position: Position::Rope,
            rope_theta: 10_000.0,
            max_position_embeddings: 2048,
            tie_word_embeddings: false,
            attention_bias: false,
            qkv_bias: false,
            sliding_window: None,
            post_norm: false,
            type_vocab_size: 0,
            norm_bias: false,
            mlp_bias: false,
            pooler: false,
            mlm_head: false,
            num_decoder_layers: 0,
            relative_attention_num_buckets: 0,
            relative_attention_max_distance: default_max_distance(),
            sliding_window_pattern: 0,
            rope_local_theta: 0.0,
        }
    }

    /// From an HF config.json (model_type llama, mistral, qwen2, bert, gpt2, t5); fields that
    /// are missing take the defaults of the HF class. Unknown model types are Unsupported.
    pub fn from_hf_json(v: &serde_json::Value) -> Result<Self> {
        let mt = v.get("model_type").and_then(|m| m.as_str()).unwrap_or("");
        let u = |k: &str| v.get(k).and_then(|x| x.as_u64()).map(|x| x as usize);
        let f = |k: &str| v.get(k).and_then(|x| x.as_f64());
        let b = |k: &str| v.get(k).and_then(|x| x.as_bool());
        let need = |k: &str| {
            u(k).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "config.json: {k} is missing or not a positive integer"
                ))
            })
        };
        let learned_or_sinusoidal = match v.get("candlewick_position").and_then(|x| x.as_str()) {
            Some("sinusoidal") => Position::Sinusoidal,
            _ => Position::Learned,
        };
        let act = |name: &str| -> Result<Activation> {
            Ok(match name {
                "gelu" | "gelu_python" => Activation::Gelu,
                "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "gelu_tanh" => {
                    Activation::GeluTanh
                }
                "relu" => Activation::Relu,
                "silu" | "swish" => Activation::Silu,
                other => {
                    return Err(Error::Unsupported(format!(
                        "config.json: activation '{other}'"
                    )))
                }
            })
        };
        let cfg = match mt {
            "llama" | "mistral" | "qwen2" => {
                let h = need("hidden_size")?;
                let nh = need("num_attention_heads")?;
                ModelConfig {
                    vocab_size: need("vocab_size")?,
                    hidden_size: h,
                    num_layers: need("num_hidden_layers")?,
                    num_heads: nh,
                    num_kv_heads: u("num_key_value_heads").unwrap_or(nh),
                    head_dim: u("head_dim").unwrap_or(if nh > 0 { h / nh } else { 0 }),
                    intermediate_size: need("intermediate_size")?,
                    activation: act(v.get("hidden_act").and_then(|x| x.as_str()).unwrap_or("silu"))?,
                    norm_eps: f("rms_norm_eps").unwrap_or(1e-6),
                    rope_theta: rope_theta(v)?,
                    max_position_embeddings: u("max_position_embeddings").unwrap_or(2048),
                    tie_word_embeddings: b("tie_word_embeddings").unwrap_or(false),
                    attention_bias: b("attention_bias").unwrap_or(false),
                    qkv_bias: mt == "qwen2",
                    mlp_bias: b("mlp_bias").unwrap_or(false),
                    sliding_window: if mt == "mistral" { u("sliding_window") } else { None },
                    ..ModelConfig::default_for("llama")
                }
            }
            "bert" => {
                let h = need("hidden_size")?;
                let nh = need("num_attention_heads")?;
                let mlm = v
                    .get("architectures")
                    .and_then(|a| a.as_array())
                    .is_some_and(|a| a.iter().any(|x| x.as_str().is_some_and(|s| s.contains("MaskedLM") || s.contains("ForPreTraining"))));
                ModelConfig {
                    architecture: Architecture::Encoder,
                    vocab_size: need("vocab_size")?,
                    hidden_size: h,
                    num_layers: need("num_hidden_layers")?,
                    num_heads: nh,
                    num_kv_heads: nh,
                    head_dim: if nh > 0 { h / nh } else { 0 },
                    intermediate_size: need("intermediate_size")?,
                    activation: act(v.get("hidden_act").and_then(|x| x.as_str()).unwrap_or("gelu"))?,
                    gated_mlp: false,
                    norm: Norm::LayerNorm,
                    norm_eps: f("layer_norm_eps").unwrap_or(1e-12),
                    position: learned_or_sinusoidal,
                    max_position_embeddings: u("max_position_embeddings").unwrap_or(512),
                    tie_word_embeddings: true,
                    attention_bias: true,
                    post_norm: true,
                    type_vocab_size: u("type_vocab_size").unwrap_or(2),
                    norm_bias: true,
                    mlp_bias: true,
                    pooler: !mlm,
                    mlm_head: mlm,
                    ..ModelConfig::default_for("bert")
                }
            }
            "gpt2" => {
                for (key, standard) in [("scale_attn_weights", true), ("scale_attn_by_inverse_layer_idx", false)] {
                    if b(key).is_some_and(|x| x != standard) {
                        return Err(Error::Unsupported(format!(
                            "config.json: GPT-2 with {key}={} is not built yet",
                            !standard
                        )));
                    }
                }
                let h = need("n_embd")?;
                let nh = need("n_head")?;
                ModelConfig {
                    vocab_size: need("vocab_size")?,
                    hidden_size: h,
                    num_layers: need("n_layer")?,
                    num_heads: nh,
                    num_kv_heads: nh,
                    head_dim: if nh > 0 { h / nh } else { 0 },
                    intermediate_size: u("n_inner").unwrap_or(4 * h),
                    activation: act(v.get("activation_function").and_then(|x| x.as_str()).unwrap_or("gelu_new"))?,
                    gated_mlp: false,
                    norm: Norm::LayerNorm,
                    norm_eps: f("layer_norm_epsilon").unwrap_or(1e-5),
                    position: learned_or_sinusoidal,
                    max_position_embeddings: u("n_positions").unwrap_or(1024),
                    tie_word_embeddings: b("tie_word_embeddings").unwrap_or(true),
                    attention_bias: true,
                    norm_bias: true,
                    mlp_bias: true,
                    ..ModelConfig::default_for("gpt2")
                }
            }
            "t5" => {
                let ff = v.get("feed_forward_proj").and_then(|x| x.as_str()).unwrap_or("relu");
                let gated = ff.starts_with("gated-");
                let layers = need("num_layers")?;
                ModelConfig {
                    architecture: Architecture::EncoderDecoder,
                    vocab_size: need("vocab_size")?,
                    hidden_size: need("d_model")?,
                    num_layers: layers,
                    num_decoder_layers: u("num_decoder_layers").unwrap_or(layers),
                    num_heads: need("num_heads")?,
                    num_kv_heads: need("num_heads")?,
                    head_dim: need("d_kv")?,
                    intermediate_size: need("d_ff")?,
                    // HF maps "gated-gelu" to gelu_new (tanh), "relu" to relu.
                    activation: if ff == "gated-gelu" { Activation::GeluTanh } else { act(ff.trim_start_matches("gated-"))? },
                    gated_mlp: gated,
                    norm: Norm::RmsNorm,
                    norm_eps: f("layer_norm_epsilon").unwrap_or(1e-6),
                    position: Position::RelativeBias,
                    relative_attention_num_buckets: u("relative_attention_num_buckets").unwrap_or(32),
                    relative_attention_max_distance: u("relative_attention_max_distance").unwrap_or(128),
                    max_position_embeddings: u("n_positions").unwrap_or(512),
                    tie_word_embeddings: b("tie_word_embeddings").unwrap_or(true),
                    ..ModelConfig::default_for("t5")
                }
            }
            "" => return Err(Error::InvalidArgument("config.json has no model_type".into())),
            other => {
                return Err(Error::Unsupported(format!(
                    "model_type '{other}' in config.json (supported: llama, mistral, qwen2, bert, gpt2, t5)"
                )))
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl ModelConfig {
    /// Options a family's checkpoint layout can hold; anything else is a ValueError naming the
    /// field (a config is built as one of the families so that it can be saved and shared).
    pub fn check_family(&self) -> Result<()> {
        let want = |ok: bool, field: &str, msg: &str| {
            if ok {
                Ok(())
            } else {
                Err(field_err(field, format!("{} models {msg}", self.family)))
            }
        };
        match self.family.as_str() {
            "llama" => {
                want(
                    self.architecture == Architecture::Decoder,
                    "architecture",
                    "are decoders",
                )?;
                want(self.position == Position::Rope, "position", "use rope")?;
                want(self.norm == Norm::RmsNorm, "norm", "use rms_norm")?;
                want(self.gated_mlp, "gated_mlp", "use a gated MLP (SwiGLU)")?;
                want(!self.post_norm, "post_norm", "are pre-norm")?;
                // saved as Llama, Qwen2 (q/k/v biases) or Mistral (a sliding window)
                want(
                    !self.qkv_bias || (!self.mlp_bias && self.sliding_window.is_none()),
                    "qkv_bias",
                    "with q/k/v biases (Qwen2) have no MLP bias and no sliding window",
                )?;
                want(
                    self.sliding_window.is_none() || !(self.attention_bias || self.mlp_bias),
                    "sliding_window",
                    "with a sliding window (Mistral) have no biases",
                )?;
                want(
                    self.type_vocab_size == 0,
                    "type_vocab_size",
                    "have no token types",
                )
            }
            "gpt2" => {
                want(
                    self.architecture == Architecture::Decoder,
                    "architecture",
                    "are decoders",
                )?;
                want(
                    matches!(self.position, Position::Learned | Position::Sinusoidal),
                    "position",
                    "use learned (or, built by candlewick, sinusoidal) positions",
                )?;
                want(
                    self.norm == Norm::LayerNorm && self.norm_bias,
                    "norm",
                    "use layer_norm with bias",
                )?;
                want(!self.gated_mlp, "gated_mlp", "have a plain MLP")?;
                want(
                    self.num_kv_heads == self.num_heads,
                    "num_kv_heads",
                    "use multi-head attention (num_kv_heads = num_heads)",
                )?;
                want(
                    self.head_dim * self.num_heads == self.hidden_size,
                    "head_dim",
                    "have head_dim * num_heads = hidden_size",
                )?;
                want(
                    self.attention_bias && self.mlp_bias,
                    "attention_bias",
                    "have biases",
                )?;
                want(
                    self.tie_word_embeddings,
                    "tie_word_embeddings",
                    "tie the LM head to the embeddings",
                )?;
                want(!self.post_norm, "post_norm", "are pre-norm")
            }
            "bert" => {
                want(
                    self.architecture == Architecture::Encoder,
                    "architecture",
                    "are encoders",
                )?;
                want(
                    matches!(self.position, Position::Learned | Position::Sinusoidal),
                    "position",
                    "use learned (or, built by candlewick, sinusoidal) positions",
                )?;
                want(self.norm == Norm::LayerNorm, "norm", "use layer_norm")?;
                want(self.post_norm, "post_norm", "are post-norm")?;
                want(!self.gated_mlp, "gated_mlp", "have a plain MLP")?;
                want(
                    self.tie_word_embeddings,
                    "tie_word_embeddings",
                    "tie the MLM decoder to the embeddings",
                )?;
                want(
                    self.num_kv_heads == self.num_heads,
                    "num_kv_heads",
                    "use multi-head attention (num_kv_heads = num_heads)",
                )
            }
            "t5" => {
                want(
                    self.architecture == Architecture::EncoderDecoder,
                    "architecture",
                    "are encoder-decoders",
                )?;
                want(
                    self.position == Position::RelativeBias,
                    "position",
                    "use relative_bias",
                )?;
                want(self.norm == Norm::RmsNorm, "norm", "use rms_norm")?;
                want(!self.post_norm, "post_norm", "are pre-norm")?;
                want(
                    self.num_kv_heads == self.num_heads,
                    "num_kv_heads",
                    "use multi-head attention (num_kv_heads = num_heads)",
                )?;
                want(
                    !self.attention_bias && !self.mlp_bias,
                    "attention_bias",
                    "have no biases",
                )?;
                want(
                    !(self.gated_mlp && self.activation == Activation::Gelu),
                    "activation",
                    "gate GELU with its tanh form (gelu_tanh, T5's gated-gelu)",
                )?;
                want(
                    self.type_vocab_size == 0,
                    "type_vocab_size",
                    "have no token types",
                )
            }
            other => Err(field_err(
                "family",
                format!("'{other}' cannot be built from a config yet (llama, gpt2, bert, t5)"),
            )),
        }
    }

    /// The HF config.json of this config's family.
    pub fn to_hf_json(&self) -> Result<serde_json::Value> {
        self.check_family()?;
        let act = |a: Activation| match a {
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_new",
            Activation::Relu => "relu",
            Activation::Silu => "silu",
        };
        let mut json = match self.family.as_str() {
            "llama" => {
                // one layout, three HF classes: Mistral (a sliding window), Qwen2 (q/k/v biases
                // only), else Llama (attention and MLP biases as flags)
                let mut j = serde_json::json!({
                    "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
                    "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_layers,
                    "num_attention_heads": self.num_heads, "num_key_value_heads": self.num_kv_heads,
                    "head_dim": self.head_dim, "max_position_embeddings": self.max_position_embeddings,
                    "rms_norm_eps": self.norm_eps, "rope_theta": self.rope_theta,
                    "tie_word_embeddings": self.tie_word_embeddings, "hidden_act": act(self.activation),
                });
                let (model_type, class, extra) = if self.sliding_window.is_some() {
                    (
                        "mistral",
                        "MistralForCausalLM",
                        serde_json::json!({"sliding_window": self.sliding_window}),
                    )
                } else if self.qkv_bias && !self.attention_bias {
                    (
                        "qwen2",
                        "Qwen2ForCausalLM",
                        serde_json::json!({"use_sliding_window": false}),
                    )
                } else {
                    (
                        "llama",
                        "LlamaForCausalLM",
                        serde_json::json!({"attention_bias": self.attention_bias, "mlp_bias": self.mlp_bias}),
                    )
                };
                if let (Some(obj), Some(more)) = (j.as_object_mut(), extra.as_object()) {
                    obj.insert("model_type".into(), model_type.into());
                    obj.insert("architectures".into(), serde_json::json!([class]));
                    obj.extend(more.clone());
                }
                j
            }
            "gpt2" => serde_json::json!({
                "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
                "vocab_size": self.vocab_size, "n_embd": self.hidden_size, "n_layer": self.num_layers,
                "n_head": self.num_heads, "n_positions": self.max_position_embeddings,
                "n_inner": self.intermediate_size, "layer_norm_epsilon": self.norm_eps,
                "activation_function": act(self.activation), "tie_word_embeddings": true,
            }),
            "t5" => {
                let ff = match (self.gated_mlp, self.activation) {
                    (true, Activation::GeluTanh) => "gated-gelu",
                    (true, Activation::Relu) => "gated-relu",
                    (true, _) => "gated-silu",
                    (false, a) => act(a),
                };
                serde_json::json!({
                    "model_type": "t5", "architectures": ["T5ForConditionalGeneration"],
                    "is_encoder_decoder": true, "vocab_size": self.vocab_size, "d_model": self.hidden_size,
                    "d_kv": self.head_dim, "d_ff": self.intermediate_size, "num_layers": self.num_layers,
                    "num_decoder_layers": self.num_decoder_layers, "num_heads": self.num_heads,
                    "relative_attention_num_buckets": self.relative_attention_num_buckets,
                    "relative_attention_max_distance": self.relative_attention_max_distance,
                    "feed_forward_proj": ff, "layer_norm_epsilon": self.norm_eps,
                    "n_positions": self.max_position_embeddings,
                    "tie_word_embeddings": self.tie_word_embeddings,
                    // transformers 5 always ties T5's head and reads whether to scale from here
                    "scale_decoder_outputs": self.tie_word_embeddings,
                    "decoder_start_token_id": 0, "pad_token_id": 0, "dropout_rate": 0.0,
                })
            }
            _ => serde_json::json!({
                "model_type": "bert",
                "architectures": [if self.mlm_head { "BertForMaskedLM" } else { "BertModel" }],
                "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
                "num_hidden_layers": self.num_layers, "num_attention_heads": self.num_heads,
                "intermediate_size": self.intermediate_size, "hidden_act": act(self.activation),
                "max_position_embeddings": self.max_position_embeddings,
                "type_vocab_size": self.type_vocab_size, "layer_norm_eps": self.norm_eps,
                "tie_word_embeddings": true,
            }),
        };
        if self.position == Position::Sinusoidal {
            // transformers reads the table as learned positions; candlewick restores the option
            if let Some(obj) = json.as_object_mut() {
                obj.insert("candlewick_position".into(), "sinusoidal".into());
            }
        }
        Ok(json)
    }
}
