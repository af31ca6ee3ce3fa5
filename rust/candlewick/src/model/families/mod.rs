//! Families say *what* a checkpoint is, one file each: how its HF config.json (and GGUF
//! metadata) maps to and from `ModelConfig`, which options its layout can hold, and its tensor
//! names, written once in `build` through a prefix path (`Vb`) that loading, saving, parameter
//! counting, shape listing and random initialisation all use. *How* to compute lives in nn/ and
//! kernels/.
//!
//! A new family is one new file implementing `Family` plus one line in `FAMILIES`; every list of
//! supported families (loader, memory, Python presets, error messages) comes from that table.

pub mod bert;
pub mod gemma2;
pub mod gemma3;
pub mod gpt2;
pub mod llama;
pub mod phi3;
pub mod rnn;
pub mod t5;

use crate::config::{Activation, ModelConfig, Position, Value};
use crate::error::{Error, Result};
use crate::io::gguf::GgufFile;
use crate::model::builder::{Source, Vb};
use crate::model::Stacks;
use crate::nn::{Embedding, Linear};

/// What a checkpoint family is.
pub trait Family: Sync {
    /// `ModelConfig.family`.
    fn name(&self) -> &'static str;
    /// HF `model_type`s this family reads.
    fn hf_model_types(&self) -> &'static [&'static str] {
        &[]
    }
    /// The GGUF `general.architecture`s this family reads.
    fn gguf_architectures(&self) -> &'static [&'static str] {
        &[]
    }
    /// The family's options with small sizes: what `ModelConfig.for_family` starts from.
    fn preset(&self) -> ModelConfig;
    /// Fields a preset derives from others unless they are given (T5: as many decoder layers as
    /// encoder layers). `given` names the fields the caller set.
    fn derive(&self, _c: &mut ModelConfig, _given: &[String]) {}
    /// Whether this family's checkpoints can hold `c` (a config built to be saved); the error
    /// names the field.
    fn check(&self, c: &ModelConfig) -> Result<()>;
    /// A config from an HF config.json of one of `hf_model_types`.
    fn config_from_hf(&self, _j: &HfConfig) -> Result<ModelConfig> {
        Err(Error::Unsupported(format!(
            "{} checkpoints in HF format are not read yet",
            self.name()
        )))
    }
    /// The HF config.json of `c` (checked).
    fn to_hf(&self, c: &ModelConfig) -> Result<serde_json::Value>;
    /// A config from GGUF metadata.
    fn config_from_gguf(&self, g: &GgufFile) -> Result<ModelConfig> {
        Err(Error::Unsupported(format!(
            "{}: {} models in GGUF are not read yet",
            g.path().display(),
            self.name()
        )))
    }
    /// The model's stacks from its checkpoint tensors, named through `vb`.
    fn build(&self, c: &ModelConfig, vb: &Vb) -> Result<Stacks>;
    /// The model as llama.cpp's GGUF holds it: its architecture's metadata, and `tensors` (the
    /// HF checkpoint's, by name) renamed, and where llama.cpp's converter does so rearranged, to
    /// llama.cpp's tensors.
    fn to_gguf(
        &self,
        _c: &ModelConfig,
        _tensors: Vec<(String, candle_core::Tensor)>,
    ) -> Result<GgufParts> {
        Err(Error::Unsupported(format!(
            "writing {} models as GGUF is not built yet (llama, qwen2 and qwen3 models are)",
            self.name()
        )))
    }
}

/// A model's GGUF metadata (its architecture's keys) and tensors (llama.cpp's names).
pub struct GgufParts {
    pub metadata: Vec<(String, crate::io::gguf::Value)>,
    pub tensors: Vec<(String, candle_core::Tensor)>,
}

/// Every family, once.
pub static FAMILIES: &[&dyn Family] = &[
    &llama::Llama,
    &phi3::Phi3,
    &gemma2::Gemma2,
    &gemma3::Gemma3,
    &gpt2::Gpt2,
    &bert::Bert,
    &t5::T5,
    &rnn::RnnFamily,
];

pub fn names() -> Vec<&'static str> {
    FAMILIES.iter().map(|f| f.name()).collect()
}

/// The family `name`.
pub fn get(name: &str) -> Result<&'static dyn Family> {
    FAMILIES
        .iter()
        .copied()
        .find(|f| f.name() == name)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "ModelConfig.family: unknown family '{name}' (known: {})",
                names().join(", ")
            ))
        })
}

/// HF model types every family reads, in registry order.
pub fn hf_model_types() -> Vec<&'static str> {
    FAMILIES
        .iter()
        .flat_map(|f| f.hf_model_types().iter().copied())
        .collect()
}

/// GGUF architectures every family reads.
pub fn gguf_architectures() -> Vec<&'static str> {
    FAMILIES
        .iter()
        .flat_map(|f| f.gguf_architectures().iter().copied())
        .collect()
}

/// A config that is consistent and names a known family.
pub fn validate(c: &ModelConfig) -> Result<()> {
    get(&c.family)?;
    c.validate()
}

/// A family's preset with `overrides` (field name, value), then what the preset derives from the
/// given fields: head_dim = hidden_size / num_heads and num_kv_heads = num_heads unless given,
/// and the family's own (`Family::derive`). Validated.
pub fn for_family(name: &str, overrides: Vec<(String, Value)>) -> Result<ModelConfig> {
    let family = FAMILIES
        .iter()
        .copied()
        .find(|f| f.name() == name)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "family must be one of {}, got '{name}'",
                names().join(", ")
            ))
        })?;
    let mut c = family.preset();
    let given: Vec<String> = overrides.iter().map(|(k, _)| k.clone()).collect();
    for (k, v) in overrides {
        c.set(&k, v)?;
    }
    let has = |k: &str| given.iter().any(|g| g == k);
    let attends = c.architecture != crate::config::Architecture::Recurrent;
    if attends && (has("hidden_size") || has("num_heads")) && !has("head_dim") && c.num_heads > 0 {
        c.head_dim = c.hidden_size / c.num_heads;
    }
    if has("num_heads") && !has("num_kv_heads") {
        c.num_kv_heads = c.num_heads;
    }
    family.derive(&mut c, &given);
    validate(&c)?;
    Ok(c)
}

/// A config from an HF config.json, by its model_type.
pub fn from_hf_json(v: &serde_json::Value) -> Result<ModelConfig> {
    if !v.is_object() {
        return Err(Error::InvalidArgument(
            "config.json does not hold a JSON object".into(),
        ));
    }
    let j = HfConfig(v, Default::default());
    let mt = j.str("model_type").unwrap_or("");
    j.type_error()?;
    if mt.is_empty() {
        return Err(Error::InvalidArgument(
            "config.json has no model_type".into(),
        ));
    }
    let family = FAMILIES
        .iter()
        .find(|f| f.hf_model_types().contains(&mt))
        .ok_or_else(|| {
            Error::Unsupported(format!(
                "model_type '{mt}' in config.json (supported: {})",
                hf_model_types().join(", ")
            ))
        })?;
    let c = family.config_from_hf(&j);
    j.type_error()?;
    let c = c?;
    c.validate().map_err(|e| {
        name_source(e, |field| {
            HF_KEYS
                .iter()
                .filter(|(f, _)| *f == field)
                .flat_map(|(_, keys)| keys.iter())
                .find(|k| v.get(**k).is_some())
                .map(|k| format!("config.json {k}"))
        })
    })?;
    Ok(c)
}

/// A config from a GGUF file's metadata, by its general.architecture.
pub fn from_gguf(g: &GgufFile) -> Result<ModelConfig> {
    let arch = g
        .get_str("general.architecture")
        .ok_or_else(|| Error::invalid_file(g.path(), "metadata general.architecture is missing"))?;
    let family = FAMILIES
        .iter()
        .find(|f| f.gguf_architectures().contains(&arch))
        .ok_or_else(|| {
            Error::Unsupported(format!(
                "architecture '{arch}' in {} (supported: {})",
                g.path().display(),
                gguf_architectures().join(", ")
            ))
        })?;
    let c = family.config_from_gguf(g)?;
    c.validate().map_err(|e| {
        let e = name_source(e, |field| {
            GGUF_KEYS
                .iter()
                .find(|(f, _)| *f == field)
                .map(|(_, k)| format!("{arch}.{k}"))
        });
        Error::invalid_file(g.path(), format!("inconsistent {arch} metadata: {e}"))
    })?;
    Ok(c)
}

/// config.json keys that set a ModelConfig field, by family layout (the first present is named).
const HF_KEYS: &[(&str, &[&str])] = &[
    (
        "num_layers",
        &["num_hidden_layers", "n_layer", "num_layers"],
    ),
    ("num_decoder_layers", &["num_decoder_layers"]),
    ("hidden_size", &["hidden_size", "n_embd", "d_model"]),
    ("num_heads", &["num_attention_heads", "n_head", "num_heads"]),
    (
        "num_kv_heads",
        &[
            "num_key_value_heads",
            "num_attention_heads",
            "n_head",
            "num_heads",
        ],
    ),
    ("head_dim", &["head_dim", "d_kv"]),
    (
        "intermediate_size",
        &["intermediate_size", "n_inner", "d_ff"],
    ),
    ("vocab_size", &["vocab_size"]),
    (
        "max_position_embeddings",
        &["max_position_embeddings", "n_positions"],
    ),
    (
        "norm_eps",
        &["rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon"],
    ),
    ("sliding_window", &["sliding_window"]),
];

/// GGUF keys (after `{arch}.`) that set a ModelConfig field.
const GGUF_KEYS: &[(&str, &str)] = &[
    ("num_layers", "block_count"),
    ("hidden_size", "embedding_length"),
    ("num_heads", "attention.head_count"),
    ("num_kv_heads", "attention.head_count_kv"),
    ("head_dim", "attention.key_length"),
    ("intermediate_size", "feed_forward_length"),
    ("max_position_embeddings", "context_length"),
    ("rope_theta", "rope.freq_base"),
    ("norm_eps", "attention.layer_norm_rms_epsilon"),
    ("sliding_window", "attention.sliding_window"),
];

/// A validation error about `ModelConfig.<field>` rewritten to name the file's own key too
/// (`config.json num_hidden_layers (ModelConfig.num_layers): ...`).
fn name_source(e: Error, key_of: impl Fn(&str) -> Option<String>) -> Error {
    let Error::InvalidArgument(msg) = &e else {
        return e;
    };
    let Some(rest) = msg.strip_prefix("ModelConfig.") else {
        return e;
    };
    let field: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    match key_of(&field) {
        Some(key) => Error::InvalidArgument(format!("{key} (ModelConfig.{rest}").replacen(
            &format!("ModelConfig.{field}:"),
            &format!("ModelConfig.{field}):"),
            1,
        )),
        None => e,
    }
}

/// The HF config.json of a config, in its family's layout.
pub fn to_hf_json(c: &ModelConfig) -> Result<serde_json::Value> {
    let family = get(&c.family)?;
    family.check(c)?;
    let mut json = family.to_hf(c)?;
    if c.position == Position::Sinusoidal {
        // transformers reads the table as learned positions; candlewick restores the option
        if let Some(obj) = json.as_object_mut() {
            obj.insert("candlewick_position".into(), "sinusoidal".into());
        }
    }
    Ok(json)
}

/// Build a model of `c` from a source of tensors. A GGUF file must hold nothing the build did
/// not read: a tensor the engine does not understand (a Llama 3 file's rope_freqs before
/// llama3 scaling was built) is refused, never skipped.
pub fn build(c: &ModelConfig, src: &Source) -> Result<Stacks> {
    let vb = Vb::new(src);
    let stacks = get(&c.family)?.build(c, &vb)?;
    if let Source::Gguf(g) = src {
        let unread: Vec<&str> = g.tensor_names().filter(|n| !vb.was_read(n)).collect();
        if !unread.is_empty() {
            let more = if unread.len() > 5 {
                format!(" and {} more", unread.len() - 5)
            } else {
                String::new()
            };
            return Err(Error::Unsupported(format!(
                "{}: tensors a {} model does not use: {}{more} (an unknown variant of the architecture?)",
                g.path().display(),
                c.family,
                unread[..unread.len().min(5)].join(", ")
            )));
        }
    }
    Ok(stacks)
}

/// The checkpoint tensors `c` describes, by name and shape, in the order the family builds them
/// (tied weights once; buffers such as BERT's position_ids are not parameters).
pub fn tensor_shapes(c: &ModelConfig) -> Result<Vec<(String, Vec<usize>)>> {
    validate(c)?;
    let src = Source::shapes();
    build(c, &src)?;
    Ok(src.into_shapes())
}

/// Parameters as `c` describes them: the sum of its checkpoint tensors (saturating: a config
/// of absurd sizes counts u64::MAX, never wraps).
pub fn num_parameters(c: &ModelConfig) -> Result<u64> {
    Ok(tensor_shapes(c)?
        .iter()
        .map(|(_, s)| s.iter().fold(1u64, |a, &d| a.saturating_mul(d as u64)))
        .fold(0u64, u64::saturating_add))
}

/// An HF config.json, read with the defaults of the HF classes. A key that is present with a
/// value of the wrong type is never read as its default: the accessors note it, and
/// `from_hf_json` refuses the config naming the key (JSON null counts as absent, as in HF).
pub struct HfConfig<'a>(pub &'a serde_json::Value, std::cell::RefCell<Vec<String>>);

impl<'a> HfConfig<'a> {
    fn field<T>(
        &self,
        k: &str,
        want: &str,
        read: impl Fn(&'a serde_json::Value) -> Option<T>,
    ) -> Option<T> {
        match self.0.get(k) {
            None | Some(serde_json::Value::Null) => None,
            Some(x) => {
                let v = read(x);
                if v.is_none() {
                    self.1
                        .borrow_mut()
                        .push(format!("config.json: {k} must be {want}, got {x}"));
                }
                v
            }
        }
    }
    pub fn usize(&self, k: &str) -> Option<usize> {
        self.field(k, "a non-negative integer", |x| {
            x.as_u64().and_then(|x| usize::try_from(x).ok())
        })
    }
    pub fn f64(&self, k: &str) -> Option<f64> {
        self.field(k, "a finite number", |x| {
            x.as_f64().filter(|f| f.is_finite())
        })
    }
    pub fn bool(&self, k: &str) -> Option<bool> {
        self.field(k, "true or false", |x| x.as_bool())
    }
    pub fn str(&self, k: &str) -> Option<&'a str> {
        self.field(k, "a string", |x| x.as_str())
    }
    /// The first wrong-typed key any accessor met.
    fn type_error(&self) -> Result<()> {
        match self.1.borrow().first() {
            Some(e) => Err(Error::WrongType(e.clone())),
            None => Ok(()),
        }
    }
    /// A size the config must give.
    pub fn need(&self, k: &str) -> Result<usize> {
        self.usize(k).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "config.json: {k} is missing or not a positive integer"
            ))
        })
    }
    /// The `architectures` list mentions one of `names`.
    pub fn class_is(&self, names: &[&str]) -> bool {
        self.0
            .get("architectures")
            .and_then(|a| a.as_array())
            .is_some_and(|a| {
                a.iter().any(|x| {
                    x.as_str()
                        .is_some_and(|s| names.iter().any(|n| s.contains(n)))
                })
            })
    }
    /// Learned positions, or the sinusoidal table candlewick saved in their place.
    pub fn learned_or_sinusoidal(&self) -> Position {
        match self.str("candlewick_position") {
            Some("sinusoidal") => Position::Sinusoidal,
            _ => Position::Learned,
        }
    }
    /// RoPE base and scaling into `c`: `rope_theta` (or transformers 5's
    /// `rope_parameters.rope_theta`) and `rope_scaling` / `rope_parameters` of type "linear",
    /// "llama3" or "yarn" with their parameters; other types ("dynamic", "longrope", ...) and
    /// parameters candlewick does not compute are refused rather than run wrong.
    pub fn rope(&self, c: &mut ModelConfig) -> Result<()> {
        use crate::config::RopeScaling as R;
        let v = self.0;
        for key in ["rope_parameters", "rope_scaling"] {
            match v.get(key) {
                None | Some(serde_json::Value::Null) | Some(serde_json::Value::Object(_)) => {}
                Some(x) => {
                    return Err(Error::WrongType(format!(
                        "config.json: {key} must be an object, got {x}"
                    )))
                }
            }
        }
        let params = v.get("rope_parameters").filter(|p| p.is_object());
        let theta = match params
            .and_then(|p| p.get("rope_theta"))
            .filter(|t| !t.is_null())
        {
            Some(t) => Some(t.as_f64().ok_or_else(|| {
                Error::WrongType(format!(
                    "config.json: rope_parameters.rope_theta must be a number, got {t}"
                ))
            })?),
            None => self.f64("rope_theta"),
        };
        let theta = theta.unwrap_or(10_000.0);
        if !(theta.is_finite() && theta > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "config.json: rope_theta must be a positive number, got {theta}"
            )));
        }
        c.rope_theta = theta;
        for (key, scaling) in [
            ("rope_parameters", params),
            (
                "rope_scaling",
                v.get("rope_scaling").filter(|p| p.is_object()),
            ),
        ] {
            let Some(scaling) = scaling.and_then(|s| s.as_object()) else {
                continue;
            };
            let kind = match scaling.get("rope_type").or_else(|| scaling.get("type")) {
                None | Some(serde_json::Value::Null) => "default",
                Some(serde_json::Value::String(t)) => t.as_str(),
                Some(x) => {
                    return Err(Error::WrongType(format!(
                        "config.json: {key}.rope_type must be a string, got {x}"
                    )))
                }
            };
            let kind = match kind {
                "default" => continue,
                "linear" => R::Linear,
                "llama3" => R::Llama3,
                "yarn" => R::Yarn,
                other => {
                    return Err(Error::Unsupported(format!(
                        "config.json: RoPE scaling '{other}' is not built (linear, llama3 and yarn are)"
                    )))
                }
            };
            let known: &[&str] = match kind {
                R::Linear => &["factor"],
                R::Llama3 => &[
                    "factor",
                    "low_freq_factor",
                    "high_freq_factor",
                    "original_max_position_embeddings",
                ],
                _ => &[
                    "factor",
                    "original_max_position_embeddings",
                    "beta_fast",
                    "beta_slow",
                    "attention_factor",
                    "truncate",
                ],
            };
            let num = |k: &str| -> Result<Option<f64>> {
                match scaling.get(k) {
                    None | Some(serde_json::Value::Null) => Ok(None),
                    Some(x) => x
                        .as_f64()
                        .filter(|f| f.is_finite())
                        .map(Some)
                        .ok_or_else(|| {
                            Error::WrongType(format!(
                                "config.json: {key}.{k} must be a number, got {x}"
                            ))
                        }),
                }
            };
            for (k, x) in scaling {
                let ignorable = matches!(
                    k.as_str(),
                    "rope_type" | "type" | "rope_theta" | "partial_rotary_factor"
                );
                if ignorable || known.contains(&k.as_str()) || x.is_null() {
                    continue;
                }
                let name = match kind {
                    R::Linear => "linear",
                    R::Llama3 => "llama3",
                    _ => "yarn",
                };
                return Err(Error::Unsupported(format!(
                    "config.json: {key}.{k} of '{name}' RoPE scaling is not built"
                )));
            }
            if num("partial_rotary_factor")?.is_some_and(|f| f != 1.0) {
                return Err(Error::Unsupported(format!("config.json: {key}.partial_rotary_factor (partial rotary embeddings are not built)")));
            }
            if scaling
                .get("truncate")
                .is_some_and(|t| t != &serde_json::Value::Bool(true) && !t.is_null())
            {
                return Err(Error::Unsupported(format!(
                    "config.json: {key}.truncate false (yarn's untruncated range is not built)"
                )));
            }
            c.rope_scaling = kind;
            c.rope_scaling_factor = num("factor")?.ok_or_else(|| {
                Error::InvalidArgument(format!("config.json: {key}.factor is missing"))
            })?;
            if let Some(n) = num("original_max_position_embeddings")? {
                if !(n >= 1.0 && n <= usize::MAX as f64 && n.fract() == 0.0) {
                    return Err(Error::InvalidArgument(format!(
                        "config.json: {key}.original_max_position_embeddings must be a positive integer, got {n}"
                    )));
                }
                c.rope_original_max_position_embeddings = n as usize;
            }
            if kind == R::Llama3 {
                // transformers' defaults for the 3.1 recipe's missing keys are none: it needs them
                for k in [
                    "low_freq_factor",
                    "high_freq_factor",
                    "original_max_position_embeddings",
                ] {
                    if num(k)?.is_none() {
                        return Err(Error::InvalidArgument(format!(
                            "config.json: {key}.{k} is missing (llama3 RoPE scaling needs it)"
                        )));
                    }
                }
            }
            c.rope_low_freq_factor = num("low_freq_factor")?.unwrap_or(c.rope_low_freq_factor);
            c.rope_high_freq_factor = num("high_freq_factor")?.unwrap_or(c.rope_high_freq_factor);
            // transformers: `beta_fast or 32`, `beta_slow or 1` (a zero is the default)
            c.rope_beta_fast = num("beta_fast")?.filter(|b| *b != 0.0).unwrap_or(32.0);
            c.rope_beta_slow = num("beta_slow")?.filter(|b| *b != 0.0).unwrap_or(1.0);
            c.rope_attention_factor = num("attention_factor")?.unwrap_or(0.0);
        }
        Ok(())
    }
}

/// An HF activation name.
pub fn activation(name: &str) -> Result<Activation> {
    Ok(match name {
        "gelu" | "gelu_python" => Activation::Gelu,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "gelu_tanh" => Activation::GeluTanh,
        "relu" => Activation::Relu,
        "silu" | "swish" => Activation::Silu,
        other => {
            return Err(Error::Unsupported(format!(
                "config.json: activation '{other}'"
            )))
        }
    })
}

/// The HF name of an activation (transformers' ACT2FN).
pub fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::Gelu => "gelu",
        Activation::GeluTanh => "gelu_new",
        Activation::Relu => "relu",
        Activation::Silu => "silu",
    }
}

/// `family.check` in one line per rule: `want(ok, field, "use rope")?`.
pub fn want(c: &ModelConfig, ok: bool, field: &str, msg: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "ModelConfig.{field}: {} models {msg}",
            c.family
        )))
    }
}

/// The output projection: the token embeddings when tied (or when an untied checkpoint leaves
/// the head out), else the tensor under `name`.
pub fn lm_head(c: &ModelConfig, embed: &Embedding, vb: &Vb, name: &str) -> Result<Linear> {
    if c.tie_word_embeddings || !vb.has(&format!("{name}.weight")) {
        embed.as_linear()
    } else {
        vb.pp(name).linear(c.vocab_size, c.hidden_size, false)
    }
}

/// The attention shape and vocabulary every GGUF decoder states the same way under its
/// architecture's keys: (hidden, heads, kv_heads, head_dim, vocab).
pub fn gguf_shape(g: &GgufFile, arch: &str) -> Result<(usize, usize, usize, usize, usize)> {
    let key = |k: &str| format!("{arch}.{k}");
    let hidden = g.require_u64(&key("embedding_length"))? as usize;
    let heads = g.require_u64(&key("attention.head_count"))? as usize;
    let kv_heads = match g.get(&key("attention.head_count_kv")) {
        Some(v) => v.as_u64().ok_or_else(|| {
            Error::Unsupported(format!(
                "{}: per-layer head_count_kv arrays",
                g.path().display()
            ))
        })? as usize,
        None => heads,
    };
    let head_dim = match g.get(&key("attention.key_length")) {
        Some(v) => v.as_u64().ok_or_else(|| {
            Error::invalid_file(
                g.path(),
                format!(
                    "{} is {v:?}, not an unsigned integer",
                    key("attention.key_length")
                ),
            )
        })? as usize,
        None if heads > 0 && hidden.is_multiple_of(heads) => hidden / heads,
        None => {
            return Err(Error::invalid_file(
                g.path(),
                format!("embedding_length {hidden} is not divisible by head_count {heads}"),
            ))
        }
    };
    let embed = g
        .tensor_info("token_embd.weight")
        .ok_or_else(|| Error::invalid_file(g.path(), "tensor token_embd.weight is missing"))?;
    let vocab = embed.shape.first().copied().unwrap_or(0);
    // stated sizes the shapes also give must agree with them: a file that says two things is
    // refused, not read by whichever the loader happens to look at
    if let Some(v) = g.get(&key("vocab_size")) {
        if v.as_u64() != Some(vocab as u64) {
            return Err(Error::invalid_file(
                g.path(),
                format!(
                    "{} is {v:?} but token_embd.weight has {vocab} rows",
                    key("vocab_size")
                ),
            ));
        }
    }
    if let Some(v) = g.get(&key("rope.dimension_count")) {
        if v.as_u64() != Some(head_dim as u64) {
            return Err(Error::Unsupported(format!(
                "{}: {} is {v:?} but the head size is {head_dim} (partial rotary embeddings are not built)",
                g.path().display(),
                key("rope.dimension_count")
            )));
        }
    }
    Ok((hidden, heads, kv_heads, head_dim, vocab))
}

/// A decoder's config from the keys every GGUF decoder states the same way under its
/// architecture (`gguf_shape`, block_count, feed_forward_length, the RMS epsilon, rope.freq_base,
/// context_length; tied when the file has no output.weight), the rest from `preset` (whose
/// norm_eps and rope_theta are the defaults of the two optional keys).
pub fn gguf_decoder(g: &GgufFile, arch: &str, preset: ModelConfig) -> Result<ModelConfig> {
    let key = |k: &str| format!("{arch}.{k}");
    let (hidden, num_heads, num_kv_heads, head_dim, vocab_size) = gguf_shape(g, arch)?;
    Ok(ModelConfig {
        vocab_size,
        hidden_size: hidden,
        num_layers: g.require_u64(&key("block_count"))? as usize,
        num_heads,
        num_kv_heads,
        head_dim,
        intermediate_size: g.require_u64(&key("feed_forward_length"))? as usize,
        norm_eps: g
            .get_f64(&key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(preset.norm_eps),
        rope_theta: g
            .get_f64(&key("rope.freq_base"))?
            .unwrap_or(preset.rope_theta),
        max_position_embeddings: g.require_u64(&key("context_length"))? as usize,
        tie_word_embeddings: g.tensor_info("output.weight").is_none(),
        ..preset
    })
}

/// RoPE scaling from GGUF metadata into `c`, as llama.cpp reads it: `rope.scaling.type`
/// (default "linear") with `rope.scaling.factor` (or the old `rope.scale_linear`; none or 0 = no
/// scaling), yarn's original context and betas; a `rope_freqs.weight` tensor is llama3's
/// (Llama 3.1's per-frequency factors), read by the family. What llama.cpp would compute and
/// candlewick does not (longrope, yarn's log multiplier or a changed extrapolation factor, an
/// attention factor) is refused.
pub fn gguf_rope_scaling(g: &GgufFile, arch: &str, c: &mut ModelConfig) -> Result<()> {
    use crate::config::RopeScaling as R;
    let key = |k: &str| format!("{arch}.rope.scaling.{k}");
    let kind = match g.get(&key("type")) {
        None => "linear",
        Some(v) => v.as_str().ok_or_else(|| {
            Error::invalid_file(g.path(), format!("{} is {v:?}, not a string", key("type")))
        })?,
    };
    let factor = match g.get_f64(&key("factor"))? {
        Some(f) => Some(f),
        None => g.get_f64(&format!("{arch}.rope.scale_linear"))?,
    };
    let refuse = |what: String| {
        Err(Error::Unsupported(format!(
            "{}: {what}",
            g.path().display()
        )))
    };
    for k in ["yarn_log_multiplier", "attn_factor"] {
        if let Some(v) = g.get_f64(&key(k))? {
            if (k == "attn_factor" && v != 1.0) || (k != "attn_factor" && v != 0.0) {
                return refuse(format!("{} = {v} (not built)", key(k)));
            }
        }
    }
    if let Some(v) = g.get_f64(&key("yarn_ext_factor"))? {
        if v >= 0.0 && v != 1.0 {
            return refuse(format!(
                "{} = {v} (only yarn's full extrapolation, 1, is built)",
                key("yarn_ext_factor")
            ));
        }
    }
    if let Some(f) = factor {
        if !(f.is_finite() && f >= 0.0) {
            return Err(Error::invalid_file(
                g.path(),
                format!("{} is {f}, not a non-negative number", key("factor")),
            ));
        }
    }
    let scaled = factor.is_some_and(|f| f != 0.0 && f != 1.0);
    c.rope_scaling = match kind {
        "none" => R::None,
        "linear" if scaled => R::Linear,
        "linear" => R::None,
        "yarn" if scaled => R::Yarn,
        "yarn" => R::None,
        other => {
            return refuse(format!(
                "RoPE scaling '{other}' (linear and yarn are built, and llama3's rope_freqs)"
            ))
        }
    };
    if c.rope_scaling != R::None {
        c.rope_scaling_factor = factor.unwrap_or(1.0);
    }
    if let Some(n) = g.get(&key("original_context_length")) {
        c.rope_original_max_position_embeddings = n.as_u64().ok_or_else(|| {
            Error::invalid_file(
                g.path(),
                format!(
                    "{} is {n:?}, not an unsigned integer",
                    key("original_context_length")
                ),
            )
        })? as usize;
    }
    c.rope_beta_fast = g.get_f64(&key("yarn_beta_fast"))?.unwrap_or(32.0);
    c.rope_beta_slow = g.get_f64(&key("yarn_beta_slow"))?.unwrap_or(1.0);
    if g.tensor_info("rope_freqs.weight").is_some() {
        if c.rope_scaling != R::None {
            return refuse("both rope_freqs and RoPE scaling metadata".into());
        }
        c.rope_scaling = R::Llama3;
    }
    Ok(())
}

/// The keys `gguf_decoder` and `gguf_rope_scaling` read, for `c` under architecture `arch` (what
/// llama.cpp's converter writes for a decoder; llama3 scaling travels as a rope_freqs tensor).
pub fn gguf_decoder_metadata(
    arch: &str,
    c: &ModelConfig,
) -> Result<Vec<(String, crate::io::gguf::Value)>> {
    use crate::config::RopeScaling as R;
    use crate::io::gguf::Value::{String as S, F32, U32};
    let key = |k: &str| format!("{arch}.{k}");
    let u = |v: usize| -> Result<crate::io::gguf::Value> {
        u32::try_from(v)
            .map(U32)
            .map_err(|_| Error::InvalidArgument(format!("{v} does not fit a GGUF u32")))
    };
    let mut m = vec![
        (key("vocab_size"), u(c.vocab_size)?),
        (key("context_length"), u(c.max_position_embeddings)?),
        (key("embedding_length"), u(c.hidden_size)?),
        (key("block_count"), u(c.num_layers)?),
        (key("feed_forward_length"), u(c.intermediate_size)?),
        (key("attention.head_count"), u(c.num_heads)?),
        (key("attention.head_count_kv"), u(c.num_kv_heads)?),
        (key("attention.key_length"), u(c.head_dim)?),
        (key("attention.value_length"), u(c.head_dim)?),
        (
            key("attention.layer_norm_rms_epsilon"),
            F32(c.norm_eps as f32),
        ),
        (key("rope.freq_base"), F32(c.rope_theta as f32)),
        (key("rope.dimension_count"), u(c.head_dim)?),
    ];
    let original = match c.rope_original_max_position_embeddings {
        0 => c.max_position_embeddings,
        n => n,
    };
    match c.rope_scaling {
        R::None | R::Llama3 => {}
        R::Linear => {
            m.push((key("rope.scaling.type"), S("linear".into())));
            m.push((
                key("rope.scaling.factor"),
                F32(c.rope_scaling_factor as f32),
            ));
        }
        R::Yarn => {
            if c.rope_attention_factor > 0.0 {
                return Err(Error::Unsupported(
                    "writing yarn RoPE scaling with an attention_factor as GGUF is not built"
                        .into(),
                ));
            }
            m.push((key("rope.scaling.type"), S("yarn".into())));
            m.push((
                key("rope.scaling.factor"),
                F32(c.rope_scaling_factor as f32),
            ));
            m.push((key("rope.scaling.original_context_length"), u(original)?));
            m.push((
                key("rope.scaling.yarn_beta_fast"),
                F32(c.rope_beta_fast as f32),
            ));
            m.push((
                key("rope.scaling.yarn_beta_slow"),
                F32(c.rope_beta_slow as f32),
            ));
        }
    }
    Ok(m)
}

/// RoPE scaling in GGUF metadata is refused rather than run wrong.
pub fn refuse_gguf_rope_scaling(g: &GgufFile, arch: &str) -> Result<()> {
    if g.get(&format!("{arch}.rope.scaling.type"))
        .and_then(|v| v.as_str())
        .is_some_and(|t| t != "none")
    {
        return Err(Error::Unsupported(format!(
            "{}: RoPE scaling",
            g.path().display()
        )));
    }
    Ok(())
}
