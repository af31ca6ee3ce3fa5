use std::sync::Arc;

use candlewick::model::Model;
use pyo3::prelude::*;

use crate::errors::IntoPyResult;

/// The tokenizer of a loaded model.
#[pyclass(name = "Tokenizer", module = "candlewick._native", frozen)]
pub struct PyTokenizer {
    pub model: Arc<Model>,
}

#[pymethods]
impl PyTokenizer {
    #[pyo3(signature = (text, add_special_tokens=true))]
    fn encode(&self, py: Python<'_>, text: &str, add_special_tokens: bool) -> PyResult<Vec<u32>> {
        let m = self.model.clone();
        let text = text.to_owned();
        py.detach(move || m.tokenizer.encode(&text, add_special_tokens)).py()
    }

    #[pyo3(signature = (texts, add_special_tokens=true))]
    fn encode_batch(&self, py: Python<'_>, texts: Vec<String>, add_special_tokens: bool) -> PyResult<Vec<Vec<u32>>> {
        let m = self.model.clone();
        py.detach(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            m.tokenizer.encode_batch(&refs, add_special_tokens)
        })
        .py()
    }

    #[pyo3(signature = (ids, skip_special_tokens=false))]
    fn decode(&self, py: Python<'_>, ids: Vec<u32>, skip_special_tokens: bool) -> PyResult<String> {
        let m = self.model.clone();
        py.detach(move || m.tokenizer.decode(&ids, skip_special_tokens)).py()
    }

    /// messages_json: a JSON list of {"role", "content"} objects.
    fn apply_chat_template_json(&self, messages_json: &str, add_generation_prompt: bool) -> PyResult<String> {
        let messages: serde_json::Value = serde_json::from_str(messages_json)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("messages: {e}")))?;
        self.model.tokenizer.apply_chat_template(&messages, add_generation_prompt).py()
    }

    #[getter]
    fn chat_template(&self) -> Option<String> {
        self.model.tokenizer.chat_template().map(|t| t.source().to_owned())
    }
    #[getter]
    fn vocab_size(&self) -> usize {
        self.model.tokenizer.vocab_size()
    }
    #[getter]
    fn bos_token_id(&self) -> Option<u32> {
        self.model.tokenizer.bos_token_id()
    }
    #[getter]
    fn eos_token_id(&self) -> Option<u32> {
        self.model.tokenizer.eos_token_id()
    }
    #[getter]
    fn eog_token_ids(&self) -> Vec<u32> {
        self.model.tokenizer.eog_token_ids().to_vec()
    }
    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.model.tokenizer.token_to_id(token)
    }
    fn id_to_token(&self, id: u32) -> Option<String> {
        self.model.tokenizer.id_to_token(id)
    }
}
