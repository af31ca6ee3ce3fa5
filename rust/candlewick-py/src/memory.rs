use pyo3::prelude::*;
use pyo3::types::PyDict;

use candlewick::memory::{estimate, MemoryOptions, Optimizer, Precision, Recompute, Subject};
use candlewick::ModelConfig;

use crate::errors::IntoPyResult;

fn opt<'py, T: pyo3::FromPyObject<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<Option<T>> {
    match d.get_item(key)? {
        Some(v) if !v.is_none() => {
            Ok(Some(v.extract().map_err(|e| {
                pyo3::exceptions::PyTypeError::new_err(format!("{key}: {e}"))
            })?))
        }
        _ => Ok(None),
    }
}

/// Estimate memory. kind: "params" (value: int), "path" (str), "config" (ModelConfig JSON).
/// Returns (label, num_parameters, [(key, bytes, formula)], notes, seq_len, dtype).
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn estimate_memory(
    py: Python<'_>,
    kind: &str,
    value: &Bound<'_, PyAny>,
    options: &Bound<'_, PyDict>,
) -> PyResult<(
    String,
    u64,
    Vec<(&'static str, u64, String)>,
    Vec<String>,
    Option<usize>,
    String,
)> {
    let o = MemoryOptions {
        dtype: opt::<String>(options, "dtype")?
            .map(|s| Precision::parse(&s))
            .transpose()
            .py()?,
        kv_dtype: opt::<String>(options, "kv_dtype")?
            .map(|s| Precision::parse(&s))
            .transpose()
            .py()?,
        batch_size: opt(options, "batch_size")?.unwrap_or(1),
        seq_len: opt(options, "seq_len")?,
        training: opt(options, "training")?.unwrap_or(false),
        optimizer: Optimizer::parse(
            &opt::<String>(options, "optimizer")?.unwrap_or_else(|| "adamw".into()),
        )
        .py()?,
        mixed_precision: opt(options, "mixed_precision")?.unwrap_or(false),
        recompute: match opt::<String>(options, "gradient_checkpointing")?
            .as_deref()
            .unwrap_or("none")
        {
            "none" => Recompute::None,
            "selective" => Recompute::Selective,
            "full" => Recompute::Full,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "gradient_checkpointing must be False, True, 'full' or 'selective', got {other:?}"
            )))
            }
        },
        zero_stage: opt(options, "zero_stage")?.unwrap_or(0),
        num_devices: opt(options, "num_devices")?.unwrap_or(1),
    };
    let subject = match kind {
        "params" => Subject::from_params(value.extract()?),
        "path" => {
            let path: std::path::PathBuf = value.extract()?;
            py.detach(move || Subject::from_path(&path))
        }
        "config" => {
            let json: String = value.extract()?;
            let cfg: ModelConfig = serde_json::from_str(&json).map_err(|e| {
                pyo3::exceptions::PyValueError::new_err(format!("ModelConfig: {e}"))
            })?;
            Subject::from_config(&cfg)
        }
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "unknown source kind {other}"
            )))
        }
    }
    .py()?;
    let e = estimate(&subject, &o).py()?;
    let items = e
        .items
        .into_iter()
        .map(|i| (i.key, i.bytes, i.formula))
        .collect();
    Ok((
        e.label,
        e.num_parameters,
        items,
        e.notes,
        e.seq_len,
        e.dtype,
    ))
}

/// Validate a ModelConfig given as JSON; returns (normalised JSON, number of parameters).
#[pyfunction]
pub fn check_model_config(json: &str) -> PyResult<(String, u64)> {
    let cfg: ModelConfig = serde_json::from_str(json)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("ModelConfig: {e}")))?;
    cfg.validate().py()?;
    let n = cfg.num_parameters().py()? as u64;
    Ok((
        serde_json::to_string(&cfg)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?,
        n,
    ))
}

/// ModelConfig JSON from an HF config.json file.
#[pyfunction]
pub fn config_from_hf(path: std::path::PathBuf) -> PyResult<String> {
    let cfg = candlewick::memory::read_config_json(&path).py()?;
    serde_json::to_string(&cfg).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}
