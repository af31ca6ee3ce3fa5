//! candle's f32 matmul as patched in third_party/candle-core (blocks spread over the barrier pool)
//! against a plain triple loop: batched, broadcast, transposed operands, single rows and columns,
//! sizes that are not multiples of the kernels' tiles.

use candle_core::{Device, Tensor};

fn naive(
    a: &[f32],
    b: &[f32],
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    b_batched: bool,
) -> Vec<f32> {
    let mut out = vec![0f32; batch * m * n];
    for s in 0..batch {
        let bo = if b_batched { s * k * n } else { 0 };
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0f64;
                for l in 0..k {
                    acc += a[s * m * k + i * k + l] as f64 * b[bo + l * n + j] as f64;
                }
                out[s * m * n + i * n + j] = acc as f32;
            }
        }
    }
    out
}

fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2654435761) ^ seed) % 997)
        .map(|v| v as f32 / 498.5 - 1.0)
        .collect()
}

#[test]
fn matmul_equals_the_plain_loop() {
    let dev = Device::Cpu;
    for &(batch, m, k, n) in &[
        (1, 1, 1, 1),
        (1, 1, 37, 53),
        (1, 70, 33, 129),
        (1, 129, 70, 33),
        (3, 17, 64, 5),
        (32, 40, 24, 48),
        (1, 300, 200, 1),
        (2, 1, 300, 700),
    ] {
        let (a, b) = (data(batch * m * k, 1), data(batch * k * n, 2));
        let want = naive(&a, &b, batch, m, k, n, true);
        let ta = Tensor::from_vec(a.clone(), (batch, m, k), &dev).unwrap();
        let tb = Tensor::from_vec(b.clone(), (batch, k, n), &dev).unwrap();
        // plain, and with each operand a transposed view of its transpose
        let at = ta
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let bt = tb
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        for (x, y) in [(&ta, &tb), (&at, &tb), (&ta, &bt), (&at, &bt)] {
            let got = x
                .matmul(y)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "{batch}x{m}x{k}x{n}: {g} vs {w}"
                );
            }
        }
        // a rhs shared by every batch (broadcast)
        let b0 = data(k * n, 3);
        let want = naive(&a, &b0, batch, m, k, n, false);
        let t0 = Tensor::from_vec(b0, (k, n), &dev).unwrap();
        let got = ta
            .broadcast_matmul(&t0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "broadcast {batch}x{m}x{k}x{n}: {g} vs {w}"
            );
        }
    }
}
