//! Writing GGUF files (version 3): metadata, tensor index, aligned data; atomically, into a
//! temporary file beside the target that is synced and renamed over it only once complete, so a
//! failure (a full disk, Ctrl-C) never leaves a partial file.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::gguf::Value;
use super::types::TensorType;
use crate::error::{Error, Result};

/// One tensor to write: its name, shape (outermost first, as candlewick reads it) and type, and
/// the bytes of its blocks.
pub struct TensorOut {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: &'static TensorType,
    pub data: Vec<u8>,
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

/// The GGUF type id of a value (arrays: 9).
fn type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_value(b: &mut Vec<u8>, v: &Value) -> Result<()> {
    match v {
        Value::U8(x) => b.push(*x),
        Value::I8(x) => b.push(*x as u8),
        Value::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => b.push(*x as u8),
        Value::String(s) => put_str(b, s),
        Value::U64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::Array(items) => {
            // an empty array keeps no element type when read: written as strings, the type of
            // every list GGUF models hold empty in practice (merges, added tokens)
            let et = items.first().map(type_id).unwrap_or(8);
            if items.iter().any(|x| type_id(x) != et) {
                return Err(Error::Model(
                    "a GGUF array must hold values of one type".into(),
                ));
            }
            b.extend_from_slice(&et.to_le_bytes());
            b.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for x in items {
                put_value(b, x)?;
            }
        }
    }
    Ok(())
}

/// Write a GGUF file of `metadata` (in order) and `tensors`, data aligned to `alignment`
/// (general.alignment, if among the metadata, must say the same).
pub fn write(
    path: &Path,
    metadata: &[(String, Value)],
    tensors: &[TensorOut],
    alignment: usize,
) -> Result<()> {
    if alignment == 0 || !alignment.is_power_of_two() {
        return Err(Error::InvalidArgument(format!(
            "GGUF alignment must be a power of two, got {alignment}"
        )));
    }
    let mut head = Vec::new();
    head.extend_from_slice(b"GGUF");
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_str(&mut head, k);
        head.extend_from_slice(&type_id(v).to_le_bytes());
        put_value(&mut head, v)?;
    }
    let pad = |n: usize| n.div_ceil(alignment) * alignment;
    let mut offset = 0usize;
    for t in tensors {
        let ggml_id = t
            .dtype
            .gguf_id
            .ok_or_else(|| Error::Unsupported(format!("{} has no GGUF type", t.dtype.name)))?;
        let n: usize = t.shape.iter().product();
        if t.dtype.bytes(n as u64) != t.data.len() as u64 {
            return Err(Error::Model(format!(
                "tensor {}: {} bytes for {n} {} values",
                t.name,
                t.data.len(),
                t.dtype.name
            )));
        }
        put_str(&mut head, &t.name);
        head.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for d in t.shape.iter().rev() {
            head.extend_from_slice(&(*d as u64).to_le_bytes()); // ne: innermost first
        }
        head.extend_from_slice(&ggml_id.to_le_bytes());
        head.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = pad(offset + t.data.len());
    }
    head.resize(pad(head.len()), 0);
    atomically(path, |f| {
        f.write_all(&head)?;
        let mut written = 0usize;
        for t in tensors {
            f.write_all(&t.data)?;
            written += t.data.len();
            let to = pad(written);
            f.write_all(&vec![0u8; to - written])?;
            written = to;
        }
        Ok(())
    })
}

/// Run `fill` on a temporary file beside `path`, then sync it and rename it over `path`; on any
/// failure the temporary file is removed and `path` is left as it was.
pub fn atomically(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        Error::InvalidArgument(format!("cannot write {}: not a file name", path.display()))
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(super::write_err(
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("the folder {} does not exist", parent.display()),
            ),
        ));
    }
    if path.is_dir() {
        return Err(super::write_err(
            path,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a folder of that name is in the way",
            ),
        ));
    }
    let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        fill(&mut f)?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&parent).and_then(|d| d.sync_all())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| super::write_err(path, e))
}
