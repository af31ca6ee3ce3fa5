//! candlewick: transformer language models on candle, from tokenizer to sampler.
//!
//! Data flows one way: text -> `Tokenizer::encode` -> ids -> `Transformer::forward` -> logits ->
//! `Sampler` -> id -> `StreamDecoder` -> text. `generation::Generator` runs that loop.

pub mod config;
pub mod error;
pub mod generation;
pub mod io;
pub mod kernels;
pub mod memory;
pub mod model;
pub mod nn;
pub mod sampling;
pub mod tokenizer;

pub use config::ModelConfig;
pub use error::{Error, Result};
pub use generation::{FinishReason, GenerationParams, Generator};
pub use model::{load, Model};
pub use sampling::{Sampler, SamplingParams};
pub use tokenizer::Tokenizer;
