//! Checkpoint files: GGUF (llama.cpp) and safetensors (HF); headers validated before use.
pub mod gguf;
pub mod safetensors;
