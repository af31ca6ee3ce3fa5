//! Memory estimation and the chunked-package assembler: conversions and delegation.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use candlewick::io::types::TensorType;
use candlewick::memory::{estimate, MemoryOptions, Optimizer, Recompute, Subject};

use crate::config::PyModelConfig;
use crate::errors::IntoPyResult;
use crate::model::PyModel;

type Estimate = (
    String,
    u64,
    Vec<(&'static str, u64, String)>,
    Vec<String>,
    Option<usize>,
    String,
);

/// Estimate memory for `source`: a parameter count (int), a ModelConfig, a NativeModel or a path.
/// Returns (label, num_parameters, [(key, bytes, formula)], notes, seq_len, dtype).
#[pyfunction]
#[pyo3(signature = (source, dtype=None, kv_dtype=None, batch_size=1, seq_len=None, training=false, optimizer="adamw", mixed_precision=false, gradient_checkpointing="none", zero_stage=0, num_devices=1))]
#[allow(clippy::too_many_arguments)]
pub fn estimate_memory(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    dtype: Option<&str>,
    kv_dtype: Option<&str>,
    batch_size: usize,
    seq_len: Option<usize>,
    training: bool,
    optimizer: &str,
    mixed_precision: bool,
    gradient_checkpointing: &str,
    zero_stage: u8,
    num_devices: usize,
) -> PyResult<Estimate> {
    let o = MemoryOptions {
        dtype: dtype.map(TensorType::parse).transpose().py()?,
        kv_dtype: kv_dtype.map(TensorType::parse).transpose().py()?,
        batch_size,
        seq_len,
        training,
        optimizer: Optimizer::parse(optimizer).py()?,
        mixed_precision,
        recompute: match gradient_checkpointing {
            "none" => Recompute::None,
            "selective" => Recompute::Selective,
            "full" => Recompute::Full,
            other => {
                return Err(PyValueError::new_err(format!(
                "gradient_checkpointing must be False, True, 'full' or 'selective', got {other:?}"
            )))
            }
        },
        zero_stage,
        num_devices,
    };
    let subject = if let Ok(m) = source.downcast::<PyModel>() {
        Subject::from_model(&m.get().model).py()
    } else if let Ok(c) = source.downcast::<PyModelConfig>() {
        Subject::from_config(&c.get().cfg).py()
    } else if let Ok(n) = source.extract::<u64>() {
        Subject::from_params(n).py()
    } else if let Ok(path) = source.extract::<std::path::PathBuf>() {
        crate::errors::detach(py, move || Subject::from_path(&path))
    } else {
        return Err(PyTypeError::new_err(
            "a memory estimate is of a model, a config, a path or a parameter count",
        ));
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

/// Quantize the GGUF model `src` into `out` as file type `kind`; returns (tensor, type) pairs in
/// file order. `progress(done, total)` in tensors.
#[pyfunction]
#[pyo3(signature = (src, out, kind, progress=None))]
pub fn quantize_gguf(
    py: Python<'_>,
    src: std::path::PathBuf,
    out: std::path::PathBuf,
    kind: String,
    progress: Option<Py<PyAny>>,
) -> PyResult<Vec<(String, String)>> {
    crate::errors::detach_progress(py, progress, move || {
        candlewick::model::quantize::quantize_gguf(&src, &out, &kind)
    })
    .py()
    .map(|r| {
        r.types
            .into_iter()
            .map(|(n, t)| (n, t.to_string()))
            .collect()
    })
}

/// Write the loaded `model` as a GGUF of file type `kind` (an HF folder's, built or trained model
/// converted; a GGUF one requantized from its file); returns (tensor, type) pairs.
#[pyfunction]
#[pyo3(signature = (model, out, kind, progress=None))]
pub fn quantize_model(
    py: Python<'_>,
    model: PyRef<'_, crate::model::PyModel>,
    out: std::path::PathBuf,
    kind: String,
    progress: Option<Py<PyAny>>,
) -> PyResult<Vec<(String, String)>> {
    let m = model.model.clone();
    crate::errors::detach_progress(py, progress, move || {
        candlewick::model::quantize::quantize_model(&m, &out, &kind)
    })
    .py()
    .map(|r| {
        r.types
            .into_iter()
            .map(|(n, t)| (n, t.to_string()))
            .collect()
    })
}

/// The file types `quantize_gguf` writes.
#[pyfunction]
pub fn quantize_types() -> Vec<&'static str> {
    candlewick::model::quantize::recipes()
}

/// Assemble a model shipped in parts (checked against its SHA256SUMS manifest) into `cache_dir`
/// once; returns the assembled file's path. `progress(done, total)` in bytes.
#[pyfunction]
#[pyo3(signature = (manifest, parts, cache_dir, progress=None))]
pub fn assemble_parts(
    py: Python<'_>,
    manifest: std::path::PathBuf,
    parts: Vec<std::path::PathBuf>,
    cache_dir: std::path::PathBuf,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    crate::errors::detach_progress(py, progress, move || {
        candlewick::io::checkpoint::assemble_parts(&manifest, &parts, &cache_dir)
    })
    .py()
    .map(|p| p.display().to_string())
}
