//! Quantizing a GGUF model into another file type, as llama.cpp's quantize tool does without an
//! importance matrix: every 2-D "weight" tensor in the recipe's type (the output projection, or
//! the embeddings it is tied to, in Q6_K unless the recipe is Q8_0 or a float type; the _M mixes
//! also give attn_v and ffn_down Q6_K in the layers `use_more_bits` picks, and a fused attn_qkv
//! one step more; a row that does not split into the type's blocks falls back as llama.cpp's
//! `tensor_type_fallback` does), the other tensors and all metadata copied, general.file_type
//! set. Written atomically.

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::gguf::{GgufFile, Value};
use crate::io::gguf_write::{self, TensorOut};
use crate::kernels::quantize::Target;

/// File types this writes: (name, main type, llama_ftype id).
const RECIPES: &[(&str, Target, u32)] = &[
    ("F32", Target::F32, 0),
    ("F16", Target::F16, 1),
    ("BF16", Target::Bf16, 32),
    ("Q8_0", Target::Q8_0, 7),
    ("Q4_0", Target::Q4_0, 2),
    ("Q4_1", Target::Q4_1, 3),
    ("Q5_0", Target::Q5_0, 8),
    ("Q5_1", Target::Q5_1, 9),
    ("Q4_K_M", Target::Q4K, 15),
    ("Q5_K_M", Target::Q5K, 17),
    ("Q6_K", Target::Q6K, 18),
];

/// llama.cpp file types not written yet.
const NOT_BUILT: &[&str] = &[
    "Q4_K_S", "Q5_K_S", "Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L", "IQ4_NL", "IQ4_XS",
    "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M",
    "TQ1_0", "TQ2_0",
];

/// The names `quantize` writes.
pub fn recipes() -> Vec<&'static str> {
    RECIPES.iter().map(|r| r.0).collect()
}

fn recipe(name: &str) -> Result<(&'static str, Target, u32)> {
    let n = name.trim().to_ascii_uppercase();
    if let Some(r) = RECIPES.iter().find(|r| r.0 == n) {
        return Ok(*r);
    }
    if NOT_BUILT.contains(&n.as_str()) {
        return Err(Error::Unsupported(format!(
            "quantizing to {n} is not built yet (built: {})",
            recipes().join(", ")
        )));
    }
    Err(Error::InvalidArgument(format!(
        "unknown quantization type '{name}' (built: {}; llama.cpp's others: {})",
        recipes().join(", "),
        NOT_BUILT.join(", ")
    )))
}

/// What a quantization wrote: (tensor name, type written) in file order.
pub struct Report {
    pub types: Vec<(String, &'static str)>,
}

/// llama.cpp's choice of the layers that get more bits in the _M mixes.
fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The type llama.cpp's quantize gives tensor `name` with `ncols` values a row, in a model of
/// `n_layers` layers.
fn tensor_target(name: &str, ncols: usize, main: Target, tied: bool, n_layers: usize) -> Target {
    let float = matches!(main, Target::F32 | Target::F16 | Target::Bf16);
    let mix = matches!(main, Target::Q4K | Target::Q5K); // Q4_K_M, Q5_K_M
    let output = name == "output.weight" || (tied && name == "token_embd.weight");
    let layer = name
        .strip_prefix("blk.")
        .and_then(|r| r.split('.').next())
        .and_then(|i| i.parse::<usize>().ok());
    let role = |r: &str| name.ends_with(&format!(".{r}.weight"));
    let more = |i: Option<usize>| i.is_some_and(|i| use_more_bits(i, n_layers.max(1)));
    let mut t = if output && !float && main != Target::Q8_0 {
        Target::Q6K
    } else if mix && (role("attn_v") || role("ffn_down")) && more(layer) {
        Target::Q6K
    } else if mix && role("attn_qkv") {
        if main == Target::Q4K {
            Target::Q5K
        } else {
            Target::Q6K
        }
    } else {
        main
    };
    if !t.fits(ncols) {
        // tensor_type_fallback: Q6_K -> Q8_0, Q4_K -> Q5_0, Q5_K -> Q5_1; what still does not fit -> F16
        t = match t {
            Target::Q6K => Target::Q8_0,
            Target::Q4K => Target::Q5_0,
            Target::Q5K => Target::Q5_1,
            other => other,
        };
        if !t.fits(ncols) {
            t = Target::F16;
        }
    }
    t
}

/// Quantize the GGUF model `src` into `out` as file type `kind` ("Q4_K_M", "Q5_K_M", "Q8_0",
/// "Q4_0", "Q6_K", "F16", "BF16", "F32"). The source must be a model candlewick reads (its architecture known).
pub fn quantize_gguf(src: &Path, out: &Path, kind: &str) -> Result<Report> {
    let (_, main, ftype) = recipe(kind)?;
    let g = GgufFile::open(src)?;
    // a model, not any GGUF file: its config must read
    let config = crate::model::families::from_gguf(&g)?;
    if same_file(src, out) {
        return Err(Error::InvalidArgument(format!(
            "the output {} is the source itself",
            out.display()
        )));
    }
    let tied = g.tensor_info("output.weight").is_none();
    let total = g.tensors.len();
    let mut tensors = Vec::with_capacity(total);
    for (i, info) in g.tensors.iter().enumerate() {
        crate::interrupt::check()?;
        crate::interrupt::progress(i, total);
        let t = if is_weight(&info.name, &info.shape) {
            let values = g.dequantize(&info.name)?.flatten_all()?.to_vec1::<f32>()?;
            encode(
                &info.name,
                &info.shape,
                &values,
                main,
                tied,
                config.num_layers,
            )
        } else {
            TensorOut {
                name: info.name.clone(),
                shape: info.shape.clone(),
                dtype: info.dtype,
                data: g.tensor_bytes(info).to_vec(),
            }
        };
        tensors.push(t);
    }
    crate::interrupt::progress(total, total);
    let mut metadata: Vec<(String, Value)> = g
        .metadata
        .iter()
        .filter(|(k, _)| {
            k.as_str() != "general.file_type" && k.as_str() != "general.quantization_version"
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.push(("general.file_type".into(), Value::U32(ftype)));
    metadata.push(("general.quantization_version".into(), Value::U32(2)));
    let alignment = g
        .get("general.alignment")
        .and_then(|v| v.as_u64())
        .unwrap_or(32) as usize;
    gguf_write::write(out, &metadata, &tensors, alignment)?;
    Ok(Report {
        types: tensors
            .iter()
            .map(|t| (t.name.clone(), t.dtype.name))
            .collect(),
    })
}

/// A tensor quantize gives the recipe's types (the others are copied, or written in F32).
fn is_weight(name: &str, shape: &[usize]) -> bool {
    name.ends_with("weight") && shape.len() >= 2
}

/// `values` (a tensor of `shape`, row-major) as the type `tensor_target` picks, or F32 for
/// tensors that are not weights.
fn encode(
    name: &str,
    shape: &[usize],
    values: &[f32],
    main: Target,
    tied: bool,
    n_layers: usize,
) -> TensorOut {
    let target = if is_weight(name, shape) {
        tensor_target(name, *shape.last().unwrap_or(&0), main, tied, n_layers)
    } else {
        Target::F32
    };
    let ncols = shape.last().copied().unwrap_or(1).max(1);
    let mut data = Vec::with_capacity(target.tensor_type().bytes(values.len() as u64) as usize);
    for row in values.chunks(ncols) {
        target.quantize_row(row, &mut data);
    }
    TensorOut {
        name: name.to_string(),
        shape: shape.to_vec(),
        dtype: target.tensor_type(),
        data,
    }
}

/// Write `model` as a GGUF of file type `kind`: a model loaded from GGUF is requantized from its
/// file (`quantize_gguf`); one loaded from an HF folder, built from a config or trained is
/// converted through its family's `to_gguf` (llama.cpp's architecture keys and tensor names),
/// its tokenizer into llama.cpp's vocabulary keys (`Tokenizer::gguf_metadata`; none: "none"),
/// then quantized as llama.cpp's quantize tool would. A model trained from a GGUF file keeps
/// that file's metadata with its trained tensors.
pub fn quantize_model(model: &crate::model::Model, out: &Path, kind: &str) -> Result<Report> {
    let (_, main, ftype) = recipe(kind)?;
    let info = &model.info;
    if model.built.is_none() && info.format == "gguf" {
        return quantize_gguf(&info.path, out, kind);
    }
    if same_file(&info.path, out) {
        return Err(Error::InvalidArgument(format!(
            "the output {} is the model's own file",
            out.display()
        )));
    }
    let c = &model.config;
    let family = crate::model::families::get(&c.family)?;
    if !model.gguf_names {
        family.to_gguf(c, Vec::new())?; // a family or config without a GGUF form refuses before any read
    }
    let tensors: Vec<(String, candle_core::Tensor)> = match &model.built {
        Some(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        None if info.format == "safetensors" => folder_tensors(c, &info.path)?,
        None => {
            return Err(Error::Unsupported(format!(
                "quantizing a model loaded from {} is not built",
                info.format
            )))
        }
    };
    let (mut metadata, tensors) = if model.gguf_names {
        // trained from a GGUF file: its metadata (architecture, vocabulary, template) as it was
        let g = GgufFile::open(&info.path)?;
        let keep = |k: &str| {
            !matches!(
                k,
                "general.file_type" | "general.quantization_version" | "general.alignment"
            )
        };
        (
            g.metadata
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tensors,
        )
    } else {
        let parts = family.to_gguf(c, tensors)?;
        let mut metadata = parts.metadata;
        let name = info
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty())
            .unwrap_or("candlewick");
        metadata.push(("general.name".into(), Value::String(name.into())));
        match &model.tokenizer {
            Some(t) => metadata.extend(t.gguf_metadata()?),
            None => metadata.push(("tokenizer.ggml.model".into(), Value::String("none".into()))),
        }
        (metadata, parts.tensors)
    };
    let tied = !tensors.iter().any(|(n, _)| n == "output.weight");
    let mut tensors = tensors;
    tensors.sort_by_key(|(n, _)| gguf_order(n));
    let total = tensors.len();
    let mut outs = Vec::with_capacity(total);
    for (i, (name, t)) in tensors.iter().enumerate() {
        crate::interrupt::check()?;
        crate::interrupt::progress(i, total);
        let values = t
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(Error::Model(format!(
                "tensor {name} holds {bad}: a GGUF of it would not run"
            )));
        }
        outs.push(encode(name, t.dims(), &values, main, tied, c.num_layers));
    }
    crate::interrupt::progress(total, total);
    metadata.push(("general.file_type".into(), Value::U32(ftype)));
    metadata.push(("general.quantization_version".into(), Value::U32(2)));
    gguf_write::write(out, &metadata, &outs, 32)?;
    Ok(Report {
        types: outs
            .iter()
            .map(|t| (t.name.clone(), t.dtype.name))
            .collect(),
    })
}

/// llama.cpp's converter's order: tensors outside the layers first, then layer by layer, the
/// final norm and the output last.
fn gguf_order(name: &str) -> (usize, usize, String) {
    let layer = name
        .strip_prefix("blk.")
        .and_then(|r| r.split('.').next())
        .and_then(|i| i.parse::<usize>().ok());
    match layer {
        Some(i) => (1, i, name.to_string()),
        None if name.starts_with("output") => (2, 0, name.to_string()),
        None => (0, 0, name.to_string()),
    }
}

/// The checkpoint tensors of an HF folder model, by the names its family reads.
fn folder_tensors(
    c: &crate::config::ModelConfig,
    path: &Path,
) -> Result<Vec<(String, candle_core::Tensor)>> {
    let crate::io::checkpoint::Checkpoint::Folder { files, dir, .. } =
        crate::io::checkpoint::Checkpoint::open(path)?
    else {
        return Err(Error::invalid_file(path, "not a safetensors checkpoint"));
    };
    crate::model::families::tensor_shapes(c)?
        .into_iter()
        .map(|(name, shape)| {
            let f = files
                .iter()
                .find(|f| f.contains(&name))
                .ok_or_else(|| Error::invalid_file(&dir, format!("tensor {name} is missing")))?;
            Ok((
                name.clone(),
                f.tensor(&name, &shape, &candle_core::Device::Cpu)?,
            ))
        })
        .collect()
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
