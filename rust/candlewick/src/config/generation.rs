//! `GenerationConfig`: every generation control in one type, with the names HF transformers,
//! vLLM and llama.cpp users know. The sampler, the decode loop and beam search read it as is.

use std::collections::BTreeMap;
use std::path::Path;

use super::value::{fields, Value};
use crate::error::{Error, Result};

fields! {
    /// Generation controls. Processor order (HF's): logit_bias -> repetition_penalty (prompt +
    /// output) -> presence and frequency penalties (output only, OpenAI semantics) ->
    /// no_repeat_ngram_size -> min_new_tokens; then greedy argmax, or temperature -> top_k ->
    /// top_p -> min_p -> typical_p -> draw. num_beams > 1 runs beam search on the log-softmax
    /// after the same processors (HF semantics, early_stopping=False).
    pub struct GenerationConfig ("", "unknown generation parameter") {
        pub max_new_tokens: usize = 128,
        /// End-of-generation and stop ids are suppressed until this many tokens are generated.
        pub min_new_tokens: usize = 0,
        pub do_sample: bool = false,
        pub temperature: f64 = 1.0,
        /// 0 = off.
        pub top_k: usize = 0,
        /// 1.0 = off.
        pub top_p: f64 = 1.0,
        /// 0.0 = off.
        pub min_p: f64 = 0.0,
        /// 1.0 = off (HF TypicalLogitsWarper).
        pub typical_p: f64 = 1.0,
        /// 1.0 = off; HF semantics over prompt and output.
        pub repetition_penalty: f64 = 1.0,
        /// OpenAI semantics over the output: logit -= presence * [count > 0] + frequency * count.
        pub presence_penalty: f64 = 0.0,
        pub frequency_penalty: f64 = 0.0,
        /// 0 = off; HF: no n-gram of this size may appear twice in prompt + output.
        pub no_repeat_ngram_size: usize = 0,
        /// Added to the logits of these ids before anything else (-inf bans a token).
        pub logit_bias: BTreeMap<u32, f64> = BTreeMap::new(),
        /// Strings that end generation; they are not part of the returned text.
        pub stop: Vec<String> = Vec::new(),
        /// Ids that end generation like a stop string (finish reason "stop"; not in the output).
        pub stop_token_ids: Vec<u32> = Vec::new(),
        pub ignore_eos: bool = false,
        /// None: a seed from the OS. Request i of num_return_sequences uses seed + i.
        pub seed: Option<u64> = None,
        pub num_return_sequences: usize = 1,
        pub num_beams: usize = 1,
        /// Beam search: hypotheses are scored sum(logprobs) / generated_len ** length_penalty.
        pub length_penalty: f64 = 1.0,
        /// Natural-log probability of each generated token, with this many alternatives (None = off).
        pub logprobs: Option<usize> = None,
        /// Log-probability of each prompt token given the ones before it.
        pub prompt_logprobs: bool = false,
    }
}

/// Below this temperature sampling is greedy (see `is_greedy`).
pub const MIN_TEMPERATURE: f64 = 1e-6;
/// Beams at most: each holds a KV cache of its own.
pub const MAX_BEAMS: usize = 128;
/// Results per prompt at most (each is a sequence generated with its own cache).
pub const MAX_RETURN_SEQUENCES: usize = 1024;
/// Alternatives per token at most for `logprobs` (vLLM allows 20).
pub const MAX_LOGPROBS: usize = 1024;

fn bad(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

impl GenerationConfig {
    /// The one check of a generation config: ranges, and options that do not go together.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(bad(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(bad(format!("top_p must be in (0, 1], got {}", self.top_p)));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(bad(format!("min_p must be in [0, 1], got {}", self.min_p)));
        }
        if !(self.typical_p > 0.0 && self.typical_p <= 1.0) {
            return Err(bad(format!(
                "typical_p must be in (0, 1], got {}",
                self.typical_p
            )));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err(bad(format!(
                "repetition_penalty must be > 0, got {}",
                self.repetition_penalty
            )));
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !v.is_finite() {
                return Err(bad(format!("{name} must be a finite number, got {v}")));
            }
        }
        if let Some((id, b)) = self
            .logit_bias
            .iter()
            .find(|(_, b)| b.is_nan() || **b == f64::INFINITY)
        {
            return Err(bad(format!(
                "logit_bias for token {id} must be a number or -inf, got {b}"
            )));
        }
        if self.stop.iter().any(|s| s.is_empty()) {
            return Err(bad("stop strings must not be empty".into()));
        }
        if self.num_return_sequences < 1 {
            return Err(bad(format!(
                "num_return_sequences must be >= 1, got {}",
                self.num_return_sequences
            )));
        }
        if self.num_beams < 1 {
            return Err(bad(format!(
                "num_beams must be >= 1, got {}",
                self.num_beams
            )));
        }
        if self.num_beams > MAX_BEAMS {
            return Err(bad(format!(
                "num_beams must be <= {MAX_BEAMS} (each beam holds its own KV cache), got {}",
                self.num_beams
            )));
        }
        if self.num_return_sequences > MAX_RETURN_SEQUENCES {
            return Err(bad(format!(
                "num_return_sequences must be <= {MAX_RETURN_SEQUENCES}, got {}",
                self.num_return_sequences
            )));
        }
        if let Some(n) = self.logprobs.filter(|&n| n > MAX_LOGPROBS) {
            return Err(bad(format!("logprobs must be <= {MAX_LOGPROBS}, got {n}")));
        }
        if !self.length_penalty.is_finite() {
            return Err(bad(format!(
                "length_penalty must be finite, got {}",
                self.length_penalty
            )));
        }
        if self.num_beams > 1 {
            if self.num_return_sequences > self.num_beams {
                return Err(bad(format!(
                    "num_return_sequences ({}) must be <= num_beams ({})",
                    self.num_return_sequences, self.num_beams
                )));
            }
            if self.do_sample {
                return Err(bad(
                    "num_beams > 1 with do_sample=True (beam sampling) is not built yet".into(),
                ));
            }
            if self.prompt_logprobs {
                return Err(bad(
                    "prompt_logprobs are not built yet for beam search".into()
                ));
            }
        }
        Ok(())
    }

    /// Whether a token is picked by argmax (no draw).
    /// A temperature this small leaves only the most likely token a probability that float32 can
    /// tell from 1 (and dividing logits by it would overflow): it is greedy, as llama.cpp treats
    /// temperature 0.
    pub fn is_greedy(&self) -> bool {
        !self.do_sample || self.temperature < MIN_TEMPERATURE || self.top_k == 1
    }

    /// From an HF generation_config.json's keys: the keys this config has are taken,
    /// `eos_token_id` (an id or a list) becomes stop_token_ids, null values and other HF keys
    /// (max_length, transformers_version, ...) are ignored. Validated.
    pub fn from_hf_fields(fields: Vec<(String, Value)>) -> Result<Self> {
        let mut c = GenerationConfig::default();
        let mut eos = None;
        let has_stop_ids = fields.iter().any(|(k, _)| k == "stop_token_ids");
        for (k, x) in fields {
            if k == "eos_token_id" && !has_stop_ids {
                eos = Some(match x {
                    Value::Int(_) => Value::List(vec![x]),
                    other => other,
                });
            } else if Self::FIELDS.contains(&k.as_str()) && x != Value::None {
                c.set(&k, x)?;
            }
        }
        if let Some(e) = eos {
            c.set("stop_token_ids", e)?;
        }
        c.validate()?;
        Ok(c)
    }

    /// `from_hf_fields` of a JSON object.
    pub fn from_hf_json(v: &serde_json::Value) -> Result<Self> {
        let obj = v
            .as_object()
            .ok_or_else(|| bad("a generation config must be a JSON object".into()))?;
        Self::from_hf_fields(
            obj.iter()
                .map(|(k, x)| (k.clone(), Value::from_json(x)))
                .collect(),
        )
    }

    /// Read a generation_config.json (the file, or the folder holding it).
    pub fn from_file(path: &Path) -> Result<Self> {
        let path = if path.is_dir() {
            path.join("generation_config.json")
        } else {
            path.to_path_buf()
        };
        let text = crate::io::read_text(&path, "a generation_config.json", crate::io::MAX_JSON)?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| bad(format!("{} is not valid JSON: {e}", path.display())))?;
        if !v.is_object() {
            return Err(bad(format!(
                "{} does not hold a JSON object",
                path.display()
            )));
        }
        Self::from_hf_json(&v)
    }
}
