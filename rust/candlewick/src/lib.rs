//! candlewick: transformer language models on candle, from tokenizer to sampler.
//!
//! Data flows one way: text -> `Tokenizer::encode` -> ids -> `Model::start` / `Model::step`
//! (embeddings -> N blocks -> norm -> head) -> logits -> `Sampler` -> id -> `StreamDecoder` ->
//! text. `generation::Generator` runs that loop; `io::checkpoint` reads every checkpoint kind;
//! `model::families` says what each family's checkpoints hold.

pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod generation;
pub mod interrupt;
pub mod io;
pub mod kernels;
pub mod memory;
pub mod model;
pub mod nn;
pub mod profile;
pub mod sampling;
pub mod tokenizer;
pub mod train;

pub use config::{GenerationConfig, ModelConfig};
pub use error::{Error, Result};
pub use generation::{FinishReason, Generator, Prompt};
pub use model::{load, Model};
pub use sampling::Sampler;
pub use tokenizer::Tokenizer;
