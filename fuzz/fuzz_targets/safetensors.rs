#![no_main]
//! See candlewick::fuzzing::safetensors (the folder's config.json is the tiny Llama fixture's).
const CONFIG: &str = include_str!("../../tests/fixtures/tiny-llama/config.json");
libfuzzer_sys::fuzz_target!(|data: &[u8]| candlewick::fuzzing::safetensors(data, CONFIG));
