//! `NativeModel` (what `cw.Model` wraps) and `Stream`: conversions, GIL release and signal checks
//! around the engine's model verbs.

use std::sync::Arc;

use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::{PyStopIteration, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use candlewick::generation::{self, Generator, Output, Prompt};
use candlewick::model::{Model, Pooling};

use crate::config::{PyGenerationConfig, PyModelConfig};
use crate::errors::{interrupted, IntoPyResult};
use crate::tokenizer::PyTokenizer;

#[pyfunction]
#[pyo3(signature = (path, threads=None, dtype=None))]
pub fn load(
    py: Python<'_>,
    path: std::path::PathBuf,
    threads: Option<i64>,
    dtype: Option<String>,
) -> PyResult<PyModel> {
    if let Some(t) = threads {
        set_num_threads(t)?;
    }
    let dequantize = match dtype.as_deref() {
        None | Some("auto") => false,
        Some("float32") => true,
        Some(other) => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "dtype must be None ('auto': weights as stored) or 'float32' (GGUF weights dequantized), got {other:?}"
            )))
        }
    };
    let model = crate::errors::detach(py, move || {
        if dequantize {
            candlewick::model::load_dequantized(&path)
        } else {
            candlewick::load(&path)
        }
    })
    .py()?;
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

/// Start timing forward passes by op and layer (clears an earlier table).
#[pyfunction]
pub fn profile_start() {
    candlewick::profile::start();
}

/// Stop timing: [(op, layer or None, seconds, calls)] in the order the ops first ran.
#[pyfunction]
pub fn profile_take() -> Vec<(&'static str, Option<usize>, f64, u64)> {
    candlewick::profile::take()
}

/// A model with random weights from a ModelConfig, optionally with a tokenizer.
#[pyfunction]
#[pyo3(signature = (config, seed, tokenizer=None))]
pub fn model_from_config(
    py: Python<'_>,
    config: PyRef<'_, PyModelConfig>,
    seed: u64,
    tokenizer: Option<PyRef<'_, PyTokenizer>>,
) -> PyResult<PyModel> {
    let cfg = config.cfg.clone();
    let tok = tokenizer.map(|t| t.tok.clone());
    let model = crate::errors::detach(py, move || Model::from_config(cfg, seed, tok)).py()?;
    Ok(PyModel {
        model: Arc::new(model),
    })
}

#[pyclass(name = "NativeModel", module = "candlewick._native", frozen)]
pub struct PyModel {
    pub model: Arc<Model>,
}

type Logprobs = Vec<(u32, f32, Vec<(u32, f32)>)>;

/// (last_hidden_state, attention_mask, input_ids)
type Encoded<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, Vec<Vec<u32>>);

/// (text, token_ids, finish_reason, prompt_tokens, logprobs, prompt_logprobs, score)
type GenOut = (
    String,
    Vec<u32>,
    &'static str,
    usize,
    Option<Logprobs>,
    Option<Vec<f32>>,
    Option<f64>,
);

fn gen_out(out: Output) -> GenOut {
    let lp = logprobs_out(&out.logprobs);
    (
        out.text,
        out.token_ids,
        out.finish_reason.as_str(),
        out.prompt_tokens,
        lp,
        out.prompt_logprobs,
        out.score,
    )
}

fn logprobs_out(l: &Option<Vec<generation::TokenLogprob>>) -> Option<Logprobs> {
    l.as_ref()
        .map(|v| v.iter().map(|t| (t.id, t.logprob, t.top.clone())).collect())
}

/// A prompt: a str, or a sequence of token ids.
fn prompt(p: &Bound<'_, PyAny>) -> PyResult<Prompt> {
    if let Ok(s) = p.downcast::<PyString>() {
        return Ok(Prompt::Text(s.extract::<String>()?));
    }
    p.extract::<Vec<u32>>().map(Prompt::Ids).map_err(|_| {
        PyTypeError::new_err("a prompt must be a str or a list of non-negative token ids")
    })
}

fn array2<'py>(
    py: Python<'py>,
    v: Vec<f32>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_vec(py, v).reshape([rows, cols])?.into_any())
}

#[pymethods]
impl PyModel {
    /// The tokenizer, or None for a folder without tokenizer.json.
    #[getter]
    fn tokenizer(&self) -> Option<PyTokenizer> {
        self.model.tokenizer.clone().map(|tok| PyTokenizer { tok })
    }

    /// The tokenizer, or the engine's error saying the model has none.
    fn require_tokenizer(&self) -> PyResult<PyTokenizer> {
        Ok(PyTokenizer {
            tok: self.model.shared_tokenizer().py()?,
        })
    }

    #[getter]
    fn config(&self) -> PyModelConfig {
        PyModelConfig {
            cfg: self.model.config.clone(),
        }
    }

    /// Generation defaults (a folder's generation_config.json).
    #[getter]
    fn generation_config(&self) -> PyGenerationConfig {
        PyGenerationConfig {
            cfg: self.model.generation.clone(),
        }
    }

    /// How new requests' self-attention caches store keys and values.
    #[getter]
    fn kv_cache_dtype(&self) -> &'static str {
        self.model.kv_cache_dtype().name()
    }

    #[setter]
    fn set_kv_cache_dtype(&self, dtype: &str) -> PyResult<()> {
        self.model
            .set_kv_cache_dtype(candlewick::nn::KvDtype::parse(dtype).py()?);
        Ok(())
    }

    /// Facts about the checkpoint.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let i = &self.model.info;
        let d = PyDict::new(py);
        d.set_item("path", i.path.display().to_string())?;
        d.set_item("format", i.format)?;
        d.set_item("architecture", &i.architecture)?;
        d.set_item("name", &i.name)?;
        d.set_item("tensor_types", i.tensor_types.clone())?;
        d.set_item("num_parameters", i.num_parameters)?;
        d.set_item("weight_bytes", i.weight_bytes)?;
        d.set_item("file_size", i.file_size)?;
        d.set_item("context_length", self.model.context_length())?;
        Ok(d)
    }

    #[getter]
    fn context_length(&self) -> usize {
        self.model.context_length()
    }

    /// Logits of a batch of rows: [batch, positions, vocab] (or [positions, vocab] when
    /// `single`), float32.
    #[pyo3(signature = (rows, masks=None, decoder=None, keep=0, single=false))]
    fn logits<'py>(
        &self,
        py: Python<'py>,
        rows: Vec<Vec<u32>>,
        masks: Option<Vec<Vec<i64>>>,
        decoder: Option<Vec<Vec<u32>>>,
        keep: usize,
        single: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let m = self.model.clone();
        let b = rows.len();
        let out = crate::errors::detach(py, move || {
            m.logits(&rows, masks.as_deref(), decoder.as_deref(), keep)
        })
        .py()?;
        let v = self.model.config.vocab_size;
        let n = out.first().map(|r| r.len() / v).unwrap_or(0);
        let flat = out.concat();
        let arr = PyArray1::from_vec(py, flat);
        Ok(if single {
            arr.reshape([n, v])?.into_any()
        } else {
            arr.reshape([b, n, v])?.into_any()
        })
    }

    /// Generate for each prompt (a str or token ids) -> one list of output tuples per prompt;
    /// `progress(done, total)` is told the tokens generated of the batch's budget.
    #[pyo3(signature = (prompts, config, progress=None))]
    fn generate(
        &self,
        py: Python<'_>,
        prompts: Vec<Bound<'_, PyAny>>,
        config: PyRef<'_, PyGenerationConfig>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Vec<Vec<GenOut>>> {
        let prompts = prompts.iter().map(prompt).collect::<PyResult<Vec<_>>>()?;
        let cfg = config.cfg.clone();
        let m = self.model.clone();
        let outs = crate::errors::detach_progress(py, progress, move || {
            generation::generate(&m, &prompts, &cfg, &interrupted)
        })
        .py()?;
        Ok(outs
            .into_iter()
            .map(|o| o.into_iter().map(gen_out).collect())
            .collect())
    }

    /// A stream of text pieces for one prompt.
    fn stream(
        &self,
        py: Python<'_>,
        prompt_: Bound<'_, PyAny>,
        config: PyRef<'_, PyGenerationConfig>,
    ) -> PyResult<PyStream> {
        let p = prompt(&prompt_)?;
        let cfg = config.cfg.clone();
        let m = self.model.clone();
        let g = crate::errors::detach(py, move || generation::stream(m, &p, cfg)).py()?;
        Ok(PyStream {
            gen: Some(g),
            done: false,
            closed: None,
        })
    }

    /// One sequence with every layer's hidden states and attention probabilities, as asked:
    /// (logits [n, vocab] or None, [hidden [n, h]], [attention [heads, n, n]]).
    #[allow(clippy::type_complexity)] // (logits, hidden states, attentions), as Python sees them
    #[pyo3(signature = (ids, hidden_states=true, attentions=true))]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        ids: Vec<u32>,
        hidden_states: bool,
        attentions: bool,
    ) -> PyResult<(
        Option<Bound<'py, PyAny>>,
        Vec<Bound<'py, PyAny>>,
        Vec<Bound<'py, PyAny>>,
    )> {
        let m = self.model.clone();
        let c = m.config.clone();
        let n = ids.len();
        let (logits, trace) = crate::errors::detach(py, move || {
            m.forward_traced(&ids, hidden_states, attentions)
        })
        .py()?;
        let logits = logits.map(|l| array2(py, l, n, c.vocab_size)).transpose()?;
        let hidden = trace
            .hidden_states
            .into_iter()
            .map(|h| array2(py, h, n, c.hidden_size))
            .collect::<PyResult<Vec<_>>>()?;
        let attn = trace
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

    /// Write config.json + model.safetensors + tokenizer.json (or copy an HF folder's files).
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        let m = self.model.clone();
        crate::errors::detach(py, move || m.save(&path)).py()
    }

    /// Encoders: (last_hidden_state [batch, longest, hidden], attention_mask [batch, longest],
    /// input_ids) for texts.
    #[pyo3(signature = (texts, truncation=true, max_length=None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        truncation: bool,
        max_length: Option<usize>,
    ) -> PyResult<Encoded<'py>> {
        let m = self.model.clone();
        let e = crate::errors::detach(py, move || m.encode_padded(&texts, truncation, max_length))
            .py()?;
        let (b, h) = (e.input_ids.len(), self.model.config.hidden_size);
        let hidden = PyArray1::from_vec(py, e.hidden)
            .reshape([b, e.longest, h])?
            .into_any();
        let mask = PyArray1::from_vec(py, e.attention_mask)
            .reshape([b, e.longest])?
            .into_any();
        Ok((hidden, mask, e.input_ids))
    }

    /// Encoders: one vector per text, float32 [n, hidden]; `progress(done, total)` in texts.
    #[pyo3(signature = (texts, pooling=None, normalize=true, truncation=true, max_length=None, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn embed<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        pooling: Option<&str>,
        normalize: bool,
        truncation: bool,
        max_length: Option<usize>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let pooling = pooling.map(Pooling::parse).transpose().py()?;
        let m = self.model.clone();
        let n = texts.len();
        let out = crate::errors::detach_progress(py, progress, move || {
            m.embed(&texts, pooling, normalize, truncation, max_length)
        })
        .py()?;
        array2(py, out.concat(), n, self.model.config.hidden_size)
    }

    /// Encoders with a masked-LM head: for each mask token, the top_k candidates as dicts.
    fn fill_mask<'py>(
        &self,
        py: Python<'py>,
        text: String,
        top_k: usize,
    ) -> PyResult<Vec<Vec<Bound<'py, PyDict>>>> {
        let m = self.model.clone();
        let fills = crate::errors::detach(py, move || m.fill_mask(&text, top_k)).py()?;
        fills
            .into_iter()
            .map(|cands| {
                cands
                    .into_iter()
                    .map(|c| {
                        let d = PyDict::new(py);
                        d.set_item("token", c.token)?;
                        d.set_item("token_str", c.token_str)?;
                        d.set_item("score", c.score)?;
                        d.set_item("sequence", c.sequence)?;
                        Ok(d)
                    })
                    .collect()
            })
            .collect()
    }

    /// Log-likelihood of each continuation after the context (lm-evaluation-harness'
    /// boundaries): [(logprob, is_greedy, token_logprobs)]; `progress(done, total)` in candidates.
    #[pyo3(signature = (context, continuations, progress=None))]
    fn score(
        &self,
        py: Python<'_>,
        context: String,
        continuations: Vec<String>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Vec<(f64, bool, Vec<f32>)>> {
        let m = self.model.clone();
        let scores = crate::errors::detach_progress(py, progress, move || {
            m.score_texts(&context, &continuations, &interrupted)
        })
        .py()?;
        Ok(scores
            .into_iter()
            .map(|s| (s.logprob, s.is_greedy, s.token_logprobs))
            .collect())
    }

    /// Sliding-window perplexity of texts (strings, tokenized with special tokens) or token id
    /// lists: a dict of the engine's `Perplexity`.
    /// `progress(done, total)` in windows.
    #[pyo3(signature = (texts, ids, max_length=None, stride=None, batch_size=1, token_nll=false, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn perplexity<'py>(
        &self,
        py: Python<'py>,
        texts: Option<Vec<String>>,
        ids: Option<Vec<Vec<u32>>>,
        max_length: Option<usize>,
        stride: Option<usize>,
        batch_size: usize,
        token_nll: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let m = self.model.clone();
        let o = candlewick::model::PerplexityOptions {
            max_length,
            stride,
            batch_size,
            token_nll,
        };
        let r = crate::errors::detach_progress(py, progress, move || -> candlewick::Result<_> {
            let ids = match (texts, ids) {
                (Some(t), _) => {
                    let tok = m.tokenizer()?;
                    t.iter()
                        .map(|x| tok.encode(x, true))
                        .collect::<candlewick::Result<Vec<_>>>()?
                }
                (None, Some(i)) => i,
                (None, None) => Vec::new(),
            };
            m.perplexity(&ids, &o, &interrupted)
        })
        .py()?;
        let d = PyDict::new(py);
        d.set_item("perplexity", r.perplexity)?;
        d.set_item("nll", r.nll)?;
        d.set_item("tokens", r.tokens)?;
        d.set_item("windows", r.windows)?;
        d.set_item("texts", r.texts)?;
        d.set_item("skipped", r.skipped)?;
        d.set_item("per_text", r.per_text)?;
        let nll: Vec<Bound<'py, PyArray1<f32>>> = r
            .token_nll
            .into_iter()
            .map(|v| PyArray1::from_vec(py, v))
            .collect();
        d.set_item("token_nll", nll)?;
        Ok(d)
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
        let (piece, finished) =
            crate::errors::detach(py, || -> candlewick::Result<(String, bool)> {
                loop {
                    let more = g.step()?.is_some();
                    let t = g.take_text()?;
                    if !t.is_empty() || !more {
                        return Ok((t, !more));
                    }
                    if interrupted() {
                        return Err(candlewick::Error::Interrupted);
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

    /// Bytes of the KV cache this request holds (0 once closed).
    #[getter]
    fn kv_cache_bytes(&self) -> usize {
        self.gen.as_ref().map(|g| g.kv_cache_bytes()).unwrap_or(0)
    }

    /// Stop generating and free the request's memory (its KV cache) now.
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
