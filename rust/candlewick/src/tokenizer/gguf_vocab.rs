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
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<EOT>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<｜end▁of▁sentence｜>",
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
        .map(|v| {
            v.as_str().ok_or_else(|| {
                Error::invalid_file(gguf.path(), format!("{key} holds a non-string"))
            })
        })
        .collect()
}

fn opt_id(gguf: &GgufFile, key: &str, n_vocab: usize) -> Result<Option<u32>> {
    match gguf.get(key) {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            // llama.cpp writes -1 (as u32 max) for "none".
            Some(i) if i >= 0 && (i as usize) < n_vocab => Ok(Some(i as u32)),
            Some(i) if i < 0 || i == u32::MAX as i64 => Ok(None),
            _ => Err(Error::invalid_file(
                gguf.path(),
                format!("{key} = {v:?} is not a token id below {n_vocab}"),
            )),
        },
    }
}

pub(super) fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer> {
    let model = gguf.get_str("tokenizer.ggml.model").ok_or_else(|| {
        Error::invalid_file(
            gguf.path(),
            "no tokenizer in this GGUF (tokenizer.ggml.model is missing)",
        )
    })?;
    if model == "llama" {
        return from_gguf_spm(gguf);
    }
    if model != "gpt2" {
        return Err(Error::Unsupported(format!(
            "GGUF tokenizer model '{model}': candlewick reads byte-level BPE ('gpt2') and SentencePiece ('llama') vocabularies"
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
            format!(
                "tokenizer.ggml.token_type has {} entries for {n} tokens",
                types.len()
            ),
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
        let (a, b) = m.split_once(' ').ok_or_else(|| {
            Error::invalid_file(gguf.path(), format!("merge {m:?} is not two tokens"))
        })?;
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
    let inner: tokenizers::Tokenizer = text.parse().map_err(|e| {
        Error::invalid_file(
            gguf.path(),
            format!("GGUF vocabulary does not form a tokenizer: {e}"),
        )
    })?;

    // llama.cpp: BPE vocabularies add no BOS unless the file says so.
    finish(gguf, inner, &tokens, &types, false)
}

/// The llama.cpp `tokenizer.ggml.pre` name of a byte-level BPE pre-tokenizer (tokenizer.json
/// form), the inverse of `pre_tokenizer`.
fn pre_name(pre: &Json) -> Result<&'static str> {
    let ty = |j: &Json| j["type"].as_str().unwrap_or("").to_string();
    fn regex(j: &Json) -> Option<&str> {
        (j["type"] == "Split")
            .then(|| j["pattern"]["Regex"].as_str())
            .flatten()
    }
    let byte_level = |j: &Json, with_regex: bool| {
        ty(j) == "ByteLevel" && j["use_regex"].as_bool().unwrap_or(true) == with_regex
    };
    let digits = |j: &Json| {
        (ty(j) == "Digits" && j["individual_digits"].as_bool() == Some(true))
            || regex(j) == Some(r"\p{N}")
    };
    if byte_level(pre, true) {
        return Ok("gpt-2");
    }
    if let Some([a, b]) = pre["pretokenizers"].as_array().map(Vec::as_slice) {
        if digits(a) && byte_level(b, true) {
            return Ok("smollm");
        }
        if regex(a) == Some(LLAMA3_PATTERN) && byte_level(b, false) {
            return Ok("llama-bpe");
        }
        if regex(a) == Some(QWEN2_PATTERN) && byte_level(b, false) {
            return Ok("qwen2");
        }
    }
    Err(Error::Unsupported(format!(
        "this tokenizer's pre-tokenizer has no llama.cpp name (GPT-2's, SmolLM's, Llama 3's and Qwen2's are written): {pre}"
    )))
}

/// The `tokenizer.*` metadata of a GGUF file for `t`, as llama.cpp's converter writes a
/// byte-level BPE vocabulary (`tokenizer.ggml.model = "gpt2"`: tokens by id, token types,
/// merges, the pre-tokenizer's llama.cpp name, BOS/EOS, add-BOS/EOS, chat template); the
/// stand-in of a model without a vocabulary (`Tokenizer::ids_only`) as llama.cpp's "none".
/// Other tokenizers (SentencePiece, WordPiece, Unigram) are refused: not built yet.
pub(super) fn gguf_metadata(t: &Tokenizer) -> Result<Vec<(String, Value)>> {
    let text = t
        .inner
        .to_string(false)
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    let spec: Json = serde_json::from_str(&text).map_err(|e| Error::Tokenizer(e.to_string()))?;
    let model = &spec["model"];
    let kind = model["type"].as_str().unwrap_or("?");
    let vocab = model["vocab"].as_object();
    let ids_only = kind == "WordLevel"
        && vocab.is_some_and(|v| {
            v.iter()
                .all(|(k, id)| id.as_u64().is_some_and(|i| *k == format!("[{i}]")))
        });
    if ids_only {
        return Ok(vec![(
            "tokenizer.ggml.model".into(),
            Value::String("none".into()),
        )]);
    }
    let refuse = |what: String| {
        Err(Error::Unsupported(format!(
            "writing {what} as a GGUF vocabulary is not built yet"
        )))
    };
    if kind != "BPE" || model["byte_fallback"].as_bool() == Some(true) {
        return refuse(format!(
            "a {kind} tokenizer{}",
            if kind == "BPE" {
                " with byte fallback (SentencePiece style)"
            } else {
                ""
            }
        ));
    }
    if !matches!(spec["normalizer"]["type"].as_str(), None | Some("NFC")) {
        return refuse(format!(
            "a tokenizer with the normalizer {}",
            spec["normalizer"]
        ));
    }
    let pre = pre_name(&spec["pre_tokenizer"])?;
    let mut tokens: Vec<Option<(String, i32)>> = Vec::new();
    let mut put = |id: u64, tok: &str, ty: i32| -> Result<()> {
        let id = usize::try_from(id)
            .ok()
            .filter(|&i| i < 1 << 24)
            .ok_or_else(|| Error::Tokenizer(format!("token id {id} is out of range")))?;
        if tokens.len() <= id {
            tokens.resize(id + 1, None);
        }
        tokens[id] = Some((tok.to_string(), ty));
        Ok(())
    };
    for (tok, id) in vocab.into_iter().flatten() {
        put(
            id.as_u64()
                .ok_or_else(|| Error::Tokenizer(format!("token {tok:?} has id {id}")))?,
            tok,
            1,
        )?;
    }
    for a in spec["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(tok)) = (a["id"].as_u64(), a["content"].as_str()) else {
            continue;
        };
        let special = a["special"].as_bool().unwrap_or(false);
        put(
            id,
            tok,
            if special {
                TOKEN_TYPE_CONTROL as i32
            } else {
                TOKEN_TYPE_USER_DEFINED as i32
            },
        )?;
    }
    if let Some(gap) = tokens.iter().position(Option::is_none) {
        return Err(Error::Tokenizer(format!(
            "the vocabulary has no token of id {gap}: a GGUF vocabulary lists every id"
        )));
    }
    let (names, types): (Vec<Value>, Vec<Value>) = tokens
        .into_iter()
        .flatten()
        .map(|(s, ty)| (Value::String(s), Value::I32(ty)))
        .unzip();
    let mut merges = Vec::new();
    for m in model["merges"].as_array().into_iter().flatten() {
        merges.push(Value::String(
            match (m.as_str(), m.as_array().map(Vec::as_slice)) {
                (Some(s), _) => s.to_string(),
                (_, Some([Json::String(a), Json::String(b)])) => format!("{a} {b}"),
                _ => return Err(Error::Tokenizer(format!("merge {m} is not two tokens"))),
            },
        ));
    }
    let mut m = vec![
        (
            "tokenizer.ggml.model".to_string(),
            Value::String("gpt2".into()),
        ),
        ("tokenizer.ggml.pre".to_string(), Value::String(pre.into())),
        ("tokenizer.ggml.tokens".to_string(), Value::Array(names)),
        ("tokenizer.ggml.token_type".to_string(), Value::Array(types)),
        ("tokenizer.ggml.merges".to_string(), Value::Array(merges)),
    ];
    if let Some(id) = t.bos_token_id {
        m.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(id)));
    }
    if let Some(id) = t.eos_token_id {
        m.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(id)));
    }
    if let Some(&id) = t.eog_token_ids.iter().find(|&&i| Some(i) != t.eos_token_id) {
        m.push(("tokenizer.ggml.eot_token_id".into(), Value::U32(id)));
    }
    m.push((
        "tokenizer.ggml.add_bos_token".into(),
        Value::Bool(t.prepend_bos),
    ));
    m.push((
        "tokenizer.ggml.add_eos_token".into(),
        Value::Bool(t.append_eos),
    ));
    if let Some(c) = &t.chat_template {
        m.push((
            "tokenizer.chat_template".into(),
            Value::String(c.source().to_string()),
        ));
    }
    Ok(m)
}

/// Gemma's chat format, for Gemma files that carry no template: turns between
/// `<start_of_turn>user` / `<start_of_turn>model` and `<end_of_turn>`, a system message put at
/// the head of the first user turn, roles alternating.
const GEMMA_TEMPLATE: &str = "{{ bos_token }}\
{%- set sys = '' -%}
{%- set msgs = messages -%}
{%- if messages and messages[0]['role'] == 'system' -%}
{%- set sys = messages[0]['content'] ~ '\n\n' -%}
{%- set msgs = messages[1:] -%}
{%- endif -%}
{%- for m in msgs -%}
{%- if (m['role'] == 'user') != (loop.index0 % 2 == 0) -%}
{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
{%- endif -%}
{{ '<start_of_turn>' ~ ('model' if m['role'] == 'assistant' else m['role']) ~ '\n' }}
{{- (sys if loop.first else '') ~ (m['content'] | trim) ~ '<end_of_turn>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}";

/// The ids and flags every GGUF vocabulary shares: BOS/EOS, end-of-generation ids, add BOS/EOS,
/// chat template.
fn finish(
    gguf: &GgufFile,
    inner: tokenizers::Tokenizer,
    tokens: &[&str],
    types: &[i64],
    default_bos: bool,
) -> Result<Tokenizer> {
    let n = tokens.len();
    let bos = opt_id(gguf, "tokenizer.ggml.bos_token_id", n)?;
    let eos = opt_id(gguf, "tokenizer.ggml.eos_token_id", n)?;
    let mut eog = Vec::new();
    for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let Some(id) = opt_id(gguf, key, n)? {
            eog.push(id);
        }
    }
    for (id, (&tok, &ty)) in tokens.iter().zip(types).enumerate() {
        if ty == TOKEN_TYPE_CONTROL && EOG_TEXTS.contains(&tok) && !eog.contains(&(id as u32)) {
            eog.push(id as u32);
        }
    }
    let add_bos = gguf
        .get("tokenizer.ggml.add_bos_token")
        .and_then(|v| v.as_bool())
        .unwrap_or(default_bos);
    let add_eos = gguf
        .get("tokenizer.ggml.add_eos_token")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let arch = gguf.get_str("general.architecture").unwrap_or("");
    let template = match gguf.get_str("tokenizer.chat_template") {
        Some(src) => Some(ChatTemplate::new(src)?),
        // Gemma files without a template still speak Gemma's turn format
        None if arch.starts_with("gemma") => Some(ChatTemplate::new(GEMMA_TEMPLATE)?),
        None => None,
    };
    Ok(Tokenizer::from_parts(
        inner, bos, eos, eog, add_bos, add_eos, template,
    ))
}

/// SentencePiece vocabularies (`tokenizer.ggml.model = "llama"`: Llama 2, Gemma, ...), tokenized
/// as llama.cpp's SPM tokenizer does: spaces become U+2581 (with a leading one when
/// `add_space_prefix`), the text starts as single characters, and adjacent pieces are merged
/// while their concatenation is in the vocabulary, highest score first; characters outside the
/// vocabulary fall back to <0xXX> byte tokens. Expressed as a BPE whose merge ranks follow the
/// merged pieces' scores, with byte fallback.
fn from_gguf_spm(gguf: &GgufFile) -> Result<Tokenizer> {
    use std::collections::HashMap;
    use tokenizers::models::bpe::BPE;
    let tokens = string_array(gguf, "tokenizer.ggml.tokens")?;
    let n = tokens.len();
    let scores: Vec<f32> = match gguf.get("tokenizer.ggml.scores") {
        Some(Value::Array(a)) => a.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect(),
        _ => {
            return Err(Error::invalid_file(
                gguf.path(),
                "a SentencePiece vocabulary needs tokenizer.ggml.scores",
            ))
        }
    };
    let types: Vec<i64> = match gguf.get("tokenizer.ggml.token_type") {
        Some(Value::Array(a)) => a.iter().map(|v| v.as_i64().unwrap_or(1)).collect(),
        _ => vec![1; n],
    };
    if scores.len() != n || types.len() != n {
        return Err(Error::invalid_file(
            gguf.path(),
            format!(
                "{} scores and {} types for {n} tokens",
                scores.len(),
                types.len()
            ),
        ));
    }
    const NORMAL: i64 = 1;
    let mut vocab: HashMap<String, u32> = HashMap::with_capacity(n);
    for (id, &t) in tokens.iter().enumerate() {
        vocab.entry(t.to_string()).or_insert(id as u32);
    }
    // Every way a normal piece splits into two vocabulary pieces, ranked by the piece's score.
    let mut merges: Vec<(f32, u32, String, String)> = Vec::new();
    for (id, (&t, &ty)) in tokens.iter().zip(&types).enumerate() {
        if ty != NORMAL {
            continue;
        }
        for (i, _) in t.char_indices().skip(1) {
            let (a, b) = t.split_at(i);
            if let (Some(&ia), Some(&ib)) = (vocab.get(a), vocab.get(b)) {
                if types[ia as usize] == NORMAL && types[ib as usize] == NORMAL {
                    merges.push((scores[id], id as u32, a.to_string(), b.to_string()));
                }
            }
        }
    }
    merges.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    let merges: Vec<(String, String)> = merges.into_iter().map(|(_, _, a, b)| (a, b)).collect();
    let vocab_map: tokenizers::models::bpe::Vocab = vocab.clone().into_iter().collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab_map, merges)
        .byte_fallback(true)
        .unk_token(
            tokens
                .get(opt_id(gguf, "tokenizer.ggml.unknown_token_id", n)?.unwrap_or(0) as usize)
                .unwrap_or(&"<unk>")
                .to_string(),
        )
        .build()
        .map_err(|e| Error::invalid_file(gguf.path(), format!("SentencePiece vocabulary: {e}")))?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    let prefix = gguf
        .get("tokenizer.ggml.add_space_prefix")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    let mut norms: Vec<tokenizers::NormalizerWrapper> = Vec::new();
    if prefix {
        norms.push(tokenizers::normalizers::Prepend::new("▁".into()).into());
    }
    norms.push(
        tokenizers::normalizers::Replace::new(" ", "▁")
            .map_err(|e| Error::Tokenizer(e.to_string()))?
            .into(),
    );
    inner.with_normalizer(Some(tokenizers::normalizers::Sequence::new(norms)));
    let mut decs: Vec<tokenizers::DecoderWrapper> = Vec::new();
    decs.push(
        tokenizers::normalizers::Replace::new("▁", " ")
            .map_err(|e| Error::Tokenizer(e.to_string()))?
            .into(),
    );
    decs.push(tokenizers::decoders::byte_fallback::ByteFallback::default().into());
    decs.push(tokenizers::decoders::fuse::Fuse::default().into());
    if prefix {
        decs.push(tokenizers::decoders::strip::Strip::new(' ', 1, 0).into());
    }
    inner.with_decoder(Some(tokenizers::decoders::sequence::Sequence::new(decs)));
    let added = |want: i64| -> Vec<tokenizers::AddedToken> {
        tokens
            .iter()
            .zip(&types)
            .filter(|(_, &ty)| ty == want)
            .map(|(&t, _)| {
                tokenizers::AddedToken::from(t.to_string(), want == TOKEN_TYPE_CONTROL)
                    .normalized(false)
            })
            .collect()
    };
    inner.add_special_tokens(&added(TOKEN_TYPE_CONTROL));
    inner.add_tokens(&added(TOKEN_TYPE_USER_DEFINED));
    // llama.cpp: SentencePiece vocabularies add BOS unless the file says otherwise.
    finish(gguf, inner, &tokens, &types, true)
}
