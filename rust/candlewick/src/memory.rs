//! Memory estimation: what a model needs to run or to train, item by item, each formula once
//! and with its source.
//!
//! A `Subject` is what is being sized: a parameter count, and where known the bytes its file
//! really stores and the dimensions that size the KV cache and activations. It comes from a
//! ModelConfig, a GGUF / safetensors / config.json path (headers only: no weight is read) or a
//! bare count. `estimate` turns it and the run's options into a `MemoryEstimate`.

use std::path::{Path, PathBuf};

use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};
use crate::io::gguf::GgufFile;
use crate::io::safetensors::SafetensorsHeader;

/// A storage type: `block_bytes` bytes hold `block_size` values (1 for plain types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Precision {
    pub name: &'static str,
    pub block_size: usize,
    pub block_bytes: usize,
    pub is_float: bool,
}

const fn p(name: &'static str, block_size: usize, block_bytes: usize, is_float: bool) -> Precision {
    Precision {
        name,
        block_size,
        block_bytes,
        is_float,
    }
}

/// Plain types, and GGUF block types with their per-block scales (ggml-common.h block structs).
pub const PRECISIONS: &[Precision] = &[
    p("float32", 1, 4, true),
    p("float16", 1, 2, true),
    p("bfloat16", 1, 2, true),
    p("int8", 1, 1, false),
    p("q4_0", 32, 18, false),  // f16 d + 16 bytes of nibbles
    p("q4_1", 32, 20, false),  // f16 d, m + 16 bytes
    p("q5_0", 32, 22, false),  // f16 d + 4 bytes high bits + 16 bytes
    p("q5_1", 32, 24, false),  // f16 d, m + 4 + 16
    p("q8_0", 32, 34, false),  // f16 d + 32 int8
    p("q2_k", 256, 84, false), // 16 scales + 64 quants + f16 d, dmin
    p("q3_k", 256, 110, false),
    p("q4_k", 256, 144, false), // f16 d, dmin + 12 scale bytes + 128
    p("q5_k", 256, 176, false),
    p("q6_k", 256, 210, false),
    p("q8_k", 256, 292, false),
];

impl Precision {
    /// Names as users write them: float32/fp32/f32, float16/fp16/f16/half, bfloat16/bf16,
    /// int8/i8, and GGUF type names (q4_k, Q4_K, q4_k_m, ...; the _s/_m/_l mix suffix is read as
    /// its main type).
    pub fn parse(name: &str) -> Result<Precision> {
        let n = name.trim().to_ascii_lowercase();
        let canon = match n.as_str() {
            "float32" | "fp32" | "f32" | "float" => "float32",
            "float16" | "fp16" | "f16" | "half" => "float16",
            "bfloat16" | "bf16" => "bfloat16",
            "int8" | "i8" | "qint8" => "int8",
            other => other
                .strip_suffix("_m")
                .or_else(|| other.strip_suffix("_s"))
                .or_else(|| other.strip_suffix("_l"))
                .unwrap_or(other),
        };
        PRECISIONS
            .iter()
            .copied()
            .find(|p| p.name == canon)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown dtype '{name}' (known: {})",
                    PRECISIONS
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// Bytes for `n` values (whole blocks).
    pub fn bytes(&self, n: u64) -> u64 {
        n.div_ceil(self.block_size as u64) * self.block_bytes as u64
    }

    pub fn bytes_per_value(&self) -> f64 {
        self.block_bytes as f64 / self.block_size as f64
    }
}

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
        }
    }
}

/// What is being sized.
#[derive(Debug, Clone)]
pub struct Subject {
    pub label: String,
    pub num_parameters: u64,
    /// Bytes of parameter data the checkpoint really stores, and a description of its types.
    pub stored: Option<(u64, String)>,
    pub dims: Option<Dims>,
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
        })
    }

    pub fn from_config(c: &ModelConfig) -> Result<Self> {
        c.validate()?;
        Ok(Subject {
            label: format!("{} {:?} config", c.family, c.architecture),
            num_parameters: c.num_parameters()? as u64,
            stored: None,
            dims: Some(Dims::from_config(c)),
        })
    }

    /// A .gguf or .safetensors file, a config.json, or a folder holding config.json and/or
    /// *.safetensors. Only headers are read.
    pub fn from_path(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::Io {
                path: path.into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file or directory",
                ),
            });
        }
        if path.is_dir() {
            return Self::from_folder(path);
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        if name.ends_with(".gguf") || starts_with_magic(path, b"GGUF") {
            return Self::from_gguf(path);
        }
        if name.ends_with(".safetensors") {
            let dir = path.parent().unwrap_or(Path::new("."));
            let cfg = dir.join("config.json");
            let dims = if cfg.is_file() {
                Some(Dims::from_config(&read_config_json(&cfg)?))
            } else {
                None
            };
            return Self::from_safetensors(&[path.to_path_buf()], dims, path);
        }
        if name.ends_with(".json") {
            let c = read_config_json(path)?;
            let mut s = Self::from_config(&c)?;
            s.label = path.display().to_string();
            return Ok(s);
        }
        Err(Error::invalid_file(
            path,
            "not a model: candlewick sizes .gguf and .safetensors files, config.json, or a folder holding them",
        ))
    }

    fn from_folder(dir: &Path) -> Result<Self> {
        let files = crate::io::safetensors::files_in(dir)?;
        let cfg_path = dir.join("config.json");
        let cfg = if cfg_path.is_file() {
            Some(read_config_json(&cfg_path)?)
        } else {
            None
        };
        if files.is_empty() {
            let gguf: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| Error::Io {
                    path: dir.into(),
                    source: e,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
                .collect();
            if let [one] = gguf.as_slice() {
                return Self::from_gguf(one);
            }
            return match cfg {
                Some(c) => {
                    let mut s = Self::from_config(&c)?;
                    s.label = dir.display().to_string();
                    Ok(s)
                }
                None => Err(Error::invalid_file(
                    dir,
                    "not a model folder: no config.json, *.safetensors or single *.gguf in it",
                )),
            };
        }
        Self::from_safetensors(&files, cfg.as_ref().map(Dims::from_config), dir)
    }

    fn from_safetensors(files: &[PathBuf], dims: Option<Dims>, label: &Path) -> Result<Self> {
        let (mut n, mut bytes) = (0u64, 0u64);
        let mut types = std::collections::BTreeMap::<String, usize>::new();
        for f in files {
            let h = SafetensorsHeader::read(f)?;
            for t in h.tensors.values() {
                // Integer tensors are buffers (BERT's position_ids), not parameters.
                if !matches!(
                    t.dtype.as_str(),
                    "F64" | "F32" | "F16" | "BF16" | "F8_E4M3" | "F8_E5M2"
                ) {
                    continue;
                }
                n += t.elem_count() as u64;
                bytes += (t.end - t.start) as u64;
                *types.entry(t.dtype.clone()).or_default() += 1;
            }
        }
        if n == 0 {
            return Err(Error::invalid_file(
                label,
                "holds no floating-point tensors",
            ));
        }
        let types = types
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Subject {
            label: label.display().to_string(),
            num_parameters: n,
            stored: Some((bytes, types)),
            dims,
        })
    }

    fn from_gguf(path: &Path) -> Result<Self> {
        let g = GgufFile::open(path)?;
        let arch = g.get_str("general.architecture").unwrap_or("").to_string();
        let n: u64 = g.tensors.iter().map(|t| t.elem_count() as u64).sum();
        let bytes: u64 = g.tensors.iter().map(|t| t.size_in_bytes as u64).sum();
        let mut types = std::collections::BTreeMap::<String, usize>::new();
        for t in &g.tensors {
            *types.entry(format!("{:?}", t.dtype)).or_default() += 1;
        }
        let types = types
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let u = |k: &str| {
            g.get(&format!("{arch}.{k}"))
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
        };
        let dims = (|| {
            let hidden = u("embedding_length")?;
            let heads = u("attention.head_count")?;
            let layers = u("block_count")?;
            let architecture = match arch.as_str() {
                "bert" | "nomic-bert" | "jina-bert-v2" => Architecture::Encoder,
                "t5" => Architecture::EncoderDecoder,
                _ => Architecture::Decoder,
            };
            Some(Dims {
                architecture,
                num_layers: layers,
                num_decoder_layers: if architecture == Architecture::EncoderDecoder {
                    u("decoder_block_count").unwrap_or(layers)
                } else {
                    0
                },
                hidden_size: hidden,
                num_heads: heads,
                num_kv_heads: u("attention.head_count_kv").unwrap_or(heads),
                head_dim: u("attention.key_length").unwrap_or(hidden / heads.max(1)),
                intermediate_size: u("feed_forward_length").unwrap_or(4 * hidden),
                gated_mlp: architecture == Architecture::Decoder,
                vocab_size: g
                    .tensor_info("token_embd.weight")
                    .map(|t| t.shape[0])
                    .unwrap_or(0),
                context_length: u("context_length").unwrap_or(2048),
            })
        })();
        Ok(Subject {
            label: path.display().to_string(),
            num_parameters: n,
            stored: Some((bytes, types)),
            dims,
        })
    }
}

fn starts_with_magic(path: &Path, magic: &[u8]) -> bool {
    use std::io::Read;
    let mut buf = vec![0u8; magic.len()];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
        && buf == magic
}

pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::invalid_file(path, format!("not valid JSON: {e}")))
}

pub fn read_config_json(path: &Path) -> Result<ModelConfig> {
    let v = read_json(path)?;
    ModelConfig::from_hf_json(&v).map_err(|e| match e {
        Error::InvalidArgument(m) => Error::invalid_file(path, m),
        other => other,
    })
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
    /// None: the dtype when it is a float type, else float32 (candlewick's CPU cache).
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
    let per_layer_token = 2 * d.num_kv_heads * d.head_dim;
    let (layers, mult, what) = match d.architecture {
        Architecture::Encoder => (0, 0, "encoders keep no KV cache"),
        Architecture::Decoder => (d.num_layers, 1, ""),
        Architecture::EncoderDecoder => (d.num_decoder_layers, 2, " x 2 (self + cross)"),
    };
    let n = (per_layer_token * layers * mult) as u64 * tokens as u64 * batch as u64;
    let bytes = kv.bytes(n);
    let f = if layers == 0 {
        what.to_string()
    } else {
        format!(
            "2 x {layers} layers x {} kv_heads x {} head_dim x {tokens} tokens x {batch} batch{what} x {} B ({})",
            d.num_kv_heads,
            d.head_dim,
            kv.bytes_per_value(),
            kv.name
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
                    p.name
                )))
            }
            Some(p) => p,
            None => Precision::parse("float32")?,
        };
        // Mixed precision (Micikevicius et al. 2018): 16-bit weights and gradients for compute,
        // fp32 master weights for the update.
        let compute = if o.mixed_precision && wp.name == "float32" {
            Precision::parse("bfloat16")?
        } else {
            wp
        };
        dtype_name = compute.name.to_string();
        let (wb, wf) = zero(
            3,
            compute.bytes(n),
            format!(
                "{n} params x {} B ({})",
                compute.bytes_per_value(),
                compute.name
            ),
        );
        items.push(Item {
            key: "weights",
            bytes: wb,
            formula: wf,
        });
    } else {
        match (o.dtype, &s.stored) {
            (None, Some((bytes, types))) => {
                dtype_name = "as stored".into();
                items.push(Item {
                    key: "weights",
                    bytes: *bytes,
                    formula: format!("as stored: {types}"),
                });
            }
            (p, _) => {
                let p = match p {
                    Some(p) => p,
                    None => Precision::parse("float32")?,
                };
                dtype_name = p.name.into();
                items.push(Item {
                    key: "weights",
                    bytes: p.bytes(n),
                    formula: format!("{n} params x {} B ({})", p.bytes_per_value(), p.name),
                });
            }
        }
    }

    // KV cache (inference only: training runs whole sequences without one).
    let kv_p = match o.kv_dtype {
        Some(p) => p,
        None => match o.dtype {
            Some(p) if p.is_float => p,
            _ => Precision::parse("float32")?,
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
        (Some(d), Some(t)) => {
            let (h, q, kv, ff) = (
                d.hidden_size,
                d.num_heads * d.head_dim,
                d.num_kv_heads * d.head_dim,
                d.intermediate_size,
            );
            if o.training {
                // Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
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
                    _ => d.vocab_size * b,
                };
                let vals = (per_token * t * b + logits) as u64;
                items.push(Item {
                    key: "activations",
                    bytes: vals * 4,
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
            Precision::parse(&dtype_name)?.bytes_per_value()
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
            zero(1, n * 4, format!("{n} params x 4 B (fp32 master copy)"))
        } else {
            (0, "none without mixed precision".into())
        };
        items.push(Item {
            key: "master_weights",
            bytes: mb,
            formula: mf,
        });
        notes.push("training memory is a formula: candlewick does not train yet, so it is not checked against a run".into());
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
