//! safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
//! shape and byte range, then the data. Only the header is read here; every size it states is
//! checked against the file before anything relies on it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::types::TensorType;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub dtype: &'static TensorType,
    pub shape: Vec<usize>,
    /// Byte range in the data section.
    pub start: usize,
    pub end: usize,
}

impl TensorEntry {
    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Debug, Clone)]
pub struct SafetensorsHeader {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, TensorEntry>,
    pub metadata: BTreeMap<String, String>,
    /// Offset of the data section in the file.
    pub data_offset: usize,
    pub file_size: usize,
}

const MAX_HEADER: u64 = 100 * 1024 * 1024;

impl SafetensorsHeader {
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |e| Error::Io {
            path: path.into(),
            source: e,
        };
        let (mut f, meta) = super::open_regular(path, "a safetensors file")?;
        let file_size = meta.len();
        let bad = |msg: String| Error::invalid_file(path, msg);
        if file_size < 8 {
            return Err(bad(format!(
                "not a safetensors file: only {file_size} bytes"
            )));
        }
        let mut len = [0u8; 8];
        f.read_exact(&mut len).map_err(io)?;
        let n = u64::from_le_bytes(len);
        if n > MAX_HEADER || 8 + n > file_size {
            return Err(bad(format!("header length {n} does not fit a file of {file_size} bytes (not a safetensors file?)")));
        }
        let mut buf = vec![0u8; n as usize];
        f.read_exact(&mut buf).map_err(io)?;
        if buf.first() != Some(&b'{') {
            return Err(bad(
                "header does not start with '{' (not a safetensors file?)".into(),
            ));
        }
        let entries = object_entries(&buf)
            .map_err(|e| bad(format!("header is not a valid JSON object: {e}")))?;
        let data_offset = 8 + n as usize;
        let data_len = file_size as usize - data_offset;
        let mut tensors = BTreeMap::new();
        let mut metadata = BTreeMap::new();
        for (name, v) in &entries {
            if tensors.contains_key(name) || (name == "__metadata__" && !metadata.is_empty()) {
                return Err(bad(format!("tensor {name} appears twice in the header")));
            }
            if name == "__metadata__" {
                if let Some(m) = v.as_object() {
                    for (k, x) in m {
                        metadata.insert(k.clone(), x.as_str().unwrap_or_default().to_string());
                    }
                }
                continue;
            }
            let dtype = v
                .get("dtype")
                .and_then(|d| d.as_str())
                .ok_or_else(|| bad(format!("tensor {name}: no dtype")))?;
            let ty = TensorType::from_safetensors(dtype)
                .ok_or_else(|| bad(format!("tensor {name}: unknown dtype {dtype}")))?;
            let size = ty.block_bytes;
            let shape: Vec<usize> = v
                .get("shape")
                .and_then(|s| s.as_array())
                .ok_or_else(|| bad(format!("tensor {name}: no shape")))?
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    bad(format!(
                        "tensor {name}: shape is not a list of non-negative integers"
                    ))
                })?;
            let offs = v
                .get("data_offsets")
                .and_then(|o| o.as_array())
                .filter(|o| o.len() == 2)
                .and_then(|o| Some((o[0].as_u64()? as usize, o[1].as_u64()? as usize)))
                .ok_or_else(|| bad(format!("tensor {name}: data_offsets must be [start, end]")))?;
            let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let want = count.and_then(|c| c.checked_mul(size));
            if offs.0 > offs.1 || offs.1 > data_len || want != Some(offs.1 - offs.0) {
                return Err(bad(format!(
                    "tensor {name}: {dtype} {shape:?} needs {} bytes but its data_offsets are {:?} in a data section of {data_len} bytes",
                    want.map(|w| w.to_string()).unwrap_or_else(|| "too many".into()),
                    offs
                )));
            }
            tensors.insert(
                name.clone(),
                TensorEntry {
                    dtype: ty,
                    shape,
                    start: offs.0,
                    end: offs.1,
                },
            );
        }
        // as the safetensors crate checks: the tensors tile the data section exactly, in some
        // order, with no overlap and no gap (a wrong header length shifts every offset)
        let mut spans: Vec<(usize, usize, &String)> =
            tensors.iter().map(|(k, t)| (t.start, t.end, k)).collect();
        spans.sort();
        let mut at = 0usize;
        for &(start, end, name) in &spans {
            if start != at {
                return Err(bad(format!(
                    "tensor {name} starts at data byte {start}, but the tensors before it end at {at}: offsets overlap or leave a gap (a wrong header length?)"
                )));
            }
            at = end;
        }
        if at != data_len {
            return Err(bad(format!(
                "the tensors cover {at} bytes but the data section holds {data_len} (a wrong header length or a truncated file?)"
            )));
        }
        Ok(Self {
            path: path.into(),
            tensors,
            metadata,
            data_offset,
            file_size: file_size as usize,
        })
    }
}

/// The entries of a JSON object in file order, duplicates kept (serde_json's map would keep only
/// the last of two equal keys, which is how a stray entry could override a tensor unseen).
fn object_entries(
    bytes: &[u8],
) -> std::result::Result<Vec<(String, serde_json::Value)>, serde_json::Error> {
    use serde::de::{Deserializer, MapAccess, Visitor};
    struct Entries;
    impl<'de> Visitor<'de> for Entries {
        type Value = Vec<(String, serde_json::Value)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                out.push((k, v));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let entries = de.deserialize_map(Entries)?;
    de.end()?;
    Ok(entries)
}

/// A safetensors file mapped for reading tensors by name.
pub struct SafetensorsFile {
    pub header: SafetensorsHeader,
    mmap: memmap2::Mmap,
}

impl SafetensorsFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let header = SafetensorsHeader::read(path)?;
        let (file, _) = super::open_regular(path, "a safetensors file")?;
        // SAFETY: read-only map; every range read is checked against the size validated above.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::Io {
            path: path.into(),
            source: e,
        })?;
        if mmap.len() != header.file_size {
            return Err(Error::invalid_file(
                path,
                "the file changed size while being opened",
            ));
        }
        Ok(Self { header, mmap })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.header.tensors.contains_key(name)
    }

    /// The tensor `name` as f32 (F32, F16 and BF16 are read), which must have shape `expected`.
    pub fn tensor(
        &self,
        name: &str,
        expected: &[usize],
        device: &candle_core::Device,
    ) -> Result<candle_core::Tensor> {
        let path = &self.header.path;
        let t = self.header.tensors.get(name).ok_or_else(|| {
            Error::invalid_file(
                path,
                format!("tensor {name} is missing (expected shape {expected:?})"),
            )
        })?;
        if t.shape != expected {
            return Err(Error::invalid_file(
                path,
                format!(
                    "tensor {name} has shape {:?}, expected {expected:?}",
                    t.shape
                ),
            ));
        }
        let bytes = &self.mmap[self.header.data_offset + t.start..self.header.data_offset + t.end];
        let data: Vec<f32> = match t.dtype.name {
            "F32" => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            "F16" => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            "BF16" => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::Unsupported(format!(
                    "{}: tensor {name} has dtype {other}",
                    path.display()
                )))
            }
        };
        Ok(candle_core::Tensor::from_vec(
            data,
            t.shape.clone(),
            device,
        )?)
    }
}

/// Write f32 tensors as a safetensors file, atomically: into a temporary file beside `path`,
/// renamed over it only once complete, so a failure never leaves a half-written file.
pub fn write_f32(
    path: &Path,
    tensors: &[(String, candle_core::Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    use std::io::Write;
    let io = |e| super::write_err(path, e);
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert(
            "__metadata__".into(),
            serde_json::to_value(metadata).map_err(|e| Error::Model(e.to_string()))?,
        );
    }
    let mut offset = 0usize;
    let mut datas = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let data = t
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        let n = data.len() * 4;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": t.dims(), "data_offsets": [offset, offset + n]}),
        );
        offset += n;
        datas.push(data);
    }
    let mut json = serde_json::to_string(&header).map_err(|e| Error::Model(e.to_string()))?;
    while (8 + json.len()) % 8 != 0 {
        json.push(' ');
    }
    let tmp = path.with_extension("safetensors.partial");
    let result = (|| -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        f.write_all(&(json.len() as u64).to_le_bytes())?;
        f.write_all(json.as_bytes())?;
        for d in &datas {
            for x in d {
                f.write_all(&x.to_le_bytes())?;
            }
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}
