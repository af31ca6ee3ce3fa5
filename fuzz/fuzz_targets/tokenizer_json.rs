#![no_main]
//! See candlewick::fuzzing::tokenizer_json.
libfuzzer_sys::fuzz_target!(|data: &[u8]| candlewick::fuzzing::tokenizer_json(data));
