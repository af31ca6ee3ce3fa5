//! y = x W^T (+ b). W is either GGUF blocks read straight from the memory-mapped file and run by
//! our ggml-exact kernels (the types `kernels::quant::QType` lists), or a candle QMatMul (other
//! block types, and dense f32 weights).
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

use crate::error::{Error, Result};
use crate::io::gguf::{GgufFile, MappedBytes};
use crate::kernels::quant::{self, QType};

#[derive(Debug, Clone)]
enum Weight {
    Mapped { qtype: QType, bytes: MappedBytes },
    Candle(QMatMul),
}

#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    out_features: usize,
    in_features: usize,
}

impl Linear {
    /// A dense layer: weight [out, in] (f32), optional bias [out].
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out, inp) = weight.dims2()?;
        Ok(Self {
            weight: Weight::Candle(QMatMul::Tensor(weight)),
            bias,
            out_features: out,
            in_features: inp,
        })
    }

    /// The GGUF tensor `name`, which must have shape [out, in].
    pub fn from_gguf(
        g: &GgufFile,
        name: &str,
        out: usize,
        inp: usize,
        device: &Device,
    ) -> Result<Self> {
        let info = g.tensor_info_shaped(name, &[out, inp])?;
        let weight = match QType::of(info.dtype) {
            Some(qtype) if device.is_cpu() => Weight::Mapped {
                qtype,
                bytes: g.mapped(info),
            },
            _ => Weight::Candle(QMatMul::from_qtensor(g.qtensor(name, device)?)?),
        };
        Ok(Self {
            weight,
            bias: None,
            out_features: out,
            in_features: inp,
        })
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// The layer's output rows split into consecutive layers of `sizes` outputs (a fused
    /// projection: Phi-3's qkv and gate_up). Mapped GGUF rows stay in the map; a candle
    /// quantized weight is dequantized first; a dense weight is narrowed (a view while it trains).
    pub fn split_rows(&self, sizes: &[usize]) -> Result<Vec<Linear>> {
        if sizes.iter().sum::<usize>() != self.out_features || self.bias.is_some() {
            return Err(Error::Model(format!(
                "cannot split a layer of {} outputs{} into {sizes:?}",
                self.out_features,
                if self.bias.is_some() {
                    " with a bias"
                } else {
                    ""
                }
            )));
        }
        let mut start = 0;
        let mut parts = Vec::with_capacity(sizes.len());
        for &n in sizes {
            let weight = match &self.weight {
                Weight::Mapped { qtype, bytes } => {
                    let row = qtype.row_bytes(self.in_features);
                    let bytes = bytes
                        .range(start * row, n * row)
                        .ok_or_else(|| Error::Model("a split past the end of a weight".into()))?;
                    Weight::Mapped {
                        qtype: *qtype,
                        bytes,
                    }
                }
                Weight::Candle(QMatMul::Tensor(w)) => {
                    Weight::Candle(QMatMul::Tensor(narrow_rows(w, start, n)?))
                }
                Weight::Candle(QMatMul::TensorF16(w)) => {
                    Weight::Candle(QMatMul::TensorF16(narrow_rows(w, start, n)?))
                }
                Weight::Candle(QMatMul::QTensor(q)) => {
                    let w = q.dequantize(&Device::Cpu)?;
                    Weight::Candle(QMatMul::Tensor(narrow_rows(&w, start, n)?))
                }
            };
            parts.push(Linear {
                weight,
                bias: None,
                out_features: n,
                in_features: self.in_features,
            });
            start += n;
        }
        Ok(parts)
    }

    /// The same layer with a bias [out] (or none).
    pub fn with_bias(mut self, bias: Option<Tensor>) -> Result<Self> {
        if let Some(b) = &bias {
            if b.dims() != [self.out_features] {
                return Err(Error::Model(format!(
                    "a bias of shape {:?} for a layer of {} outputs",
                    b.dims(),
                    self.out_features
                )));
            }
        }
        self.bias = bias;
        Ok(self)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(Self::forward_many(&[self], x)?
            .pop()
            .expect("one layer, one output"))
    }

    /// Several layers on the same input x [..., in] (q, k and v; gate and up): where all hold
    /// GGUF blocks, one fused pass of the quantized kernels (the activations quantized once, the
    /// worker pool met once), each output the one its own `forward` gives; else one by one.
    pub fn forward_many(layers: &[&Linear], x: &Tensor) -> Result<Vec<Tensor>> {
        layers
            .iter()
            .zip(Self::products(layers, x)?)
            .map(|(l, y)| {
                Ok(match &l.bias {
                    Some(b) => y.broadcast_add(b)?,
                    None => y,
                })
            })
            .collect()
    }

    /// Each layer's x W^T as plain row-major values, in one fused pass over x read in place
    /// (no copy of x, no tensor around the outputs), when every layer holds GGUF blocks and
    /// none has a bias; None otherwise (use `forward_many`). For callers that go on elementwise (gate/up then the
    /// activation), so a prefill's widest activations are not held twice.
    pub fn forward_many_values(layers: &[&Linear], x: &Tensor) -> Result<Option<Vec<Vec<f32>>>> {
        if layers.iter().any(|l| l.bias.is_some()) {
            return Ok(None);
        }
        let Some(parts) = Self::parts(layers) else {
            return Ok(None);
        };
        Ok(Some(Self::run_parts(layers, &parts, x)?))
    }

    fn parts<'a>(layers: &[&'a Linear]) -> Option<Vec<quant::Part<'a>>> {
        layers
            .iter()
            .map(|l| match &l.weight {
                Weight::Mapped { qtype, bytes } => Some(quant::Part {
                    t: *qtype,
                    w: bytes.as_slice(),
                    n: l.out_features,
                }),
                Weight::Candle(_) => None,
            })
            .collect()
    }

    /// The fused quantized products of `parts` (the layers' weights) against x, read in place.
    fn run_parts(layers: &[&Linear], parts: &[quant::Part], x: &Tensor) -> Result<Vec<Vec<f32>>> {
        let k = *x.dims().last().unwrap_or(&0);
        if let Some(l) = layers.iter().find(|l| l.in_features != k) {
            return Err(Error::Model(format!(
                "linear layer expects {} inputs, got {k}",
                l.in_features
            )));
        }
        let m = x.elem_count() / k.max(1);
        Ok(super::ops::with_values(x, |xs| {
            Ok(quant::matmul_parts(parts, xs, m, k))
        })?)
    }

    /// x W^T of each layer, without its bias: one fused pass when all hold GGUF blocks.
    fn products(layers: &[&Linear], x: &Tensor) -> Result<Vec<Tensor>> {
        let Some(parts) = Self::parts(layers) else {
            return layers
                .iter()
                .map(|l| match &l.weight {
                    Weight::Candle(w) => Ok(w.forward(x)?),
                    Weight::Mapped { .. } => Ok(Self::products(&[l], x)?.remove(0)),
                })
                .collect();
        };
        let dims = x.dims().to_vec();
        layers
            .iter()
            .zip(Self::run_parts(layers, &parts, x)?)
            .map(|(l, ys)| {
                let mut out_dims = dims.clone();
                if let Some(last) = out_dims.last_mut() {
                    *last = l.out_features;
                }
                Ok(Tensor::from_vec(ys, out_dims, x.device())?)
            })
            .collect()
    }
}

impl Linear {
    /// The differentiable form (training, losses): x [..., in] -> [..., out] as one matmul over
    /// the rows, recording gradients for a dense weight and bias. Quantized weights run their
    /// kernels and record none (they cannot be trained).
    pub fn forward_t(&self, x: &Tensor) -> Result<Tensor> {
        let Weight::Candle(QMatMul::Tensor(w)) = &self.weight else {
            return self.forward(x);
        };
        let dims = x.dims().to_vec();
        let k = *dims.last().unwrap_or(&0);
        if k != self.in_features {
            return Err(Error::Model(format!(
                "linear layer expects {} inputs, got {k}",
                self.in_features
            )));
        }
        let m = x.elem_count() / k.max(1);
        let y = x.reshape((m, k))?.matmul(&w.t()?)?;
        let y = match &self.bias {
            Some(b) => super::ops::add_bias(&y, b)?,
            None => y,
        };
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = self.out_features;
        }
        Ok(y.reshape(out_dims)?)
    }
}

/// Rows start..start+n of a weight, as a view: rows of a packed matrix are packed, a parameter
/// being trained keeps its gradient flowing to the fused tensor, and a listing's zero-stride
/// placeholder stays unallocated.
fn narrow_rows(w: &Tensor, start: usize, n: usize) -> Result<Tensor> {
    Ok(w.narrow(0, start, n)?)
}

/// Token embedding table: rows dequantized on lookup, straight from the map when we can.
#[derive(Debug, Clone)]
pub enum Embedding {
    Mapped {
        qtype: QType,
        bytes: MappedBytes,
        rows: usize,
        dim: usize,
    },
    Candle(std::sync::Arc<QTensor>),
    /// A dense f32 table [rows, dim].
    Dense(Tensor),
}

impl Embedding {
    pub fn from_gguf(
        g: &GgufFile,
        name: &str,
        rows: usize,
        dim: usize,
        device: &Device,
    ) -> Result<Self> {
        let info = g.tensor_info_shaped(name, &[rows, dim])?;
        Ok(match QType::of(info.dtype) {
            Some(qtype) if device.is_cpu() => Embedding::Mapped {
                qtype,
                bytes: g.mapped(info),
                rows,
                dim,
            },
            _ => Embedding::Candle(std::sync::Arc::new(g.qtensor(name, device)?)),
        })
    }

    /// [len(ids), dim]
    pub fn forward(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        match self {
            Embedding::Candle(t) => Ok(t.embedding(&Tensor::new(ids, device)?)?),
            Embedding::Dense(t) => {
                let rows = t.dim(0)?;
                if let Some(&bad) = ids.iter().find(|&&i| i as usize >= rows) {
                    return Err(Error::InvalidArgument(format!(
                        "index {bad} is out of range for {rows} embeddings"
                    )));
                }
                Ok(t.index_select(&Tensor::new(ids, device)?, 0)?)
            }
            Embedding::Mapped {
                qtype,
                bytes,
                rows,
                dim,
            } => {
                let row_bytes = qtype.row_bytes(*dim);
                let mut out = vec![0f32; ids.len() * dim];
                for (&id, o) in ids.iter().zip(out.chunks_exact_mut(*dim)) {
                    let id = id as usize;
                    if id >= *rows {
                        return Err(Error::InvalidArgument(format!(
                            "token id {id} is out of range for {rows} embeddings"
                        )));
                    }
                    quant::dequantize_row(
                        *qtype,
                        &bytes.as_slice()[id * row_bytes..(id + 1) * row_bytes],
                        o,
                    );
                }
                Ok(Tensor::from_vec(out, (ids.len(), *dim), device)?)
            }
        }
    }

    /// The differentiable form: rows of a dense table by index_select (its gradient reaches the
    /// table); quantized tables are dequantized row by row and record none.
    pub fn forward_t(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        match self {
            Embedding::Dense(t) => {
                let rows = t.dim(0)?;
                if let Some(&bad) = ids.iter().find(|&&i| i as usize >= rows) {
                    return Err(Error::InvalidArgument(format!(
                        "token id {bad} is out of range for {rows} embeddings"
                    )));
                }
                Ok(t.index_select(&Tensor::new(ids, device)?, 0)?)
            }
            _ => self.forward(ids, device),
        }
    }

    /// The same table used as the output projection (tied embeddings).
    pub fn as_linear(&self) -> Result<Linear> {
        Ok(match self {
            Embedding::Candle(t) => Linear {
                weight: Weight::Candle(QMatMul::from_arc(t.clone())?),
                bias: None,
                out_features: t.shape().dims()[0],
                in_features: t.shape().dims()[1],
            },
            Embedding::Dense(t) => Linear::dense(t.clone(), None)?,
            Embedding::Mapped {
                qtype,
                bytes,
                rows,
                dim,
            } => Linear {
                weight: Weight::Mapped {
                    qtype: *qtype,
                    bytes: bytes.clone(),
                },
                bias: None,
                out_features: *rows,
                in_features: *dim,
            },
        })
    }
}
