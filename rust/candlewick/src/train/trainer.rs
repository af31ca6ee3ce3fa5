//! The training loop: data packed into blocks, each step's batches drawn and corrupted by the
//! architecture's objective (seeded by step, so a resumed run draws what an uninterrupted one
//! would), the loss on the differentiable path of the very stacks inference runs (built each step
//! from the parameters), gradients accumulated over micro-batches, clipped, and one AdamW update
//! at the schedule's learning rate. Checkpoints (weights in the model's HF layout, optimizer
//! moments, step and seed) are written into a temporary folder and renamed, never half-written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Tensor, Var};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::loss::{LossBatch, StacksRef};
use super::objectives::{self, check_ids, Ids, Mlm, SpanCorruption, IGNORE};
use super::optim::{clip_coef, grad_norm, AdamW, AdamWConfig, Schedule};
use crate::config::Architecture;
use crate::error::{Error, Result};
use crate::io::safetensors::{write_f32, SafetensorsFile};
use crate::model::builder::Source;
use crate::model::families;
use crate::model::Model;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    Clm,
    Mlm,
    SpanCorruption,
}

impl Objective {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "clm" => Ok(Objective::Clm),
            "mlm" => Ok(Objective::Mlm),
            "span_corruption" => Ok(Objective::SpanCorruption),
            other => Err(objectives::unknown(other)),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Objective::Clm => "clm",
            Objective::Mlm => "mlm",
            Objective::SpanCorruption => "span_corruption",
        }
    }

    /// The objective an architecture trains with.
    pub fn of(arch: Architecture) -> Self {
        match arch {
            Architecture::Decoder | Architecture::Recurrent => Objective::Clm,
            Architecture::Encoder => Objective::Mlm,
            Architecture::EncoderDecoder => Objective::SpanCorruption,
        }
    }
}

/// What `train` is asked to do (cw.train's keywords).
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub objective: Objective,
    pub steps: u64,
    pub batch_size: usize,
    pub seq_len: usize,
    pub lr: f64,
    pub warmup_steps: u64,
    pub schedule: Schedule,
    pub weight_decay: f64,
    pub grad_clip: Option<f64>,
    pub grad_accum_steps: usize,
    /// None: drawn from the OS, or a resumed run's own.
    pub seed: Option<u64>,
    pub eval_every: Option<u64>,
    pub checkpoint_dir: Option<PathBuf>,
    /// Write a checkpoint every this many steps (and at the end).
    pub checkpoint_every: Option<u64>,
    pub resume: bool,
    pub mlm_probability: f64,
    pub noise_density: f64,
    pub mean_noise_span_length: f64,
    /// The mask token of MLM (None: the tokenizer's [MASK] / <mask>).
    pub mask_token_id: Option<u32>,
}

impl TrainConfig {
    pub fn new(
        objective: Objective,
        steps: u64,
        batch_size: usize,
        seq_len: usize,
        lr: f64,
    ) -> Self {
        TrainConfig {
            objective,
            steps,
            batch_size,
            seq_len,
            lr,
            warmup_steps: 0,
            schedule: Schedule::Cosine,
            weight_decay: 0.01,
            grad_clip: Some(1.0),
            grad_accum_steps: 1,
            seed: None,
            eval_every: None,
            checkpoint_dir: None,
            checkpoint_every: None,
            resume: false,
            mlm_probability: 0.15,
            noise_density: 0.15,
            mean_noise_span_length: 3.0,
            mask_token_id: None,
        }
    }

    /// Every argument in range, each error naming it.
    pub fn validate(&self) -> Result<()> {
        let pos = |name: &str, v: u64| -> Result<()> {
            if v == 0 {
                crate::bail!(InvalidArgument, "{name} must be positive, got 0");
            }
            Ok(())
        };
        pos("steps", self.steps)?;
        pos("batch_size", self.batch_size as u64)?;
        pos("seq_len", self.seq_len as u64)?;
        pos("grad_accum_steps", self.grad_accum_steps as u64)?;
        if self.steps > 1 << 40 || self.batch_size > 1 << 20 || self.grad_accum_steps > 1 << 20 {
            crate::bail!(
                InvalidArgument,
                "steps, batch_size or grad_accum_steps is beyond any run ({}, {}, {})",
                self.steps,
                self.batch_size,
                self.grad_accum_steps
            );
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            crate::bail!(
                InvalidArgument,
                "lr must be a positive number, got {}",
                self.lr
            );
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            crate::bail!(
                InvalidArgument,
                "weight_decay must be >= 0, got {}",
                self.weight_decay
            );
        }
        if let Some(c) = self.grad_clip {
            if !(c > 0.0 && c.is_finite()) {
                crate::bail!(
                    InvalidArgument,
                    "grad_clip must be positive (or None), got {c}"
                );
            }
        }
        if self.eval_every == Some(0) {
            crate::bail!(InvalidArgument, "eval_every must be positive (or None)");
        }
        if self.checkpoint_every == Some(0) {
            crate::bail!(
                InvalidArgument,
                "checkpoint_every must be positive (or None)"
            );
        }
        if self.resume && self.checkpoint_dir.is_none() {
            crate::bail!(InvalidArgument, "resume=True needs checkpoint_dir");
        }
        if !(0.0..=1.0).contains(&self.mlm_probability) {
            crate::bail!(
                InvalidArgument,
                "mlm_probability must be in [0, 1], got {}",
                self.mlm_probability
            );
        }
        Ok(())
    }
}

/// One optimizer step, as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// 1-based.
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: usize,
    pub tokens_per_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvalRecord {
    pub step: u64,
    pub loss: f64,
    pub perplexity: f64,
}

#[derive(Debug, Clone, Default)]
pub struct TrainResult {
    pub history: Vec<StepRecord>,
    pub evals: Vec<EvalRecord>,
    /// Stopped early (Ctrl-C) after the last step in `history`.
    pub interrupted: bool,
    /// The step a resumed run started after.
    pub resumed_from: Option<u64>,
    /// The last checkpoint written (or resumed from).
    pub checkpoint: Option<PathBuf>,
    pub seconds: f64,
}

/// The trainable parameters of a model, by checkpoint name, copied from its weights: a built
/// model's tensors, or every tensor its safetensors folder holds for its layers. Quantized GGUF
/// weights cannot be trained.
pub fn parameters(model: &Model) -> Result<BTreeMap<String, Var>> {
    let tensors = match &model.built {
        Some(t) => t.clone(),
        None => match model.info.format {
            "safetensors" => {
                let ck = crate::io::checkpoint::Checkpoint::open(&model.info.path)?;
                let crate::io::checkpoint::Checkpoint::Folder { dir, files, .. } = &ck else {
                    return Err(Error::Model("a safetensors model whose checkpoint is not a folder".into()));
                };
                let src = Source::recorded(Source::Files { files, path: dir });
                families::build(&model.config, &src)?;
                src.into_made()
            }
            "gguf" => {
                return Err(Error::Unsupported(format!(
                    "{} holds quantized GGUF weights, which cannot be trained: load it dequantized (cw.load(path, dtype=\"float32\")), or train an HF safetensors folder or a model built from a config",
                    model.info.path.display()
                )))
            }
            other => return Err(Error::Unsupported(format!("training a model loaded from {other} is not built"))),
        },
    };
    tensors
        .into_iter()
        .map(|(k, t)| Ok((k, Var::from_tensor(&t.to_dtype(candle_core::DType::F32)?)?)))
        .collect()
}

/// The stacks built from the parameters: layers holding the variables themselves.
fn build(model: &Model, params: &BTreeMap<String, Var>) -> Result<crate::model::Stacks> {
    let tensors: BTreeMap<String, Tensor> = params
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    families::build(
        &model.config,
        &Source::Params {
            params: &tensors,
            gguf: model.gguf_names,
        },
    )
}

fn mix(seed: u64, a: u64, b: u64) -> u64 {
    // splitmix64 over the three, so nearby steps get unrelated streams
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How a model's batches are made for an objective.
struct Maker {
    objective: Objective,
    vocab: usize,
    mask_token_id: i64,
    special: Vec<i64>,
    eos: i64,
    pad: Option<i64>,
    probability: f64,
    noise_density: f64,
    mean_span: f64,
}

impl Maker {
    fn new(model: &Model, cfg: &TrainConfig) -> Result<Self> {
        let want = Objective::of(model.config.architecture);
        if cfg.objective != want {
            crate::bail!(
                InvalidArgument,
                "objective {:?} does not train this {} model: use {:?}",
                cfg.objective.name(),
                model.config.architecture,
                want.name()
            );
        }
        let has_head = model.recurrent.is_some()
            || model
                .decoder
                .as_ref()
                .or(model.encoder.as_ref())
                .is_some_and(|t| t.head.is_some());
        if !has_head {
            crate::bail!(
                Unsupported,
                "this model has no LM head to train ({}): build it with one (BERT: mlm_head=True)",
                model.config.family
            );
        }
        let tok = model.tokenizer.as_deref();
        let special: Vec<i64> = tok
            .map(|t| t.special_token_ids().into_iter().map(i64::from).collect())
            .unwrap_or_default();
        let mask = cfg
            .mask_token_id
            .or_else(|| tok.and_then(|t| t.mask_token_id()));
        // checked when a corpus is corrupted (prepared batches need neither)
        let mask_token_id = mask.map(i64::from).unwrap_or(-1);
        let eos = model
            .tokenizer
            .as_deref()
            .and_then(|t| t.eos_token_id())
            .or_else(|| model.eog_token_ids().first().copied())
            // a tokenizer.json names no EOS: the conventional special tokens
            .or_else(|| {
                tok.and_then(|t| {
                    ["</s>", "<eos>", "<|endoftext|>"]
                        .iter()
                        .find_map(|s| t.token_to_id(s))
                })
            })
            .map(i64::from);
        // transformers draws random replacements and counts sentinels over len(tokenizer): a
        // checkpoint's embedding may have more rows than the tokenizer has tokens (T5: 32128 vs
        // 32100, <extra_id_0> = 32099)
        let vocab = match (cfg.objective, tok) {
            (Objective::SpanCorruption, Some(t)) => t
                .token_to_id("<extra_id_0>")
                .map(|i| i as usize + 1)
                .unwrap_or(t.vocab_size()),
            (_, Some(t)) => t.vocab_size(),
            (_, None) => model.config.vocab_size,
        }
        .min(model.config.vocab_size);
        Ok(Maker {
            objective: cfg.objective,
            vocab,
            mask_token_id,
            special,
            eos: eos.unwrap_or(-1),
            pad: None,
            probability: cfg.mlm_probability,
            noise_density: cfg.noise_density,
            mean_span: cfg.mean_noise_span_length,
        })
    }

    /// The raw block length the corpus is cut into for inputs of `seq_len`.
    fn block_len(&self, seq_len: usize) -> Result<usize> {
        Ok(match self.objective {
            Objective::SpanCorruption => {
                objectives::t5_input_length(seq_len, self.noise_density, self.mean_span)?.0
            }
            _ => seq_len,
        })
    }

    /// The longest sequence a block of `seq_len` makes (inputs or labels).
    fn longest(&self, seq_len: usize) -> Result<usize> {
        Ok(match self.objective {
            Objective::SpanCorruption => seq_len
                .max(objectives::t5_input_length(seq_len, self.noise_density, self.mean_span)?.1),
            _ => seq_len,
        })
    }

    fn batch(&self, blocks: &Ids, rng: &mut rand::rngs::StdRng) -> Result<LossBatch> {
        let to_u32 = |ids: &Ids| ids.data.iter().map(|&i| i as u32).collect::<Vec<_>>();
        Ok(match self.objective {
            Objective::Clm => {
                let (i, l, m) = objectives::clm(blocks, self.pad);
                LossBatch {
                    input_ids: to_u32(&i),
                    rows: i.rows,
                    cols: i.cols,
                    attention_mask: self.pad.map(|_| m.data.iter().map(|&x| x as f32).collect()),
                    labels: l.data,
                    label_cols: l.cols,
                    decoder_input_ids: None,
                }
            }
            Objective::Mlm => {
                if self.mask_token_id < 0 {
                    crate::bail!(InvalidArgument, "mlm needs a mask token: the tokenizer has no [MASK] or <mask>; pass mask_token_id");
                }
                let mlm = Mlm {
                    mask_token_id: self.mask_token_id,
                    vocab_size: self.vocab,
                    special_token_ids: &self.special,
                    probability: self.probability,
                    mask_replace_prob: 0.8,
                    random_replace_prob: 0.1,
                    word_ids: None,
                };
                let (i, l) = mlm.apply(blocks, rng)?;
                LossBatch {
                    input_ids: to_u32(&i),
                    rows: i.rows,
                    cols: i.cols,
                    attention_mask: None,
                    labels: l.data,
                    label_cols: l.cols,
                    decoder_input_ids: None,
                }
            }
            Objective::SpanCorruption => {
                if self.eos < 0 {
                    crate::bail!(
                        InvalidArgument,
                        "span corruption needs an EOS token and the model has none"
                    );
                }
                let sc = SpanCorruption {
                    vocab_size: self.vocab,
                    eos_token_id: self.eos,
                    noise_density: self.noise_density,
                    mean_noise_span_length: self.mean_span,
                };
                let (i, l) = sc.apply(blocks, rng)?;
                LossBatch {
                    input_ids: to_u32(&i),
                    rows: i.rows,
                    cols: i.cols,
                    attention_mask: None,
                    labels: l.data,
                    label_cols: l.cols,
                    decoder_input_ids: None,
                }
            }
        })
    }
}

/// What a model trains on.
#[derive(Debug, Clone)]
pub enum Data {
    /// A tokenized corpus, one id list per text: packed into blocks, each step's batches
    /// corrupted by the objective.
    Tokens(Vec<Vec<i64>>),
    /// Batches already made (the objective applied by the caller): rows drawn as they are.
    Prepared {
        input_ids: Ids,
        labels: Ids,
        attention_mask: Option<Ids>,
        decoder_input_ids: Option<Ids>,
    },
}

/// Tokenize texts for training (special tokens as the tokenizer adds them); empty texts dropped.
pub fn tokenize(model: &Model, texts: &[String]) -> Result<Vec<Vec<i64>>> {
    let tok = model.tokenizer()?;
    texts
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|t| Ok(tok.encode(t, true)?.into_iter().map(i64::from).collect()))
        .collect()
}

/// Rows a step draws from: the corpus's blocks or the prepared batches' rows.
enum Rows {
    Blocks(Ids),
    Prepared {
        input_ids: Ids,
        labels: Ids,
        attention_mask: Option<Ids>,
        decoder_input_ids: Option<Ids>,
    },
}

impl Rows {
    fn new(data: &Data, block_len: usize, vocab: usize, what: &str) -> Result<Self> {
        Ok(match data {
            Data::Tokens(t) => {
                if t.is_empty() {
                    crate::bail!(InvalidArgument, "{what} is empty");
                }
                for row in t {
                    check_ids(row, vocab, what)?;
                }
                Rows::Blocks(blocks(t, block_len, what)?)
            }
            Data::Prepared {
                input_ids,
                labels,
                attention_mask,
                decoder_input_ids,
            } => {
                if input_ids.rows == 0 || input_ids.cols == 0 {
                    crate::bail!(InvalidArgument, "{what}['input_ids'] is empty");
                }
                let same = |name: &str, a: &Ids, cols: usize| -> Result<()> {
                    if a.rows != input_ids.rows || a.cols != cols {
                        crate::bail!(
                            InvalidArgument,
                            "{what}['{name}'] has shape ({}, {}), expected ({}, {cols})",
                            a.rows,
                            a.cols,
                            input_ids.rows
                        );
                    }
                    Ok(())
                };
                if labels.rows != input_ids.rows {
                    crate::bail!(
                        InvalidArgument,
                        "{what}['labels'] has {} rows but input_ids {}",
                        labels.rows,
                        input_ids.rows
                    );
                }
                if let Some(m) = attention_mask {
                    same("attention_mask", m, input_ids.cols)?;
                }
                if let Some(d) = decoder_input_ids {
                    same("decoder_input_ids", d, labels.cols)?;
                    check_ids(&d.data, vocab, &format!("{what}['decoder_input_ids']"))?;
                }
                check_ids(&input_ids.data, vocab, &format!("{what}['input_ids']"))?;
                Rows::Prepared {
                    input_ids: input_ids.clone(),
                    labels: labels.clone(),
                    attention_mask: attention_mask.clone(),
                    decoder_input_ids: decoder_input_ids.clone(),
                }
            }
        })
    }

    fn len(&self) -> usize {
        match self {
            Rows::Blocks(b) => b.rows,
            Rows::Prepared { input_ids, .. } => input_ids.rows,
        }
    }

    fn batch(
        &self,
        maker: &Maker,
        idx: &[usize],
        rng: &mut rand::rngs::StdRng,
    ) -> Result<LossBatch> {
        match self {
            Rows::Blocks(b) => maker.batch(&rows_of(b, idx), rng),
            Rows::Prepared {
                input_ids,
                labels,
                attention_mask,
                decoder_input_ids,
            } => {
                // ids were checked against the vocabulary when the rows were made
                let u32s = |i: Ids| i.data.into_iter().map(|v| v as u32).collect::<Vec<_>>();
                let i = rows_of(input_ids, idx);
                let l = rows_of(labels, idx);
                Ok(LossBatch {
                    rows: i.rows,
                    cols: i.cols,
                    input_ids: u32s(i),
                    attention_mask: attention_mask
                        .as_ref()
                        .map(|m| rows_of(m, idx).data.iter().map(|&v| v as f32).collect()),
                    label_cols: l.cols,
                    labels: l.data,
                    decoder_input_ids: decoder_input_ids.as_ref().map(|d| u32s(rows_of(d, idx))),
                })
            }
        }
    }
}

/// Labels a loss counts (after the causal shift).
fn counted(b: &LossBatch, shift: bool) -> usize {
    (0..b.rows)
        .map(|r| {
            let row = &b.labels[r * b.label_cols..(r + 1) * b.label_cols];
            let row = if shift { &row[1.min(row.len())..] } else { row };
            row.iter().filter(|&&l| l != IGNORE).count()
        })
        .sum()
}

/// The blocks of a tokenized corpus, each `len` ids.
fn blocks(data: &[Vec<i64>], len: usize, what: &str) -> Result<Ids> {
    let total: usize = data.iter().map(Vec::len).sum();
    if total < len {
        crate::bail!(InvalidArgument, "{what} holds {total} tokens, fewer than one block of {len} (lower seq_len or give more text)");
    }
    objectives::pack(data, len)
}

/// Sample `indices` rows of `all`.
fn rows_of(all: &Ids, indices: &[usize]) -> Ids {
    let mut data = Vec::with_capacity(indices.len() * all.cols);
    for &i in indices {
        data.extend_from_slice(all.row(i));
    }
    Ids {
        data,
        rows: indices.len(),
        cols: all.cols,
    }
}

/// The block order of epoch `epoch`: a seeded permutation.
fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(mix(
        seed, epoch, 0xE90C,
    )));
    order
}

/// The mean loss over every block of the evaluation data, masking seeded once (the same
/// corruption at every evaluation).
fn evaluate(
    model: &Model,
    stacks: StacksRef,
    maker: &Maker,
    eval: &Rows,
    cfg: &TrainConfig,
    seed: u64,
) -> Result<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed, u64::MAX, 0xE7A1));
    let (mut sum, mut n) = (0f64, 0usize);
    let all: Vec<usize> = (0..eval.len()).collect();
    for chunk in all.chunks(cfg.batch_size) {
        let b = eval.batch(maker, chunk, &mut rng)?;
        let (s, c) = stacks.loss_t(&model.config, &b)?;
        sum += s.to_scalar::<f32>()? as f64;
        n += c;
    }
    if n == 0 {
        crate::bail!(InvalidArgument, "eval_data gives no token to count");
    }
    Ok(sum / n as f64)
}

/// What a checkpoint folder holds besides tensors.
#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    step: u64,
    seed: u64,
    objective: String,
    /// What must be the same for a resumed run to draw what the first one would have.
    run: String,
    adam_step: u64,
    history: Vec<(u64, f64, f64, f64, usize, f64)>,
    evals: Vec<(u64, f64, f64)>,
}

/// The newest complete checkpoint in `dir`.
pub fn latest_checkpoint(dir: &Path) -> Option<PathBuf> {
    let mut best: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        let Some(step) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if p.join("trainer_state.json").is_file() && best.as_ref().is_none_or(|(b, _)| step > *b) {
            best = Some((step, p));
        }
    }
    best.map(|(_, p)| p)
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.into(),
        source: e,
    }
}

/// Write a checkpoint of step `step` into `dir/step-N`: through `dir/step-N.partial`, renamed
/// once complete; older checkpoints are removed after.
fn write_checkpoint(dir: &Path, trained: &Model, adam: &AdamW, state: &State) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let fin = dir.join(format!("step-{:08}", state.step));
    let tmp = dir.join(format!("step-{:08}.partial", state.step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    }
    let result = (|| -> Result<()> {
        trained.write_folder(&tmp)?;
        let mut list: Vec<(String, Tensor)> = Vec::new();
        for (k, (m, v)) in &adam.moments {
            list.push((format!("exp_avg.{k}"), m.clone()));
            list.push((format!("exp_avg_sq.{k}"), v.clone()));
        }
        write_f32(&tmp.join("optimizer.safetensors"), &list, &BTreeMap::new())?;
        let p = tmp.join("trainer_state.json");
        let text = serde_json::to_string(state).map_err(|e| Error::Model(e.to_string()))?;
        std::fs::write(&p, text).map_err(|e| io_err(&p, e))?;
        // on disk before the rename makes it the checkpoint (a crash leaves the old one or this)
        sync_dir(&tmp)?;
        if fin.exists() {
            std::fs::remove_dir_all(&fin).map_err(|e| io_err(&fin, e))?;
        }
        std::fs::rename(&tmp, &fin).map_err(|e| io_err(&fin, e))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, e))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // keep only the newest
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            if name.starts_with("step-") && p != fin && !name.ends_with(".partial") {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
    }
    Ok(fin)
}

/// fsync every file of a folder, then the folder itself (its entries).
fn sync_dir(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let p = entry.map_err(|e| io_err(dir, e))?.path();
        if p.is_file() {
            std::fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| io_err(&p, e))?;
        }
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// Read a checkpoint's parameters, optimizer moments and state into the run.
fn read_checkpoint(path: &Path, params: &BTreeMap<String, Var>, adam: &mut AdamW) -> Result<State> {
    let sp = path.join("trainer_state.json");
    let text = crate::io::read_text(&sp, "a trainer_state.json", crate::io::MAX_JSON)?;
    let state: State =
        serde_json::from_str(&text).map_err(|e| Error::invalid_file(&sp, e.to_string()))?;
    let dev = candle_core::Device::Cpu;
    let weights = SafetensorsFile::open(path.join("model.safetensors"))?;
    let opt = SafetensorsFile::open(path.join("optimizer.safetensors"))?;
    for (name, var) in params {
        var.set(&weights.tensor(name, var.dims(), &dev)?)?;
        let (m, v) = (format!("exp_avg.{name}"), format!("exp_avg_sq.{name}"));
        if opt.contains(&m) {
            adam.moments.insert(
                name.clone(),
                (
                    opt.tensor(&m, var.dims(), &dev)?,
                    opt.tensor(&v, var.dims(), &dev)?,
                ),
            );
        }
    }
    adam.step = state.adam_step;
    Ok(state)
}

/// Train `model` on tokenized `data` (one id list per text), evaluating on `eval` when given.
/// `on_step` sees every step (and evaluation) and returns true to stop after it (Ctrl-C).
/// Returns the trained model (the same tokenizer and settings, the new weights) and the history.
pub fn train(
    model: &Model,
    data: &Data,
    eval: Option<&Data>,
    cfg: &TrainConfig,
    on_step: &mut dyn FnMut(&StepRecord, Option<&EvalRecord>) -> bool,
) -> Result<(Model, TrainResult)> {
    cfg.validate()?;
    let maker = Maker::new(model, cfg)?;
    let longest = maker.longest(cfg.seq_len)?;
    if longest > model.config.max_position_embeddings {
        crate::bail!(
            InvalidArgument,
            "seq_len {} needs sequences of {longest} tokens, beyond the model's {} positions",
            cfg.seq_len,
            model.config.max_position_embeddings
        );
    }
    let block_len = maker.block_len(cfg.seq_len)?;
    let vocab = model.config.vocab_size;
    let train_blocks = Rows::new(data, block_len, vocab, "data")?;
    let eval_blocks = eval
        .map(|e| Rows::new(e, block_len, vocab, "eval_data"))
        .transpose()?;
    if model.gguf_names && cfg.checkpoint_dir.is_some() {
        crate::bail!(
            Unsupported,
            "checkpoint_dir: a model dequantized from GGUF cannot be written back yet, so it trains without checkpoints"
        );
    }
    let run_key = format!(
        "steps={} batch_size={} grad_accum_steps={} seq_len={} lr={} warmup_steps={} schedule={} weight_decay={} grad_clip={:?} rows={} mlm_probability={} noise_density={} mean_noise_span_length={}",
        cfg.steps, cfg.batch_size, cfg.grad_accum_steps, cfg.seq_len, cfg.lr, cfg.warmup_steps, cfg.schedule.name(), cfg.weight_decay,
        cfg.grad_clip, train_blocks.len(), cfg.mlm_probability, cfg.noise_density, cfg.mean_noise_span_length
    );
    let params = parameters(model)?;
    let mut adam = AdamW::new(AdamWConfig {
        weight_decay: cfg.weight_decay,
        ..Default::default()
    });
    let mut result = TrainResult::default();
    let mut first = 0u64;
    let mut seed = cfg
        .seed
        .unwrap_or_else(|| rand::Rng::random(&mut rand::rngs::StdRng::from_os_rng()));
    if cfg.resume {
        let dir = cfg.checkpoint_dir.as_deref().unwrap_or(Path::new("."));
        let ck = latest_checkpoint(dir).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "resume=True but checkpoint_dir {} holds no checkpoint",
                dir.display()
            ))
        })?;
        let state = read_checkpoint(&ck, &params, &mut adam)?;
        if state.run != run_key {
            crate::bail!(
                InvalidArgument,
                "the checkpoint in {} was made by another run ({}); resuming needs the same settings and data ({run_key})",
                ck.display(),
                state.run
            );
        }
        if state.objective != cfg.objective.name() || cfg.seed.is_some_and(|s| s != state.seed) {
            crate::bail!(
                InvalidArgument,
                "the checkpoint in {} was trained with objective {:?} and seed {}, not {:?} and {}",
                ck.display(),
                state.objective,
                state.seed,
                cfg.objective.name(),
                seed
            );
        }
        seed = state.seed;
        first = state.step;
        result.history = state
            .history
            .iter()
            .map(
                |&(step, loss, lr, grad_norm, tokens, tokens_per_s)| StepRecord {
                    step,
                    loss,
                    lr,
                    grad_norm,
                    tokens,
                    tokens_per_s,
                },
            )
            .collect();
        result.evals = state
            .evals
            .iter()
            .map(|&(step, loss, perplexity)| EvalRecord {
                step,
                loss,
                perplexity,
            })
            .collect();
        result.resumed_from = Some(first);
        result.checkpoint = Some(ck);
    }
    let start = Instant::now();
    let per_step = cfg.batch_size * cfg.grad_accum_steps;
    let n = train_blocks.len();
    let mut order: (u64, Vec<usize>) = (u64::MAX, Vec::new());
    let shift = cfg.objective == Objective::Clm;
    for step in first..cfg.steps {
        let t0 = Instant::now();
        // the step's micro-batches: blocks in seeded epoch order, corrupted with the step's seed
        let mut batches = Vec::with_capacity(cfg.grad_accum_steps);
        for micro in 0..cfg.grad_accum_steps {
            let mut idx = Vec::with_capacity(cfg.batch_size);
            for i in 0..cfg.batch_size {
                let g =
                    (step as u128 * per_step as u128 + (micro * cfg.batch_size + i) as u128) as u64;
                let epoch = g / n as u64;
                if order.0 != epoch {
                    order = (epoch, epoch_order(n, seed, epoch));
                }
                idx.push(order.1[(g % n as u64) as usize]);
            }
            let mut rng = rand::rngs::StdRng::seed_from_u64(mix(seed, step, micro as u64 + 1));
            batches.push(train_blocks.batch(&maker, &idx, &mut rng)?);
        }
        let total: usize = batches.iter().map(|b| counted(b, shift)).sum();
        let stacks = build(model, &params)?;
        let refs = stacks.refs();
        let mut grads: BTreeMap<String, Tensor> = BTreeMap::new();
        let (mut loss_sum, mut tokens) = (0f64, 0usize);
        let mut cut = false;
        for b in &batches {
            tokens += b.input_ids.len();
            let (sum, count) = match refs.loss_t(&model.config, b) {
                // Ctrl-C inside a step's forward pass: the step is dropped, the run ends as an
                // interrupted run does between steps (the model as of the last whole step)
                Err(Error::Interrupted) => {
                    cut = true;
                    break;
                }
                r => r?,
            };
            if count == 0 {
                continue;
            }
            loss_sum += sum.to_scalar::<f32>()? as f64;
            let store = (sum / total as f64)?.backward()?;
            for (name, var) in &params {
                if let Some(g) = store.get(var.as_tensor()) {
                    let g = match grads.remove(name) {
                        Some(acc) => (acc + g)?,
                        None => g.clone(),
                    };
                    grads.insert(name.clone(), g);
                }
            }
        }
        drop(stacks);
        if cut {
            result.interrupted = true;
            break;
        }
        if total == 0 {
            crate::bail!(
                InvalidArgument,
                "step {}: its batches count no label (every label -100; seq_len too short for the objective?)",
                step + 1
            );
        }
        let lr = cfg.schedule.lr(cfg.lr, step, cfg.warmup_steps, cfg.steps);
        let grad_norm = grad_norm(&grads)?;
        adam.update(&params, &grads, lr, clip_coef(grad_norm, cfg.grad_clip))?;
        let secs = t0.elapsed().as_secs_f64();
        let rec = StepRecord {
            step: step + 1,
            loss: if total > 0 {
                loss_sum / total as f64
            } else {
                0.0
            },
            lr,
            grad_norm,
            tokens,
            tokens_per_s: tokens as f64 / secs.max(1e-9),
        };
        if !rec.loss.is_finite() {
            crate::bail!(
                Model,
                "the loss became {} at step {}: training diverged (lower lr)",
                rec.loss,
                rec.step
            );
        }
        let last = step + 1 == cfg.steps;
        let mut ev = None;
        if let (Some(e), true) = (
            &eval_blocks,
            last || cfg.eval_every.is_some_and(|k| (step + 1) % k == 0),
        ) {
            let stacks = build(model, &params)?;
            let refs = stacks.refs();
            let loss = evaluate(model, refs, &maker, e, cfg, seed)?;
            if !loss.is_finite() {
                crate::bail!(
                    Model,
                    "the eval loss became {loss} at step {}: training diverged (lower lr)",
                    step + 1
                );
            }
            let r = EvalRecord {
                step: step + 1,
                loss,
                perplexity: loss.exp(),
            };
            result.evals.push(r.clone());
            ev = Some(r);
        }
        result.history.push(rec.clone());
        let stop = on_step(&rec, ev.as_ref());
        let due = cfg.checkpoint_every.is_some_and(|k| (step + 1) % k == 0) || last || stop;
        if let (Some(dir), true) = (&cfg.checkpoint_dir, due) {
            let state = State {
                step: step + 1,
                seed,
                objective: cfg.objective.name().into(),
                run: run_key.clone(),
                adam_step: adam.step,
                history: result
                    .history
                    .iter()
                    .map(|r| (r.step, r.loss, r.lr, r.grad_norm, r.tokens, r.tokens_per_s))
                    .collect(),
                evals: result
                    .evals
                    .iter()
                    .map(|e| (e.step, e.loss, e.perplexity))
                    .collect(),
            };
            let trained = trained_model(model, &params)?;
            result.checkpoint = Some(write_checkpoint(dir, &trained, &adam, &state)?);
        }
        if stop {
            result.interrupted = !last;
            break;
        }
    }
    result.seconds = start.elapsed().as_secs_f64();
    Ok((trained_model(model, &params)?, result))
}

/// `model` with the parameters' values as its weights (what save writes, what inference runs):
/// copies, so that later updates leave it as it is.
pub fn trained_model(model: &Model, params: &BTreeMap<String, Var>) -> Result<Model> {
    let tensors: BTreeMap<String, Tensor> = params
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?.detach())))
        .collect::<Result<_>>()?;
    let stacks = families::build(
        &model.config,
        &Source::Params {
            params: &tensors,
            gguf: model.gguf_names,
        },
    )?;
    Ok(model.with_weights(stacks, tensors))
}
