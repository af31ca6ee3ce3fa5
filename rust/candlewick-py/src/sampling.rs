use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;

use candlewick::sampling::Sampler;
use candlewick::GenerationConfig;

use crate::errors::{non_negative, IntoPyResult};

/// Draws per call at most (the ids are returned in one array).
const MAX_SAMPLES: usize = 1 << 24;

/// The controls `sample` and `sampling_stages` take, as the engine's config.
fn controls(
    temperature: f64,
    top_k: i64,
    top_p: f64,
    min_p: f64,
    typical_p: f64,
) -> PyResult<GenerationConfig> {
    Ok(GenerationConfig {
        do_sample: true,
        temperature,
        top_k: non_negative("top_k", top_k)?,
        top_p,
        min_p,
        typical_p,
        ..Default::default()
    })
}

/// Draw `num_samples` token ids from one row of logits with the same sampler `generate` uses.
#[pyfunction]
#[pyo3(signature = (logits, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0, seed=None, num_samples=1))]
#[allow(clippy::too_many_arguments)]
pub fn sample<'py>(
    py: Python<'py>,
    logits: PyReadonlyArray1<'py, f32>,
    temperature: f64,
    top_k: i64,
    top_p: f64,
    min_p: f64,
    typical_p: f64,
    seed: Option<u64>,
    num_samples: i64,
) -> PyResult<Bound<'py, PyArray1<u32>>> {
    let params = controls(temperature, top_k, top_p, min_p, typical_p)?;
    let n = non_negative("num_samples", num_samples)?;
    if n > MAX_SAMPLES {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "num_samples must be <= {MAX_SAMPLES}, got {n}"
        )));
    }
    let logits = logits.as_slice()?.to_vec();
    let out = crate::errors::detach(py, move || -> candlewick::Result<Vec<u32>> {
        let mut s = Sampler::new(&params, seed)?;
        let mut buf = logits.clone();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            if i % 4096 == 4095 && crate::errors::interrupted() {
                return Err(candlewick::Error::Interrupted);
            }
            buf.copy_from_slice(&logits);
            out.push(s.sample(&mut buf, Default::default())?);
        }
        Ok(out)
    })
    .py()?;
    Ok(PyArray1::from_vec(py, out))
}

/// The next-token distribution after each step of the sampler `generate` uses (the plain
/// softmax, then temperature, top-k, top-p and min-p as far as each is set; a cut token has
/// probability 0), for pictures of what each control does: `Sampler::stages`.
#[pyfunction]
#[pyo3(signature = (logits, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0))]
pub fn sampling_stages<'py>(
    py: Python<'py>,
    logits: PyReadonlyArray1<'py, f32>,
    temperature: f64,
    top_k: i64,
    top_p: f64,
    min_p: f64,
) -> PyResult<Vec<(String, Bound<'py, PyArray1<f32>>)>> {
    let params = controls(temperature, top_k, top_p, min_p, 1.0)?;
    let logits = logits.as_slice()?.to_vec();
    let out = crate::errors::detach(py, move || Sampler::stages(&logits, &params)).py()?;
    Ok(out
        .into_iter()
        .map(|(n, v)| (n, PyArray1::from_vec(py, v)))
        .collect())
}
