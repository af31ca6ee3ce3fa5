#![no_main]
//! See candlewick::fuzzing::gguf.
// libfuzzer-sys aborts on every panic, even one the engine catches and reports (the tokenizers
// crate's panics on malformed files are contained in candlewick::tokenizer): a quiet hook instead,
// so only a panic that escapes the engine (and so reaches libFuzzer's own catch) is a finding.
libfuzzer_sys::fuzz_target!(init: { std::panic::set_hook(Box::new(|i| if std::env::var_os("CANDLEWICK_FUZZ_VERBOSE").is_some() { eprintln!("panic: {i}") })); }, |data: &[u8]| candlewick::fuzzing::gguf(data));
