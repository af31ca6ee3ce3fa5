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
    pub sliding_window: Option<usize>,
}

fn field_err(field: &str, msg: String) -> Error {
    Error::InvalidArgument(format!("ModelConfig.{field}: {msg}"))
}

impl ModelConfig {
    /// Check that the options agree with each other; the error names the field.
    pub fn validate(&self) -> Result<()> {
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
                format!("{} does not divide num_heads {}", self.num_kv_heads, self.num_heads),
            ));
        }
        if self.position == Position::Rope && self.head_dim % 2 != 0 {
            return Err(field_err("head_dim", format!("RoPE needs an even head_dim, got {}", self.head_dim)));
        }
        if !(self.norm_eps > 0.0 && self.norm_eps.is_finite()) {
            return Err(field_err("norm_eps", format!("must be a small positive number, got {}", self.norm_eps)));
        }
        if self.position == Position::Rope && !(self.rope_theta > 0.0 && self.rope_theta.is_finite()) {
            return Err(field_err("rope_theta", format!("must be positive, got {}", self.rope_theta)));
        }
        if let Some(0) = self.sliding_window {
            return Err(field_err("sliding_window", "must be positive when set".into()));
        }
        Ok(())
    }

    /// Parameters of the stack as this config describes it (embeddings counted once when tied).
    pub fn num_parameters(&self) -> usize {
        let h = self.hidden_size;
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let attn = h * q + 2 * h * kv + q * h + if self.attention_bias { q + 2 * kv + h } else { 0 };
        let mlp = if self.gated_mlp { 3 } else { 2 } * h * self.intermediate_size;
        let norms = 2 * h;
        let embed = self.vocab_size * h;
        let head = if self.tie_word_embeddings { 0 } else { self.vocab_size * h };
        embed + self.num_layers * (attn + mlp + norms) + h + head
    }
}
