//! Text <-> token ids.
//!
//! A `Tokenizer` comes from a tokenizer.json (HF tokenizers' own format, used as is) or from the
//! vocabulary embedded in a GGUF file, which `gguf_vocab` turns into the equivalent tokenizer.json
//! so both paths run the same, reference, encoder. `StreamDecoder` turns ids into text one token at
//! a time without ever splitting a UTF-8 character; `ChatTemplate` renders chat messages.

mod chat;
mod gguf_vocab;
mod stream;

use std::path::Path;

pub use chat::ChatTemplate;
pub use stream::StreamDecoder;

use crate::error::{Error, Result};
use crate::io::gguf::GgufFile;

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Cached: tokenizers computes it by building the whole vocabulary map.
    vocab_size: usize,
    bos_token_id: Option<u32>,
    eos_token_id: Option<u32>,
    /// Ids that end generation (end of generation: eos, eot, `<|im_end|>`, ...).
    eog_token_ids: Vec<u32>,
    /// Prepend BOS when asked to add special tokens (GGUF `tokenizer.ggml.add_bos_token`).
    /// tokenizer.json files do this in their own post-processor instead.
    prepend_bos: bool,
    append_eos: bool,
    chat_template: Option<ChatTemplate>,
}

fn tk_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

/// Run a call into the tokenizers crate with its panics contained: it panics on some malformed
/// tokenizer.json files (a decoder entry it cannot parse) and when onig's backtracking limit stops
/// a pre-tokenizer regex; both are errors of the input, reported as such.
fn contain<T>(what: &str, f: impl FnOnce() -> tokenizers::Result<T>) -> tokenizers::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = crate::error::panic_message(p.as_ref());
            let why = if msg.contains("retry-limit") {
                "its regex backtracked past onig's limit on this input (a pattern with nested repetition?)"
            } else {
                "the tokenizers crate failed"
            };
            Err(format!("{what} failed: {why}: {msg}").into())
        }
    }
}

impl Tokenizer {
    /// Load a tokenizer.json as HF tokenizers does (or the vocabulary of a .gguf file).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            return Self::from_gguf(&GgufFile::open(path)?);
        }
        let bytes =
            crate::io::read_text(path, "a tokenizer.json", crate::io::MAX_JSON)?.into_bytes();
        let mut inner = contain("loading", || tokenizers::Tokenizer::from_bytes(&bytes))
            .map_err(|e| Error::invalid_file(path, format!("not a valid tokenizer.json: {e}")))?;
        // As transformers' fast tokenizers: padding and truncation saved in the file do not apply
        // to a plain encode (they are asked for per call).
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| Error::invalid_file(path, format!("tokenizer.json truncation: {e}")))?;
        Ok(Self::from_parts(
            inner,
            None,
            None,
            Vec::new(),
            false,
            false,
            None,
        ))
    }

    /// A stand-in for models built from a config without a tokenizer: token i is the text "[i]"
    /// (whitespace-separated), so ids round-trip and text shows which ids were produced.
    pub fn ids_only(vocab_size: usize) -> Result<Self> {
        const MAX: usize = 1 << 22;
        if vocab_size > MAX {
            return Err(Error::InvalidArgument(format!(
                "the ids-only stand-in tokenizer holds up to {MAX} tokens; pass a tokenizer for a vocabulary of {vocab_size}"
            )));
        }
        let vocab: std::collections::HashMap<String, u32> = (0..vocab_size as u32)
            .map(|i| (format!("[{i}]"), i))
            .collect();
        let model = tokenizers::models::wordlevel::WordLevel::builder()
            .vocab(vocab.into_iter().collect())
            .unk_token("[0]".into())
            .build()
            .map_err(tk_err)?;
        let mut inner = tokenizers::Tokenizer::new(model);
        inner.with_pre_tokenizer(Some(
            tokenizers::pre_tokenizers::whitespace::WhitespaceSplit,
        ));
        Ok(Self::from_parts(
            inner,
            None,
            None,
            Vec::new(),
            false,
            false,
            None,
        ))
    }

    /// Write the tokenizer as a tokenizer.json.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = self.inner.to_string(true).map_err(tk_err)?;
        std::fs::write(path, text).map_err(|e| crate::io::write_err(path, e))
    }

    /// Set the begin/end ids a model's config names (HF folders keep them in config.json and
    /// generation_config.json, not in tokenizer.json); every end id ends generation.
    pub fn with_special_ids(mut self, bos: Option<u32>, eos: &[u32]) -> Self {
        if bos.is_some() {
            self.bos_token_id = bos;
        }
        if let Some(&first) = eos.first() {
            self.eos_token_id = Some(first);
        }
        for &e in eos {
            if !self.eog_token_ids.contains(&e) {
                self.eog_token_ids.push(e);
            }
        }
        self
    }

    /// This tokenizer as a GGUF file's `tokenizer.*` metadata (see `gguf_vocab::gguf_metadata`).
    pub fn gguf_metadata(&self) -> Result<Vec<(String, crate::io::gguf::Value)>> {
        gguf_vocab::gguf_metadata(self)
    }

    /// Build the tokenizer that a GGUF file's `tokenizer.ggml.*` metadata describes.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        gguf_vocab::from_gguf(gguf)
    }

    pub(crate) fn from_parts(
        inner: tokenizers::Tokenizer,
        bos_token_id: Option<u32>,
        eos_token_id: Option<u32>,
        eog_token_ids: Vec<u32>,
        prepend_bos: bool,
        append_eos: bool,
        chat_template: Option<ChatTemplate>,
    ) -> Self {
        let mut eog = eog_token_ids;
        if let Some(e) = eos_token_id {
            if !eog.contains(&e) {
                eog.push(e);
            }
        }
        let vocab_size = inner.get_vocab_size(true);
        Self {
            inner,
            vocab_size,
            bos_token_id,
            eos_token_id,
            eog_token_ids: eog,
            prepend_bos,
            append_eos,
            chat_template,
        }
    }

    /// Token ids for a text. Special tokens written in the text (e.g. `<|im_start|>`) are always
    /// recognised, as in HF tokenizers; `add_special_tokens` adds BOS/EOS as the model asks.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = contain("encoding", || {
            self.inner.encode_fast(text, add_special_tokens)
        })
        .map_err(tk_err)?;
        Ok(self.with_bos_eos(enc.get_ids(), add_special_tokens))
    }

    /// BOS/EOS around `ids` when the vocabulary asks for them (GGUF add_bos/add_eos). A text
    /// that already starts with BOS (a chat template's `{{ bos_token }}`) does not get a second.
    fn with_bos_eos(&self, ids: &[u32], add_special_tokens: bool) -> Vec<u32> {
        let bos = self
            .bos_token_id
            .filter(|b| add_special_tokens && self.prepend_bos && ids.first() != Some(b));
        let eos = self
            .eos_token_id
            .filter(|_| add_special_tokens && self.append_eos);
        bos.into_iter()
            .chain(ids.iter().copied())
            .chain(eos)
            .collect()
    }

    /// Like `encode`, cut to at most `max_len` ids the way HF tokenizers truncates: the text's
    /// tokens are cut from the right first, then the special tokens are added around them.
    pub fn encode_truncated(
        &self,
        text: &str,
        add_special_tokens: bool,
        max_len: usize,
    ) -> Result<Vec<u32>> {
        let mut enc =
            contain("encoding", || self.inner.encode_fast(text, false)).map_err(tk_err)?;
        let mut added = if add_special_tokens {
            contain("counting special tokens", || {
                Ok(self
                    .inner
                    .get_post_processor()
                    .map(|p| tokenizers::PostProcessor::added_tokens(p, false))
                    .unwrap_or(0))
            })
            .map_err(tk_err)?
        } else {
            0
        };
        if add_special_tokens {
            added += self.prepend_bos as usize + self.append_eos as usize;
        }
        if max_len < added + 1 {
            return Err(Error::InvalidArgument(format!(
                "max_length {max_len} leaves no room for text"
            )));
        }
        enc.truncate(max_len - added, 0, tokenizers::TruncationDirection::Right);
        let enc = contain("adding special tokens", || {
            self.inner.post_process(enc, None, add_special_tokens)
        })
        .map_err(tk_err)?;
        Ok(self.with_bos_eos(enc.get_ids(), add_special_tokens))
    }

    pub fn encode_batch(&self, texts: &[&str], add_special_tokens: bool) -> Result<Vec<Vec<u32>>> {
        texts
            .iter()
            .map(|t| self.encode(t, add_special_tokens))
            .collect()
    }

    /// Text for ids. Ids outside the vocabulary are an error naming the first one.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let n = self.vocab_size() as u32;
        if let Some(bad) = ids.iter().find(|&&i| i >= n) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is out of range for a vocabulary of {n}"
            )));
        }
        contain("decoding", || self.inner.decode(ids, skip_special_tokens)).map_err(tk_err)
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_token_id
    }

    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token_id
    }

    pub fn eog_token_ids(&self) -> &[u32] {
        &self.eog_token_ids
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog_token_ids.contains(&id)
    }

    /// The ids of every special token (added tokens marked special: [CLS], [SEP], [PAD], ...).
    pub fn special_token_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .inner()
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The mask token ([MASK] or <mask>) when the vocabulary has one as a single token.
    pub fn mask_token_id(&self) -> Option<u32> {
        ["[MASK]", "<mask>"]
            .iter()
            .find_map(|tok| match self.encode(tok, false).ok()?.as_slice() {
                [id] if self.decode(&[*id], false).ok()?.as_str() == *tok => Some(*id),
                _ => None,
            })
    }

    pub fn set_eos_token_ids(&mut self, ids: &[u32]) {
        if let Some(&first) = ids.first() {
            self.eos_token_id.get_or_insert(first);
        }
        for &i in ids {
            if !self.eog_token_ids.contains(&i) {
                self.eog_token_ids.push(i);
            }
        }
    }

    pub fn set_chat_template(&mut self, t: Option<ChatTemplate>) {
        self.chat_template = t;
    }

    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// Render chat messages (a JSON array of {role, content}) with the model's template.
    pub fn apply_chat_template(
        &self,
        messages: &serde_json::Value,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let t = self
            .chat_template
            .as_ref()
            .ok_or_else(|| Error::Template("this model has no chat template".into()))?;
        let tok = |id: Option<u32>| id.and_then(|i| self.id_to_token(i)).unwrap_or_default();
        t.render(
            messages,
            add_generation_prompt,
            &tok(self.bos_token_id),
            &tok(self.eos_token_id),
        )
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
