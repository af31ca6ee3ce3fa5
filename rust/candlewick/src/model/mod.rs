//! A model: its stacks (an encoder, a decoder, or both, each the one `Transformer` type), its
//! tokenizer and what its checkpoint said about itself. load.rs reads checkpoints and builds or
//! saves models, state.rs starts and steps requests (the one way every architecture is run),
//! tasks.rs holds the verbs built on them (logits, scores, embeddings, fill-mask).

pub mod builder;
pub mod families;
pub mod heads;
mod load;
mod perplexity;
pub mod quantize;
pub mod recurrent;
pub mod state;
mod tasks;
pub mod transformer;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{GenerationConfig, ModelConfig};
use crate::error::{Error, Result};
use crate::nn::KvDtype;
use crate::tokenizer::Tokenizer;
use recurrent::RecurrentLm;

pub use crate::io::checkpoint::ModelInfo;
pub use load::{load, load_dequantized, SentenceSettings};
pub use perplexity::{Perplexity, PerplexityOptions};
pub use state::{Logits, State, Step, UBATCH};
pub use tasks::{Encoded, MaskFill, Score};
pub use transformer::{Batch, Trace, Transformer};

/// The stacks of a model: an encoder (BERT), a decoder (GPT-2, Llama, Gemma) or both (T5,
/// whose decoder blocks cross-attend to the encoder's output); or, instead of transformers, a
/// recurrent LM.
pub struct Stacks {
    pub encoder: Option<Transformer>,
    pub decoder: Option<Transformer>,
    pub recurrent: Option<RecurrentLm>,
}

impl Stacks {
    pub fn decoder(t: Transformer) -> Self {
        Stacks {
            encoder: None,
            decoder: Some(t),
            recurrent: None,
        }
    }

    pub fn encoder(t: Transformer) -> Self {
        Stacks {
            encoder: Some(t),
            decoder: None,
            recurrent: None,
        }
    }

    pub fn recurrent(r: RecurrentLm) -> Self {
        Stacks {
            encoder: None,
            decoder: None,
            recurrent: Some(r),
        }
    }
}

pub struct Model {
    pub config: ModelConfig,
    /// Reads the whole input at once (encoders; the first stack of an encoder-decoder).
    pub encoder: Option<Transformer>,
    /// Produces tokens one step at a time (decoders; the second stack of an encoder-decoder).
    pub decoder: Option<Transformer>,
    /// A recurrent LM, in place of transformer stacks.
    pub recurrent: Option<RecurrentLm>,
    /// None for a folder without tokenizer.json: calls with ids work, calls with text do not.
    pub tokenizer: Option<Arc<Tokenizer>>,
    /// Ids that end generation: the tokenizer's, or the checkpoint config's when there is none.
    eog_token_ids: Vec<u32>,
    bos_token_id: Option<u32>,
    /// Generation defaults (a folder's generation_config.json, else the engine's).
    pub generation: GenerationConfig,
    pub info: ModelInfo,
    pub sentence: Option<SentenceSettings>,
    /// The checkpoint tensors of a model built from a config, trained, or dequantized (what
    /// `save` writes and training starts from).
    pub built: Option<BTreeMap<String, candle_core::Tensor>>,
    /// `built` holds a GGUF file's tensor names (a model dequantized from one).
    pub gguf_names: bool,
    /// How new requests' self-attention caches store keys and values (a `KvDtype` as u8):
    /// f16 for GGUF models, as llama.cpp; f32 for float checkpoints, as transformers keeps
    /// them in the weights' dtype. Settable on a shared model; running requests keep theirs.
    kv_dtype: std::sync::atomic::AtomicU8,
}

/// The cache dtype a model loaded from a file of this format starts with.
fn default_kv_dtype(format: &str) -> KvDtype {
    if format == "gguf" {
        KvDtype::F16
    } else {
        KvDtype::F32
    }
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

    pub fn name(&self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
        }
    }
}

impl Model {
    fn new(
        config: ModelConfig,
        stacks: Stacks,
        tokenizer: Option<Arc<Tokenizer>>,
        info: ModelInfo,
    ) -> Self {
        let eog_token_ids = tokenizer
            .as_ref()
            .map(|t| t.eog_token_ids().to_vec())
            .unwrap_or_default();
        let bos_token_id = tokenizer.as_ref().and_then(|t| t.bos_token_id());
        let info_format = info.format;
        Model {
            config,
            encoder: stacks.encoder,
            decoder: stacks.decoder,
            recurrent: stacks.recurrent,
            tokenizer,
            eog_token_ids,
            bos_token_id,
            generation: GenerationConfig::default(),
            info,
            sentence: None,
            built: None,
            gguf_names: false,
            kv_dtype: (default_kv_dtype(info_format) as u8).into(),
        }
    }

    /// How new requests' self-attention caches store keys and values.
    pub fn kv_cache_dtype(&self) -> KvDtype {
        match self.kv_dtype.load(std::sync::atomic::Ordering::Relaxed) {
            x if x == KvDtype::F16 as u8 => KvDtype::F16,
            _ => KvDtype::F32,
        }
    }

    /// Store the caches of requests started from now on in `dtype`.
    pub fn set_kv_cache_dtype(&self, dtype: KvDtype) {
        self.kv_dtype
            .store(dtype as u8, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The context the model supports (its trained positions).
    pub fn context_length(&self) -> usize {
        self.config.max_position_embeddings
    }

    /// The tokenizer, for calls that take text.
    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_deref().ok_or_else(|| self.no_tokenizer())
    }

    /// The tokenizer, shared.
    pub fn shared_tokenizer(&self) -> Result<Arc<Tokenizer>> {
        self.tokenizer.clone().ok_or_else(|| self.no_tokenizer())
    }

    fn no_tokenizer(&self) -> Error {
        Error::Unsupported(format!(
            "{} has no tokenizer (tokenizer.json): pass token ids instead of text",
            self.info.path.display()
        ))
    }

    pub fn eog_token_ids(&self) -> &[u32] {
        &self.eog_token_ids
    }

    /// Whether `id` ends generation (EOS, end of turn, ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog_token_ids.contains(&id)
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_token_id
    }

    /// Whether the model produces tokens (a decoder, an encoder-decoder or a recurrent LM):
    /// verbs that generate or score check this.
    pub fn require_decoder(&self, verb: &str) -> Result<()> {
        if self.decoder.is_some() || self.recurrent.is_some() {
            return Ok(());
        }
        Err(Error::Unsupported(format!(
            "{verb} is for decoders; this model is an encoder: use encode, embed or fill_mask"
        )))
    }

    /// The encoder stack of an encoder-only model, for verbs that read whole sequences.
    pub fn require_encoder(&self, verb: &str) -> Result<&Transformer> {
        match (&self.encoder, &self.decoder) {
            (Some(e), None) => Ok(e),
            (_, Some(_)) if self.encoder.is_some() => Err(Error::Unsupported(format!(
                "{verb} is for encoders; this model is an encoder-decoder: use generate or logits"
            ))),
            _ => Err(Error::Unsupported(format!(
                "{verb} is for encoders; this model is a decoder: use generate or logits"
            ))),
        }
    }
}
