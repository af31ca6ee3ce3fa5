#![no_main]
//! See candlewick::fuzzing::gguf.
libfuzzer_sys::fuzz_target!(|data: &[u8]| candlewick::fuzzing::gguf(data));
