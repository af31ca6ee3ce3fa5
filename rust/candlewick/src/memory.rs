//! Memory estimation: what a model needs to run or to train, item by item, each formula once
//! and with its source.
//!
//! A `Subject` is what is being sized: a parameter count, and where known the bytes its weights
//! really take and the config that sizes the KV cache and activations. It comes from a
//! ModelConfig, a loaded model, a checkpoint path (read by the one checkpoint reader,
//! io::checkpoint: headers only, no weight is read) or a bare count. `estimate` turns it and the
//! run's options into a `MemoryEstimate`.

use std::path::Path;

use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};
use crate::io::checkpoint::Checkpoint;
use crate::io::types::{self, TensorType};
use crate::model::Model;
use crate::nn::KvDtype;

/// A storage type from the one table (io::types): float32, bfloat16, q4_k, ...
pub type Precision = &'static TensorType;

/// The dimensions that size the KV cache and activations.
#[derive(Debug, Clone, PartialEq)]
pub struct Dims {
    pub architecture: Architecture,
    pub num_layers: usize,
    pub num_decoder_layers: usize,
    pub hidden_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub gated_mlp: bool,
    pub vocab_size: usize,
    pub context_length: usize,
    /// A recurrent LM's gates per hidden unit (LSTM 4, GRU 3); 0 for transformers.
    pub gates: usize,
}

impl Dims {
    pub fn from_config(c: &ModelConfig) -> Self {
        Dims {
            architecture: c.architecture,
            num_layers: c.num_layers,
            num_decoder_layers: c.num_decoder_layers,
            hidden_size: c.hidden_size,
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            intermediate_size: c.intermediate_size,
            gated_mlp: c.gated_mlp,
            vocab_size: c.vocab_size,
            context_length: c.max_position_embeddings,
            gates: if c.architecture == Architecture::Recurrent {
                c.cell.gates()
            } else {
                0
            },
        }
    }
}

/// What is being sized.
#[derive(Debug, Clone)]
pub struct Subject {
    pub label: String,
    pub num_parameters: u64,
    /// Bytes the weights really take, and how that was read ("as stored: 211 Q4_1, 61 F32").
    pub stored: Option<(u64, String)>,
    pub dims: Option<Dims>,
    /// The KV cache's dtype when none is asked for: what `load` gives the model (float16 for
    /// GGUF, as llama.cpp; float32 otherwise).
    pub kv_default: KvDtype,
}

/// "3 F32, 211 Q4_1": tensor counts by type.
fn describe_types<'a>(types: impl Iterator<Item = (&'a String, &'a usize)>) -> String {
    types
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Subject {
    pub fn from_params(n: u64) -> Result<Self> {
        if n == 0 {
            return Err(Error::InvalidArgument(
                "the parameter count must be positive".into(),
            ));
        }
        Ok(Subject {
            label: "a parameter count".into(),
            num_parameters: n,
            stored: None,
            dims: None,
            kv_default: KvDtype::F32,
        })
    }

    pub fn from_config(c: &ModelConfig) -> Result<Self> {
        Ok(Subject {
            label: format!("{} {} config", c.family, c.architecture),
            num_parameters: crate::model::families::num_parameters(c)?,
            stored: None,
            dims: Some(Dims::from_config(c)),
            kv_default: KvDtype::F32,
        })
    }

    /// A checkpoint: a .gguf or .safetensors file, a config.json, or a model folder. Its weights
    /// are sized as stored; the KV cache and activations from its config.
    pub fn from_path(path: &Path) -> Result<Self> {
        Self::from_checkpoint(&Checkpoint::open(path)?)
    }

    pub fn from_checkpoint(ck: &Checkpoint) -> Result<Self> {
        let label = ck.path().display().to_string();
        let config = ck.sizing_config()?;
        let info = ck.info();
        if info.tensor_types.is_empty() {
            // a config alone (or a folder without weights): counted from the config
            let c = config
                .ok_or_else(|| Error::invalid_file(ck.path(), "holds no tensors and no config"))?;
            let kv_default = if matches!(ck, Checkpoint::Gguf(_)) {
                KvDtype::F16
            } else {
                KvDtype::F32
            };
            return Ok(Subject {
                label,
                kv_default,
                ..Self::from_config(&c)?
            });
        }
        if info.num_parameters == 0 {
            return Err(Error::invalid_file(
                ck.path(),
                "holds no floating-point tensors",
            ));
        }
        let floats = info.tensor_types.iter().filter(|(k, _)| {
            matches!(ck, Checkpoint::Gguf(_)) || TensorType::named(k).is_some_and(|t| t.is_float)
        });
        Ok(Subject {
            label,
            num_parameters: info.num_parameters as u64,
            stored: Some((
                info.weight_bytes as u64,
                format!("as stored: {}", describe_types(floats)),
            )),
            dims: config.as_ref().map(Dims::from_config),
            kv_default: if matches!(ck, Checkpoint::Gguf(_)) {
                KvDtype::F16
            } else {
                KvDtype::F32
            },
        })
    }

    /// A loaded model, as it holds its weights: a GGUF file's stay in its memory map as stored;
    /// safetensors weights (and models built from a config) are held as float32.
    pub fn from_model(m: &Model) -> Result<Self> {
        let i = &m.info;
        let n = i.num_parameters as u64;
        let stored = if i.format == "gguf" {
            (
                i.weight_bytes as u64,
                format!("as stored: {}", describe_types(i.tensor_types.iter())),
            )
        } else {
            (
                types::F32.bytes(n),
                format!("as held in memory: {n} params x 4 B (float32)"),
            )
        };
        Ok(Subject {
            label: if i.path.as_os_str().is_empty() {
                format!("a {} model built from a config", m.config.family)
            } else {
                i.path.display().to_string()
            },
            num_parameters: n,
            stored: Some(stored),
            dims: Some(Dims::from_config(&m.config)),
            kv_default: m.kv_cache_dtype(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimizer {
    /// Adam / AdamW: fp32 first and second moments, 8 bytes per parameter.
    AdamW,
    /// bitsandbytes 8-bit Adam: two int8 moments + one fp32 absmax per 2048-value block each.
    AdamW8bit,
    /// SGD with momentum: one fp32 buffer.
    SgdMomentum,
    /// Plain SGD: no state.
    Sgd,
}

impl Optimizer {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(
            match s.to_ascii_lowercase().replace(['-', ' '], "_").as_str() {
                "adamw" | "adam" => Optimizer::AdamW,
                "adamw8bit" | "adam8bit" | "adamw_8bit" | "adam_8bit" | "8bit_adam" => {
                    Optimizer::AdamW8bit
                }
                "sgd_momentum" | "momentum" => Optimizer::SgdMomentum,
                "sgd" => Optimizer::Sgd,
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown optimizer '{s}' (known: adamw, adamw8bit, sgd_momentum, sgd)"
                    )))
                }
            },
        )
    }

    /// Optimizer-state bytes per parameter.
    pub fn state_bytes(&self) -> f64 {
        match self {
            Optimizer::AdamW => 8.0,
            Optimizer::AdamW8bit => 2.0 + 2.0 * 4.0 / 2048.0,
            Optimizer::SgdMomentum => 4.0,
            Optimizer::Sgd => 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recompute {
    None,
    Selective,
    Full,
}

#[derive(Debug, Clone)]
pub struct MemoryOptions {
    /// None: the weights as stored (files), float32 otherwise.
    pub dtype: Option<Precision>,
    /// None: the dtype when it is a float type, else the model's default (`Subject::kv_default`).
    pub kv_dtype: Option<Precision>,
    pub batch_size: usize,
    /// None: the model's context length.
    pub seq_len: Option<usize>,
    pub training: bool,
    pub optimizer: Optimizer,
    pub mixed_precision: bool,
    pub recompute: Recompute,
    pub zero_stage: u8,
    pub num_devices: usize,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        Self {
            dtype: None,
            kv_dtype: None,
            batch_size: 1,
            seq_len: None,
            training: false,
            optimizer: Optimizer::AdamW,
            mixed_precision: false,
            recompute: Recompute::None,
            zero_stage: 0,
            num_devices: 1,
        }
    }
}

/// One line of the breakdown: key, bytes, and how they were computed.
#[derive(Debug, Clone)]
pub struct Item {
    pub key: &'static str,
    pub bytes: u64,
    pub formula: String,
}

#[derive(Debug, Clone)]
pub struct MemoryEstimate {
    pub label: String,
    pub num_parameters: u64,
    /// In this order: weights, kv_cache, activations, gradients, optimizer_states, master_weights.
    pub items: Vec<Item>,
    pub notes: Vec<String>,
    pub seq_len: Option<usize>,
    pub dtype: String,
}

impl MemoryEstimate {
    pub fn total_bytes(&self) -> u64 {
        self.items.iter().map(|i| i.bytes).sum()
    }
}

pub const KEYS: [&str; 6] = [
    "weights",
    "kv_cache",
    "activations",
    "gradients",
    "optimizer_states",
    "master_weights",
];

/// Bytes of the KV cache: 2 (K and V) x layers x kv_heads x head_dim x tokens x batch x bytes.
/// Grouped-query attention stores num_kv_heads, not num_heads. An encoder keeps none; an
/// encoder-decoder's decoder layers keep their own K/V plus K/V of the encoder output for
/// cross-attention (seq_len each).
pub fn kv_cache_bytes(d: &Dims, tokens: usize, batch: usize, kv: Precision) -> (u64, String) {
    let per_layer_token = 2usize
        .saturating_mul(d.num_kv_heads)
        .saturating_mul(d.head_dim);
    let (layers, mult, what) = match d.architecture {
        Architecture::Encoder => (0, 0, "encoders keep no KV cache"),
        Architecture::Decoder => (d.num_layers, 1, ""),
        Architecture::EncoderDecoder => (d.num_decoder_layers, 2, " x 2 (self + cross)"),
        Architecture::Recurrent => {
            // no cache: each layer's state (h, and c for an LSTM), whatever the length, in f32
            let per = if d.gates == 4 { 2 } else { 1 };
            let n = [per, d.num_layers, d.hidden_size, batch, 4]
                .iter()
                .fold(1u64, |a, &x| a.saturating_mul(x as u64));
            return (n, format!("no KV cache: the recurrent state, {per} x {} layers x {} hidden x {batch} batch x 4 B (f32), at any length", d.num_layers, d.hidden_size));
        }
    };
    // saturating: sizes from users and files never wrap
    let n = [per_layer_token, layers, mult, tokens, batch]
        .iter()
        .fold(1u64, |a, &x| a.saturating_mul(x as u64));
    let bytes = kv.bytes(n);
    let f = if layers == 0 {
        what.to_string()
    } else {
        format!(
            "2 x {layers} layers x {} kv_heads x {} head_dim x {tokens} tokens x {batch} batch{what} x {} B ({})",
            d.num_kv_heads,
            d.head_dim,
            kv.bytes_per_value(),
            kv.user_name
        )
    };
    (bytes, f)
}

/// Estimate memory for running or training `s` under `o`.
pub fn estimate(s: &Subject, o: &MemoryOptions) -> Result<MemoryEstimate> {
    if o.batch_size == 0 {
        return Err(Error::InvalidArgument("batch_size must be positive".into()));
    }
    if o.seq_len == Some(0) {
        return Err(Error::InvalidArgument("seq_len must be positive".into()));
    }
    if o.num_devices == 0 {
        return Err(Error::InvalidArgument(
            "num_devices must be positive".into(),
        ));
    }
    if o.zero_stage > 3 {
        return Err(Error::InvalidArgument(format!(
            "zero_stage must be 0, 1, 2 or 3, got {}",
            o.zero_stage
        )));
    }
    if o.zero_stage > 0 && !o.training {
        return Err(Error::InvalidArgument(
            "zero_stage partitions training state: it needs training=True".into(),
        ));
    }
    if !o.training && (o.mixed_precision || o.recompute != Recompute::None) {
        return Err(Error::InvalidArgument(
            "mixed_precision and gradient_checkpointing describe training: they need training=True"
                .into(),
        ));
    }
    let n = s.num_parameters;
    let nd = o.num_devices as u64;
    let b = o.batch_size;
    let mut notes = Vec::new();
    let seq = o.seq_len.or(s.dims.as_ref().map(|d| d.context_length));
    if let (Some(d), Some(t)) = (&s.dims, o.seq_len) {
        if t > d.context_length {
            notes.push(format!(
                "seq_len {t} exceeds the model's context of {} positions",
                d.context_length
            ));
        }
    }
    let mut items = Vec::new();
    let zero = |stage: u8, bytes: u64, f: String| -> (u64, String) {
        if o.zero_stage >= stage && nd > 1 {
            (
                bytes.div_ceil(nd),
                format!("{f} / {nd} devices (ZeRO-{})", o.zero_stage),
            )
        } else {
            (bytes, f)
        }
    };

    // Weights.
    let dtype_name;
    if o.training {
        let wp = match o.dtype {
            Some(p) if !p.is_float => {
                return Err(Error::InvalidArgument(format!(
                    "training needs float weights (float32, float16, bfloat16), not {}; quantized fine-tuning (QLoRA) is not modelled",
                    p.user_name
                )))
            }
            Some(p) => p,
            None => &types::F32,
        };
        // Mixed precision (Micikevicius et al. 2018): 16-bit weights and gradients for compute,
        // fp32 master weights for the update.
        let compute = if o.mixed_precision && wp.user_name == "float32" {
            &types::BF16
        } else {
            wp
        };
        dtype_name = compute.user_name.to_string();
        let (wb, wf) = zero(
            3,
            compute.bytes(n),
            format!(
                "{n} params x {} B ({})",
                compute.bytes_per_value(),
                compute.user_name
            ),
        );
        items.push(Item {
            key: "weights",
            bytes: wb,
            formula: wf,
        });
    } else {
        match (o.dtype, &s.stored) {
            (None, Some((bytes, how))) => {
                // a file's weights as stored; a loaded model's as it holds them
                dtype_name = if how.starts_with("as stored") {
                    "as stored"
                } else {
                    "float32"
                }
                .into();
                items.push(Item {
                    key: "weights",
                    bytes: *bytes,
                    formula: how.clone(),
                });
            }
            (p, _) => {
                let p = match p {
                    Some(p) => p,
                    None => &types::F32,
                };
                dtype_name = p.user_name.into();
                items.push(Item {
                    key: "weights",
                    bytes: p.bytes(n),
                    formula: format!("{n} params x {} B ({})", p.bytes_per_value(), p.user_name),
                });
            }
        }
    }

    // KV cache (inference only: training runs whole sequences without one).
    let kv_p = match o.kv_dtype {
        Some(p) => p,
        None => match (o.dtype, s.kv_default) {
            (Some(p), _) if p.is_float => p,
            (_, KvDtype::F16) => &types::F16,
            (_, KvDtype::F32) => &types::F32,
        },
    };
    match (&s.dims, seq) {
        (Some(d), Some(t)) if !o.training => {
            let (bytes, f) = kv_cache_bytes(d, t, b, kv_p);
            items.push(Item {
                key: "kv_cache",
                bytes,
                formula: f,
            });
        }
        _ if o.training => items.push(Item {
            key: "kv_cache",
            bytes: 0,
            formula: "training keeps no KV cache".into(),
        }),
        _ => {
            notes.push(
                "KV cache and activations need the model's dimensions: give a config or a file"
                    .into(),
            );
            items.push(Item {
                key: "kv_cache",
                bytes: 0,
                formula: "unknown without dimensions".into(),
            });
        }
    }

    // Activations.
    match (&s.dims, seq) {
        (Some(d), Some(t)) if d.architecture == Architecture::Recurrent => {
            let (h, g, v) = (d.hidden_size as f64, d.gates as f64, d.vocab_size as f64);
            let (layers, s_, b_) = (d.num_layers as f64, t as f64, b as f64);
            let (vals, formula) = if o.training {
                // what the autograd graph keeps: per layer and token the input projection, the
                // scan's saved gate activations and cell states, its outputs and their
                // gradients' transients; per token the logits and their gradient. Fitted to the
                // heap measured over cw.train on 3 shapes x 2 cells (hidden 256-512, 2-8 layers,
                // vocab 2k-16k: activations within 12%, benches/bench_train_memory.py rnn)
                (layers * s_ * b_ * (3.51 * g + 2.8) * h + s_ * b_ * 1.68 * v, format!("{layers} layers x s*b*(3.51*{g} + 2.8)*h + s*b*1.68*v f32 values (measured), s={t} b={b} h={h} v={v}"))
            } else {
                // a prefill keeps one layer's input projection for every token, the scan's saved
                // activations and its outputs, plus the last position's logits
                (
                    s_ * b_ * (2.0 * g * h + 2.0 * h) + b_ * v,
                    format!("s*b*(2*{g}*h + 2*h) + b*v f32 values, s={t} b={b} h={h} v={v}"),
                )
            };
            items.push(Item {
                key: "activations",
                bytes: (vals * 4.0) as u64,
                formula,
            });
        }
        (Some(d), Some(t)) => {
            let (h, q, kv, ff) = (
                d.hidden_size,
                d.num_heads * d.head_dim,
                d.num_kv_heads * d.head_dim,
                d.intermediate_size,
            );
            if o.training
                && !o.mixed_precision
                && o.recompute == Recompute::None
                && dtype_name == "float32"
            {
                // What candlewick's own float32 autograd graph keeps (every intermediate of the
                // forward lives until the backward has used it, plus the backward's transients),
                // as f32 values: per layer and token c_h*h + c_ff*ff + c_a*a*s (the score
                // matrices), per token c_v*v (logits and their gradient) + c_e*h. Counted from
                // the code and fitted (least squares on relative error, no negative coefficient) to
                // the heap measured over cw.train on 8 shapes per family (hidden 32-512, 2-8
                // layers, vocab 96-16k, sequences 12-256, up to 30M parameters: within 9%; by
                // benches/fit_train_memory.py); feed-forward width moves
                // with hidden width there, so their shares are not told apart.
                // benches/bench_train_memory.py prints the comparison.
                let (ch, cff, ca, cv, ce, kind) = match (d.architecture, d.gated_mlp) {
                    (Architecture::Decoder, true) => (11.07, 1.96, 2.1, 3.08, 0.0, "gated decoder"),
                    (Architecture::Decoder, false) => (23.59, 2.09, 2.21, 2.01, 0.0, "decoder"),
                    (Architecture::Encoder, _) => (25.48, 1.82, 2.07, 2.86, 4.49, "encoder"),
                    (Architecture::EncoderDecoder, _) => {
                        (2.43, 0.0, 2.91, 4.07, 0.0, "encoder-decoder")
                    }
                    (Architecture::Recurrent, _) => {
                        return Err(Error::Model(
                            "recurrent activations are counted by their own formula".into(),
                        ))
                    }
                };
                let layers = (d.num_layers + d.num_decoder_layers) as f64;
                let (s_, b_, h_, a_, v_) = (
                    t as f64,
                    b as f64,
                    h as f64,
                    d.num_heads as f64,
                    d.vocab_size as f64,
                );
                let vals = layers * s_ * b_ * (ch * h_ + cff * ff as f64 + ca * a_ * s_)
                    + s_ * b_ * (cv * v_ + ce * h_);
                // the graph's own nodes, masks and shapes: about 64 KiB a layer
                let bookkeeping = layers * 65536.0;
                items.push(Item {
                    key: "activations",
                    bytes: (vals * 4.0 + bookkeeping) as u64,
                    formula: format!(
                        "candlewick's f32 autograd graph ({kind}, measured): {layers} layers x s*b*({ch}*h + {cff}*ff + {ca}*a*s) + s*b*({cv}*v + {ce}*h) values x 4 B + 64 KiB a layer, s={t} b={b} h={h} ff={ff} a={} v={}",
                        d.num_heads, d.vocab_size
                    ),
                });
            } else if o.training {
                // torch-style training (mixed precision, recomputation): Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
                // Models", eq. 1: s*b*h*(34 + 5*a*s/h) bytes per layer with 16-bit activations;
                // selective recomputation keeps 34*s*b*h; full recomputation keeps the layer
                // input, 2*s*b*h, and recomputes one layer at a time. Output layer (their sec. 4.3):
                // 4*s*b*h (final norm + projection input, 16-bit) + 4*s*b*v (fp32 logits for the loss).
                let scale = if o.mixed_precision || dtype_name != "float32" {
                    1.0
                } else {
                    2.0
                };
                let layers = (d.num_layers + d.num_decoder_layers) as f64;
                let (s_, b_, h_, a_) = (t as f64, b as f64, h as f64, d.num_heads as f64);
                let full_layer = s_ * b_ * h_ * (34.0 + 5.0 * a_ * s_ / h_);
                let (per_layer, how) = match o.recompute {
                    Recompute::None => (full_layer * layers, "s*b*h*(34 + 5*a*s/h) per layer"),
                    Recompute::Selective => (
                        34.0 * s_ * b_ * h_ * layers,
                        "34*s*b*h per layer (selective recomputation)",
                    ),
                    Recompute::Full => (
                        2.0 * s_ * b_ * h_ * layers + full_layer,
                        "2*s*b*h per layer + one layer recomputed (full recomputation)",
                    ),
                };
                let bytes = ((per_layer + 4.0 * s_ * b_ * h_) * scale
                    + 4.0 * s_ * b_ * d.vocab_size as f64) as u64;
                items.push(Item {
                    key: "activations",
                    bytes,
                    formula: format!(
                        "Korthikanti et al. 2022: {how}, s={t} b={b} h={h} a={} x {} layers{}, + 4*s*b*v fp32 logits",
                        d.num_heads,
                        layers,
                        if scale > 1.0 { ", x2 for fp32 activations" } else { "" }
                    ),
                });
            } else {
                // Inference: the largest set of live f32 tensors in one layer during a prefill of
                // t tokens (candlewick computes in f32 and streams attention per head, so no
                // t x t score matrix): attention = residual, normed input, q, k, v, attention
                // output, projection; MLP = residual, normed input, gate, up, product, down. Plus
                // the logits the step returns (last position for decoders).
                let attn = 3 * h + 2 * q + 2 * kv;
                let mlp = 3 * h + if d.gated_mlp { 3 } else { 2 } * ff;
                let per_token = attn.max(mlp);
                let logits = match d.architecture {
                    Architecture::Encoder => 0,
                    _ => d.vocab_size.saturating_mul(b),
                };
                let vals = (per_token as u64)
                    .saturating_mul(t as u64)
                    .saturating_mul(b as u64)
                    .saturating_add(logits as u64);
                items.push(Item {
                    key: "activations",
                    bytes: vals.saturating_mul(4),
                    formula: format!(
                        "max(attention {attn}, mlp {mlp}) f32 values per token x {t} tokens x {b} batch + {logits} logits, x 4 B"
                    ),
                });
            }
        }
        _ => items.push(Item {
            key: "activations",
            bytes: 0,
            formula: "unknown without dimensions".into(),
        }),
    }

    // Training state.
    if o.training {
        let gp = if o.mixed_precision {
            2.0
        } else {
            TensorType::parse(&dtype_name)?.bytes_per_value()
        };
        let (gb, gf) = zero(2, (n as f64 * gp) as u64, format!("{n} params x {gp} B"));
        items.push(Item {
            key: "gradients",
            bytes: gb,
            formula: gf,
        });
        // Rajbhandari et al. 2019 (ZeRO): optimizer states (with the fp32 master copy, their K=12
        // for mixed-precision Adam) are partitioned from stage 1, gradients from stage 2,
        // parameters from stage 3.
        let ob = (n as f64 * o.optimizer.state_bytes()).ceil() as u64;
        let (ob, of) = zero(
            1,
            ob,
            format!(
                "{n} params x {} B ({:?})",
                o.optimizer.state_bytes(),
                o.optimizer
            ),
        );
        items.push(Item {
            key: "optimizer_states",
            bytes: ob,
            formula: of,
        });
        let (mb, mf) = if o.mixed_precision {
            zero(
                1,
                n.saturating_mul(4),
                format!("{n} params x 4 B (fp32 master copy)"),
            )
        } else {
            (0, "none without mixed precision".into())
        };
        items.push(Item {
            key: "master_weights",
            bytes: mb,
            formula: mf,
        });
        notes.push("the model you train from keeps its own weights beside these (cw.train copies them into its parameters)".into());
    } else {
        for key in ["gradients", "optimizer_states", "master_weights"] {
            items.push(Item {
                key,
                bytes: 0,
                formula: "inference".into(),
            });
        }
    }
    if nd > 1 && o.zero_stage == 0 && o.training {
        notes.push(format!(
            "data parallel without ZeRO: every one of the {nd} devices holds all of this"
        ));
    }
    Ok(MemoryEstimate {
        label: s.label.clone(),
        num_parameters: n,
        items,
        notes,
        seq_len: seq,
        dtype: dtype_name,
    })
}
