//! Objectives, losses and the training loop: numpy in and out, the GIL released around the
//! work, Ctrl-C and the progress callback between steps.

use std::sync::Arc;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use candlewick::train::objectives::{self, Ids, Mlm, SpanCorruption};
use candlewick::train::optim::Schedule;
use candlewick::train::{LossBatch, Objective, TrainConfig};

use crate::errors::IntoPyResult;
use crate::model::PyModel;

fn ids(a: &PyReadonlyArray2<'_, i64>) -> PyResult<Ids> {
    let (rows, cols) = (a.shape()[0], a.shape()[1]);
    let data = a.as_array().iter().copied().collect();
    Ids::new(data, rows, cols).py()
}

fn out<'py>(py: Python<'py>, i: Ids) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_vec(py, i.data)
        .reshape([i.rows, i.cols])?
        .into_any())
}

/// (input_ids, labels)
#[pyfunction]
#[pyo3(signature = (input_ids, mask_token_id, vocab_size, special_token_ids, probability, mask_replace_prob, random_replace_prob, word_ids, seed))]
#[allow(clippy::too_many_arguments)]
pub fn objective_mlm<'py>(
    py: Python<'py>,
    input_ids: PyReadonlyArray2<'py, i64>,
    mask_token_id: i64,
    vocab_size: usize,
    special_token_ids: Vec<i64>,
    probability: f64,
    mask_replace_prob: f64,
    random_replace_prob: f64,
    word_ids: Option<PyReadonlyArray2<'py, i64>>,
    seed: Option<u64>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let x = ids(&input_ids)?;
    let w = word_ids.as_ref().map(ids).transpose()?;
    let (i, l) = crate::errors::detach(py, || {
        Mlm {
            mask_token_id,
            vocab_size,
            special_token_ids: &special_token_ids,
            probability,
            mask_replace_prob,
            random_replace_prob,
            word_ids: w.as_ref(),
        }
        .apply(&x, &mut objectives::rng(seed))
    })
    .py()?;
    Ok((out(py, i)?, out(py, l)?))
}

/// (input_ids, labels, attention_mask)
#[pyfunction]
#[pyo3(signature = (input_ids, pad_token_id))]
pub fn objective_clm<'py>(
    py: Python<'py>,
    input_ids: PyReadonlyArray2<'py, i64>,
    pad_token_id: Option<i64>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let (i, l, m) = objectives::clm(&ids(&input_ids)?, pad_token_id);
    Ok((out(py, i)?, out(py, l)?, out(py, m)?))
}

/// (input_ids, labels)
#[pyfunction]
#[pyo3(signature = (input_ids, vocab_size, eos_token_id, noise_density, mean_noise_span_length, seed))]
pub fn objective_span_corruption<'py>(
    py: Python<'py>,
    input_ids: PyReadonlyArray2<'py, i64>,
    vocab_size: usize,
    eos_token_id: i64,
    noise_density: f64,
    mean_noise_span_length: f64,
    seed: Option<u64>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let x = ids(&input_ids)?;
    let sc = SpanCorruption {
        vocab_size,
        eos_token_id,
        noise_density,
        mean_noise_span_length,
    };
    let (i, l) = crate::errors::detach(py, || sc.apply(&x, &mut objectives::rng(seed))).py()?;
    Ok((out(py, i)?, out(py, l)?))
}

#[pyfunction]
pub fn t5_input_length(
    target_inputs_length: usize,
    noise_density: f64,
    mean_noise_span_length: f64,
) -> PyResult<(usize, usize)> {
    objectives::t5_input_length(target_inputs_length, noise_density, mean_noise_span_length).py()
}

#[pyfunction]
pub fn objective_pack<'py>(
    py: Python<'py>,
    token_lists: Vec<Vec<i64>>,
    block_size: usize,
) -> PyResult<Bound<'py, PyAny>> {
    out(py, objectives::pack(&token_lists, block_size).py()?)
}

fn loss_batch(
    input_ids: &PyReadonlyArray2<'_, i64>,
    labels: &PyReadonlyArray2<'_, i64>,
    attention_mask: Option<&PyReadonlyArray2<'_, i64>>,
    decoder_input_ids: Option<&PyReadonlyArray2<'_, i64>>,
) -> PyResult<LossBatch> {
    let x = ids(input_ids)?;
    let l = ids(labels)?;
    let u32s = |i: &Ids, name: &str| -> PyResult<Vec<u32>> {
        i.data
            .iter()
            .map(|&v| {
                u32::try_from(v)
                    .map_err(|_| PyValueError::new_err(format!("{name} holds {v}, not a token id")))
            })
            .collect()
    };
    if l.rows != x.rows {
        return Err(PyValueError::new_err(format!(
            "labels has {} rows but input_ids {}",
            l.rows, x.rows
        )));
    }
    let mask = attention_mask
        .map(|m| -> PyResult<Vec<f32>> {
            let m = ids(m)?;
            if (m.rows, m.cols) != (x.rows, x.cols) {
                return Err(PyValueError::new_err(format!(
                    "attention_mask has shape ({}, {}) but input_ids ({}, {})",
                    m.rows, m.cols, x.rows, x.cols
                )));
            }
            Ok(m.data.iter().map(|&v| v as f32).collect())
        })
        .transpose()?;
    let dec = decoder_input_ids
        .map(|d| u32s(&ids(d)?, "decoder_input_ids"))
        .transpose()?;
    Ok(LossBatch {
        input_ids: u32s(&x, "input_ids")?,
        rows: x.rows,
        cols: x.cols,
        attention_mask: mask,
        labels: l.data,
        label_cols: l.cols,
        decoder_input_ids: dec,
    })
}

/// transformers' loss of a batch (mean over counted labels).
#[pyfunction]
#[pyo3(signature = (model, input_ids, labels, attention_mask=None, decoder_input_ids=None))]
pub fn model_loss(
    model: PyRef<'_, PyModel>,
    py: Python<'_>,
    input_ids: PyReadonlyArray2<'_, i64>,
    labels: PyReadonlyArray2<'_, i64>,
    attention_mask: Option<PyReadonlyArray2<'_, i64>>,
    decoder_input_ids: Option<PyReadonlyArray2<'_, i64>>,
) -> PyResult<f64> {
    let b = loss_batch(
        &input_ids,
        &labels,
        attention_mask.as_ref(),
        decoder_input_ids.as_ref(),
    )?;
    let m = model.model.clone();
    crate::errors::detach(py, move || m.loss(&b)).py()
}

/// (loss, {parameter name: gradient array})
#[pyfunction]
#[pyo3(signature = (model, input_ids, labels, attention_mask=None, decoder_input_ids=None))]
pub fn model_gradients<'py>(
    model: PyRef<'py, PyModel>,
    py: Python<'py>,
    input_ids: PyReadonlyArray2<'py, i64>,
    labels: PyReadonlyArray2<'py, i64>,
    attention_mask: Option<PyReadonlyArray2<'py, i64>>,
    decoder_input_ids: Option<PyReadonlyArray2<'py, i64>>,
) -> PyResult<(f64, Bound<'py, PyDict>)> {
    let b = loss_batch(
        &input_ids,
        &labels,
        attention_mask.as_ref(),
        decoder_input_ids.as_ref(),
    )?;
    let m = model.model.clone();
    let (loss, grads, shapes) = crate::errors::detach(py, move || m.loss_and_grads(&b)).py()?;
    let d = PyDict::new(py);
    for (name, g) in grads {
        let arr = PyArray1::from_vec(py, g);
        d.set_item(&name, arr.reshape(shapes[&name].clone())?)?;
    }
    Ok((loss, d))
}

/// Tokenize texts for training: one id list per text (special tokens as the tokenizer adds them).
#[pyfunction]
pub fn tokenize_corpus(
    model: PyRef<'_, PyModel>,
    py: Python<'_>,
    texts: Vec<String>,
) -> PyResult<Vec<Vec<i64>>> {
    let m = model.model.clone();
    crate::errors::detach(py, move || candlewick::train::trainer::tokenize(&m, &texts)).py()
}

/// A training data source: token lists (a corpus) or prepared arrays (batches already made).
fn corpus(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<candlewick::train::trainer::Data> {
    use candlewick::train::trainer::Data;
    if let Ok(d) = obj.downcast::<PyDict>() {
        let get = |k: &str| -> PyResult<Option<Ids>> {
            match d.get_item(k)? {
                Some(v) if !v.is_none() => {
                    Ok(Some(ids(&v.extract::<PyReadonlyArray2<'_, i64>>()?)?))
                }
                _ => Ok(None),
            }
        };
        let input_ids = get("input_ids")?.ok_or_else(|| {
            PyValueError::new_err(format!("{what} as a dict needs 'input_ids' and 'labels'"))
        })?;
        let labels = get("labels")?.ok_or_else(|| {
            PyValueError::new_err(format!("{what} as a dict needs 'input_ids' and 'labels'"))
        })?;
        return Ok(Data::Prepared {
            input_ids,
            labels,
            attention_mask: get("attention_mask")?,
            decoder_input_ids: get("decoder_input_ids")?,
        });
    }
    Ok(Data::Tokens(obj.extract::<Vec<Vec<i64>>>().map_err(
        |_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "{what} must be texts, a text file's path, token id lists or a dict of arrays"
            ))
        },
    )?))
}

/// (trained model, result dict)
#[pyfunction]
#[pyo3(signature = (model, data, eval_data, objective, steps, batch_size, seq_len, lr, warmup_steps, schedule, weight_decay, grad_clip, grad_accum_steps, seed, eval_every, checkpoint_dir, checkpoint_every, resume, mask_token_id, mlm_probability, noise_density, mean_noise_span_length, callback))]
#[allow(clippy::too_many_arguments)]
pub fn train<'py>(
    py: Python<'py>,
    model: PyRef<'py, PyModel>,
    data: Bound<'py, PyAny>,
    eval_data: Option<Bound<'py, PyAny>>,
    objective: &str,
    steps: u64,
    batch_size: usize,
    seq_len: usize,
    lr: f64,
    warmup_steps: u64,
    schedule: &str,
    weight_decay: f64,
    grad_clip: Option<f64>,
    grad_accum_steps: usize,
    seed: Option<u64>,
    eval_every: Option<u64>,
    checkpoint_dir: Option<std::path::PathBuf>,
    checkpoint_every: Option<u64>,
    resume: bool,
    mask_token_id: Option<u32>,
    mlm_probability: f64,
    noise_density: f64,
    mean_noise_span_length: f64,
    callback: Option<Bound<'py, PyAny>>,
) -> PyResult<(PyModel, Bound<'py, PyDict>)> {
    let mut cfg = TrainConfig::new(
        Objective::parse(objective).py()?,
        steps,
        batch_size,
        seq_len,
        lr,
    );
    cfg.warmup_steps = warmup_steps;
    cfg.schedule = Schedule::parse(schedule).py()?;
    cfg.weight_decay = weight_decay;
    cfg.grad_clip = grad_clip;
    cfg.grad_accum_steps = grad_accum_steps;
    cfg.seed = seed;
    cfg.eval_every = eval_every;
    cfg.checkpoint_dir = checkpoint_dir;
    cfg.checkpoint_every = checkpoint_every;
    cfg.resume = resume;
    cfg.mask_token_id = mask_token_id;
    cfg.mlm_probability = mlm_probability;
    cfg.noise_density = noise_density;
    cfg.mean_noise_span_length = mean_noise_span_length;
    let data = corpus(&data, "data")?;
    let eval = eval_data
        .as_ref()
        .map(|e| corpus(e, "eval_data"))
        .transpose()?;
    let m = model.model.clone();
    let callback = callback.map(|c| c.unbind());
    let (trained, result) = crate::errors::detach(py, move || {
        let mut on_step = |s: &candlewick::train::StepRecord,
                           e: Option<&candlewick::train::EvalRecord>|
         -> bool {
            Python::attach(|py| {
                if let Some(cb) = &callback {
                    let ev = e.map(|e| (e.step, e.loss, e.perplexity));
                    if let Err(err) =
                        cb.call1(py, (s.step, s.loss, s.lr, s.grad_norm, s.tokens_per_s, ev))
                    {
                        if err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
                            return true;
                        }
                        err.print(py);
                    }
                }
                py.check_signals().is_err()
            })
        };
        candlewick::train::train(&m, &data, eval.as_ref(), &cfg, &mut on_step)
    })
    .py()?;
    let d = PyDict::new(py);
    let hist: Vec<(u64, f64, f64, f64, usize, f64)> = result
        .history
        .iter()
        .map(|r| (r.step, r.loss, r.lr, r.grad_norm, r.tokens, r.tokens_per_s))
        .collect();
    d.set_item("history", hist)?;
    let evals: Vec<(u64, f64, f64)> = result
        .evals
        .iter()
        .map(|e| (e.step, e.loss, e.perplexity))
        .collect();
    d.set_item("evals", evals)?;
    d.set_item("interrupted", result.interrupted)?;
    d.set_item("resumed_from", result.resumed_from)?;
    d.set_item(
        "checkpoint",
        result.checkpoint.map(|p| p.display().to_string()),
    )?;
    d.set_item("seconds", result.seconds)?;
    Ok((
        PyModel {
            model: Arc::new(trained),
        },
        d,
    ))
}

/// {name: array}: the model's weights by checkpoint name, as float32 copies.
#[pyfunction]
pub fn model_state_dict<'py>(
    py: Python<'py>,
    model: PyRef<'py, PyModel>,
) -> PyResult<Bound<'py, PyDict>> {
    let m = model.model.clone();
    let params = crate::errors::detach(
        py,
        move || -> candlewick::Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
            candlewick::train::trainer::parameters(&m)?
                .into_iter()
                .map(|(k, v)| {
                    Ok((
                        k,
                        v.dims().to_vec(),
                        v.as_tensor().flatten_all()?.to_vec1::<f32>()?,
                    ))
                })
                .collect()
        },
    )
    .py()?;
    let d = PyDict::new(py);
    for (name, shape, data) in params {
        d.set_item(name, PyArray1::from_vec(py, data).reshape(shape)?)?;
    }
    Ok(d)
}
