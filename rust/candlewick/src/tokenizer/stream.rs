//! UTF-8-safe incremental decoding, as HF tokenizers' `DecodeStream`: a byte-level token can end in
//! the middle of a character (emoji, CJK), so text is only released once it decodes without a
//! trailing replacement character, and each piece is the difference between two decodes that share
//! a prefix window (so tokenizers that strip or add leading spaces stay right).

use super::Tokenizer;
use crate::error::Result;

#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    /// The ids of the last emitted piece (context for the next decode) followed by new ids.
    ids: Vec<u32>,
    /// Where the new, not yet emitted ids start.
    read_offset: usize,
    skip_special_tokens: bool,
}

impl StreamDecoder {
    pub fn new(skip_special_tokens: bool) -> Self {
        Self {
            skip_special_tokens,
            ..Default::default()
        }
    }

    /// The text the new ids add to the context: decode(context + new) minus decode(context).
    fn new_text(&self, tok: &Tokenizer) -> Result<Option<String>> {
        let prefix = tok.decode(&self.ids[..self.read_offset], self.skip_special_tokens)?;
        let full = tok.decode(&self.ids, self.skip_special_tokens)?;
        Ok(
            (full.len() > prefix.len() && full.is_char_boundary(prefix.len()))
                .then(|| full[prefix.len()..].to_string()),
        )
    }

    /// Feed one id; returns the text it completes, if any.
    pub fn step(&mut self, tok: &Tokenizer, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        if let Some(piece) = self.new_text(tok)?.filter(|p| !p.ends_with('\u{FFFD}')) {
            // The ids of this piece become the context window of the next decode; older ids
            // are no longer needed.
            self.ids.drain(..self.read_offset);
            self.read_offset = self.ids.len();
            return Ok(Some(piece));
        }
        Ok(None)
    }

    /// Whatever is still held back (an incomplete character at the very end), decoded lossily.
    pub fn flush(&mut self, tok: &Tokenizer) -> Result<Option<String>> {
        if self.read_offset >= self.ids.len() {
            return Ok(None);
        }
        let piece = self.new_text(tok)?;
        self.read_offset = self.ids.len();
        Ok(piece)
    }
}
