//! Building blocks shared by every architecture. *How* to compute lives here, once.
pub mod attention;
pub mod kv_cache;
pub mod linear;
pub mod mlp;
pub mod norm;
pub mod ops;
pub mod position;
pub mod rnn;
pub mod rope;

pub use attention::Attention;
pub use kv_cache::{Cache, KvCache, KvDtype};
pub use linear::{Embedding, Linear};
pub use mlp::Mlp;
pub use norm::{LayerNorm, Norm, RmsNorm};
pub use position::RelativeBias;
pub use rope::Rope;
