//! `cw.ModelConfig` and `cw.GenerationConfig`: the engine's config types as Python classes.
//! Fields, defaults and validation are the engine's; this file converts and delegates.

use std::hash::{Hash, Hasher};

use candlewick::model::families;
use candlewick::{GenerationConfig, ModelConfig};
use pyo3::exceptions::PyAttributeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};

use crate::convert::{changes, dataclass_fields, repr, to_py};
use crate::errors::IntoPyResult;

fn hash_of(values: &[(&str, candlewick::config::Value)]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{values:?}").hash(&mut h);
    h.finish()
}

fn as_dict<'py>(
    py: Python<'py>,
    values: &[(&str, candlewick::config::Value)],
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in values {
        d.set_item(k, to_py(py, v)?)?;
    }
    Ok(d)
}

/// One description of a transformer: encoder, decoder or encoder-decoder, and its options.
/// Checked on construction: an inconsistent config is a ValueError naming the field.
#[pyclass(name = "ModelConfig", module = "candlewick", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct PyModelConfig {
    pub cfg: ModelConfig,
}

impl PyModelConfig {
    pub fn new_checked(cfg: ModelConfig) -> PyResult<Self> {
        families::validate(&cfg).py()?;
        Ok(PyModelConfig { cfg })
    }
}

#[pymethods]
impl PyModelConfig {
    #[new]
    #[pyo3(signature = (**kwargs))]
    fn py_new(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let changes = changes(kwargs)?;
        // architecture="rnn" alone names the recurrent family (and starts from its preset)
        let rnn = changes.iter().any(|(k, v)| {
            k == "architecture" && *v == candlewick::config::Value::Str("rnn".into())
        });
        if rnn && !changes.iter().any(|(k, _)| k == "family") {
            return Ok(PyModelConfig {
                cfg: families::for_family("rnn", changes).py()?,
            });
        }
        let cfg = ModelConfig::default().with(changes).py()?;
        Self::new_checked(cfg)
    }

    /// A config with a family's options (families: the registry's names) and small sizes;
    /// every field can be given.
    #[classmethod]
    #[pyo3(signature = (family, **kwargs))]
    fn for_family(
        _cls: &Bound<'_, PyType>,
        family: &str,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let cfg = families::for_family(family, changes(kwargs)?).py()?;
        Ok(PyModelConfig { cfg })
    }

    /// From an HF config.json (or the folder holding it).
    #[classmethod]
    fn from_hf(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        path: std::path::PathBuf,
    ) -> PyResult<Self> {
        let cfg = crate::errors::detach(py, move || {
            candlewick::io::checkpoint::Checkpoint::open(&path)?.config()
        })
        .py()?;
        Ok(PyModelConfig { cfg })
    }

    /// The families a config can name.
    #[staticmethod]
    fn families() -> Vec<&'static str> {
        families::names()
    }

    fn __getattr__(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        match self.cfg.get(name) {
            Some(v) => to_py(py, &v),
            None => Err(PyAttributeError::new_err(format!(
                "'ModelConfig' object has no attribute '{name}'"
            ))),
        }
    }

    fn __dir__(&self) -> Vec<&'static str> {
        let mut names = ModelConfig::FIELDS.to_vec();
        names.extend([
            "for_family",
            "from_hf",
            "families",
            "num_parameters",
            "to_dict",
            "replace",
        ]);
        names
    }

    /// Parameters of the checkpoint this config describes (tied weights once).
    #[getter]
    fn num_parameters(&self) -> PyResult<u64> {
        families::num_parameters(&self.cfg).py()
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        as_dict(py, &self.cfg.values())
    }

    /// A copy with some fields changed (validated).
    #[pyo3(signature = (**changes))]
    fn replace(&self, changes: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let cfg = self.cfg.with(crate::convert::changes(changes)?).py()?;
        Self::new_checked(cfg)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        repr(py, "ModelConfig", &self.cfg.values())
    }

    fn __hash__(&self) -> u64 {
        hash_of(&self.cfg.values())
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
    ) -> PyResult<(Py<PyAny>, (Bound<'py, PyDict>,))> {
        let f = py
            .import("candlewick._native")?
            .getattr("_model_config")?
            .unbind();
        Ok((f, (as_dict(py, &slf.get().cfg.values())?,)))
    }

    #[classattr]
    fn __dataclass_fields__(py: Python<'_>) -> PyResult<Py<PyDict>> {
        dataclass_fields(py, ModelConfig::FIELDS)
    }
}

/// Unpickling: a ModelConfig from its fields.
#[pyfunction]
pub fn _model_config(fields: &Bound<'_, PyDict>) -> PyResult<PyModelConfig> {
    PyModelConfig::py_new(Some(fields))
}

/// Generation controls, with the names HF transformers, vLLM and llama.cpp users know. Checked on
/// construction: a bad value is a TypeError or ValueError naming the field.
#[pyclass(name = "GenerationConfig", module = "candlewick", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct PyGenerationConfig {
    pub cfg: GenerationConfig,
}

#[pymethods]
impl PyGenerationConfig {
    #[new]
    #[pyo3(signature = (**kwargs))]
    fn py_new(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Ok(PyGenerationConfig {
            cfg: GenerationConfig::default().with(changes(kwargs)?).py()?,
        })
    }

    /// A copy with some fields changed; unknown names are a TypeError.
    #[pyo3(signature = (**changes))]
    fn replace(&self, changes: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Ok(PyGenerationConfig {
            cfg: self.cfg.with(crate::convert::changes(changes)?).py()?,
        })
    }

    /// This config, checked (configs are checked when made: kept for compatibility).
    fn validated(&self) -> PyResult<Self> {
        self.cfg.validate().py()?;
        Ok(self.clone())
    }

    /// From HF-style keys (generation_config.json): known keys are taken, `eos_token_id`
    /// becomes stop_token_ids, other HF keys are ignored.
    #[classmethod]
    fn from_dict(_cls: &Bound<'_, PyType>, d: &Bound<'_, PyDict>) -> PyResult<Self> {
        let fields = crate::convert::changes(Some(d))?;
        Ok(PyGenerationConfig {
            cfg: GenerationConfig::from_hf_fields(fields).py()?,
        })
    }

    /// Read a generation_config.json (the file, or the folder holding it).
    #[classmethod]
    fn from_file(_cls: &Bound<'_, PyType>, path: std::path::PathBuf) -> PyResult<Self> {
        Ok(PyGenerationConfig {
            cfg: GenerationConfig::from_file(&path).py()?,
        })
    }

    fn __getattr__(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        match self.cfg.get(name) {
            Some(v) => to_py(py, &v),
            None => Err(PyAttributeError::new_err(format!(
                "'GenerationConfig' object has no attribute '{name}'"
            ))),
        }
    }

    fn __dir__(&self) -> Vec<&'static str> {
        let mut names = GenerationConfig::FIELDS.to_vec();
        names.extend(["replace", "validated", "from_dict", "from_file", "to_dict"]);
        names
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        as_dict(py, &self.cfg.values())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        repr(py, "GenerationConfig", &self.cfg.values())
    }

    fn __hash__(&self) -> u64 {
        hash_of(&self.cfg.values())
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
    ) -> PyResult<(Py<PyAny>, (Bound<'py, PyDict>,))> {
        let f = py
            .import("candlewick._native")?
            .getattr("_generation_config")?
            .unbind();
        Ok((f, (as_dict(py, &slf.get().cfg.values())?,)))
    }

    #[classattr]
    fn __dataclass_fields__(py: Python<'_>) -> PyResult<Py<PyDict>> {
        dataclass_fields(py, GenerationConfig::FIELDS)
    }
}

/// Unpickling: a GenerationConfig from its fields.
#[pyfunction]
pub fn _generation_config(fields: &Bound<'_, PyDict>) -> PyResult<PyGenerationConfig> {
    PyGenerationConfig::py_new(Some(fields))
}
