use std::sync::Arc;

use candlewick::tokenizer::StreamDecoder;
use candlewick::Tokenizer;
use pyo3::prelude::*;

use crate::errors::IntoPyResult;

/// The tokenizer of a loaded model.
#[pyclass(name = "Tokenizer", module = "candlewick._native", frozen)]
pub struct PyTokenizer {
    pub tok: Arc<Tokenizer>,
}

/// Load a tokenizer.json file (HF tokenizers' format).
#[pyfunction]
pub fn tokenizer_from_file(py: Python<'_>, path: std::path::PathBuf) -> PyResult<PyTokenizer> {
    let tok = crate::errors::detach(py, move || Tokenizer::from_file(&path)).py()?;
    Ok(PyTokenizer { tok: Arc::new(tok) })
}

#[pymethods]
impl PyTokenizer {
    #[pyo3(signature = (text, add_special_tokens=true))]
    fn encode(&self, py: Python<'_>, text: &str, add_special_tokens: bool) -> PyResult<Vec<u32>> {
        let t = self.tok.clone();
        let text = text.to_owned();
        crate::errors::detach(py, move || t.encode(&text, add_special_tokens)).py()
    }

    /// Encode, truncated to `max_length` ids as HF tokenizers truncates (special tokens kept).
    fn encode_truncated(
        &self,
        py: Python<'_>,
        text: &str,
        add_special_tokens: bool,
        max_length: usize,
    ) -> PyResult<Vec<u32>> {
        let t = self.tok.clone();
        let text = text.to_owned();
        crate::errors::detach(py, move || {
            t.encode_truncated(&text, add_special_tokens, max_length)
        })
        .py()
    }

    #[pyo3(signature = (texts, add_special_tokens=true))]
    fn encode_batch(
        &self,
        py: Python<'_>,
        texts: Vec<String>,
        add_special_tokens: bool,
    ) -> PyResult<Vec<Vec<u32>>> {
        let t = self.tok.clone();
        crate::errors::detach(py, move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            t.encode_batch(&refs, add_special_tokens)
        })
        .py()
    }

    #[pyo3(signature = (ids, skip_special_tokens=false))]
    fn decode(&self, py: Python<'_>, ids: Vec<u32>, skip_special_tokens: bool) -> PyResult<String> {
        let t = self.tok.clone();
        crate::errors::detach(py, move || t.decode(&ids, skip_special_tokens)).py()
    }

    /// messages_json: a JSON list of {"role", "content"} objects.
    fn apply_chat_template_json(
        &self,
        py: Python<'_>,
        messages_json: &str,
        add_generation_prompt: bool,
    ) -> PyResult<String> {
        let messages: serde_json::Value = serde_json::from_str(messages_json)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("messages: {e}")))?;
        let t = self.tok.clone();
        // rendered without the GIL: a template is code from the model file, bounded in time and
        // memory by the engine (tokenizer/chat.rs)
        crate::errors::detach(py, move || {
            t.apply_chat_template(&messages, add_generation_prompt)
        })
    }

    /// A UTF-8-safe incremental decoder (HF tokenizers' DecodeStream).
    #[pyo3(signature = (skip_special_tokens=false))]
    fn stream_decoder(&self, skip_special_tokens: bool) -> PyStreamDecoder {
        PyStreamDecoder {
            tok: self.tok.clone(),
            dec: StreamDecoder::new(skip_special_tokens),
        }
    }

    #[getter]
    fn chat_template(&self) -> Option<String> {
        self.tok.chat_template().map(|t| t.source().to_owned())
    }
    #[getter]
    fn vocab_size(&self) -> usize {
        self.tok.vocab_size()
    }
    #[getter]
    fn bos_token_id(&self) -> Option<u32> {
        self.tok.bos_token_id()
    }
    #[getter]
    fn eos_token_id(&self) -> Option<u32> {
        self.tok.eos_token_id()
    }
    /// The mask token ([MASK] or <mask>) when the vocabulary has one.
    #[getter]
    fn mask_token_id(&self) -> Option<u32> {
        self.tok.mask_token_id()
    }
    #[getter]
    fn eog_token_ids(&self) -> Vec<u32> {
        self.tok.eog_token_ids().to_vec()
    }
    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.tok.token_to_id(token)
    }
    fn id_to_token(&self, id: u32) -> Option<String> {
        self.tok.id_to_token(id)
    }
}

/// Feed ids one at a time; `step` returns the text they complete (never half a character).
#[pyclass(name = "StreamDecoder", module = "candlewick._native")]
pub struct PyStreamDecoder {
    tok: Arc<Tokenizer>,
    dec: StreamDecoder,
}

#[pymethods]
impl PyStreamDecoder {
    fn step(&mut self, id: u32) -> PyResult<Option<String>> {
        self.dec.step(&self.tok, id).py()
    }

    /// Whatever is still held back (an incomplete character at the end), decoded lossily.
    fn flush(&mut self) -> PyResult<Option<String>> {
        self.dec.flush(&self.tok).py()
    }
}
