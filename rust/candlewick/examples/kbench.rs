//! Micro-timing of the quantized matmul on SmolLM2 shapes: cargo run --release --example kbench
use candlewick::kernels::quant::{matmul, QType, QK};
use std::time::Instant;

fn main() {
    for (t, k, n) in [(QType::Q4_1, 576, 1536), (QType::Q4_1, 1536, 576), (QType::Q4_1, 576, 576), (QType::Q8_0, 576, 49152)] {
        let w = vec![0x11u8; n * k / QK * t.block_bytes()];
        let x: Vec<f32> = (0..k).map(|i| i as f32 * 1e-3).collect();
        let reps = 200;
        let t0 = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(matmul(t, &w, &x, 1, k, n));
        }
        let dt = t0.elapsed().as_secs_f64() / reps as f64;
        println!("{t:?} {k}x{n}: {:.1} us, {:.2} GB/s", dt * 1e6, (w.len() as f64) / dt / 1e9);
    }
}
