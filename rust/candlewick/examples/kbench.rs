//! Micro-timing of the quantized matmul on SmolLM2 and Gemma 3 shapes, one activation row
//! (decode) and 128 (prefill), from DRAM (weights cycle through more memory than the caches hold):
//! cargo run --release --example kbench (KBENCH_HOT=1: one copy of the weights, from the caches
//! where they fit, to tell compute from memory)
use candlewick::kernels::quant::{matmul, QType};
use std::time::Instant;

fn main() {
    let hot = std::env::var("KBENCH_HOT").is_ok_and(|v| v == "1");
    if std::env::var("KBENCH_ATTN").is_ok_and(|v| v == "1") {
        return attention();
    }
    // KBENCH_M=128: only that many activation rows; KBENCH_T=Q4K: only that type
    let only_m: Option<usize> = std::env::var("KBENCH_M").ok().and_then(|v| v.parse().ok());
    let only_t = std::env::var("KBENCH_T").ok();
    for m in [1usize, 128] {
        if only_m.is_some_and(|o| o != m) {
            continue;
        }
        for (t, k, n) in [
            (QType::Q4_1, 576, 1536),
            (QType::Q4_1, 1536, 576),
            (QType::Q4_1, 576, 576),
            (QType::Q8_0, 576, 49152),
            (QType::Q8_0, 640, 262144),
            (QType::Q5_0, 640, 2048),
            (QType::Q4_0, 640, 2048),
            (QType::Q4K, 2048, 640),
            (QType::Q6K, 2048, 640),
        ] {
            if only_t.as_ref().is_some_and(|o| *o != format!("{t:?}")) {
                continue;
            }
            let bytes = n * t.row_bytes(k);
            let copies = if m == 1 && !hot {
                (128 << 20) / bytes + 1
            } else {
                1
            };
            let w: Vec<Vec<u8>> = (0..copies)
                .map(|c| {
                    (0..bytes)
                        .map(|i| ((i * 31 + c * 7) % 251) as u8 & 0x7b)
                        .collect()
                })
                .collect();
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919 % 1000) as f32 / 250.0) - 2.0)
                .collect();
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

/// Attention of a prefill (Gemma 3's shape: 4 heads sharing one KV head of 256) and of one
/// decode step after it: KBENCH_ATTN=1.
fn attention() {
    use candlewick::kernels::attention::{attend, Job, Keys, KvView, Shape};
    for (nh, nkv, hd, seq) in [(4usize, 1usize, 256usize, 512usize), (9, 3, 64, 512)] {
        for (start, len) in [(0, seq), (seq, 1)] {
            let cap = seq + 1;
            let q: Vec<f32> = (0..len * nh * hd)
                .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
                .collect();
            let k: Vec<f32> = (0..nkv * cap * hd)
                .map(|i| ((i * 104729 % 1000) as f32 / 500.0) - 1.0)
                .collect();
            let v = k.iter().rev().copied().collect::<Vec<_>>();
            let (k16, v16): (Vec<half::f16>, Vec<half::f16>) = (
                k.iter().map(|&x| half::f16::from_f32(x)).collect(),
                v.iter().map(|&x| half::f16::from_f32(x)).collect(),
            );
            let job = Job {
                shape: Shape {
                    num_heads: nh,
                    num_kv_heads: nkv,
                    head_dim: hd,
                    capacity: cap,
                    window: None,
                },
                start,
                seq: len,
                keys: Keys::Causal,
                scale: 1.0 / (hd as f32).sqrt(),
                softcap: 0.0,
                bias: None,
            };
            let reps = if len == 1 { 200 } else { 5 };
            for (name, kv) in [
                ("f32", KvView::F32 { k: &k, v: &v }),
                ("f16", KvView::F16 { k: &k16, v: &v16 }),
            ] {
                let t0 = Instant::now();
                for _ in 0..reps {
                    std::hint::black_box(attend(&job, &q, kv, None));
                }
                let dt = t0.elapsed().as_secs_f64() / reps as f64;
                let pairs: usize = (0..len).map(|i| start + i + 1).sum::<usize>() * nh;
                println!("attention {nh}x{hd} (kv {nkv}, {name}) queries {len} after {start}: {:.1} us, {:.1} GMAC/s", dt * 1e6, (2 * pairs * hd) as f64 / dt / 1e9);
            }
        }
    }
}
