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
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn check(cell: Cell, name: &str) {
    let dev = Device::Cpu;
    let refs: HashMap<String, Tensor> = Tensor::read_npz(fixtures().join("rnn_reference.npz")).unwrap().into_iter().collect();
    let r = |k: &str| refs.get(&format!("{name}/layer/{k}")).unwrap_or_else(|| panic!("{name}/layer/{k}")).clone();
    let weights = SafetensorsFile::open(fixtures().join(format!("tiny-rnn-{name}/model.safetensors"))).unwrap();
    let (hidden, layers) = (r("x").dim(2).unwrap(), r("h0").dim(0).unwrap());
    let g = cell.gates() * hidden;
    let mut vars: Vec<(String, Var)> = Vec::new();
    let mut stack = Vec::new();
    for l in 0..layers {
        let mut var = |k: &str, shape: &[usize]| {
            let key = format!("{k}_l{l}");
            let v = Var::from_tensor(&weights.tensor(&format!("rnn.{key}"), shape, &dev).unwrap()).unwrap();
            vars.push((key, v.clone()));
            v.as_tensor().clone()
        };
        let (wi, wh) = (var("weight_ih", &[g, hidden]), var("weight_hh", &[g, hidden]));
        let (bi, bh) = (var("bias_ih", &[g]), var("bias_hh", &[g]));
        stack.push(RnnLayer { input: Linear::dense(wi, Some(bi)).unwrap(), w_hh: wh, b_hh: bh });
    }
    let rnn = Rnn { cell, hidden, layers: stack };
    let x = Var::from_tensor(&r("x")).unwrap();
    let (h0, c0) = (r("h0"), refs.get(&format!("{name}/layer/c0")).cloned());
    let mut state = RnnState {
        layers: (0..layers).map(|l| (h0.get(l).unwrap(), c0.as_ref().map(|c| c.get(l).unwrap()))).collect(),
    };
    // the plain-ops reference agrees with the fused scan
    let mut ref_state = state.clone();
    let reference = rnn.forward_ref(x.as_tensor(), &mut ref_state).unwrap();
    let out = rnn.forward(x.as_tensor(), &mut state).unwrap();
    assert!(max_diff(&out, &reference) <= 1e-6, "{name}: fused vs reference {}", max_diff(&out, &reference));
    for ((h, c), (rh, rc)) in state.layers.iter().zip(&ref_state.layers) {
        assert!(max_diff(h, rh) <= 1e-6);
        if let (Some(c), Some(rc)) = (c, rc) {
            assert!(max_diff(c, rc) <= 1e-6);
        }
    }
    assert!(max_diff(&out, &r("out")) <= 1e-5, "{name} outputs: {}", max_diff(&out, &r("out")));
    for l in 0..layers {
        let (h, c) = &state.layers[l];
        assert!(max_diff(h, &r("hn").get(l).unwrap()) <= 1e-5, "{name} h_n layer {l}");
        if let Some(c) = c {
            assert!(max_diff(c, &r("cn").get(l).unwrap()) <= 1e-5, "{name} c_n layer {l}");
        }
    }
    let grads = (out * r("w")).unwrap().sum_all().unwrap().backward().unwrap();
    let gx = grads.get(x.as_tensor()).expect("a gradient for the input");
    assert!(max_diff(gx, &r("grad_x")) <= 1e-5, "{name} d/dx: {}", max_diff(gx, &r("grad_x")));
    for (key, v) in &vars {
        let got = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("no gradient for {key}"));
        let want = r(&format!("grad/{key}"));
        assert!(max_diff(got, &want) <= 1e-5, "{name} d/d{key}: {}", max_diff(got, &want));
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
