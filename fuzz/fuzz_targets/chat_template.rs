#![no_main]
//! See candlewick::fuzzing::chat_template.
libfuzzer_sys::fuzz_target!(|data: &[u8]| candlewick::fuzzing::chat_template(data));
