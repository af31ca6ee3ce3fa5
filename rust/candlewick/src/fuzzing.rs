//! What the fuzz targets (fuzz/) and their regression tests (tests/fuzz_regressions.rs) run on
//! one input: the engine's readers of untrusted files, end to end. Each must return, whatever
//! the bytes: Ok or an error, never a panic, abort or hang.

use std::path::{Path, PathBuf};

/// `data` written as `name` in a per-process scratch folder (None if it cannot be written).
fn input(name: &str, data: &[u8]) -> Option<PathBuf> {
    let base = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let p = PathBuf::from(base)
        .join(format!("candlewick-fuzz-{}", std::process::id()))
        .join(name);
    std::fs::create_dir_all(p.parent()?).ok()?;
    std::fs::write(&p, data).ok()?;
    Some(p)
}

/// Any bytes as a .gguf file: open it (header, metadata, tensor index), size it, read its
/// vocabulary, load it as a model and run two tokens through it.
pub fn gguf(data: &[u8]) {
    keep_last(data);
    let Some(p) = input("input.gguf", data) else {
        return;
    };
    if let Ok(g) = crate::io::gguf::GgufFile::open(&p) {
        let _ = crate::Tokenizer::from_gguf(&g);
    }
    let _ = crate::memory::Subject::from_path(&p);
    if let Ok(m) = crate::load(&p) {
        let _ = m.logits(&[vec![0u32, 1]], None, None, 1);
    }
}

/// Any bytes as the model.safetensors of a folder whose config.json is `config`: read the
/// header, load the folder, run it.
pub fn safetensors(data: &[u8], config: &str) {
    keep_last(data);
    let (Some(_), Some(p)) = (
        input("model/config.json", config.as_bytes()),
        input("model/model.safetensors", data),
    ) else {
        return;
    };
    let Some(d) = p.parent().map(Path::to_path_buf) else {
        return;
    };
    let _ = crate::io::safetensors::SafetensorsHeader::read(&p);
    if let Ok(m) = crate::load(&d) {
        let _ = m.logits(&[vec![0u32, 1]], None, None, 1);
    }
}

/// Any bytes as a tokenizer.json: load it, encode and decode a mixed string.
pub fn tokenizer_json(data: &[u8]) {
    keep_last(data);
    let Some(p) = input("tokenizer.json", data) else {
        return;
    };
    if let Ok(t) = crate::Tokenizer::from_file(&p) {
        if let Ok(ids) = t.encode("Hello wörld, <s> 12 345 \u{1F600}\n\tend", true) {
            let _ = t.decode(&ids, false);
            let _ = t.decode(&ids, true);
        }
        let _ = t.decode(&[0, 1, 2, u32::MAX], false);
    }
}

/// With CANDLEWICK_FUZZ_LAST=PATH, every input is written to PATH before it runs: a crash
/// libFuzzer cannot catch (a stack overflow kills the process before its handler can save the
/// input) leaves the culprit there.
fn keep_last(data: &[u8]) {
    if let Some(p) = std::env::var_os("CANDLEWICK_FUZZ_LAST") {
        let _ = std::fs::write(p, data);
    }
}

/// Any text as a chat template: compile it and render a short conversation under the limits.
pub fn chat_template(data: &[u8]) {
    keep_last(data);
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = crate::tokenizer::ChatTemplate::new(src) else {
        return;
    };
    let messages = serde_json::json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2+2?"}
    ]);
    let _ = t.render(&messages, true, "<s>", "</s>");
}
