//! The encoder-decoder (T5): the prompt is encoded once with bidirectional attention; the decoder
//! runs causally over its own tokens (K/V cached) and attends to the encoder output through
//! cross-attention (its K/V computed once). Both stacks are made of the transformer's own `Block`
//! (pre-norm attention and MLP with residuals; the decoder's blocks add their cross-attention
//! sub-layer) run by `Block::forward_cross`, plus T5's relative position bias; T5 neither scales
//! attention scores by 1/sqrt(head_dim) nor adds positions to the embeddings.

use candle_core::{Device, Tensor};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::kernels::attention;
use crate::model::transformer::Block;
use crate::nn::{Embedding, Linear, Norm, RelativeBias};

pub struct EncoderDecoder {
    pub config: ModelConfig,
    pub embed: Embedding,
    /// Pre-norm blocks, bidirectional self-attention.
    pub encoder: Vec<Block>,
    pub encoder_bias: RelativeBias,
    pub encoder_norm: Norm,
    /// Pre-norm blocks, causal self-attention and cross-attention (`Block::cross`).
    pub decoder: Vec<Block>,
    pub decoder_bias: RelativeBias,
    pub decoder_norm: Norm,
    pub lm_head: Linear,
    /// Multiplies the decoder output before a tied LM head (T5: d_model^-0.5), else 1.
    pub lm_scale: f64,
    pub decoder_start_token_id: u32,
    pub device: Device,
}

/// One request's decoder state: cross-attention K/V per layer and the self-attention cache.
#[derive(Clone)]
pub struct Seq2SeqState {
    enc_len: usize,
    /// Shared: beams forked from one request read the same encoder K/V.
    cross: std::sync::Arc<Vec<(Vec<f32>, Vec<f32>)>>,
    cache: Vec<(Vec<f32>, Vec<f32>)>,
    len: usize,
}

impl Seq2SeqState {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn rows(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

impl EncoderDecoder {
    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let vocab = self.config.vocab_size as u32;
        if ids.is_empty() {
            return Err(Error::InvalidArgument("no input tokens".into()));
        }
        if let Some(bad) = ids.iter().find(|&&i| i >= vocab) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is out of range for a vocabulary of {vocab}"
            )));
        }
        Ok(())
    }

    /// Encoder output [1, len, hidden].
    pub fn encode(&self, ids: &[u32]) -> Result<Tensor> {
        self.check_ids(ids)?;
        let c = &self.config;
        let (n, nh, hd) = (ids.len(), c.num_heads, c.head_dim);
        let mut x = self.embed.forward(ids, &self.device)?.unsqueeze(0)?;
        let bias = self.encoder_bias.bias(0, n, n);
        for l in &self.encoder {
            x = l.forward(x, false, |h| {
                let p = l.attn.project(h, &[(0, n)], None)?;
                let out =
                    attention::general(&p.q, &p.k, &p.v, n, n, nh, nh, hd, 1.0, Some(&bias), None);
                l.attn.output(out, h)
            })?;
        }
        self.encoder_norm.forward(&x)
    }

    /// Encode the prompt and prepare the decoder's cross-attention.
    pub fn start(&self, prompt: &[u32]) -> Result<Seq2SeqState> {
        let enc = self.encode(prompt)?;
        let cross = self
            .decoder
            .iter()
            .map(|l| {
                let (_, cross) = l.cross.as_ref().ok_or_else(|| {
                    Error::Model("a decoder layer without cross-attention".into())
                })?;
                Ok((
                    rows(&cross.k.forward(&enc)?)?,
                    rows(&cross.v.forward(&enc)?)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Seq2SeqState {
            enc_len: prompt.len(),
            cross: std::sync::Arc::new(cross),
            cache: vec![(Vec::new(), Vec::new()); self.decoder.len()],
            len: 0,
        })
    }

    /// Run decoder tokens after what the state holds; logits [new tokens, vocab] row-major.
    pub fn step(&self, st: &mut Seq2SeqState, ids: &[u32]) -> Result<Vec<f32>> {
        self.check_ids(ids)?;
        let c = &self.config;
        let (n, nh, hd, past) = (ids.len(), c.num_heads, c.head_dim, st.len);
        let mut x = self.embed.forward(ids, &self.device)?.unsqueeze(0)?;
        let bias = self.decoder_bias.bias(past, n, past + n);
        for (l, layer) in self.decoder.iter().enumerate() {
            let (ck, cv) = &mut st.cache[l];
            let (xk, xv) = &st.cross[l];
            x = layer.forward_cross(
                x,
                false,
                |h| {
                    let p = layer.attn.project(h, &[(past, n)], None)?;
                    ck.extend(p.k);
                    cv.extend(p.v);
                    let out = attention::general(
                        &p.q,
                        ck,
                        cv,
                        n,
                        past + n,
                        nh,
                        nh,
                        hd,
                        1.0,
                        Some(&bias),
                        Some(past),
                    );
                    layer.attn.output(out, h)
                },
                |cross, h| {
                    let q = rows(&cross.q.forward(h)?)?;
                    let out =
                        attention::general(&q, xk, xv, n, st.enc_len, nh, nh, hd, 1.0, None, None);
                    cross.output(out, h)
                },
            )?;
        }
        st.len += n;
        let x = self.decoder_norm.forward(&x)?;
        let x = if self.lm_scale != 1.0 {
            (x * self.lm_scale)?
        } else {
            x
        };
        rows(&self.lm_head.forward(&x)?)
    }
}
