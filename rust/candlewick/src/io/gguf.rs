//! GGUF reader: metadata, tensor index and memory-mapped tensor data.
//!
//! Every size in the header is checked against the bytes that are really there before it is used:
//! a truncated or corrupt file is an `Error::InvalidFile` naming what was wrong, never a panic or a
//! huge allocation. Layout (llama.cpp `gguf.cpp`): magic "GGUF", version, tensor count, kv count,
//! kv pairs, tensor infos, padding to `general.alignment`, tensor data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{QStorage, QTensor};
use candle_core::Device;

use super::types::TensorType;
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
const MAX_DIMS: usize = 4;
const MAX_ARRAY_DEPTH: usize = 4;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// Any integer type as u64 (negative values are refused).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) if v >= 0 => Some(v as u64),
            Value::I16(v) if v >= 0 => Some(v as u64),
            Value::I32(v) if v >= 0 => Some(v as u64),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// Shape in candle order (outermost first): GGUF stores `ne` innermost first.
    pub shape: Vec<usize>,
    pub dtype: &'static TensorType,
    /// Absolute offset of the first byte in the file.
    pub offset: usize,
    pub size_in_bytes: usize,
}

impl TensorInfo {
    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A parsed, validated GGUF file with its data memory-mapped.
pub struct GgufFile {
    path: PathBuf,
    mmap: Arc<memmap2::Mmap>,
    /// The file offset of the map's first byte (0 for the file's own map; the start of the
    /// tensor data once `privatize` has copied only that).
    base: usize,
    /// The file's size.
    len: usize,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    index: BTreeMap<String, usize>,
}

/// Bounds-checked little-endian reader over the header bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: &str) -> Error {
        Error::invalid_file(
            self.path,
            format!(
                "truncated or corrupt GGUF header: {what} at byte {} of {}",
                self.pos,
                self.buf.len()
            ),
        )
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    /// A count that will be used to size an allocation: must fit in what is left of the file when
    /// every element takes at least `min_elem_size` bytes.
    fn count(&mut self, min_elem_size: usize, what: &str) -> Result<usize> {
        let n = self.u64(what)?;
        let max = (self.remaining() / min_elem_size.max(1)) as u64;
        if n > max {
            return Err(Error::invalid_file(
                self.path,
                format!("truncated or corrupt GGUF header: {what} is {n}, more than the {} bytes left in the file can hold", self.remaining()),
            ));
        }
        Ok(n as usize)
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(1, what)?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::invalid_file(self.path, format!("{what} is not valid UTF-8")))
    }
}

/// Smallest encoded size of one value of a type (for array-length checks).
fn min_value_size(ty: u32) -> usize {
    match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        8 => 8,     // length prefix
        9 => 4 + 8, // element type + count
        _ => 1,
    }
}

fn read_value(c: &mut Cursor, ty: u32, key: &str, depth: usize) -> Result<Value> {
    let what = format!("value of {key}");
    Ok(match ty {
        0 => Value::U8(c.array::<1>(&what)?[0]),
        1 => Value::I8(c.array::<1>(&what)?[0] as i8),
        2 => Value::U16(u16::from_le_bytes(c.array(&what)?)),
        3 => Value::I16(i16::from_le_bytes(c.array(&what)?)),
        4 => Value::U32(u32::from_le_bytes(c.array(&what)?)),
        5 => Value::I32(i32::from_le_bytes(c.array(&what)?)),
        6 => Value::F32(f32::from_le_bytes(c.array(&what)?)),
        7 => match c.array::<1>(&what)?[0] {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            b => {
                return Err(Error::invalid_file(
                    c.path,
                    format!("{key}: bool byte is {b}, not 0 or 1"),
                ))
            }
        },
        8 => Value::String(c.string(&what)?),
        9 => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(Error::invalid_file(
                    c.path,
                    format!("{key}: arrays nested deeper than {MAX_ARRAY_DEPTH}"),
                ));
            }
            let elem_ty = c.u32(&what)?;
            let n = c.count(min_value_size(elem_ty), &format!("array length of {key}"))?;
            // n is bounded by the bytes left, but a Value is larger than its encoding: grow as read
            let mut items = Vec::with_capacity(n.min(4096));
            for _ in 0..n {
                items.push(read_value(c, elem_ty, key, depth + 1)?);
            }
            Value::Array(items)
        }
        10 => Value::U64(c.u64(&what)?),
        11 => Value::I64(i64::from_le_bytes(c.array(&what)?)),
        12 => Value::F64(f64::from_le_bytes(c.array(&what)?)),
        t => {
            return Err(Error::invalid_file(
                c.path,
                format!("{key}: unknown metadata value type {t}"),
            ))
        }
    })
}

impl GgufFile {
    /// Open, map and validate a GGUF file. No tensor data is touched.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (file, meta) = super::open_regular(path, "a GGUF file")?;
        if meta.len() < 24 {
            return Err(Error::invalid_file(
                path,
                format!("not a GGUF file: only {} bytes", meta.len()),
            ));
        }
        // SAFETY: the map is read-only. As in llama.cpp, another process truncating the file while
        // it is mapped is outside our control; everything we read is bounds-checked against the
        // length seen here.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::Io {
            path: path.into(),
            source: e,
        })?;
        Self::parse(path, mmap)
    }

    fn parse(path: &Path, mmap: memmap2::Mmap) -> Result<Self> {
        let buf: &[u8] = &mmap;
        let file_len = buf.len();
        let mut c = Cursor { buf, pos: 0, path };
        let magic = c.array::<4>("magic")?;
        if &magic != MAGIC {
            return Err(Error::invalid_file(
                path,
                format!("not a GGUF file: magic bytes are {magic:02x?}, expected \"GGUF\""),
            ));
        }
        let version = c.u32("version")?;
        if version == 1 {
            return Err(Error::Unsupported(format!(
                "{}: GGUF version 1 (re-convert with a current llama.cpp)",
                path.display()
            )));
        }
        if version != 2 && version != 3 {
            return Err(Error::invalid_file(
                path,
                format!("GGUF version {version} is unknown (expected 2 or 3)"),
            ));
        }
        // A tensor info takes at least 8 (name len) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset) bytes.
        let n_tensors = c.count(32, "tensor count")?;
        let n_kv = c.count(8 + 4 + 1, "metadata count")?;

        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = c.string(&format!("key of metadata entry {i}"))?;
            let ty = c.u32(&format!("type of {key}"))?;
            let value = read_value(&mut c, ty, &key, 0)?;
            if metadata.contains_key(&key) {
                // llama.cpp refuses these too: which of the two a reader keeps is arbitrary
                return Err(Error::invalid_file(
                    path,
                    format!("metadata key {key} appears twice"),
                ));
            }
            metadata.insert(key, value);
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
                _ => {
                    return Err(Error::invalid_file(
                        path,
                        format!("general.alignment {v:?} is not a power of two"),
                    ))
                }
            },
        };

        struct RawInfo {
            name: String,
            ne: Vec<u64>,
            ty: u32,
            offset: u64,
        }
        let mut raw = Vec::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let name = c.string(&format!("name of tensor {i}"))?;
            let n_dims = c.u32(&format!("dimension count of {name}"))? as usize;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(Error::invalid_file(
                    path,
                    format!("tensor {name} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
                ));
            }
            let mut ne = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                ne.push(c.u64(&format!("dimensions of {name}"))?);
            }
            let ty = c.u32(&format!("type of {name}"))?;
            let offset = c.u64(&format!("offset of {name}"))?;
            raw.push(RawInfo {
                name,
                ne,
                ty,
                offset,
            });
        }
        let header_end = c.pos as u64;
        let data_start = header_end.div_ceil(alignment) * alignment;
        if data_start > file_len as u64 {
            return Err(Error::invalid_file(
                path,
                "file ends before its tensor data begins",
            ));
        }

        let mut tensors = Vec::with_capacity(raw.len());
        let mut index = BTreeMap::new();
        // as llama.cpp's reader: tensors are packed in the order of their infos, each at the
        // aligned end of the one before, so no two overlap and no bytes are left unexplained
        let mut expected_offset: u64 = 0;
        for r in raw {
            let name = r.name;
            let dtype = TensorType::from_gguf(r.ty).ok_or_else(|| {
                Error::Unsupported(format!(
                    "tensor {name} has ggml type {}, which candlewick does not know",
                    r.ty
                ))
            })?;
            let mut elems: u64 = 1;
            for &d in &r.ne {
                if d == 0 {
                    return Err(Error::invalid_file(
                        path,
                        format!("tensor {name} has a zero dimension: {:?}", r.ne),
                    ));
                }
                elems = elems.checked_mul(d).ok_or_else(|| {
                    Error::invalid_file(
                        path,
                        format!("tensor {name}: dimensions {:?} overflow", r.ne),
                    )
                })?;
            }
            let block = dtype.block_size as u64;
            if r.ne[0] % block != 0 {
                return Err(Error::invalid_file(
                    path,
                    format!("tensor {name}: row length {} is not a multiple of the {dtype} block size {block}", r.ne[0]),
                ));
            }
            let size = (elems / block)
                .checked_mul(dtype.block_bytes as u64)
                .ok_or_else(|| {
                    Error::invalid_file(path, format!("tensor {name}: size overflows"))
                })?;
            if r.offset % alignment != 0 {
                return Err(Error::invalid_file(
                    path,
                    format!(
                        "tensor {name}: offset {} is not aligned to {alignment}",
                        r.offset
                    ),
                ));
            }
            if r.offset != expected_offset {
                return Err(Error::invalid_file(
                    path,
                    format!(
                        "tensor {name} ({dtype} {:?}) is at data offset {}, but the tensors before it end at {expected_offset}: offsets overlap, leave a gap or are out of order (a changed type or shape?)",
                        r.ne, r.offset
                    ),
                ));
            }
            expected_offset = size
                .div_ceil(alignment)
                .checked_mul(alignment)
                .and_then(|s| s.checked_add(r.offset))
                .ok_or_else(|| {
                    Error::invalid_file(path, format!("tensor {name}: size overflows"))
                })?;
            let start = data_start.checked_add(r.offset);
            let end = start.and_then(|s| s.checked_add(size));
            match end {
                Some(end) if end <= file_len as u64 => {}
                _ => {
                    return Err(Error::invalid_file(
                        path,
                        format!(
                        "truncated: tensor {name} needs bytes up to {} but the file has {file_len}",
                        data_start as u128 + r.offset as u128 + size as u128
                    ),
                    ))
                }
            }
            if index.insert(name.clone(), tensors.len()).is_some() {
                return Err(Error::invalid_file(
                    path,
                    format!("tensor {name} appears twice"),
                ));
            }
            let shape = r.ne.iter().rev().map(|&d| d as usize).collect();
            tensors.push(TensorInfo {
                name,
                shape,
                dtype,
                offset: (data_start + r.offset) as usize,
                size_in_bytes: size as usize,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            len: mmap.len(),
            mmap: Arc::new(mmap),
            base: 0,
            version,
            metadata,
            tensors,
            index,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Make the tensor data the process's own: the file is read once into anonymous memory that
    /// replaces the map, so a file truncated or rewritten later (by another process) can no longer
    /// fault the reads of a loaded model (SIGBUS). A file that changed since it was opened is an
    /// error. Done when a model is loaded; header-only uses (sizing, info) keep the map.
    pub fn privatize(&mut self) -> Result<()> {
        use std::io::{Read, Seek};
        if self.base != 0 {
            return Ok(());
        }
        // only the tensor data: the header is parsed already (its vocabulary is held as values)
        let start = self
            .tensors
            .iter()
            .map(|t| t.offset)
            .min()
            .unwrap_or(self.len);
        let n = self.len - start;
        let io = |e| Error::Io {
            path: self.path.clone(),
            source: e,
        };
        let (mut file, meta) = super::open_regular(&self.path, "a GGUF file")?;
        if meta.len() != self.len as u64 {
            return Err(Error::invalid_file(
                &self.path,
                "the file changed size while it was being loaded",
            ));
        }
        // the header's pages (read by the parse, held as values since) leave the resident set
        // before the data arrives; the map is file-backed and read-only, so they would only
        // be read again from the file. Nothing else holds the map yet (privatize precedes the
        // model's build), and an unsupported advice only leaves them resident.
        #[cfg(unix)]
        // SAFETY: DontNeed on a private read-only file map: later reads see the file again
        let _ = unsafe {
            self.mmap
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
        };
        let mut own = memmap2::MmapMut::map_anon(n.max(1)).map_err(io)?;
        file.seek(std::io::SeekFrom::Start(start as u64))
            .map_err(io)?;
        file.read_exact(&mut own[..n]).map_err(io)?;
        self.mmap = Arc::new(own.make_read_only().map_err(io)?);
        self.base = start;
        Ok(())
    }

    /// Drop the vocabulary's arrays (tokens, scores, token types, merges: tens of MB of values
    /// for a 256k vocabulary) once the tokenizer is built from them; nothing else reads them.
    pub fn drop_vocabulary(&mut self) {
        for key in [
            "tokenizer.ggml.tokens",
            "tokenizer.ggml.scores",
            "tokenizer.ggml.token_type",
            "tokenizer.ggml.merges",
        ] {
            self.metadata.remove(key);
        }
    }

    pub fn file_size(&self) -> usize {
        self.len
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// Required metadata: a missing key is an error naming it.
    pub fn require(&self, key: &str) -> Result<&Value> {
        self.metadata.get(key).ok_or_else(|| {
            Error::invalid_file(&self.path, format!("metadata key {key} is missing"))
        })
    }

    pub fn require_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_u64().ok_or_else(|| {
            Error::invalid_file(
                &self.path,
                format!("metadata {key} is {v:?}, expected an unsigned integer"),
            )
        })
    }

    pub fn get_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                Error::invalid_file(
                    &self.path,
                    format!("metadata {key} is {v:?}, expected a number"),
                )
            }),
        }
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(|v| v.as_str())
    }

    /// Every tensor's name, in file order.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|t| t.name.as_str())
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor, straight from the map.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        let at = info.offset - self.base;
        &self.mmap[at..at + info.size_in_bytes]
    }

    /// A tensor's bytes that stay in the map (no copy), shareable across threads.
    pub fn mapped(&self, info: &TensorInfo) -> MappedBytes {
        MappedBytes {
            map: self.mmap.clone(),
            offset: info.offset - self.base,
            len: info.size_in_bytes,
        }
    }

    /// Load one tensor into candle's quantized storage (one copy from the map).
    pub fn qtensor(&self, name: &str, device: &Device) -> Result<QTensor> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| Error::invalid_file(&self.path, format!("tensor {name} is missing")))?;
        let dtype = info.dtype.candle().ok_or_else(|| {
            Error::Unsupported(format!(
                "{}: tensor {name} has type {}, which candlewick cannot run",
                self.path.display(),
                info.dtype
            ))
        })?;
        let storage = QStorage::from_data(
            std::borrow::Cow::Borrowed(self.tensor_bytes(info)),
            device,
            dtype,
        )?;
        Ok(QTensor::new(storage, info.shape.as_slice())?)
    }

    /// The tensor `name` as f32 values on the CPU, dequantized by candlewick's kernels where it
    /// has them (`kernels::quant::QType`), else by candle's.
    pub fn dequantize(&self, name: &str) -> Result<candle_core::Tensor> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| Error::invalid_file(&self.path, format!("tensor {name} is missing")))?;
        let Some(qtype) = crate::kernels::quant::QType::of(info.dtype) else {
            return Ok(self.qtensor(name, &Device::Cpu)?.dequantize(&Device::Cpu)?);
        };
        let cols = info.shape.last().copied().unwrap_or(1).max(1);
        let n: usize = info.shape.iter().product();
        let bytes = self.tensor_bytes(info);
        let row = qtype.row_bytes(cols);
        let mut out = vec![0f32; n];
        for (r, o) in bytes.chunks_exact(row).zip(out.chunks_exact_mut(cols)) {
            crate::kernels::quant::dequantize_row(qtype, r, o);
        }
        Ok(candle_core::Tensor::from_vec(
            out,
            info.shape.as_slice(),
            &Device::Cpu,
        )?)
    }

    /// The tensor `name`, which must exist with the shape the model expects.
    pub fn tensor_info_shaped(&self, name: &str, expected: &[usize]) -> Result<&TensorInfo> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| Error::invalid_file(&self.path, format!("tensor {name} is missing")))?;
        if info.shape != expected {
            return Err(Error::invalid_file(
                &self.path,
                format!(
                    "tensor {name} has shape {:?}, the model expects {:?}",
                    info.shape, expected
                ),
            ));
        }
        Ok(info)
    }

    /// Like `qtensor`, and checks the shape the model expects.
    pub fn qtensor_shaped(
        &self,
        name: &str,
        expected: &[usize],
        device: &Device,
    ) -> Result<QTensor> {
        self.tensor_info_shaped(name, expected)?;
        self.qtensor(name, device)
    }
}

/// A byte range of a memory-mapped file; keeps the map alive.
#[derive(Clone)]
pub struct MappedBytes {
    map: Arc<memmap2::Mmap>,
    offset: usize,
    len: usize,
}

impl MappedBytes {
    /// `len` bytes from `start` of these (None past their end).
    pub fn range(&self, start: usize, len: usize) -> Option<MappedBytes> {
        (start.checked_add(len)? <= self.len).then(|| MappedBytes {
            map: self.map.clone(),
            offset: self.offset + start,
            len,
        })
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.map[self.offset..self.offset + self.len]
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for MappedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MappedBytes({} bytes at {})", self.len, self.offset)
    }
}
