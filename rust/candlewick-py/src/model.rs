use std::sync::Arc;

use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use candlewick::generation::beam::beam_search;
use candlewick::generation::{run_batch, GenerationParams, Generator};
use candlewick::model::{Model, Pooling};
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
    Ok(PyModel {
        model: Arc::new(model),
    })
}

#[pyfunction]
pub fn set_num_threads(threads: i64) -> PyResult<()> {
    if threads <= 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "threads must be a positive integer, got {threads}"
        )));
    }
    candlewick::kernels::set_num_threads(threads as usize).py()
}

/// (cpu features, [(weight type, kernel path)], threads)
#[pyfunction]
pub fn simd_report() -> (Vec<&'static str>, Vec<(&'static str, String)>, usize) {
    let r = candlewick::kernels::simd_report();
    (r.cpu_features, r.paths, candlewick::kernels::num_threads())
}

/// Validate a generation-parameter dict (the ranges live in the engine).
#[pyfunction]
pub fn check_generation_params(params: &Bound<'_, PyDict>) -> PyResult<()> {
    gen_params(params).map(|_| ())
}

/// A model with random weights from a ModelConfig (JSON), optionally with a tokenizer.
#[pyfunction]
#[pyo3(signature = (config_json, seed, tokenizer=None))]
pub fn model_from_config(
    py: Python<'_>,
    config_json: &str,
    seed: u64,
    tokenizer: Option<PyRef<'_, PyTokenizer>>,
) -> PyResult<PyModel> {
    let cfg: candlewick::ModelConfig = serde_json::from_str(config_json)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("ModelConfig: {e}")))?;
    let tok = tokenizer.map(|t| t.tok.clone());
    let model = py.detach(move || Model::from_config(cfg, seed, tok)).py()?;
    Ok(PyModel {
        model: Arc::new(model),
    })
}

#[pyclass(name = "NativeModel", module = "candlewick._native", frozen)]
pub struct PyModel {
    model: Arc<Model>,
}

type Logprobs = Vec<(u32, f32, Vec<(u32, f32)>)>;

fn get<'py, T: pyo3::FromPyObject<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
    let v = d.get_item(key)?.ok_or_else(|| {
        pyo3::exceptions::PyKeyError::new_err(format!("generation parameter {key} missing"))
    })?;
    v.extract()
        .map_err(|e| pyo3::exceptions::PyTypeError::new_err(format!("{key}: {e}")))
}

/// Generation parameters from the dict the Python layer builds (every key present).
fn gen_params(d: &Bound<'_, PyDict>) -> PyResult<GenerationParams> {
    let logit_bias: std::collections::BTreeMap<u32, f32> = get(d, "logit_bias")?;
    let p = GenerationParams {
        max_new_tokens: non_negative("max_new_tokens", get(d, "max_new_tokens")?)?,
        min_new_tokens: non_negative("min_new_tokens", get(d, "min_new_tokens")?)?,
        sampling: SamplingParams {
            do_sample: get(d, "do_sample")?,
            temperature: get(d, "temperature")?,
            top_k: non_negative("top_k", get(d, "top_k")?)?,
            top_p: get(d, "top_p")?,
            min_p: get(d, "min_p")?,
            typical_p: get(d, "typical_p")?,
            repetition_penalty: get(d, "repetition_penalty")?,
            presence_penalty: get(d, "presence_penalty")?,
            frequency_penalty: get(d, "frequency_penalty")?,
            no_repeat_ngram_size: non_negative(
                "no_repeat_ngram_size",
                get(d, "no_repeat_ngram_size")?,
            )?,
            logit_bias: logit_bias.into_iter().collect(),
        },
        seed: get(d, "seed")?,
        stop: get(d, "stop")?,
        stop_token_ids: get(d, "stop_token_ids")?,
        ignore_eos: get(d, "ignore_eos")?,
        logprobs: get::<Option<i64>>(d, "logprobs")?
            .map(|n| non_negative("logprobs", n))
            .transpose()?,
        prompt_logprobs: get(d, "prompt_logprobs")?,
    };
    p.validate().py()?;
    Ok(p)
}

type GenOut = (
    String,
    Vec<u32>,
    &'static str,
    usize,
    Option<Logprobs>,
    Option<Vec<f32>>,
);

fn gen_out(out: candlewick::generation::Output) -> GenOut {
    let lp = logprobs_out(&out.logprobs);
    (
        out.text,
        out.token_ids,
        out.finish_reason.as_str(),
        out.prompt_tokens,
        lp,
        out.prompt_logprobs,
    )
}

fn logprobs_out(l: &Option<Vec<candlewick::generation::TokenLogprob>>) -> Option<Logprobs> {
    l.as_ref()
        .map(|v| v.iter().map(|t| (t.id, t.logprob, t.top.clone())).collect())
}

#[pymethods]
impl PyModel {
    #[getter]
    fn tokenizer(&self) -> PyTokenizer {
        PyTokenizer {
            tok: self.model.tokenizer.clone(),
        }
    }

    fn config_json(&self) -> PyResult<String> {
        serde_json::to_string(self.model.config())
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
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
    #[pyo3(signature = (ids, last_only=false))]
    fn logits<'py>(
        &self,
        py: Python<'py>,
        ids: Vec<u32>,
        last_only: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let m = self.model.clone();
        let seq = if last_only { 1 } else { ids.len() };
        let vocab = m.config().vocab_size;
        let v = py.detach(move || m.logits(&ids, last_only)).py()?;
        Ok(PyArray1::from_vec(py, v).reshape([seq, vocab])?.into_any())
    }

    /// Generate for a batch of requests [(ids, params)] together (one forward pass per step for
    /// all unfinished rows) -> [(text, token_ids, finish_reason, prompt_tokens, logprobs, prompt_logprobs)].
    fn generate(
        &self,
        py: Python<'_>,
        requests: Vec<(Vec<u32>, Bound<'_, PyDict>)>,
    ) -> PyResult<Vec<GenOut>> {
        let reqs = requests
            .iter()
            .map(|(ids, d)| Ok((ids.clone(), gen_params(d)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let m = self.model.clone();
        let outs = py
            .detach(move || -> candlewick::Result<_> {
                let mut gens = reqs
                    .into_iter()
                    .map(|(ids, p)| Generator::new(m.clone(), ids, p))
                    .collect::<candlewick::Result<Vec<_>>>()?;
                run_batch(&mut gens)
            })
            .py()?;
        Ok(outs.into_iter().map(gen_out).collect())
    }

    /// Beam search -> [(output tuple as generate's, normalised score)], best first.
    fn beam_search(
        &self,
        py: Python<'_>,
        ids: Vec<u32>,
        params: &Bound<'_, PyDict>,
        num_beams: usize,
        length_penalty: f64,
        num_return: usize,
    ) -> PyResult<Vec<(GenOut, f64)>> {
        let p = gen_params(params)?;
        let m = self.model.clone();
        let outs = py
            .detach(move || beam_search(&m, &ids, &p, num_beams, length_penalty, num_return))
            .py()?;
        Ok(outs.into_iter().map(|(o, s)| (gen_out(o), s)).collect())
    }

    fn stream(
        &self,
        py: Python<'_>,
        ids: Vec<u32>,
        params: &Bound<'_, PyDict>,
    ) -> PyResult<PyStream> {
        let p = gen_params(params)?;
        let m = self.model.clone();
        let g = py.detach(move || Generator::new(m, ids, p)).py()?;
        Ok(PyStream {
            gen: Some(g),
            done: false,
            closed: None,
        })
    }

    /// One sequence with every layer's hidden states and attention probabilities:
    /// (logits [n, vocab] or None, [hidden [n, h]], [attention [heads, n, n]]).
    #[allow(clippy::type_complexity)]
    fn inspect<'py>(
        &self,
        py: Python<'py>,
        ids: Vec<u32>,
    ) -> PyResult<(
        Option<Bound<'py, PyAny>>,
        Vec<Bound<'py, PyAny>>,
        Vec<Bound<'py, PyAny>>,
    )> {
        if self.model.seq2seq.is_some() {
            return Err(candlewick::Error::Unsupported(
                "hidden states and attentions of encoder-decoders are not built yet".into(),
            ))
            .py();
        }
        let m = self.model.clone();
        let c = m.config().clone();
        let n = ids.len();
        let r = py.detach(move || m.transformer.inspect(&ids)).py()?;
        let logits = r
            .logits
            .map(|l| {
                PyArray1::from_vec(py, l)
                    .reshape([n, c.vocab_size])
                    .map(|a| a.into_any())
            })
            .transpose()?;
        let hidden = r
            .hidden_states
            .into_iter()
            .map(|h| {
                Ok(PyArray1::from_vec(py, h)
                    .reshape([n, c.hidden_size])?
                    .into_any())
            })
            .collect::<PyResult<Vec<_>>>()?;
        let attn = r
            .attentions
            .into_iter()
            .map(|a| {
                Ok(PyArray1::from_vec(py, a)
                    .reshape([c.num_heads, n, n])?
                    .into_any())
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok((logits, hidden, attn))
    }

    /// Encoder-decoder logits [decoder tokens, vocab].
    fn seq2seq_logits<'py>(
        &self,
        py: Python<'py>,
        ids: Vec<u32>,
        decoder_ids: Vec<u32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let m = self.model.clone();
        let (n, vocab) = (decoder_ids.len(), m.config().vocab_size);
        let v = py
            .detach(move || m.seq2seq_logits(&ids, &decoder_ids))
            .py()?;
        Ok(PyArray1::from_vec(py, v).reshape([n, vocab])?.into_any())
    }

    /// Write config.json + model.safetensors + tokenizer.json (models built from a config).
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        let m = self.model.clone();
        py.detach(move || m.save(&path)).py()
    }

    /// Hidden states of each sequence (encoders): a list of float32 arrays [len, hidden].
    fn encode<'py>(
        &self,
        py: Python<'py>,
        seqs: Vec<Vec<u32>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let m = self.model.clone();
        let h = m.config().hidden_size;
        let out = py.detach(move || m.encode(&seqs)).py()?;
        out.into_iter()
            .map(|v| {
                let n = v.len() / h;
                Ok(PyArray1::from_vec(py, v).reshape([n, h])?.into_any())
            })
            .collect()
    }

    /// One vector per sequence: float32 [n, hidden].
    fn embed<'py>(
        &self,
        py: Python<'py>,
        seqs: Vec<Vec<u32>>,
        pooling: &str,
        normalize: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let pooling = Pooling::parse(pooling).py()?;
        let m = self.model.clone();
        let h = m.config().hidden_size;
        let n = seqs.len();
        let out = py.detach(move || m.embed(&seqs, pooling, normalize)).py()?;
        Ok(PyArray1::from_vec(py, out.concat())
            .reshape([n, h])?
            .into_any())
    }

    /// Masked-LM logits [len, vocab] for one sequence.
    fn mlm_logits<'py>(&self, py: Python<'py>, ids: Vec<u32>) -> PyResult<Bound<'py, PyAny>> {
        let m = self.model.clone();
        let (n, vocab) = (ids.len(), m.config().vocab_size);
        let v = py.detach(move || m.mlm_logits(&ids)).py()?;
        Ok(PyArray1::from_vec(py, v).reshape([n, vocab])?.into_any())
    }

    /// sentence-transformers settings: (max_seq_length, pooling) or None.
    #[getter]
    fn sentence_config(&self) -> Option<(Option<usize>, Option<&'static str>)> {
        self.model.sentence.map(|(max, p)| {
            (
                max,
                p.map(|p| match p {
                    Pooling::Mean => "mean",
                    Pooling::Cls => "cls",
                    Pooling::Max => "max",
                }),
            )
        })
    }

    #[getter]
    fn has_mlm_head(&self) -> bool {
        self.model.transformer.mlm_head.is_some()
    }

    /// Log-likelihood of each continuation after the context: [(logprob, is_greedy, token_logprobs)].
    fn score(
        &self,
        py: Python<'_>,
        context: Vec<u32>,
        continuations: Vec<Vec<u32>>,
    ) -> PyResult<Vec<(f64, bool, Vec<f32>)>> {
        let m = self.model.clone();
        py.detach(move || {
            continuations
                .iter()
                .map(|c| {
                    m.score(&context, c)
                        .map(|s| (s.logprob, s.is_greedy, s.token_logprobs))
                })
                .collect::<candlewick::Result<Vec<_>>>()
        })
        .py()
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

    /// Per-token log-probabilities so far, when asked for with logprobs=N.
    #[getter]
    fn logprobs(&self) -> Option<Logprobs> {
        self.gen
            .as_ref()
            .and_then(|g| logprobs_out(&g.output().logprobs))
    }

    /// Stop generating and free the request's memory (its KV cache) now.
    /// Bytes of the KV cache this request holds (0 once closed).
    #[getter]
    fn kv_cache_bytes(&self) -> usize {
        self.gen.as_ref().map(|g| g.kv_cache_bytes()).unwrap_or(0)
    }

    fn close(&mut self) {
        self.done = true;
        if let Some(g) = self.gen.take() {
            self.closed = Some((
                g.generated_ids().to_vec(),
                g.finish_reason().map(|f| f.as_str()),
                g.prompt_len(),
            ));
        }
    }
}
