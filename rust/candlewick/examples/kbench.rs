//! Micro-timing of the quantized matmul on SmolLM2 and Gemma 3 shapes, one activation row
//! (decode) and 128 (prefill), from DRAM (weights cycle through more memory than the caches hold):
//! cargo run --release --example kbench (KBENCH_HOT=1: one copy of the weights, from the caches
//! where they fit, to tell compute from memory)
use candlewick::kernels::quant::{matmul, QType};
use std::time::Instant;

fn main() {
    let hot = std::env::var("KBENCH_HOT").is_ok_and(|v| v == "1");
    for m in [1usize, 128] {
        for (t, k, n) in [
            (QType::Q4_1, 576, 1536),
            (QType::Q4_1, 1536, 576),
            (QType::Q4_1, 576, 576),
            (QType::Q8_0, 576, 49152),
            (QType::Q5_0, 640, 2048),
            (QType::Q4K, 2048, 640),
            (QType::Q6K, 2048, 640),
        ] {
            let bytes = n * t.row_bytes(k);
            let copies = if m == 1 && !hot { (128 << 20) / bytes + 1 } else { 1 };
            let w: Vec<Vec<u8>> = (0..copies)
                .map(|c| (0..bytes).map(|i| ((i * 31 + c * 7) % 251) as u8 & 0x7b).collect())
                .collect();
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1000) as f32 / 250.0) - 2.0).collect();
            let reps = if m == 1 { 4 * copies.max(50) } else { 6 };
            let mut times = Vec::new();
            for _ in 0..3 {
                let t0 = Instant::now();
                for r in 0..reps {
                    std::hint::black_box(matmul(t, &w[r % copies], &x, m, k, n));
                }
                times.push(t0.elapsed().as_secs_f64() / reps as f64);
            }
            times.sort_by(f64::total_cmp);
            let dt = times[1];
            println!(
                "m {m:3} {t:?} {k}x{n}: {:.1} us, {:.2} GB/s, {:.1} GMAC/s",
                dt * 1e6,
                bytes as f64 / dt / 1e9,
                (m * n * k) as f64 / dt / 1e9
            );
        }
    }
}
