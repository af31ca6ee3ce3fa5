//! Families say *what* a checkpoint is: tensor names, shapes and options, mapped onto nn/ blocks.
pub mod llama;
pub mod hf;
pub mod bert;
