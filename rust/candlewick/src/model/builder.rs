//! `Vb`: a prefix path into a model's tensors, as candle's `VarBuilder`. A family builds its layers
//! from it (`vb.pp("model").pp("layers").pp(i).pp("self_attn").linear(q, h, bias)`), so each
//! tensor name is written once, where the layer is built, and the same build serves every use of
//! a checkpoint's names. What a request does depends on the source:
//!
//! - `Source::Files`: safetensors files (an HF folder): tensors read and checked against the shape
//!   the layer expects;
//! - `Source::Gguf`: a GGUF file: linear weights stay quantized in the memory map;
//! - `Source::Random`: HF's initialisation (weight matrices and embeddings N(0, 0.02), norm weights
//!   1, biases 0, sinusoidal position tables as sinusoids), seeded; every tensor made is kept, in
//!   the checkpoint's names, for `save`;
//! - `Source::Shapes`: nothing is read or allocated: names and shapes are recorded (parameter
//!   counts, shape listings), and the layers get zero-stride placeholders.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::io::gguf::GgufFile;
use crate::io::safetensors::SafetensorsFile;
use crate::nn::{Embedding, LayerNorm, Linear, Norm, RmsNorm};

/// How a source that makes tensors fills one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// N(0, 0.02): weight matrices, embeddings, T5's bias tables.
    Normal,
    Ones,
    Zeros,
    /// The fixed sinusoidal table (Vaswani et al.) of a learned-position slot.
    Sinusoidal,
    /// U(-1/sqrt(n), 1/sqrt(n)): torch's recurrent layers, n their hidden size (n = 100: U(-0.1, 0.1)).
    Uniform(usize),
}

pub enum Source<'a> {
    Files {
        files: &'a [SafetensorsFile],
        /// What errors name (the folder).
        path: &'a Path,
    },
    Gguf(&'a GgufFile),
    Random(Box<RefCell<Random>>),
    Shapes(RefCell<Vec<(String, Vec<usize>)>>),
    /// Tensors by checkpoint name, held by the layers as they are: training's variables (so
    /// gradients reach them and the next build sees their updates), or a trained model's weights.
    /// `gguf`: the names are a GGUF file's (a model dequantized from one).
    Params {
        params: &'a BTreeMap<String, Tensor>,
        gguf: bool,
    },
    /// Any source, every tensor read kept by name (what training makes its parameters from).
    Recorded {
        inner: Box<Source<'a>>,
        made: RefCell<BTreeMap<String, Tensor>>,
    },
}

pub struct Random {
    rng: rand::rngs::StdRng,
    made: BTreeMap<String, Tensor>,
}

impl Source<'_> {
    pub fn random(seed: u64) -> Source<'static> {
        Source::Random(Box::new(RefCell::new(Random {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            made: BTreeMap::new(),
        })))
    }

    pub fn shapes() -> Source<'static> {
        Source::Shapes(RefCell::new(Vec::new()))
    }

    /// `inner`, keeping every tensor a build reads.
    pub fn recorded<'b>(inner: Source<'b>) -> Source<'b> {
        Source::Recorded {
            inner: Box::new(inner),
            made: RefCell::new(BTreeMap::new()),
        }
    }

    /// The tensors a `Random` source made, or a `Recorded` one read, by checkpoint name.
    pub fn into_made(self) -> BTreeMap<String, Tensor> {
        match self {
            Source::Random(r) => (*r).into_inner().made,
            Source::Recorded { made, .. } => made.into_inner(),
            _ => BTreeMap::new(),
        }
    }

    /// The (name, shape) pairs a `Shapes` source recorded, in the order first asked for.
    pub fn into_shapes(self) -> Vec<(String, Vec<usize>)> {
        match self {
            Source::Shapes(s) => s.into_inner(),
            _ => Vec::new(),
        }
    }
}

/// A prefix path into a source.
#[derive(Clone)]
pub struct Vb<'a> {
    src: &'a Source<'a>,
    prefix: String,
    /// Every tensor name the build asked for (shared by all paths of one build).
    read: std::rc::Rc<RefCell<std::collections::BTreeSet<String>>>,
}

fn cpu() -> Device {
    Device::Cpu
}

impl<'a> Vb<'a> {
    pub fn new(src: &'a Source<'a>) -> Self {
        Vb {
            src,
            prefix: String::new(),
            read: Default::default(),
        }
    }

    /// Whether the build read tensor `name` (a full name) through any path.
    pub fn was_read(&self, name: &str) -> bool {
        self.read.borrow().contains(name)
    }

    fn mark(&self, name: &str) {
        self.read.borrow_mut().insert(name.to_string());
    }

    /// The path one segment further down: `vb.pp("model").pp("layers").pp(3)`.
    pub fn pp(&self, segment: impl std::fmt::Display) -> Vb<'a> {
        let prefix = if self.prefix.is_empty() {
            segment.to_string()
        } else {
            format!("{}.{segment}", self.prefix)
        };
        Vb {
            src: self.src,
            prefix,
            read: self.read.clone(),
        }
    }

    fn name(&self, leaf: &str) -> String {
        if self.prefix.is_empty() {
            leaf.into()
        } else {
            format!("{}.{leaf}", self.prefix)
        }
    }

    /// The same source and build at the top of its names (for tensors named outside a layer).
    pub fn root_of(vb: &Vb<'a>) -> Vb<'a> {
        Vb {
            src: vb.src,
            prefix: String::new(),
            read: vb.read.clone(),
        }
    }

    /// Tensors are read from a GGUF file (its own names and arithmetic apply).
    pub fn is_gguf(&self) -> bool {
        matches!(
            self.src.inner(),
            Source::Gguf(_) | Source::Params { gguf: true, .. }
        )
    }

    /// Nothing is read or allocated: the build only lists names and shapes.
    pub fn is_listing(&self) -> bool {
        matches!(self.src, Source::Shapes(_))
    }

    /// Whether the source holds tensor `leaf` here. Sources that make tensors hold every name a
    /// family asks for (so a family's canonical layout is what they make).
    pub fn has(&self, leaf: &str) -> bool {
        let name = self.name(leaf);
        match self.src.inner() {
            Source::Files { files, .. } => files.iter().any(|f| f.contains(&name)),
            Source::Gguf(g) => g.tensor_info(&name).is_some(),
            Source::Params { params, .. } => params.contains_key(&name),
            Source::Random(_) | Source::Shapes(_) | Source::Recorded { .. } => true,
        }
    }

    /// Whether the checkpoint itself stores tensor `leaf` (sources that make tensors store none):
    /// for tensors a family computes when a checkpoint leaves them out.
    pub fn stored(&self, leaf: &str) -> bool {
        matches!(
            self.src.inner(),
            Source::Files { .. } | Source::Gguf(_) | Source::Params { .. }
        ) && self.has(leaf)
    }

    /// The f32 tensor `leaf`, which must have `shape`.
    pub fn tensor(&self, leaf: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let name = self.name(leaf);
        self.mark(&name);
        if let Source::Recorded { inner, made } = self.src {
            let t = Vb {
                src: &**inner,
                prefix: String::new(),
                read: self.read.clone(),
            }
            .tensor(&name, shape, init)?;
            made.borrow_mut().insert(name, t.clone());
            return Ok(t);
        }
        match self.src {
            Source::Params { params, .. } => match params.get(&name) {
                Some(v) if v.dims() == shape => Ok(v.clone()),
                Some(v) => Err(Error::Model(format!(
                    "parameter {name} has shape {:?}, expected {shape:?}",
                    v.dims()
                ))),
                None => Err(Error::Model(format!(
                    "no parameter {name} (expected shape {shape:?})"
                ))),
            },
            Source::Recorded { .. } => Err(Error::Model(
                "a recorded source inside a recorded source".into(),
            )),
            Source::Files { files, path } => match files.iter().find(|f| f.contains(&name)) {
                Some(f) => f.tensor(&name, shape, &cpu()),
                None => Err(Error::invalid_file(
                    *path,
                    format!("tensor {name} is missing (expected shape {shape:?})"),
                )),
            },
            Source::Gguf(g) => {
                g.tensor_info_shaped(&name, shape)?;
                g.dequantize(&name)
            }
            Source::Random(r) => r.borrow_mut().make(name, shape, init),
            Source::Shapes(s) => {
                let mut s = s.borrow_mut();
                if !s.iter().any(|(n, _)| *n == name) {
                    s.push((name, shape.to_vec()));
                }
                Ok(Tensor::zeros((), DType::F32, &cpu())?.broadcast_as(shape)?)
            }
        }
    }

    /// y = x W^T (+ b): "weight" [out, inp] and, with `bias`, "bias" [out].
    pub fn linear(&self, out: usize, inp: usize, bias: bool) -> Result<Linear> {
        let bias = |vb: &Self| -> Result<Option<Tensor>> {
            if bias {
                Ok(Some(vb.tensor("bias", &[out], Init::Zeros)?))
            } else {
                Ok(None)
            }
        };
        if let Source::Gguf(g) = self.src.inner() {
            if !matches!(self.src, Source::Recorded { .. }) {
                self.mark(&self.name("weight"));
                return Linear::from_gguf(g, &self.name("weight"), out, inp, &cpu())?
                    .with_bias(bias(self)?);
            }
        }
        let w = self.tensor("weight", &[out, inp], Init::Normal)?;
        Linear::dense(w, bias(self)?)
    }

    /// A Conv1D (GPT-2): "weight" stored [inp, parts * out], "bias" [parts * out], split into
    /// `parts` linear layers of `out` outputs each (GPT-2's fused q/k/v: 3).
    pub fn conv1d(&self, inp: usize, out: usize, parts: usize) -> Result<Vec<Linear>> {
        let w = self.tensor("weight", &[inp, parts * out], Init::Normal)?;
        let b = self.tensor("bias", &[parts * out], Init::Zeros)?;
        if let Source::Shapes(_) = self.src {
            // placeholders of the layers' shapes: no transposed copy of a weight never read
            let w = Tensor::zeros((), DType::F32, &cpu())?.broadcast_as((out, inp))?;
            let b = Tensor::zeros((), DType::F32, &cpu())?.broadcast_as(out)?;
            return (0..parts)
                .map(|_| Linear::dense(w.clone(), Some(b.clone())))
                .collect();
        }
        // A parameter being trained is read through views (the matmul takes strided weights):
        // packed copies would be remade every step, and their gradients reach the parameter as
        // transposed views the optimizer would have to pack again.
        let train = w.is_variable();
        let w = w.t()?;
        let pack = |t: Tensor| if train { Ok(t) } else { t.contiguous() };
        (0..parts)
            .map(|j| {
                Linear::dense(
                    pack(w.i(j * out..(j + 1) * out)?)?,
                    Some(pack(b.i(j * out..(j + 1) * out)?)?),
                )
            })
            .collect()
    }

    /// A token table: "weight" [rows, dim].
    pub fn embedding(&self, rows: usize, dim: usize) -> Result<Embedding> {
        if let Source::Gguf(g) = self.src {
            self.mark(&self.name("weight"));
            return Embedding::from_gguf(g, &self.name("weight"), rows, dim, &cpu());
        }
        // (a recorded GGUF source dequantizes: what training from a GGUF file starts from)
        Ok(Embedding::Dense(self.tensor(
            "weight",
            &[rows, dim],
            Init::Normal,
        )?))
    }

    /// A learned position table "weight" [positions, dim] (with `sinusoidal`, made as the fixed
    /// sinusoids by sources that make tensors).
    pub fn positions(&self, positions: usize, dim: usize, sinusoidal: bool) -> Result<Embedding> {
        let init = if sinusoidal {
            Init::Sinusoidal
        } else {
            Init::Normal
        };
        Ok(Embedding::Dense(self.tensor(
            "weight",
            &[positions, dim],
            init,
        )?))
    }

    /// RMSNorm: "weight" [dim].
    pub fn rms_norm(&self, dim: usize, eps: f64) -> Result<Norm> {
        Ok(Norm::Rms(self.rms(dim, eps)?))
    }

    /// The RMSNorm itself (per-head q/k norms are applied to slices).
    pub fn rms(&self, dim: usize, eps: f64) -> Result<RmsNorm> {
        let w = self.tensor("weight", &[dim], Init::Ones)?;
        if self.is_listing() {
            return Ok(RmsNorm::unread(eps));
        }
        RmsNorm::new(w, eps)
    }

    /// RMSNorm whose stored "weight" [dim] is w and which multiplies by 1 + w (HF Gemma; its
    /// GGUF files store 1 + w). Sources that make tensors make w = 0.
    pub fn rms_norm_one_plus(&self, dim: usize, eps: f64) -> Result<Norm> {
        let w = self.tensor("weight", &[dim], Init::Zeros)?;
        if self.is_listing() {
            return Ok(Norm::Rms(RmsNorm::unread(eps)));
        }
        Ok(Norm::Rms(RmsNorm::new((w + 1.0)?, eps)?))
    }

    /// LayerNorm: "weight" [dim] and, with `bias`, "bias" [dim].
    pub fn layer_norm(&self, dim: usize, bias: bool, eps: f64) -> Result<Norm> {
        let w = self.tensor("weight", &[dim], Init::Ones)?;
        let b = if bias {
            Some(self.tensor("bias", &[dim], Init::Zeros)?)
        } else {
            None
        };
        if self.is_listing() {
            return Ok(Norm::Layer(LayerNorm::unread(eps)));
        }
        Ok(Norm::Layer(LayerNorm::new(w, b, eps)?))
    }
}

impl<'a> Source<'a> {
    /// The source tensors come from (a recorded source's inner one).
    fn inner(&self) -> &Source<'a> {
        match self {
            Source::Recorded { inner, .. } => inner,
            other => other,
        }
    }
}

impl Random {
    /// A tensor filled as `init` says, kept under its name (asked twice: the same tensor).
    fn make(&mut self, name: String, shape: &[usize], init: Init) -> Result<Tensor> {
        if let Some(t) = self.made.get(&name) {
            return Ok(t.clone());
        }
        let n: usize = shape.iter().product();
        let data: Vec<f32> = match init {
            Init::Ones => vec![1.0; n],
            Init::Zeros => vec![0.0; n],
            Init::Sinusoidal => crate::nn::position::sinusoidal_table(shape[0], shape[1]),
            Init::Uniform(fan) => {
                let bound = 1.0 / (fan.max(1) as f64).sqrt();
                (0..n)
                    .map(|_| ((self.rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
                    .collect()
            }
            // Box-Muller, in f64.
            Init::Normal => (0..n)
                .map(|_| {
                    let u1: f64 = self.rng.random::<f64>().max(f64::MIN_POSITIVE);
                    let u2: f64 = self.rng.random::<f64>();
                    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * 0.02) as f32
                })
                .collect(),
        };
        let t = Tensor::from_vec(data, shape, &cpu())?;
        self.made.insert(name, t.clone());
        Ok(t)
    }
}
