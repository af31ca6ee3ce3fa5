//! The recurrent layers against torch (tests/fixtures/make_rnn_fixtures.py): nn.LSTM and nn.GRU
//! of two layers on fixed inputs from a given initial state, their outputs, final states and the
//! gradients of sum(outputs * w) with respect to the input and every weight, within 1e-5; and
//! the fused scan against its plain-ops reference.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor, Var};
use candlewick::config::Cell;
use candlewick::io::safetensors::SafetensorsFile;
use candlewick::nn::rnn::{Rnn, RnnLayer, RnnState};
use candlewick::nn::Linear;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn check(cell: Cell, name: &str) {
    let dev = Device::Cpu;
    let refs: HashMap<String, Tensor> = Tensor::read_npz(fixtures().join("rnn_reference.npz"))
        .unwrap()
        .into_iter()
        .collect();
    let r = |k: &str| {
        refs.get(&format!("{name}/layer/{k}"))
            .unwrap_or_else(|| panic!("{name}/layer/{k}"))
            .clone()
    };
    let weights =
        SafetensorsFile::open(fixtures().join(format!("tiny-rnn-{name}/model.safetensors")))
            .unwrap();
    let (hidden, layers) = (r("x").dim(2).unwrap(), r("h0").dim(0).unwrap());
    let g = cell.gates() * hidden;
    let mut vars: Vec<(String, Var)> = Vec::new();
    let mut stack = Vec::new();
    for l in 0..layers {
        let mut var = |k: &str, shape: &[usize]| {
            let key = format!("{k}_l{l}");
            let v = Var::from_tensor(&weights.tensor(&format!("rnn.{key}"), shape, &dev).unwrap())
                .unwrap();
            vars.push((key, v.clone()));
            v.as_tensor().clone()
        };
        let (wi, wh) = (
            var("weight_ih", &[g, hidden]),
            var("weight_hh", &[g, hidden]),
        );
        let (bi, bh) = (var("bias_ih", &[g]), var("bias_hh", &[g]));
        stack.push(RnnLayer {
            input: Linear::dense(wi, Some(bi)).unwrap(),
            w_hh: wh,
            b_hh: bh,
        });
    }
    let rnn = Rnn {
        cell,
        hidden,
        layers: stack,
    };
    let x = Var::from_tensor(&r("x")).unwrap();
    let (h0, c0) = (r("h0"), refs.get(&format!("{name}/layer/c0")).cloned());
    let mut state = RnnState {
        layers: (0..layers)
            .map(|l| (h0.get(l).unwrap(), c0.as_ref().map(|c| c.get(l).unwrap())))
            .collect(),
    };
    // the plain-ops reference agrees with the fused scan
    let mut ref_state = state.clone();
    let reference = rnn.forward_ref(x.as_tensor(), &mut ref_state).unwrap();
    let out = rnn.forward(x.as_tensor(), &mut state).unwrap();
    assert!(
        max_diff(&out, &reference) <= 1e-6,
        "{name}: fused vs reference {}",
        max_diff(&out, &reference)
    );
    for ((h, c), (rh, rc)) in state.layers.iter().zip(&ref_state.layers) {
        assert!(max_diff(h, rh) <= 1e-6);
        if let (Some(c), Some(rc)) = (c, rc) {
            assert!(max_diff(c, rc) <= 1e-6);
        }
    }
    assert!(
        max_diff(&out, &r("out")) <= 1e-5,
        "{name} outputs: {}",
        max_diff(&out, &r("out"))
    );
    for l in 0..layers {
        let (h, c) = &state.layers[l];
        assert!(
            max_diff(h, &r("hn").get(l).unwrap()) <= 1e-5,
            "{name} h_n layer {l}"
        );
        if let Some(c) = c {
            assert!(
                max_diff(c, &r("cn").get(l).unwrap()) <= 1e-5,
                "{name} c_n layer {l}"
            );
        }
    }
    let grads = (out * r("w"))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let gx = grads.get(x.as_tensor()).expect("a gradient for the input");
    assert!(
        max_diff(gx, &r("grad_x")) <= 1e-5,
        "{name} d/dx: {}",
        max_diff(gx, &r("grad_x"))
    );
    for (key, v) in &vars {
        let got = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {key}"));
        let want = r(&format!("grad/{key}"));
        assert!(
            max_diff(got, &want) <= 1e-5,
            "{name} d/d{key}: {}",
            max_diff(got, &want)
        );
    }
}

#[test]
fn lstm_equals_torch() {
    check(Cell::Lstm, "lstm");
}

#[test]
fn gru_equals_torch() {
    check(Cell::Gru, "gru");
}

/// The fused scan against its plain-ops reference at a width that runs every kernel path (the
/// 64-column blocks and their remainder), several rows and a non-zero initial state: outputs,
/// final states and the gradients of every weight and of the input.
#[test]
fn fused_scan_equals_the_reference_at_every_width() {
    use rand::{Rng, SeedableRng};
    let dev = Device::Cpu;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut rand_t = |shape: &[usize], scale: f32| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
            .collect();
        Tensor::from_vec(v, shape, &dev).unwrap()
    };
    for cell in [Cell::Lstm, Cell::Gru] {
        for (hidden, rows) in [(80, 5), (130, 3)] {
            let g = cell.gates() * hidden;
            let mut vars = Vec::new();
            let mut layers = Vec::new();
            for _ in 0..2 {
                let mut var = |shape: &[usize]| {
                    let v = Var::from_tensor(&rand_t(shape, 0.15)).unwrap();
                    vars.push(v.clone());
                    v.as_tensor().clone()
                };
                let (wi, bi, wh, bh) = (var(&[g, hidden]), var(&[g]), var(&[g, hidden]), var(&[g]));
                layers.push(RnnLayer {
                    input: Linear::dense(wi, Some(bi)).unwrap(),
                    w_hh: wh,
                    b_hh: bh,
                });
            }
            let rnn = Rnn {
                cell,
                hidden,
                layers,
            };
            let x = Var::from_tensor(&rand_t(&[rows, 9, hidden], 1.0)).unwrap();
            let w = rand_t(&[rows, 9, hidden], 1.0);
            let state = RnnState {
                layers: (0..2)
                    .map(|_| {
                        (
                            rand_t(&[rows, hidden], 0.5),
                            (cell == Cell::Lstm).then(|| rand_t(&[rows, hidden], 0.5)),
                        )
                    })
                    .collect(),
            };
            let run = |fused: bool| {
                let mut st = state.clone();
                let out = if fused {
                    rnn.forward(x.as_tensor(), &mut st)
                } else {
                    rnn.forward_ref(x.as_tensor(), &mut st)
                }
                .unwrap();
                let grads = (&out * &w).unwrap().sum_all().unwrap().backward().unwrap();
                let mut gs = vec![grads.get(x.as_tensor()).unwrap().clone()];
                gs.extend(
                    vars.iter()
                        .map(|v| grads.get(v.as_tensor()).unwrap().clone()),
                );
                (out, st, gs)
            };
            let ((o1, s1, g1), (o2, s2, g2)) = (run(true), run(false));
            assert!(
                max_diff(&o1, &o2) <= 1e-5,
                "{cell:?} {hidden}: outputs {}",
                max_diff(&o1, &o2)
            );
            for ((h1, c1), (h2, c2)) in s1.layers.iter().zip(&s2.layers) {
                assert!(max_diff(h1, h2) <= 1e-5);
                if let (Some(c1), Some(c2)) = (c1, c2) {
                    assert!(max_diff(c1, c2) <= 1e-5);
                }
            }
            for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
                let scale = b
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    .max(1.0);
                assert!(
                    max_diff(a, b) <= 1e-5 * scale,
                    "{cell:?} {hidden}: gradient {i}: {}",
                    max_diff(a, b)
                );
            }
        }
    }
}
