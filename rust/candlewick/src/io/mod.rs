//! Checkpoint files: one reader for every kind (checkpoint.rs), the formats it reads (GGUF from
//! llama.cpp, safetensors from HF), headers validated before use, and one table of tensor types.
pub mod checkpoint;
pub mod gguf;
pub mod safetensors;
pub mod types;
