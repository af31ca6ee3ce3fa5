use std::sync::Arc;

use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

use candlewick::generation::{GenerationParams, Generator};
use candlewick::model::Model;
use candlewick::sampling::SamplingParams;

use crate::errors::{non_negative, IntoPyResult};
use crate::tokenizer::PyTokenizer;

#[pyfunction]
#[pyo3(signature = (path, threads=None))]
pub fn load(py: Python<'_>, path: std::path::PathBuf, threads: Option<i64>) -> PyResult<PyModel> {
    if let Some(t) = threads {
        set_num_threads(t)?;
    }
    let model = py.detach(move || candlewick::load(&path)).py()?;
    Ok(PyModel { model: Arc::new(model) })
}

#[pyfunction]
pub fn set_num_threads(threads: i64) -> PyResult<()> {
    if threads <= 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!("threads must be a positive integer, got {threads}")));
    }
    candlewick::kernels::set_num_threads(threads as usize).py()
}

/// (cpu features, [(weight type, kernel path)], threads)
#[pyfunction]
pub fn simd_report() -> (Vec<&'static str>, Vec<(&'static str, String)>, usize) {
    let r = candlewick::kernels::simd_report();
    (r.cpu_features, r.paths, candlewick::kernels::num_threads())
}

#[pyclass(name = "NativeModel", module = "candlewick._native", frozen)]
pub struct PyModel {
    model: Arc<Model>,
}

#[allow(clippy::too_many_arguments)]
fn params(
    max_new_tokens: i64,
    do_sample: bool,
    temperature: f32,
    top_k: i64,
    top_p: f32,
    min_p: f32,
    repetition_penalty: f32,
    seed: Option<u64>,
    stop: Vec<String>,
    ignore_eos: bool,
) -> PyResult<GenerationParams> {
    let p = GenerationParams {
        max_new_tokens: non_negative("max_new_tokens", max_new_tokens)?,
        sampling: SamplingParams {
            do_sample,
            temperature,
            top_k: non_negative("top_k", top_k)?,
            top_p,
            min_p,
            repetition_penalty,
        },
        seed,
        stop,
        ignore_eos,
    };
    p.validate().py()?;
    Ok(p)
}

#[pymethods]
impl PyModel {
    #[getter]
    fn tokenizer(&self) -> PyTokenizer {
        PyTokenizer { tok: self.model.tokenizer.clone() }
    }

    fn config_json(&self) -> PyResult<String> {
        serde_json::to_string(self.model.config()).map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
    }

    /// Facts about the checkpoint as a JSON object.
    fn info_json(&self) -> String {
        let i = &self.model.info;
        serde_json::json!({
            "path": i.path.display().to_string(),
            "format": i.format,
            "architecture": i.architecture,
            "name": i.name,
            "tensor_types": i.tensor_types,
            "num_parameters": i.num_parameters,
            "weight_bytes": i.weight_bytes,
            "file_size": i.file_size,
            "context_length": self.model.context_length(),
        })
        .to_string()
    }

    #[getter]
    fn context_length(&self) -> usize {
        self.model.context_length()
    }

    /// Logits [seq, vocab] (float32) for one sequence of ids.
    fn logits<'py>(&self, py: Python<'py>, ids: Vec<u32>) -> PyResult<Bound<'py, PyAny>> {
        let m = self.model.clone();
        let seq = ids.len();
        let vocab = m.config().vocab_size;
        let v = py.detach(move || m.logits(&ids)).py()?;
        Ok(PyArray1::from_vec(py, v).reshape([seq, vocab])?.into_any())
    }

    #[pyo3(signature = (ids, max_new_tokens, do_sample, temperature, top_k, top_p, min_p, repetition_penalty, seed, stop, ignore_eos))]
    #[allow(clippy::too_many_arguments)]
    fn generate(
        &self,
        py: Python<'_>,
        ids: Vec<u32>,
        max_new_tokens: i64,
        do_sample: bool,
        temperature: f32,
        top_k: i64,
        top_p: f32,
        min_p: f32,
        repetition_penalty: f32,
        seed: Option<u64>,
        stop: Vec<String>,
        ignore_eos: bool,
    ) -> PyResult<(String, Vec<u32>, &'static str, usize)> {
        let p = params(max_new_tokens, do_sample, temperature, top_k, top_p, min_p, repetition_penalty, seed, stop, ignore_eos)?;
        let m = self.model.clone();
        let out = py
            .detach(move || -> candlewick::Result<_> {
                let mut g = Generator::new(m, ids, p)?;
                g.run(|_| Ok(()))
            })
            .py()?;
        Ok((out.text, out.token_ids, out.finish_reason.as_str(), out.prompt_tokens))
    }

    #[pyo3(signature = (ids, max_new_tokens, do_sample, temperature, top_k, top_p, min_p, repetition_penalty, seed, stop, ignore_eos))]
    #[allow(clippy::too_many_arguments)]
    fn stream(
        &self,
        py: Python<'_>,
        ids: Vec<u32>,
        max_new_tokens: i64,
        do_sample: bool,
        temperature: f32,
        top_k: i64,
        top_p: f32,
        min_p: f32,
        repetition_penalty: f32,
        seed: Option<u64>,
        stop: Vec<String>,
        ignore_eos: bool,
    ) -> PyResult<PyStream> {
        let p = params(max_new_tokens, do_sample, temperature, top_k, top_p, min_p, repetition_penalty, seed, stop, ignore_eos)?;
        let m = self.model.clone();
        let g = py.detach(move || Generator::new(m, ids, p)).py()?;
        Ok(PyStream { gen: Some(g), done: false, closed: None })
    }
}

/// Iterator of text pieces; each `__next__` runs decode steps (GIL released) until a piece of
/// text is final. Dropping it (or `close()`) frees the request and its KV cache.
#[pyclass(name = "Stream", module = "candlewick._native")]
pub struct PyStream {
    gen: Option<Generator>,
    done: bool,
    /// What stays readable after close() dropped the generator and its KV cache.
    closed: Option<(Vec<u32>, Option<&'static str>, usize)>,
}

#[pymethods]
impl PyStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<String> {
        if self.done {
            return Err(PyStopIteration::new_err(()));
        }
        let Some(g) = self.gen.as_mut() else {
            return Err(PyStopIteration::new_err(()));
        };
        let (piece, finished) = py
            .detach(|| -> candlewick::Result<(String, bool)> {
                loop {
                    let more = g.step()?.is_some();
                    let t = g.take_text()?;
                    if !t.is_empty() || !more {
                        return Ok((t, !more));
                    }
                }
            })
            .py()?;
        if finished {
            self.done = true;
            if piece.is_empty() {
                return Err(PyStopIteration::new_err(()));
            }
        }
        Ok(piece)
    }

    /// Generated ids so far.
    #[getter]
    fn token_ids(&self) -> Vec<u32> {
        match (&self.gen, &self.closed) {
            (Some(g), _) => g.generated_ids().to_vec(),
            (None, Some(c)) => c.0.clone(),
            _ => Vec::new(),
        }
    }

    /// "length" | "eos" | "stop", or None while running (or when closed early).
    #[getter]
    fn finish_reason(&self) -> Option<&'static str> {
        match (&self.gen, &self.closed) {
            (Some(g), _) => g.finish_reason().map(|f| f.as_str()),
            (None, Some(c)) => c.1,
            _ => None,
        }
    }

    #[getter]
    fn prompt_tokens(&self) -> usize {
        match (&self.gen, &self.closed) {
            (Some(g), _) => g.prompt_len(),
            (None, Some(c)) => c.2,
            _ => 0,
        }
    }

    /// Stop generating and free the request's memory (its KV cache) now.
    fn close(&mut self) {
        self.done = true;
        if let Some(g) = self.gen.take() {
            self.closed = Some((g.generated_ids().to_vec(), g.finish_reason().map(|f| f.as_str()), g.prompt_len()));
        }
    }
}
