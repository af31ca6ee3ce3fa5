//! The engine's two configuration types, defined once and exposed to Python as classes:
//! `ModelConfig` (what a transformer is: encoder, decoder or encoder-decoder, and its options)
//! and `GenerationConfig` (every generation control). Each field's type and default are written
//! once, in the struct; `validate` is the one check of a config as a whole.
//!
//! What a family's checkpoints hold (HF config keys, tensor names, which options a layout can
//! store) is not here: it lives in model/families/, which reads and writes these types.

mod generation;
pub mod value;

pub use generation::GenerationConfig;
pub use value::{Choice, FieldValue, Value};

use crate::error::{Error, Result};
use value::{choices, fields};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Encoder,
    Decoder,
    EncoderDecoder,
    /// A recurrent language model (LSTM or GRU layers): what came before transformers.
    Recurrent,
}
choices!(Architecture { "encoder" => Encoder, "decoder" => Decoder, "encoder-decoder" => EncoderDecoder, "rnn" => Recurrent });

impl Architecture {
    /// Whether the model produces tokens one after another (decoders, encoder-decoders, RNNs).
    pub fn generates(&self) -> bool {
        *self != Architecture::Encoder
    }
}

/// The cell of a recurrent layer, as torch's nn.LSTM and nn.GRU compute it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    Lstm,
    Gru,
}
choices!(Cell { "lstm" => Lstm, "gru" => Gru });

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Gelu,
    GeluTanh,
    Relu,
    Silu,
}
choices!(Activation { "gelu" => Gelu, "gelu_tanh" => GeluTanh, "relu" => Relu, "silu" => Silu });

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    LayerNorm,
    RmsNorm,
}
choices!(Norm { "layer_norm" => LayerNorm, "rms_norm" => RmsNorm });

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeScaling {
    None,
    Linear,
    Llama3,
    Yarn,
}
choices!(RopeScaling { "none" => None, "linear" => Linear, "llama3" => Llama3, "yarn" => Yarn });

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Learned,
    Sinusoidal,
    Rope,
    RelativeBias,
}
choices!(Position { "learned" => Learned, "sinusoidal" => Sinusoidal, "rope" => Rope, "relative_bias" => RelativeBias });

fields! {
    /// One description of a transformer: encoder (BERT), decoder (GPT-2, Llama, Gemma) or
    /// encoder-decoder (T5), and its options; or of a recurrent LM (architecture "rnn": token
    /// embeddings of hidden_size, num_layers LSTM or GRU layers, an LM head). The defaults describe a small Llama-shaped decoder.
    pub struct ModelConfig ("ModelConfig.", "ModelConfig has no field") {
        /// Checkpoint family: one of `model::families::names()`.
        pub family: String = "llama".into(),
        pub architecture: Architecture = Architecture::Decoder,
        pub vocab_size: usize = 32000,
        pub hidden_size: usize = 512,
        /// Layers of the stack (of the encoder, for an encoder-decoder).
        pub num_layers: usize = 4,
        pub num_heads: usize = 8,
        /// Key/value heads (grouped-query attention): divides num_heads.
        pub num_kv_heads: usize = 8,
        pub head_dim: usize = 64,
        pub intermediate_size: usize = 1376,
        pub activation: Activation = Activation::Silu,
        /// Gated feed-forward (SwiGLU / GeGLU): down(act(gate(x)) * up(x)).
        pub gated_mlp: bool = true,
        pub norm: Norm = Norm::RmsNorm,
        pub norm_eps: f64 = 1e-5,
        pub position: Position = Position::Rope,
        pub rope_theta: f64 = 10_000.0,
        /// Context length the model was trained for.
        pub max_position_embeddings: usize = 2048,
        pub tie_word_embeddings: bool = false,
        /// Biases on the q, k, v and output projections.
        pub attention_bias: bool = false,
        /// Biases on the q, k and v projections only, none on the output projection (Qwen2).
        pub qkv_bias: bool = false,
        /// A query sees only its last `sliding_window` positions (Mistral; Gemma 3's local layers).
        pub sliding_window: Option<usize> = None,
        /// Norm after each residual addition (BERT, original transformer) instead of before each
        /// sub-layer (GPT-2, Llama, T5).
        pub post_norm: bool = false,
        /// Token-type (segment) embeddings, BERT: 2; 0 = none.
        pub type_vocab_size: usize = 0,
        /// LayerNorm with a bias (BERT, GPT-2); RMSNorm never has one.
        pub norm_bias: bool = false,
        /// Biases on the feed-forward projections.
        pub mlp_bias: bool = false,
        /// BERT pooler (dense + tanh on the first token).
        pub pooler: bool = false,
        /// BERT masked-LM head (transform + LayerNorm + decoder tied to the embeddings, with a bias).
        pub mlm_head: bool = false,
        /// Encoder-decoder: layers of the decoder stack (num_layers is the encoder's).
        pub num_decoder_layers: usize = 0,
        /// T5 relative position buckets (per stack, stored in its first layer).
        pub relative_attention_num_buckets: usize = 0,
        /// T5: distances from this on share the last logarithmic bucket.
        pub relative_attention_max_distance: usize = 128,
        /// Gemma 3: every n-th layer attends globally, the others within `sliding_window`; 0 = all alike.
        pub sliding_window_pattern: usize = 0,
        /// RoPE base of the sliding-window layers (Gemma 3: 10000); 0 = rope_theta.
        pub rope_local_theta: f64 = 0.0,
        /// RoPE rotates adjacent pairs (2i, 2i+1) instead of the two halves of each head: the
        /// layout of GGUF llama files, whose converter permuted q and k for llama.cpp.
        pub rope_adjacent_pairs: bool = false,
        /// Scaled RoPE for longer contexts: "linear" (positions / factor), "llama3" (Llama 3.1:
        /// low frequencies / factor, a smooth blend between), "yarn"; "none" = plain RoPE.
        pub rope_scaling: RopeScaling = RopeScaling::None,
        /// The scaling factor (how many times the original context).
        pub rope_scaling_factor: f64 = 1.0,
        /// llama3 and yarn: the context the model was first trained for; 0 = max_position_embeddings.
        pub rope_original_max_position_embeddings: usize = 0,
        /// llama3: wavelengths above original / low_freq_factor are scaled fully...
        pub rope_low_freq_factor: f64 = 1.0,
        /// ...those below original / high_freq_factor not at all.
        pub rope_high_freq_factor: f64 = 4.0,
        /// yarn: rotations that bound the blend of interpolated and extrapolated dimensions.
        pub rope_beta_fast: f64 = 32.0,
        pub rope_beta_slow: f64 = 1.0,
        /// yarn: the factor on cos and sin; 0 = 0.1 ln(factor) + 1.
        pub rope_attention_factor: f64 = 0.0,
        /// Per-head RMS norms on q and k before RoPE (Qwen3).
        pub qk_norm: bool = false,
        /// Attention scores capped softly at +-c: c tanh(score / c) (Gemma 2: 50); 0 = none.
        pub attn_logit_softcapping: f64 = 0.0,
        /// Logits capped softly the same way (Gemma 2: 30); 0 = none.
        pub final_logit_softcapping: f64 = 0.0,
        /// Scores are scaled by query_pre_attn_scalar^-0.5 (Gemma 2); 0 = head_dim.
        pub query_pre_attn_scalar: f64 = 0.0,
        /// Encoder-decoder: the first id of the decoder's input (T5: the pad id, 0).
        pub decoder_start_token_id: u32 = 0,
        /// Encoder-decoder: multiply the decoder output by hidden_size^-0.5 before the LM head
        /// (T5 v1.0, whose head is tied to the embeddings).
        pub scale_decoder_outputs: bool = false,
        /// Recurrent LMs: the cell of every layer, "lstm" or "gru".
        pub cell: Cell = Cell::Lstm,
    }
}

/// Upper bounds of a config's sizes, far above any model's (the deepest have hundreds of layers,
/// the widest tens of thousands of hidden units, the longest contexts ten million positions).
const MAX_LAYERS: usize = 100_000;
const MAX_WIDTH: usize = 1 << 24;
const MAX_LENGTH: usize = 1 << 40;

fn field_err(field: &str, msg: String) -> Error {
    Error::InvalidArgument(format!("ModelConfig.{field}: {msg}"))
}

impl ModelConfig {
    /// Check that the options agree with each other (and that no size is zero); the error names
    /// the field. Whether a family's checkpoints can hold these options is the family's own
    /// check (`model::families`).
    pub fn validate(&self) -> Result<()> {
        // a recurrent LM has no attention or feed-forward layers: their sizes are not its own
        let attends = self.architecture != Architecture::Recurrent;
        for (name, v, used) in [
            ("vocab_size", self.vocab_size, true),
            ("hidden_size", self.hidden_size, true),
            ("num_layers", self.num_layers, true),
            ("num_heads", self.num_heads, attends),
            ("num_kv_heads", self.num_kv_heads, attends),
            ("head_dim", self.head_dim, attends),
            ("intermediate_size", self.intermediate_size, attends),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                true,
            ),
        ] {
            if v == 0 && used {
                return Err(field_err(name, "must be positive".into()));
            }
        }
        // sizes beyond any model's are mistakes (or hostile files): refused before anything is
        // counted or allocated from them, and products of them cannot overflow
        for (name, v, max) in [
            ("num_layers", self.num_layers, MAX_LAYERS),
            ("num_decoder_layers", self.num_decoder_layers, MAX_LAYERS),
            ("hidden_size", self.hidden_size, MAX_WIDTH),
            ("intermediate_size", self.intermediate_size, MAX_WIDTH),
            ("num_heads", self.num_heads, MAX_WIDTH),
            ("num_kv_heads", self.num_kv_heads, MAX_WIDTH),
            ("head_dim", self.head_dim, MAX_WIDTH),
            ("type_vocab_size", self.type_vocab_size, MAX_WIDTH),
            (
                "relative_attention_num_buckets",
                self.relative_attention_num_buckets,
                MAX_WIDTH,
            ),
            ("vocab_size", self.vocab_size, MAX_LENGTH),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_LENGTH,
            ),
        ] {
            if v > max {
                return Err(field_err(
                    name,
                    format!("{v} is larger than any model's (at most {max})"),
                ));
            }
        }
        if attends && !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(field_err(
                "num_kv_heads",
                format!(
                    "{} does not divide num_heads {}",
                    self.num_kv_heads, self.num_heads
                ),
            ));
        }
        if attends && self.position == Position::Rope && !self.head_dim.is_multiple_of(2) {
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
        if !(self.rope_local_theta >= 0.0 && self.rope_local_theta.is_finite()) {
            return Err(field_err(
                "rope_local_theta",
                format!(
                    "must be positive (or 0: rope_theta), got {}",
                    self.rope_local_theta
                ),
            ));
        }
        if self.rope_scaling != RopeScaling::None {
            for (name, v) in [
                ("rope_scaling_factor", self.rope_scaling_factor),
                ("rope_low_freq_factor", self.rope_low_freq_factor),
                ("rope_high_freq_factor", self.rope_high_freq_factor),
                ("rope_beta_fast", self.rope_beta_fast),
                ("rope_beta_slow", self.rope_beta_slow),
            ] {
                if !(v > 0.0 && v.is_finite()) {
                    return Err(field_err(
                        name,
                        format!("must be a positive number, got {v}"),
                    ));
                }
            }
            if !(self.rope_attention_factor >= 0.0 && self.rope_attention_factor.is_finite()) {
                return Err(field_err(
                    "rope_attention_factor",
                    format!(
                        "must be positive (or 0: derived from the factor), got {}",
                        self.rope_attention_factor
                    ),
                ));
            }
            if self.rope_scaling == RopeScaling::Llama3
                && self.rope_high_freq_factor <= self.rope_low_freq_factor
            {
                return Err(field_err(
                    "rope_high_freq_factor",
                    format!(
                        "must be larger than rope_low_freq_factor {}, got {}",
                        self.rope_low_freq_factor, self.rope_high_freq_factor
                    ),
                ));
            }
        }
        for (name, v) in [
            ("attn_logit_softcapping", self.attn_logit_softcapping),
            ("final_logit_softcapping", self.final_logit_softcapping),
            ("query_pre_attn_scalar", self.query_pre_attn_scalar),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(field_err(
                    name,
                    format!("must be positive (or 0: none), got {v}"),
                ));
            }
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
        if self.decoder_start_token_id as usize >= self.vocab_size {
            return Err(field_err(
                "decoder_start_token_id",
                format!(
                    "{} is outside the vocabulary of {}",
                    self.decoder_start_token_id, self.vocab_size
                ),
            ));
        }
        Ok(())
    }

    /// Query heads x head_dim: the width of attention's q and output projections.
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Key/value heads x head_dim: the width of k and v.
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }
}
