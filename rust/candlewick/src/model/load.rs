//! Models from checkpoints (through the one reader, io::checkpoint: here is what a checkpoint's
//! config, tokenizer and settings mean to a model), models built from a config (random weights,
//! HF's initialisation), and saving in the HF layout transformers reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::builder::Source;
use super::{families, Model, ModelInfo, Pooling, Stacks};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::io::checkpoint::{generic_gguf_config, Checkpoint};
use crate::tokenizer::Tokenizer;

/// Load a model: a .gguf file, an HF folder (config.json + *.safetensors, tokenizer.json when
/// there is one), or one safetensors file or the config.json of such a folder.
pub fn load(path: impl AsRef<Path>) -> Result<Model> {
    let (ck, tokenizer) = open_owned(path.as_ref())?;
    Model::assemble(&ck, tokenizer)
}

/// A checkpoint whose tensor data the process owns (GGUF data is read out of the map; safetensors
/// tensors are copied into float tensors as they load), so a loaded model never faults on a file
/// that changes after loading; and its tokenizer, built first: its transient (a large
/// vocabulary's merge strings, 2-3x what it keeps) is handed back to the system before the
/// weights arrive, so the peak is the larger of the two, not their sum.
/// A tokenizer that failed to build is an error only once the weights have loaded, so a file
/// with several faults is named for the same one as before (its tensors first).
fn open_owned(path: &Path) -> Result<(Checkpoint, Result<Option<Arc<Tokenizer>>>)> {
    let mut ck = Checkpoint::open(path)?;
    if let Checkpoint::Config { path, .. } = &ck {
        // a model's config.json: the model is its folder
        if path.file_name().is_some_and(|n| n == "config.json") {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            return open_owned(dir);
        }
        return Err(Error::invalid_file(
            path,
            "a config file holds no weights: load the model's folder or file",
        ));
    }
    ck.config()?; // a bad config is named before the tokenizer is built
    let tokenizer = ck.tokenizer().map(|t| t.map(Arc::new));
    if let Checkpoint::Gguf(g) = &mut ck {
        g.drop_vocabulary();
    }
    crate::kernels::release_free_heap();
    if let Checkpoint::Gguf(g) = &mut ck {
        g.privatize()?;
    }
    Ok((ck, tokenizer))
}

/// Load a GGUF model with its weights dequantized to float32 (what training it needs; 4 bytes a
/// parameter). Other checkpoints load as `load` does (their weights are float already).
pub fn load_dequantized(path: impl AsRef<Path>) -> Result<Model> {
    let (ck, tokenizer) = open_owned(path.as_ref())?;
    let Checkpoint::Gguf(g) = &ck else {
        return Model::assemble(&ck, tokenizer);
    };
    let config = ck.config()?;
    let n = families::num_parameters(&config)?;
    if let Some(mem) = crate::kernels::physical_memory() {
        if n.saturating_mul(4) > mem {
            return Err(Error::InvalidArgument(format!(
                "{n} parameters dequantized to float32 need {} bytes, more than this machine's {mem}",
                n.saturating_mul(4)
            )));
        }
    }
    let src = Source::recorded(Source::Gguf(g));
    let stacks = families::build(&config, &src)?;
    let tensors = src.into_made();
    let plain = Model::assemble(&ck, tokenizer)?;
    let mut model = plain.with_weights(stacks, tensors);
    model.gguf_names = true;
    Ok(model)
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.into(),
        source: e,
    }
}

impl Model {
    /// The model a checkpoint holds, with its tokenizer and settings.
    pub fn from_checkpoint(ck: &Checkpoint) -> Result<Model> {
        if let Checkpoint::Config { path, .. } = ck {
            return load(path);
        }
        Model::assemble(ck, ck.tokenizer().map(|t| t.map(Arc::new)))
    }

    /// The model of a checkpoint with its tokenizer already built (`open_owned`).
    fn assemble(ck: &Checkpoint, tokenizer: Result<Option<Arc<Tokenizer>>>) -> Result<Model> {
        let config = ck.config()?;
        let stacks = match ck {
            Checkpoint::Gguf(g) => families::build(&config, &Source::Gguf(g))?,
            Checkpoint::Folder { dir, files, .. } => {
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
                families::build(&config, &Source::Files { files, path: dir })?
            }
            Checkpoint::Config { path, .. } => {
                return Err(Error::invalid_file(path, "holds no weights"))
            }
        };
        // ids past the vocabulary are kept, as transformers keeps them (tiny test models name
        // GPT-2's 50256 with 320 tokens): such an end id never comes, it is never misread
        let (bos, eos) = ck.special_ids()?;
        let tokenizer = tokenizer?;
        let mut model = Model::new(config, stacks, tokenizer, ck.info());
        if model.tokenizer.is_none() {
            model.bos_token_id = bos;
            model.eog_token_ids = eos;
        }
        if let Some(g) = ck.generation_config()? {
            model.generation = g;
        }
        model.sentence = ck.sentence()?;
        Ok(model)
    }

    /// A model with random weights from a config of a family that can be built (whose `check`
    /// passes; gemma3 is read from GGUF files only): HF's initialisation, seeded (the same seed gives the same weights on every
    /// machine); with `tokenizer`, or without one the ids-only stand-in (token i reads "[i]").
    pub fn from_config(
        cfg: ModelConfig,
        seed: u64,
        tokenizer: Option<Arc<Tokenizer>>,
    ) -> Result<Model> {
        families::validate(&cfg)?;
        families::get(&cfg.family)?.check(&cfg)?;
        let n = families::num_parameters(&cfg)?;
        if let Some(mem) = crate::kernels::physical_memory() {
            if n.saturating_mul(4) > mem {
                return Err(Error::InvalidArgument(format!(
                    "this config has {n} parameters ({} bytes of float32 weights; vocab_size {}, hidden_size {}, num_layers {}, intermediate_size {}), more than this machine's {mem} bytes of memory",
                    n.saturating_mul(4),
                    cfg.vocab_size,
                    cfg.hidden_size,
                    cfg.num_layers,
                    cfg.intermediate_size
                )));
            }
        }
        let tokenizer = match tokenizer {
            Some(t) => t,
            None => Arc::new(Tokenizer::ids_only(cfg.vocab_size)?),
        };
        if tokenizer.vocab_size() > cfg.vocab_size {
            return Err(Error::InvalidArgument(format!(
                "the tokenizer has {} tokens but the config's vocab_size is {}",
                tokenizer.vocab_size(),
                cfg.vocab_size
            )));
        }
        let src = Source::random(seed);
        let stacks = families::build(&cfg, &src)?;
        let tensors = src.into_made();
        let info = ModelInfo {
            path: PathBuf::new(),
            format: "built",
            architecture: cfg.family.clone(),
            name: Some(format!("random (seed {seed})")),
            tensor_types: [("F32".to_string(), tensors.len())].into_iter().collect(),
            num_parameters: n as usize,
            weight_bytes: n as usize * 4,
            file_size: 0,
        };
        let mut model = Model::new(cfg, stacks, Some(tokenizer), info);
        model.built = Some(tensors);
        Ok(model)
    }

    /// This model with other weights (trained ones): its config, tokenizer and settings, the
    /// stacks built from `tensors`, which `save` writes.
    pub fn with_weights(
        &self,
        stacks: Stacks,
        tensors: BTreeMap<String, candle_core::Tensor>,
    ) -> Model {
        let mut info = self.info.clone();
        info.tensor_types = [("F32".to_string(), tensors.len())].into_iter().collect();
        info.weight_bytes = tensors.values().map(|t| t.elem_count() * 4).sum();
        Model {
            config: self.config.clone(),
            encoder: stacks.encoder,
            decoder: stacks.decoder,
            recurrent: stacks.recurrent,
            tokenizer: self.tokenizer.clone(),
            eog_token_ids: self.eog_token_ids.clone(),
            bos_token_id: self.bos_token_id,
            generation: self.generation.clone(),
            info,
            sentence: self.sentence,
            built: Some(tensors),
            gguf_names: self.gguf_names,
            kv_dtype: (crate::nn::KvDtype::F32 as u8).into(),
        }
    }

    /// Write config.json + model.safetensors (+ tokenizer.json) in the HF layout of the model's
    /// family, so that transformers and `load` read it back. A model built from a config writes
    /// its tensors; one loaded from an HF folder copies its checkpoint files (weights, config,
    /// tokenizer and generation files, sentence-transformers settings), unchanged. A path ending
    /// in .gguf writes one GGUF file instead (`save_gguf`). GGUF models are saved only as GGUF:
    /// converting quantized GGUF weights to safetensors is not built.
    pub fn save(&self, dir: &Path) -> Result<()> {
        if dir
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            return self.save_gguf(dir);
        }
        if let Some(src) = self.source_folder() {
            if src.canonicalize().ok() == dir.canonicalize().ok() {
                return Err(Error::InvalidArgument(format!(
                    "{} is the folder the model was loaded from",
                    dir.display()
                )));
            }
        }
        crate::io::replace_dir(dir, |tmp| self.write_folder(tmp))
    }

    /// `save` to a .gguf path: a model loaded from GGUF as its file's bytes, any other (an HF
    /// folder's, built, trained) in F32 through `quantize::quantize_model`; written atomically.
    fn save_gguf(&self, path: &Path) -> Result<()> {
        if self.built.is_none() && self.info.format == "gguf" {
            if self.info.path.canonicalize().ok() == path.canonicalize().ok() {
                return Err(Error::InvalidArgument(format!(
                    "{} is the file the model was loaded from",
                    path.display()
                )));
            }
            let src = &self.info.path;
            let mut f = std::fs::File::open(src).map_err(|e| io_err(src, e))?;
            return crate::io::gguf_write::atomically(path, |w| {
                std::io::copy(&mut f, w).map(|_| ())
            });
        }
        crate::model::quantize::quantize_model(self, path, "F32").map(|_| ())
    }

    /// The files of `save`, written into `dir` (a fresh folder; the trainer's checkpoints too).
    pub(crate) fn write_folder(&self, dir: &Path) -> Result<()> {
        if self.gguf_names {
            return Err(Error::Unsupported(format!(
                "{} was dequantized from GGUF: it is saved as GGUF (a path ending in .gguf); the HF layout is not built yet",
                self.info.path.display()
            )));
        }
        let Some(tensors) = self.built.as_ref() else {
            return self.save_copy(dir);
        };
        let mut cfg = families::to_hf_json(&self.config)?;
        if let (Some(obj), Some(e)) = (
            cfg.as_object_mut(),
            self.tokenizer.as_ref().and_then(|t| t.eos_token_id()),
        ) {
            obj.insert("eos_token_id".into(), e.into());
        }
        std::fs::create_dir_all(dir).map_err(|e| crate::io::write_err(dir, e))?;
        let list: Vec<(String, candle_core::Tensor)> = tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let meta: BTreeMap<String, String> = [("format".to_string(), "pt".to_string())]
            .into_iter()
            .collect();
        crate::io::safetensors::write_f32(&dir.join("model.safetensors"), &list, &meta)?;
        if let Some(t) = &self.tokenizer {
            t.save(&dir.join("tokenizer.json"))?;
        }
        let p = dir.join("config.json");
        let text = serde_json::to_string_pretty(&cfg).map_err(|e| Error::Model(e.to_string()))?;
        std::fs::write(&p, text).map_err(|e| crate::io::write_err(&p, e))
    }

    /// The HF folder a model was loaded from (None for built models and GGUF files).
    fn source_folder(&self) -> Option<PathBuf> {
        if self.built.is_some() || self.info.format != "safetensors" {
            return None;
        }
        Some(if self.info.path.is_dir() {
            self.info.path.clone()
        } else {
            self.info
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        })
    }

    /// `save` for a model loaded from an HF folder: its checkpoint files, each copied through a
    /// temporary file and renamed (never a half-written file under the real name).
    fn save_copy(&self, dir: &Path) -> Result<()> {
        if self.info.format != "safetensors" {
            return Err(Error::Unsupported(format!(
                "save writes HF safetensors folders; this model was loaded from {} ({}): save it to a path ending in .gguf (converting it to the HF layout is not built yet)",
                self.info.format,
                self.info.path.display()
            )));
        }
        let src = self.source_folder().unwrap_or_default();
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in std::fs::read_dir(&src).map_err(|e| io_err(&src, e))? {
            let p = entry.map_err(|e| io_err(&src, e))?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let keep = name.ends_with(".safetensors")
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
            let rel = f.strip_prefix(&src).unwrap_or(&f);
            let to = dir.join(rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| crate::io::write_err(parent, e))?;
            }
            std::fs::copy(&f, &to).map_err(|e| crate::io::write_err(&to, e))?;
        }
        Ok(())
    }
}

/// sentence-transformers settings of a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentenceSettings {
    pub max_seq_length: Option<usize>,
    pub pooling: Option<Pooling>,
}

/// What a checkpoint holds for a model, read through the family registry.
impl Checkpoint {
    /// The model's config, as its family reads the file's metadata (GGUF) or config.json.
    pub fn config(&self) -> Result<ModelConfig> {
        let from_json = |v: &serde_json::Value, path: &Path| {
            crate::model::families::from_hf_json(v).map_err(|e| match e {
                Error::InvalidArgument(m) | Error::WrongType(m) => Error::invalid_file(path, m),
                other => other,
            })
        };
        match self {
            Checkpoint::Gguf(g) => crate::model::families::from_gguf(g),
            Checkpoint::Folder {
                dir,
                config: Some(v),
                ..
            } => from_json(v, &dir.join("config.json")),
            Checkpoint::Folder {
                dir, config: None, ..
            } => Err(Error::invalid_file(
                dir,
                "not a model folder: config.json is missing",
            )),
            Checkpoint::Config { path, config } => from_json(config, path),
        }
    }

    /// The config memory estimation sizes: `config()`, or for a GGUF architecture no family
    /// reads, its shape from the keys every GGUF architecture writes. None when there is no
    /// config (a safetensors file alone).
    pub fn sizing_config(&self) -> Result<Option<ModelConfig>> {
        match self {
            Checkpoint::Folder { config: None, .. } => Ok(None),
            Checkpoint::Gguf(g) => match self.config() {
                Ok(c) => Ok(Some(c)),
                Err(Error::Unsupported(_)) => Ok(generic_gguf_config(g)),
                Err(e) => Err(e),
            },
            _ => self.config().map(Some),
        }
    }

    /// The checkpoint's tokenizer: a GGUF file's vocabulary, a folder's tokenizer.json (with the
    /// folder's begin/end ids), or None for a folder without one.
    pub fn tokenizer(&self) -> Result<Option<crate::tokenizer::Tokenizer>> {
        match self {
            // llama.cpp's "none": a model of token ids alone
            Checkpoint::Gguf(g)
                if matches!(g.get_str("tokenizer.ggml.model"), Some("none" | "no_vocab")) =>
            {
                Ok(None)
            }
            Checkpoint::Gguf(g) => crate::tokenizer::Tokenizer::from_gguf(g).map(Some),
            Checkpoint::Folder { dir, .. } => {
                let p = dir.join("tokenizer.json");
                if !p.is_file() {
                    return Ok(None);
                }
                let (bos, eos) = self.special_ids()?;
                Ok(Some(
                    crate::tokenizer::Tokenizer::from_file(&p)?.with_special_ids(bos, &eos),
                ))
            }
            Checkpoint::Config { .. } => Ok(None),
        }
    }

    /// sentence-transformers settings (sentence_bert_config.json, 1_Pooling/config.json).
    pub fn sentence(&self) -> Result<Option<SentenceSettings>> {
        let Some(st) = self.folder_json("sentence_bert_config.json")? else {
            return Ok(None);
        };
        let max_seq_length = st
            .get("max_seq_length")
            .and_then(|m| m.as_u64())
            .map(|m| m as usize);
        let pooling = self.folder_json("1_Pooling/config.json")?.and_then(|p| {
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
        Ok(Some(SentenceSettings {
            max_seq_length,
            pooling,
        }))
    }
}
