//! GGUF vocabulary -> tokenizer.
//!
//! A GGUF file carries `tokenizer.ggml.model` (the algorithm), `.tokens`, `.token_type`, `.merges`
//! and `.pre` (llama.cpp's name for the pre-tokenizer). We translate these into the equivalent
//! tokenizer.json and load that with HF tokenizers, so that ids match llama.cpp's.
//! The pre-tokenizer regexes are the ones llama.cpp lists for each `pre` name (llama-vocab.cpp).

use serde_json::{json, Value as Json};

use super::{ChatTemplate, Tokenizer};
use crate::error::{Error, Result};
use crate::io::gguf::{GgufFile, Value};

// llama.cpp token types (llama_token_type).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

const LLAMA3_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Texts llama.cpp also treats as end-of-generation when they are control tokens.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "<|eom_id|>",
    "<|end_of_text|>", "<｜end▁of▁sentence｜>",
];

fn split(pattern: &str) -> Json {
    json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false})
}

fn byte_level(use_regex: bool) -> Json {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

/// The pre-tokenizer for a llama.cpp `tokenizer.ggml.pre` name.
fn pre_tokenizer(pre: &str) -> Result<Json> {
    let seq = |v: Vec<Json>| json!({"type": "Sequence", "pretokenizers": v});
    Ok(match pre {
        "default" | "gpt-2" | "gpt2" | "olmo" | "jais" => byte_level(true),
        // Digits one by one, then GPT-2's regex (llama.cpp: STARCODER/REFACT/SMOLLM/...).
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            seq(vec![split(r"\p{N}"), byte_level(true)])
        }
        "llama3" | "llama-v3" | "llama-bpe" | "smaug-bpe" | "falcon3" | "pixtral" | "dbrx" => {
            seq(vec![split(LLAMA3_PATTERN), byte_level(false)])
        }
        "qwen2" | "deepseek-r1-qwen" | "megrez" => seq(vec![split(QWEN2_PATTERN), byte_level(false)]),
        other => {
            return Err(Error::Unsupported(format!(
                "GGUF pre-tokenizer '{other}' (tokenizer.ggml.pre); supported: default, gpt-2, smollm, starcoder, llama3/llama-bpe, qwen2"
            )))
        }
    })
}

fn string_array<'a>(gguf: &'a GgufFile, key: &str) -> Result<Vec<&'a str>> {
    let arr = gguf
        .require(key)?
        .as_array()
        .ok_or_else(|| Error::invalid_file(gguf.path(), format!("{key} is not an array")))?;
    arr.iter()
        .map(|v| v.as_str().ok_or_else(|| Error::invalid_file(gguf.path(), format!("{key} holds a non-string"))))
        .collect()
}

fn opt_id(gguf: &GgufFile, key: &str, n_vocab: usize) -> Result<Option<u32>> {
    match gguf.get(key) {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            // llama.cpp writes -1 (as u32 max) for "none".
            Some(i) if i >= 0 && (i as usize) < n_vocab => Ok(Some(i as u32)),
            Some(i) if i < 0 || i == u32::MAX as i64 => Ok(None),
            _ => Err(Error::invalid_file(gguf.path(), format!("{key} = {v:?} is not a token id below {n_vocab}"))),
        },
    }
}

pub(super) fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer> {
    let model = gguf
        .get_str("tokenizer.ggml.model")
        .ok_or_else(|| Error::invalid_file(gguf.path(), "no tokenizer in this GGUF (tokenizer.ggml.model is missing)"))?;
    if model != "gpt2" {
        return Err(Error::Unsupported(format!(
            "GGUF tokenizer model '{model}': candlewick reads byte-level BPE ('gpt2') vocabularies so far"
        )));
    }
    let tokens = string_array(gguf, "tokenizer.ggml.tokens")?;
    let n = tokens.len();
    let types: Vec<i64> = match gguf.get("tokenizer.ggml.token_type") {
        Some(Value::Array(a)) => a.iter().map(|v| v.as_i64().unwrap_or(1)).collect(),
        _ => vec![1; n],
    };
    if types.len() != n {
        return Err(Error::invalid_file(
            gguf.path(),
            format!("tokenizer.ggml.token_type has {} entries for {n} tokens", types.len()),
        ));
    }
    let merges = string_array(gguf, "tokenizer.ggml.merges")?;

    let mut vocab = serde_json::Map::with_capacity(n);
    let mut added = Vec::new();
    for (id, (&tok, &ty)) in tokens.iter().zip(&types).enumerate() {
        vocab.insert(tok.to_string(), json!(id));
        if ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED {
            added.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": ty == TOKEN_TYPE_CONTROL,
            }));
        }
    }
    let mut merge_pairs = Vec::with_capacity(merges.len());
    for m in &merges {
        let (a, b) = m
            .split_once(' ')
            .ok_or_else(|| Error::invalid_file(gguf.path(), format!("merge {m:?} is not two tokens")))?;
        merge_pairs.push(json!([a, b]));
    }
    let pre = gguf.get_str("tokenizer.ggml.pre").unwrap_or("default");
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer(pre)?,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merge_pairs,
        },
    });
    let text = serde_json::to_string(&spec).map_err(|e| Error::Tokenizer(e.to_string()))?;
    let inner: tokenizers::Tokenizer = text
        .parse()
        .map_err(|e| Error::invalid_file(gguf.path(), format!("GGUF vocabulary does not form a tokenizer: {e}")))?;

    let bos = opt_id(gguf, "tokenizer.ggml.bos_token_id", n)?;
    let eos = opt_id(gguf, "tokenizer.ggml.eos_token_id", n)?;
    let mut eog = Vec::new();
    for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let Some(id) = opt_id(gguf, key, n)? {
            eog.push(id);
        }
    }
    for (id, (&tok, &ty)) in tokens.iter().zip(&types).enumerate() {
        if ty == TOKEN_TYPE_CONTROL && EOG_TEXTS.contains(&tok) && !eog.contains(&(id as u32)) {
            eog.push(id as u32);
        }
    }
    // llama.cpp: BPE vocabularies add no BOS unless the file says so.
    let add_bos = gguf.get("tokenizer.ggml.add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false);
    let add_eos = gguf.get("tokenizer.ggml.add_eos_token").and_then(|v| v.as_bool()).unwrap_or(false);
    let template = match gguf.get_str("tokenizer.chat_template") {
        Some(src) => Some(ChatTemplate::new(src)?),
        None => None,
    };
    Ok(Tokenizer::from_parts(inner, bos, eos, eog, add_bos, add_eos, template))
}
