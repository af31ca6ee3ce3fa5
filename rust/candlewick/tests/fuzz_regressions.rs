//! Every input the fuzzers (fuzz/) found crashing the engine, kept in tests/fixtures/fuzz/TARGET/,
//! run again through the same entry point: each must now return normally.

use std::path::Path;

fn run_all(target: &str, f: impl Fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/fuzz")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let data = std::fs::read(e.path()).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&data)));
        assert!(r.is_ok(), "{} panicked", e.path().display());
        n += 1;
    }
    n
}

#[test]
fn fuzz_findings_stay_fixed() {
    let config = include_str!("../../../tests/fixtures/tiny-llama/config.json");
    let n = run_all("gguf", candlewick::fuzzing::gguf)
        + run_all("safetensors", |d| {
            candlewick::fuzzing::safetensors(d, config)
        })
        + run_all("tokenizer_json", candlewick::fuzzing::tokenizer_json)
        + run_all("chat_template", candlewick::fuzzing::chat_template);
    assert!(n >= 1, "no regression inputs found");
}
