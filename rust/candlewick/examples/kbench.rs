//! Micro-timing of the quantized matmul on SmolLM2 shapes, from DRAM (weights cycle through more
//! memory than the caches hold): cargo run --release --example kbench
use candlewick::kernels::quant::{matmul, QType, QK};
use std::time::Instant;

fn main() {
    for (t, k, n) in [
        (QType::Q4_1, 576, 1536),
        (QType::Q4_1, 1536, 576),
        (QType::Q4_1, 576, 576),
        (QType::Q8_0, 576, 49152),
    ] {
        let bytes = n * k / QK * t.block_bytes();
        let copies = (128 << 20) / bytes + 1;
        let w: Vec<Vec<u8>> = (0..copies).map(|c| vec![(0x11 + c) as u8; bytes]).collect();
        let x: Vec<f32> = (0..k).map(|i| i as f32 * 1e-3).collect();
        let reps = 4 * copies;
        let t0 = Instant::now();
        for r in 0..reps {
            std::hint::black_box(matmul(t, &w[r % copies], &x, 1, k, n));
        }
        let dt = t0.elapsed().as_secs_f64() / reps as f64;
        println!(
            "{t:?} {k}x{n}: {:.1} us, {:.2} GB/s",
            dt * 1e6,
            bytes as f64 / dt / 1e9
        );
    }
}
