//! Beam search (HF transformers' semantics, `early_stopping=False`).
//!
//! Each step every running beam's log-softmax goes through the sampler's processors (penalties,
//! bias, n-gram ban, min_new_tokens), the beam's running sum is added, and the best 2 x num_beams
//! candidates over all beams are taken in order. A candidate that ends (end-of-generation or stop
//! id, or max_new_tokens reached) becomes a finished hypothesis if it ranks among the first
//! num_beams, scored `sum_logprobs / generated_len ^ length_penalty` (generated_len counts the
//! final token, as HF's current `_beam_search` does); the others fill the next running beams. The
//! search ends when num_beams hypotheses are finished and the best running beam, normalised at its
//! current length, cannot beat the worst of them; or at max_new_tokens.
//!
//! A candidate whose generated text comes to contain a stop string ends like an end-of-generation
//! token (finish reason "stop"; its text is cut before the stop string). Log-probs, when asked
//! for, are each chosen token's raw log-softmax (before processors, as in sampling) with the top n.
//!
//! Running beams go through the model together (`Model::step`); a beam chosen by several
//! candidates gets copies of its state. An encoder-decoder's prompt is encoded once, by
//! `Model::start`: its beams share the encoder's keys and values.

use std::sync::Arc;

use super::{FinishReason, Output, TokenLogprob};
use crate::config::GenerationConfig;
use crate::error::{Error, Result};
use crate::model::{Logits, Model, State, Step};
use crate::sampling::{log_sum_exp, top_logprobs, History, Sampler};

struct Beam {
    tokens: Vec<u32>,
    sum: f64,
    state: State,
    logprobs: Vec<TokenLogprob>,
}

struct Hypothesis {
    tokens: Vec<u32>,
    score: f64,
    finish: FinishReason,
    logprobs: Vec<TokenLogprob>,
}

/// Beam search for one prompt with `params.num_beams` beams: the best `num_return_sequences`
/// hypotheses, best first, each with its length-normalised score.
pub fn beam_search(
    model: &Arc<Model>,
    prompt: &[u32],
    params: &GenerationConfig,
    interrupted: &dyn Fn() -> bool,
) -> Result<Vec<Output>> {
    params.validate()?;
    let (num_beams, num_return, length_penalty) = (
        params.num_beams,
        params.num_return_sequences,
        params.length_penalty,
    );
    if !params.stop.is_empty() && model.tokenizer.is_none() {
        return Err(Error::Unsupported(
            "stop strings are found in the text, and this model has no tokenizer to write it: use stop_token_ids".into(),
        ));
    }
    let first = model.start(prompt, params.max_new_tokens)?;
    let ctx = model.context_length();
    let prefix = first.prefix().to_vec();
    if prefix.len() >= ctx {
        return Err(Error::ContextOverflow(format!(
            "the prompt has {} tokens; the model's context is {ctx}, leaving no room to generate",
            prompt.len()
        )));
    }
    let max_new = params.max_new_tokens.min(first.capacity() - prefix.len());
    if max_new == 0 {
        return (0..num_return)
            .map(|_| {
                output(
                    model,
                    prompt,
                    params,
                    Vec::new(),
                    FinishReason::Length,
                    Vec::new(),
                    0.0,
                )
            })
            .collect();
    }
    // Processors only: a greedy sampler never draws.
    let mut sp = params.clone();
    sp.do_sample = false;
    let sampler = Sampler::new(&sp, None)?;
    let norm = |sum: f64, len: usize| sum / (len as f64).powf(length_penalty);

    // each beam's tokens: the decoder's sequence (its prefix, then the generated tokens)
    let mut running = vec![Beam {
        tokens: prefix.clone(),
        sum: 0.0,
        state: first,
        logprobs: Vec::new(),
    }];
    let p_len = prefix.len();
    let mut finished: Vec<Hypothesis> = Vec::new();
    let vocab = model.config().vocab_size;
    for step in 0..max_new {
        if interrupted() {
            return Err(Error::Interrupted);
        }
        let rows = {
            let mut steps: Vec<Step<'_>> = running
                .iter_mut()
                .map(|b| Step {
                    ids: &b.tokens[b.state.len()..],
                    state: &mut b.state,
                })
                .collect();
            model.step(&mut steps, Logits::Last)?
        };
        // (score, beam, token), best first; ties keep beam then token order.
        let mut cands: Vec<(f64, usize, u32)> = Vec::new();
        let keep = 2 * num_beams;
        let mut suppress = Vec::new();
        if step < params.min_new_tokens {
            suppress.extend_from_slice(model.eog_token_ids());
            suppress.extend_from_slice(&params.stop_token_ids);
        }
        // each beam's raw log-softmax, kept when log-probs are asked for
        let mut raw_rows: Vec<Vec<f32>> = Vec::new();
        for (bi, (beam, mut row)) in running.iter().zip(rows).enumerate() {
            if row.len() != vocab {
                return Err(Error::Model(format!(
                    "expected {vocab} logits, got {}",
                    row.len()
                )));
            }
            if let Some(i) = row.iter().position(|x| !x.is_finite()) {
                return Err(Error::Model(format!(
                    "the model's logits hold {} (token {i}) at beam step {step}: its weights are corrupt or the computation overflowed",
                    row[i]
                )));
            }
            let lse = log_sum_exp(&row) as f32;
            row.iter_mut().for_each(|x| *x -= lse);
            if params.logprobs.is_some() {
                raw_rows.push(row.clone());
            }
            // The processors see the decoder's own sequence: the prompt for decoders, the start
            // token for encoder-decoders (as HF applies them to decoder_input_ids).
            let (p, o) = beam.tokens.split_at(p_len);
            sampler.process(
                &mut row,
                History {
                    prompt: p,
                    output: o,
                    suppress: &suppress,
                },
            )?;
            for (t, &lp) in row.iter().enumerate() {
                if lp == f32::NEG_INFINITY {
                    continue;
                }
                cands.push((beam.sum + lp as f64, bi, t as u32));
            }
            // Only the best `keep` over all beams can matter.
            if cands.len() > 4 * keep {
                cands.select_nth_unstable_by(keep - 1, |a, b| {
                    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
                });
                cands.truncate(keep);
            }
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        cands.truncate(keep);
        if cands.is_empty() {
            return Err(Error::InvalidArgument(
                "every token is banned by the logits processors".into(),
            ));
        }

        let last = step + 1 == max_new;
        let mut next: Vec<(usize, u32, f64, Option<TokenLogprob>)> = Vec::new();
        let token_logprob = |bi: usize, tok: u32| -> Option<TokenLogprob> {
            let (row, n) = (raw_rows.get(bi)?, params.logprobs?);
            Some(TokenLogprob {
                id: tok,
                logprob: row[tok as usize],
                top: top_logprobs(row, n, 0.0),
            })
        };
        for (rank, &(score, bi, tok)) in cands.iter().enumerate() {
            let stop_string = || -> Result<bool> {
                if params.stop.is_empty() {
                    return Ok(false);
                }
                let mut gen = running[bi].tokens[p_len..].to_vec();
                gen.push(tok);
                let text = model.tokenizer()?.decode(&gen, true)?;
                Ok(params.stop.iter().any(|s| text.contains(s.as_str())))
            };
            let ends = if params.stop_token_ids.contains(&tok) {
                Some(FinishReason::Stop)
            } else if !params.ignore_eos && model.is_eog(tok) {
                Some(FinishReason::Eos)
            } else if (rank < num_beams || next.len() < num_beams) && stop_string()? {
                Some(FinishReason::Stop)
            } else if last {
                Some(FinishReason::Length)
            } else {
                None
            };
            match ends {
                Some(finish) => {
                    if rank < num_beams {
                        let mut tokens = running[bi].tokens[p_len..].to_vec();
                        let mut logprobs = running[bi].logprobs.clone();
                        // an ending id is not part of the output; a token that completes a stop
                        // string is (its text is cut), as in sampling
                        let id_ends =
                            params.stop_token_ids.contains(&tok) || (finish == FinishReason::Eos);
                        if !id_ends {
                            tokens.push(tok);
                        }
                        logprobs.extend(token_logprob(bi, tok));
                        finished.push(Hypothesis {
                            tokens,
                            score: norm(score, step + 1),
                            finish,
                            logprobs,
                        });
                    }
                }
                None => {
                    if next.len() < num_beams {
                        next.push((bi, tok, score, token_logprob(bi, tok)));
                    }
                }
            }
        }
        finished.sort_by(|a, b| b.score.total_cmp(&a.score));
        finished.truncate(num_beams);
        if last || next.is_empty() {
            break;
        }
        // Done when the best running beam, at its current length, cannot beat the worst finished.
        let best_running = norm(next[0].2, step + 1);
        if finished.len() == num_beams && finished.last().is_some_and(|w| w.score >= best_running) {
            break;
        }
        // New beams: move a parent's cache to its last child, copy it for the others.
        let mut uses = vec![0usize; running.len()];
        next.iter().for_each(|&(bi, _, _, _)| uses[bi] += 1);
        let mut parents: Vec<Option<Beam>> = running.into_iter().map(Some).collect();
        running = Vec::with_capacity(next.len());
        for (bi, tok, sum, lp) in next {
            uses[bi] -= 1;
            let mut beam = if uses[bi] == 0 {
                parents[bi]
                    .take()
                    .ok_or_else(|| Error::Model("beam parent used twice".into()))?
            } else {
                let p = parents[bi]
                    .as_ref()
                    .ok_or_else(|| Error::Model("beam parent missing".into()))?;
                Beam {
                    tokens: p.tokens.clone(),
                    sum: p.sum,
                    state: p.state.clone(),
                    logprobs: p.logprobs.clone(),
                }
            };
            beam.tokens.push(tok);
            beam.sum = sum;
            beam.logprobs.extend(lp);
            running.push(beam);
        }
    }
    finished
        .into_iter()
        .take(num_return)
        .map(|h| {
            output(
                model, prompt, params, h.tokens, h.finish, h.logprobs, h.score,
            )
        })
        .collect()
}

fn output(
    model: &Model,
    prompt: &[u32],
    params: &GenerationConfig,
    tokens: Vec<u32>,
    finish: FinishReason,
    logprobs: Vec<TokenLogprob>,
    score: f64,
) -> Result<Output> {
    let mut text = match &model.tokenizer {
        Some(t) => t.decode(&tokens, true)?,
        None => String::new(),
    };
    if let Some(cut) = params
        .stop
        .iter()
        .filter_map(|s| text.find(s.as_str()))
        .min()
    {
        text.truncate(cut);
    }
    Ok(Output {
        text,
        token_ids: tokens,
        finish_reason: finish,
        prompt_tokens: prompt.len(),
        logprobs: params.logprobs.map(|_| logprobs),
        prompt_logprobs: None,
        score: Some(score),
    })
}
