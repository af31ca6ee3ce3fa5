//! Checkpoint files: GGUF (llama.cpp) now; safetensors comes with the architectures issue.
pub mod gguf;
