//! Training's differentiable path: every layer kind's gradients checked against finite
//! differences of the loss (a dropped gradient shows as 0 against a non-zero slope), on tiny
//! models built from configs, and a few steps of training lowering the loss.

use std::collections::BTreeMap;

use candle_core::{Tensor, Var};
use candlewick::config::Value;
use candlewick::model::builder::Source;
use candlewick::model::families;
use candlewick::train::trainer::parameters;
use candlewick::train::LossBatch;

fn config(family: &str, extra: &[(&str, Value)]) -> candlewick::Result<candlewick::ModelConfig> {
    let mut over: Vec<(String, Value)> = [
        ("vocab_size", 40),
        ("hidden_size", 16),
        ("num_heads", 2),
        ("num_layers", 2),
        ("intermediate_size", 24),
        ("max_position_embeddings", 32),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Value::Int(v)))
    .collect();
    over.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    families::for_family(family, over)
}

fn batch(cfg: &candlewick::ModelConfig) -> LossBatch {
    let (rows, cols) = (2, 7);
    let ids: Vec<u32> = (0..rows * cols).map(|i| (3 + i * 7 % 31) as u32).collect();
    let mut mask = vec![1f32; rows * cols];
    mask[rows * cols - 2..].iter_mut().for_each(|m| *m = 0.0);
    let enc_dec = cfg.architecture == candlewick::config::Architecture::EncoderDecoder;
    let label_cols = if enc_dec { 4 } else { cols };
    let labels: Vec<i64> = (0..rows * label_cols)
        .map(|i| {
            if i % 5 == 4 {
                -100
            } else {
                (5 + i * 3 % 29) as i64
            }
        })
        .collect();
    LossBatch {
        input_ids: ids,
        rows,
        cols,
        attention_mask: Some(mask),
        labels,
        label_cols,
        decoder_input_ids: None,
    }
}

fn loss_of(
    cfg: &candlewick::ModelConfig,
    params: &BTreeMap<String, Var>,
    b: &LossBatch,
) -> candlewick::Result<(Tensor, f64)> {
    let tensors: BTreeMap<String, Tensor> = params
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let stacks = families::build(
        cfg,
        &Source::Params {
            params: &tensors,
            gguf: false,
        },
    )?;
    let refs = stacks.refs();
    let (sum, n) = refs.loss_t(cfg, b)?;
    let loss = (sum / n as f64)?;
    let v = loss.to_scalar::<f32>()? as f64;
    Ok((loss, v))
}

/// For every parameter tensor: the gradient's projection on a fixed direction equals the
/// central difference of the loss along it.
#[test]
fn gradients_match_finite_differences_for_every_layer_kind() -> candlewick::Result<()> {
    let cases: Vec<(&str, Vec<(&str, Value)>)> = vec![
        ("llama", vec![("num_kv_heads", Value::Int(1))]),
        ("llama", vec![("qkv_bias", Value::Bool(true))]),
        ("llama", vec![("sliding_window", Value::Int(3))]),
        ("gpt2", vec![]),
        ("gpt2", vec![("position", Value::Str("sinusoidal".into()))]),
        ("bert", vec![("mlm_head", Value::Bool(true))]),
        ("t5", vec![]),
        (
            "t5",
            vec![
                ("activation", Value::Str("gelu_tanh".into())),
                ("gated_mlp", Value::Bool(true)),
                ("tie_word_embeddings", Value::Bool(false)),
            ],
        ),
    ];
    for (family, extra) in cases {
        let cfg = config(family, &extra)?;
        let model = candlewick::Model::from_config(cfg.clone(), 11, None)?;
        let params = parameters(&model)?;
        let b = batch(&cfg);
        let (loss, _) = loss_of(&cfg, &params, &b)?;
        let grads = loss.backward()?;
        // small enough that the loss is near-linear along the direction, large enough for f32
        // (ReLU's kinks need a shorter step than smooth activations)
        let eps = if cfg.activation == candlewick::config::Activation::Relu {
            2e-4
        } else {
            1e-3f64
        };
        for (name, var) in &params {
            let g = grads
                .get(var.as_tensor())
                .map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .unwrap_or_else(|| vec![0.0; var.elem_count()]);
            let n = var.elem_count();
            // a direction that touches every element, with varying signs
            let dir: Vec<f32> = (0..n)
                .map(|i| (((i * 7919 + 13) % 17) as f32 - 8.0) / 8.0)
                .collect();
            let analytic: f64 = g.iter().zip(&dir).map(|(&a, &d)| a as f64 * d as f64).sum();
            let base = var.as_tensor().detach().copy()?;
            let d = Tensor::from_vec(dir, var.dims(), &candle_core::Device::Cpu)?;
            var.set(&(&base + (&d * eps)?)?)?;
            let (_, up) = loss_of(&cfg, &params, &b)?;
            var.set(&(&base - (&d * eps)?)?)?;
            let (_, down) = loss_of(&cfg, &params, &b)?;
            var.set(&base)?;
            let numeric = (up - down) / (2.0 * eps);
            let tol = 2e-3 + 2e-2 * numeric.abs().max(analytic.abs());
            assert!(
                (numeric - analytic).abs() <= tol,
                "{family} {extra:?}: {name}: finite difference {numeric:.6} vs gradient {analytic:.6}"
            );
        }
    }
    Ok(())
}

/// A few steps on a repeated text lower the loss, and the trained model generates from the
/// trained weights.
#[test]
fn training_lowers_the_loss() -> candlewick::Result<()> {
    use candlewick::train::{train, Data, Objective, TrainConfig};
    let cfg = config("llama", &[])?;
    let model = candlewick::Model::from_config(cfg, 5, None)?;
    let text: Vec<i64> = (0..400).map(|i| [4, 9, 13, 21, 30][i % 5]).collect();
    let mut tc = TrainConfig::new(Objective::Clm, 30, 4, 16, 1e-2);
    tc.seed = Some(1);
    let (trained, result) = train(&model, &Data::Tokens(vec![text]), None, &tc, &mut |_, _| {
        false
    })?;
    let first = result.history[0].loss;
    let last = result.history.last().unwrap().loss;
    assert!(last < first * 0.5, "loss {first} -> {last}");
    assert!(trained.built.is_some());
    Ok(())
}
