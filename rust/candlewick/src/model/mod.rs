//! A loaded model: the transformer, its tokenizer and what the file said about itself.

pub mod families;
pub mod seq2seq;
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
    /// sentence-transformers settings, when the folder has them: (max_seq_length, pooling).
    pub sentence: Option<(Option<usize>, Option<Pooling>)>,
    /// The checkpoint tensors of a model built from a config (what `save` writes).
    pub built: Option<std::collections::BTreeMap<String, candle_core::Tensor>>,
    /// The encoder-decoder (T5); `transformer` is then a shell holding its config and embeddings.
    pub seq2seq: Option<seq2seq::EncoderDecoder>,
}

/// How `embed` turns token vectors into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
    Max,
}

impl Pooling {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            "max" => Ok(Pooling::Max),
            other => Err(Error::InvalidArgument(format!(
                "pooling must be 'mean', 'cls' or 'max', got {other:?}"
            ))),
        }
    }
}

const SUPPORTED_GGUF: &[&str] = &["llama", "gemma3"];

/// Load a model from a path: a .gguf file now; HF folders come with the architectures issue.
pub fn load(path: impl AsRef<Path>) -> Result<Model> {
    let path = path.as_ref();
    if !path.exists() {
        return Err(Error::Io {
            path: path.into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        });
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if matches!(ext.as_str(), "bin" | "pt" | "pth" | "ckpt" | "pkl") {
        return Err(Error::Unsupported(format!(
            "{}: pickle checkpoints can run arbitrary code when loaded and are refused; convert to .safetensors or .gguf",
            path.display()
        )));
    }
    if path.is_dir() {
        return load_hf_folder(path);
    }
    if ext == "safetensors" || path.file_name().is_some_and(|n| n == "config.json") {
        return load_hf_folder(path.parent().unwrap_or(Path::new(".")));
    }
    let mut magic = [0u8; 4];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| Error::Io {
            path: path.into(),
            source: e,
        })?;
        let n = f.read(&mut magic).map_err(|e| Error::Io {
            path: path.into(),
            source: e,
        })?;
        if n < 4 || &magic != b"GGUF" {
            return Err(Error::invalid_file(
                path,
                "not a GGUF file (it does not start with \"GGUF\"); candlewick loads .gguf files",
            ));
        }
    }
    load_gguf(path)
}

/// An HF folder: config.json, *.safetensors, tokenizer.json (and sentence-transformers files).
fn load_hf_folder(dir: &Path) -> Result<Model> {
    let cfg_path = dir.join("config.json");
    if !cfg_path.is_file() {
        return Err(Error::invalid_file(
            dir,
            "not a model folder: config.json is missing",
        ));
    }
    let cfg = crate::memory::read_config_json(&cfg_path)?;
    let files = crate::io::safetensors::files_in(dir)?;
    if files.is_empty() {
        let pickle = ["pytorch_model.bin", "model.pt", "pytorch_model.pt"]
            .iter()
            .any(|f| dir.join(f).exists());
        return Err(if pickle {
            Error::Unsupported(format!(
                "{}: only pickle weights (pytorch_model.bin): they can run arbitrary code when loaded and are refused; save the model as safetensors (save_pretrained(..., safe_serialization=True))",
                dir.display()
            ))
        } else {
            Error::invalid_file(dir, "no *.safetensors weights in the folder")
        });
    }
    let opened = files
        .iter()
        .map(crate::io::safetensors::SafetensorsFile::open)
        .collect::<Result<Vec<_>>>()?;
    let device = Device::Cpu;
    let tensors = families::Tensors {
        files: &opened,
        memory: None,
        device: &device,
    };
    let family = cfg.family.clone();
    let mut seq2seq = None;
    let transformer = match family.as_str() {
        "t5" => {
            let conf = crate::memory::read_json(&cfg_path)?;
            let scale = match conf.get("scale_decoder_outputs").and_then(|v| v.as_bool()) {
                Some(s) => s,
                None => conf.get("tie_word_embeddings").and_then(|v| v.as_bool()) != Some(false),
            };
            let start = conf.get("decoder_start_token_id").and_then(|v| v.as_u64()).unwrap_or(0);
            let (shell, ed) = t5_model(cfg, &tensors, start as u32, scale)?;
            seq2seq = Some(ed);
            shell
        }
        "bert" => families::bert::load(cfg, &tensors)?,
        "llama" => families::llama::load_safetensors(cfg, &tensors)?,
        "gpt2" => families::gpt2::load(cfg, &tensors)?,
        other => {
            return Err(Error::Unsupported(format!(
                "{}: {other} checkpoints in safetensors are not built yet (supported: bert, llama, gpt2, t5)",
                dir.display()
            )))
        }
    };
    let tok_path = dir.join("tokenizer.json");
    if !tok_path.is_file() {
        return Err(Error::invalid_file(dir, "tokenizer.json is missing"));
    }
    let json = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).ok()?).ok()
    };
    // End ids: generation_config.json first, then config.json (an int or a list).
    let ids_of = |v: Option<&serde_json::Value>| -> Vec<u32> {
        match v {
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().map(|x| vec![x as u32]).unwrap_or_default()
            }
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_u64().map(|x| x as u32))
                .collect(),
            _ => Vec::new(),
        }
    };
    let (gen, conf) = (json("generation_config.json"), json("config.json"));
    let pick = |key: &str| {
        let a = ids_of(gen.as_ref().and_then(|g| g.get(key)));
        if a.is_empty() {
            ids_of(conf.as_ref().and_then(|c| c.get(key)))
        } else {
            a
        }
    };
    let tokenizer = Tokenizer::from_file(&tok_path)?
        .with_special_ids(pick("bos_token_id").first().copied(), &pick("eos_token_id"));
    let tokenizer = std::sync::Arc::new(tokenizer);
    let mut tensor_types = BTreeMap::new();
    let (mut n, mut bytes, mut size) = (0usize, 0usize, 0usize);
    for f in &opened {
        size += f.header.file_size;
        for t in f.header.tensors.values() {
            *tensor_types.entry(t.dtype.clone()).or_insert(0) += 1;
            if t.dtype.starts_with('F') || t.dtype == "BF16" {
                n += t.elem_count();
                bytes += t.end - t.start;
            }
        }
    }
    let sentence = json("sentence_bert_config.json").map(|v| {
        let max = v
            .get("max_seq_length")
            .and_then(|m| m.as_u64())
            .map(|m| m as usize);
        let pooling = json("1_Pooling/config.json").and_then(|p| {
            let on = |k: &str| p.get(k).and_then(|x| x.as_bool()).unwrap_or(false);
            if on("pooling_mode_mean_tokens") {
                Some(Pooling::Mean)
            } else if on("pooling_mode_cls_token") {
                Some(Pooling::Cls)
            } else if on("pooling_mode_max_tokens") {
                Some(Pooling::Max)
            } else {
                None
            }
        });
        (max, pooling)
    });
    let info = ModelInfo {
        path: dir.into(),
        format: "safetensors",
        architecture: family,
        name: dir.file_name().map(|n| n.to_string_lossy().into_owned()),
        tensor_types,
        num_parameters: n,
        weight_bytes: bytes,
        file_size: size,
    };
    Ok(Model {
        transformer,
        tokenizer,
        info,
        sentence,
        built: None,
        seq2seq,
    })
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
        "gemma3" => families::gemma3::load_gguf(&g, &device)?,
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
    Ok(Model {
        transformer,
        tokenizer,
        info,
        sentence: None,
        built: None,
        seq2seq: None,
    })
}

/// A T5 model: a `Transformer` shell holding the config and shared embeddings, and the
/// encoder-decoder stacks.
fn t5_model(
    cfg: ModelConfig,
    t: &families::Tensors,
    decoder_start_token_id: u32,
    scale_outputs: bool,
) -> Result<(Transformer, seq2seq::EncoderDecoder)> {
    let ed = families::t5::load(cfg.clone(), t, decoder_start_token_id, scale_outputs)?;
    let shell = Transformer::bare(cfg, ed.embed.clone(), Vec::new(), &Device::Cpu);
    Ok((shell, ed))
}

/// Random checkpoint tensors for `cfg`, as HF initialises them (`_init_weights`): weight
/// matrices and embeddings N(0, 0.02), norm weights 1, biases 0; with sinusoidal positions the
/// position table holds the sinusoids. Seeded: the same seed gives the
/// same tensors on every machine.
pub fn random_tensors(
    cfg: &ModelConfig,
    seed: u64,
) -> Result<std::collections::BTreeMap<String, candle_core::Tensor>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = std::collections::BTreeMap::new();
    let sinusoidal = cfg.position == crate::config::Position::Sinusoidal;
    for (name, shape) in families::hf::tensor_shapes(cfg)? {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = if sinusoidal && families::hf::is_position_table(&name) {
            crate::nn::position::sinusoidal_table(shape[0], shape[1])
        } else if shape.len() == 1 {
            vec![if name.ends_with(".bias") { 0.0 } else { 1.0 }; n]
        } else {
            // Box-Muller, in f64.
            (0..n)
                .map(|_| {
                    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                    let u2: f64 = rng.random::<f64>();
                    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * 0.02) as f32
                })
                .collect()
        };
        out.insert(
            name,
            candle_core::Tensor::from_vec(data, shape, &Device::Cpu)?,
        );
    }
    Ok(out)
}

impl Model {
    /// A model with random weights from a config (llama, gpt2, bert or t5 family layout), with
    /// `tokenizer` or, without one, the ids-only stand-in.
    pub fn from_config(
        cfg: ModelConfig,
        seed: u64,
        tokenizer: Option<std::sync::Arc<Tokenizer>>,
    ) -> Result<Model> {
        cfg.validate()?;
        cfg.check_family()?;
        let tokenizer = match tokenizer {
            Some(t) => t,
            None => std::sync::Arc::new(Tokenizer::ids_only(cfg.vocab_size)?),
        };
        if tokenizer.vocab_size() > cfg.vocab_size {
            return Err(Error::InvalidArgument(format!(
                "the tokenizer has {} tokens but the config's vocab_size is {}",
                tokenizer.vocab_size(),
                cfg.vocab_size
            )));
        }
        let tensors = random_tensors(&cfg, seed)?;
        let device = Device::Cpu;
        let t = families::Tensors {
            files: &[],
            memory: Some(&tensors),
            device: &device,
        };
        let family = cfg.family.clone();
        let mut seq2seq = None;
        let transformer = match family.as_str() {
            "llama" => families::llama::load_safetensors(cfg, &t)?,
            "gpt2" => families::gpt2::load(cfg, &t)?,
            "t5" => {
                // decoder start = pad = 0, as HF's T5Config; a tied head scales the decoder output
                let tied = cfg.tie_word_embeddings;
                let (shell, ed) = t5_model(cfg, &t, 0, tied)?;
                seq2seq = Some(ed);
                shell
            }
            _ => families::bert::load(cfg, &t)?,
        };
        let n: usize = tensors.values().map(|x| x.elem_count()).sum();
        let info = ModelInfo {
            path: PathBuf::new(),
            format: "built",
            architecture: family,
            name: Some(format!("random (seed {seed})")),
            tensor_types: [("F32".to_string(), tensors.len())].into_iter().collect(),
            num_parameters: n,
            weight_bytes: n * 4,
            file_size: 0,
        };
        Ok(Model {
            transformer,
            tokenizer,
            info,
            sentence: None,
            built: Some(tensors),
            seq2seq,
        })
    }

    /// Write config.json + model.safetensors (+ tokenizer.json) in the HF layout of the model's
    /// family, so that transformers and `load` read it back. A model built from a config writes
    /// its tensors; one loaded from an HF folder copies its checkpoint files (weights, config,
    /// tokenizer and generation files, sentence-transformers settings), unchanged. GGUF models are
    /// refused: converting quantized GGUF weights to safetensors is not built.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let Some(tensors) = self.built.as_ref() else {
            return self.save_copy(dir);
        };
        let mut cfg = self.config().to_hf_json()?;
        if let (Some(obj), Some(e)) = (cfg.as_object_mut(), self.tokenizer.eos_token_id()) {
            obj.insert("eos_token_id".into(), e.into());
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            path: dir.into(),
            source: e,
        })?;
        let list: Vec<(String, candle_core::Tensor)> = tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let meta: BTreeMap<String, String> = [("format".to_string(), "pt".to_string())]
            .into_iter()
            .collect();
        crate::io::safetensors::write_f32(&dir.join("model.safetensors"), &list, &meta)?;
        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| Error::Io { path: p, source: e })
        };
        self.tokenizer.save(&dir.join("tokenizer.json"))?;
        write(
            "config.json",
            serde_json::to_string_pretty(&cfg).map_err(|e| Error::Model(e.to_string()))?,
        )
    }
}

impl Model {
    /// `save` for a model loaded from an HF folder: its checkpoint files, each copied through a
    /// temporary file and renamed (never a half-written file under the real name).
    fn save_copy(&self, dir: &Path) -> Result<()> {
        if self.info.format != "safetensors" {
            return Err(Error::Unsupported(format!(
                "save writes HF safetensors folders; this model was loaded from {} ({}): converting it is not built yet",
                self.info.format,
                self.info.path.display()
            )));
        }
        let src = &self.info.path;
        if src.canonicalize().ok() == dir.canonicalize().ok() {
            return Err(Error::InvalidArgument(format!(
                "{} is the folder the model was loaded from",
                dir.display()
            )));
        }
        let io = |path: &Path, e: std::io::Error| Error::Io {
            path: path.into(),
            source: e,
        };
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in std::fs::read_dir(src).map_err(|e| io(src, e))? {
            let p = entry.map_err(|e| io(src, e))?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let keep = name.ends_with(".safetensors")
                || name == "model.safetensors.index.json"
                || name.ends_with(".json") && !name.starts_with('.')
                || name == "tokenizer.model";
            if p.is_file() && keep {
                files.push(p);
            }
        }
        let pooling = src.join("1_Pooling").join("config.json");
        if pooling.is_file() {
            files.push(pooling);
        }
        for f in files {
            let rel = f.strip_prefix(src).unwrap_or(&f);
            let to = dir.join(rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            }
            let tmp = to.with_extension("partial");
            if let Err(e) = std::fs::copy(&f, &tmp).and_then(|_| std::fs::rename(&tmp, &to)) {
                let _ = std::fs::remove_file(&tmp);
                return Err(io(&to, e));
            }
        }
        Ok(())
    }
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
            return Err(Error::InvalidArgument(
                "score needs a non-empty context and continuation".into(),
            ));
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
        let mut rows = self
            .transformer
            .forward(&ids[..first], &mut cache, true)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        if continuation.len() > 1 {
            let more = self
                .transformer
                .forward(&ids[first..ids.len() - 1], &mut cache, false)?;
            rows.extend(more.flatten_all()?.to_vec1::<f32>()?);
        }
        let mut token_logprobs = Vec::with_capacity(continuation.len());
        let mut is_greedy = true;
        for (j, &t) in continuation.iter().enumerate() {
            let row = &rows[j * vocab..(j + 1) * vocab];
            token_logprobs
                .push((row[t as usize] as f64 - crate::sampling::log_sum_exp(row)) as f32);
            is_greedy &= crate::sampling::argmax(row) == t;
        }
        Ok(Score {
            logprob: token_logprobs.iter().map(|&l| l as f64).sum(),
            is_greedy,
            token_logprobs,
        })
    }

    fn require_encoder(&self, verb: &str) -> Result<()> {
        if self.config().architecture != crate::config::Architecture::Encoder {
            return Err(Error::Unsupported(format!(
                "{verb} is for encoders; this model is a {:?} (use generate / logits)",
                self.config().architecture
            )));
        }
        Ok(())
    }

    /// Hidden state of every token of each sequence (encoders): [len, hidden] row-major each.
    pub fn encode(&self, seqs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        self.require_encoder("encode")?;
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        self.transformer.encode_batch(&refs)
    }

    /// One vector per sequence: mean over its tokens, the first token's, or the elementwise max;
    /// L2-normalised when asked (sentence-transformers' Pooling + Normalize).
    pub fn embed(
        &self,
        seqs: &[Vec<u32>],
        pooling: Pooling,
        normalize: bool,
    ) -> Result<Vec<Vec<f32>>> {
        let h = self.config().hidden_size;
        let states = self.encode(seqs)?;
        Ok(states
            .into_iter()
            .map(|s| {
                let rows = s.len() / h;
                let mut v: Vec<f32> = match pooling {
                    Pooling::Cls => s[..h].to_vec(),
                    Pooling::Mean => (0..h)
                        .map(|j| {
                            ((0..rows).map(|r| s[r * h + j] as f64).sum::<f64>() / rows as f64)
                                as f32
                        })
                        .collect(),
                    Pooling::Max => (0..h)
                        .map(|j| {
                            (0..rows)
                                .map(|r| s[r * h + j])
                                .fold(f32::NEG_INFINITY, f32::max)
                        })
                        .collect(),
                };
                if normalize {
                    let n = v
                        .iter()
                        .map(|&x| (x as f64) * (x as f64))
                        .sum::<f64>()
                        .sqrt()
                        .max(1e-12);
                    v.iter_mut().for_each(|x| *x = (*x as f64 / n) as f32);
                }
                v
            })
            .collect())
    }

    fn require_seq2seq(&self) -> Result<&seq2seq::EncoderDecoder> {
        self.seq2seq.as_ref().ok_or_else(|| {
            Error::Unsupported("decoder_input_ids are for encoder-decoder models".into())
        })
    }

    /// Encoder-decoder logits [decoder tokens, vocab] for an input and decoder input ids.
    pub fn seq2seq_logits(&self, input_ids: &[u32], decoder_input_ids: &[u32]) -> Result<Vec<f32>> {
        let ed = self.require_seq2seq()?;
        if input_ids.len() > self.context_length()
            || decoder_input_ids.len() > self.context_length()
        {
            return Err(Error::ContextOverflow(format!(
                "inputs longer than the model's {} positions",
                self.context_length()
            )));
        }
        let mut st = ed.start(input_ids)?;
        ed.step(&mut st, decoder_input_ids)
    }

    /// Masked-LM logits [len, vocab] for one sequence (encoders with an MLM head).
    pub fn mlm_logits(&self, ids: &[u32]) -> Result<Vec<f32>> {
        self.require_encoder("masked-LM logits")?;
        let head = self.transformer.mlm_head.as_ref().ok_or_else(|| {
            Error::Unsupported(
                "this encoder has no masked-LM head (load a *ForMaskedLM checkpoint)".into(),
            )
        })?;
        let h = self.config().hidden_size;
        let states = self
            .transformer
            .encode_batch(&[ids])?
            .pop()
            .unwrap_or_default();
        let hidden =
            candle_core::Tensor::from_vec(states, (ids.len(), h), &self.transformer.device)?;
        let t = head.dense.forward(&hidden)?;
        let t = crate::nn::mlp::activate(&t, head.activation)?;
        let t = head.norm.forward(&t)?;
        Ok(head.decoder.forward(&t)?.flatten_all()?.to_vec1::<f32>()?)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.transformer.config
    }

    pub fn context_length(&self) -> usize {
        self.transformer.context_length()
    }

    /// Logits [seq, vocab] (row-major) for every position of one sequence, or with `last_only`
    /// [1, vocab] for its last position (the head runs on that row only).
    pub fn logits(&self, ids: &[u32], last_only: bool) -> Result<Vec<f32>> {
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
        let logits = self.transformer.forward(ids, &mut cache, last_only)?;
        Ok(logits.flatten_all()?.to_vec1::<f32>()?)
    }
}
