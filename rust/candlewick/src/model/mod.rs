//! A loaded model: the transformer, its tokenizer and what the file said about itself.

pub mod families;
pub mod transformer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::io::gguf::GgufFile;
use crate::tokenizer::Tokenizer;
pub use transformer::{Cache, Segment, Transformer};

/// Facts about the checkpoint, for `candlewick info` and error messages.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub format: &'static str,
    /// The file's own architecture name (GGUF `general.architecture`).
    pub architecture: String,
    pub name: Option<String>,
    /// Tensor type name -> number of tensors of that type.
    pub tensor_types: BTreeMap<String, usize>,
    /// Parameters actually stored in the file.
    pub num_parameters: usize,
    /// Bytes of tensor data in the file.
    pub weight_bytes: usize,
    pub file_size: usize,
}

pub struct Model {
    pub transformer: Transformer,
    pub tokenizer: std::sync::Arc<Tokenizer>,
    pub info: ModelInfo,
}

const SUPPORTED_GGUF: &[&str] = &["llama"];

/// Load a model from a path: a .gguf file now; HF folders come with the architectures issue.
pub fn load(path: impl AsRef<Path>) -> Result<Model> {
    let path = path.as_ref();
    if !path.exists() {
        return Err(Error::Io {
            path: path.into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        });
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if matches!(ext.as_str(), "bin" | "pt" | "pth" | "ckpt" | "pkl") {
        return Err(Error::Unsupported(format!(
            "{}: pickle checkpoints can run arbitrary code when loaded and are refused; convert to .safetensors or .gguf",
            path.display()
        )));
    }
    if path.is_dir() {
        return Err(Error::Unsupported(format!(
            "{}: loading HF folders (config.json + safetensors) is not built yet; pass a .gguf file",
            path.display()
        )));
    }
    let mut magic = [0u8; 4];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| Error::Io { path: path.into(), source: e })?;
        let n = f.read(&mut magic).map_err(|e| Error::Io { path: path.into(), source: e })?;
        if n < 4 || &magic != b"GGUF" {
            return Err(Error::invalid_file(
                path,
                "not a GGUF file (it does not start with \"GGUF\"); candlewick loads .gguf files",
            ));
        }
    }
    load_gguf(path)
}

fn load_gguf(path: &Path) -> Result<Model> {
    let g = GgufFile::open(path)?;
    let arch = g
        .get_str("general.architecture")
        .ok_or_else(|| Error::invalid_file(path, "metadata general.architecture is missing"))?
        .to_string();
    let device = Device::Cpu;
    let transformer = match arch.as_str() {
        "llama" => families::llama::load_gguf(&g, &device)?,
        other => {
            return Err(Error::Unsupported(format!(
                "architecture '{other}' in {} (supported: {})",
                path.display(),
                SUPPORTED_GGUF.join(", ")
            )))
        }
    };
    let tokenizer = std::sync::Arc::new(Tokenizer::from_gguf(&g)?);
    let mut tensor_types = BTreeMap::new();
    for t in &g.tensors {
        *tensor_types.entry(format!("{:?}", t.dtype)).or_insert(0) += 1;
    }
    let info = ModelInfo {
        path: path.into(),
        format: "gguf",
        architecture: arch,
        name: g.get_str("general.name").map(String::from),
        tensor_types,
        num_parameters: g.tensors.iter().map(|t| t.elem_count()).sum(),
        weight_bytes: g.tensors.iter().map(|t| t.size_in_bytes).sum(),
        file_size: g.file_size(),
    };
    Ok(Model { transformer, tokenizer, info })
}

/// How likely a continuation is after a context (lm-evaluation-harness `loglikelihood`).
#[derive(Debug, Clone)]
pub struct Score {
    /// Sum of the continuation tokens' natural-log probabilities.
    pub logprob: f64,
    /// Whether greedy decoding from the context would produce exactly this continuation.
    pub is_greedy: bool,
    pub token_logprobs: Vec<f32>,
}

impl Model {
    /// Score `continuation` after `context` in one forward pass. Too long an input loses tokens
    /// from the left of the context, as lm-evaluation-harness does.
    pub fn score(&self, context: &[u32], continuation: &[u32]) -> Result<Score> {
        if context.is_empty() || continuation.is_empty() {
            return Err(Error::InvalidArgument("score needs a non-empty context and continuation".into()));
        }
        let ctx = self.context_length();
        if continuation.len() >= ctx {
            return Err(Error::ContextOverflow(format!(
                "a continuation of {} tokens does not fit the model's context of {ctx}",
                continuation.len()
            )));
        }
        let mut ids: Vec<u32> = context.iter().chain(continuation).copied().collect();
        if ids.len() > ctx {
            ids.drain(..ids.len() - ctx);
        }
        let first = ids.len() - continuation.len(); // position of the first continuation token
        let vocab = self.config().vocab_size;
        let mut cache = self.transformer.new_cache(ids.len())?;
        // The context runs as one batch, exactly as generate's prefill does, and gives the row that
        // predicts the first continuation token; the continuation (but its last token) gives the rest.
        let mut rows = self.transformer.forward(&ids[..first], &mut cache, true)?.flatten_all()?.to_vec1::<f32>()?;
        if continuation.len() > 1 {
            let more = self.transformer.forward(&ids[first..ids.len() - 1], &mut cache, false)?;
            rows.extend(more.flatten_all()?.to_vec1::<f32>()?);
        }
        let mut token_logprobs = Vec::with_capacity(continuation.len());
        let mut is_greedy = true;
        for (j, &t) in continuation.iter().enumerate() {
            let row = &rows[j * vocab..(j + 1) * vocab];
            token_logprobs.push((row[t as usize] as f64 - crate::sampling::log_sum_exp(row)) as f32);
            is_greedy &= crate::sampling::argmax(row) == t;
        }
        Ok(Score { logprob: token_logprobs.iter().map(|&l| l as f64).sum(), is_greedy, token_logprobs })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.transformer.config
    }

    pub fn context_length(&self) -> usize {
        self.transformer.context_length()
    }

    /// Logits [seq, vocab] (row-major) for every position of one sequence.
    pub fn logits(&self, ids: &[u32]) -> Result<Vec<f32>> {
        if ids.is_empty() {
            return Err(Error::InvalidArgument("ids is empty".into()));
        }
        if ids.len() > self.context_length() {
            return Err(Error::ContextOverflow(format!(
                "{} tokens exceed the model's context of {}",
                ids.len(),
                self.context_length()
            )));
        }
        let mut cache = self.transformer.new_cache(ids.len())?;
        let logits = self.transformer.forward(ids, &mut cache, false)?;
        Ok(logits.flatten_all()?.to_vec1::<f32>()?)
    }
}
