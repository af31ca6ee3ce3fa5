//! candlewick's quantized matmuls against outputs of llama.cpp's own CPU kernels on real weight
//! rows (tests/fixtures/ggml_kernels.json, made by tests/fixtures/make_ggml_kernel_fixtures.py):
//! every output must be bit-identical, and so must the Q8_K activation blocks.
use candlewick::kernels::quant::{self, BlockQ8K, QType};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn qtype(name: &str) -> QType {
    match name {
        "Q4_0" => QType::Q4_0,
        "IQ4_NL" => QType::IQ4NL,
        "IQ4_XS" => QType::IQ4XS,
        "Q4_1" => QType::Q4_1,
        "Q5_0" => QType::Q5_0,
        "Q5_1" => QType::Q5_1,
        "Q5_K" => QType::Q5K,
        "Q8_0" => QType::Q8_0,
        "Q2_K" => QType::Q2K,
        "Q3_K" => QType::Q3K,
        "Q4_K" => QType::Q4K,
        "Q6_K" => QType::Q6K,
        other => panic!("fixture type {other}"),
    }
}

fn bits(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("bits")
        .iter()
        .map(|b| b.as_u64().expect("u32") as u32)
        .collect()
}

#[test]
fn quantized_matmuls_equal_llamacpp_bit_for_bit() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/ggml_kernels.json"
    );
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    let cases = fixture["cases"].as_array().expect("cases");
    let mut types = Vec::new();
    for case in cases {
        let t = qtype(case["type"].as_str().unwrap());
        types.push(t);
        let (m, k, n) = (
            case["m"].as_u64().unwrap() as usize,
            case["k"].as_u64().unwrap() as usize,
            case["n"].as_u64().unwrap() as usize,
        );
        let w = hex(case["weights"].as_str().unwrap());
        let x = floats(&hex(case["x"].as_str().unwrap()));
        let src = case["source"].as_str().unwrap();

        // the whole matmul, as llama.cpp's mul_mat runs m rows
        let got: Vec<u32> = quant::matmul(t, &w, &x, m, k, n)
            .iter()
            .map(|v| v.to_bits())
            .collect();
        let want = bits(&case["out_bits"]);
        let bad = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(
            bad,
            0,
            "{src}: {bad} of {} outputs differ from llama.cpp",
            want.len()
        );

        // each row alone (llama.cpp's one-row path)
        if let Some(rows) = case.get("row_bits") {
            let want = bits(rows);
            for i in 0..m {
                let got: Vec<u32> = quant::matmul(t, &w, &x[i * k..(i + 1) * k], 1, k, n)
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                assert_eq!(got, want[i * n..(i + 1) * n], "{src}: row {i} alone");
            }
        }

        // the Q8_K activation blocks: d (f32), 256 quants, 16 block sums
        if let Some(q) = case.get("q8k") {
            let q = hex(q.as_str().unwrap());
            let mut blocks = vec![BlockQ8K::default(); m * k / quant::QK_K];
            for (xr, br) in x
                .chunks_exact(k)
                .zip(blocks.chunks_exact_mut(k / quant::QK_K))
            {
                quant::quantize_row_q8k(xr, br);
            }
            for (b, raw) in blocks.iter().zip(q.chunks_exact(292)) {
                assert_eq!(b.d.to_le_bytes(), raw[0..4], "{src}: Q8_K d");
                assert!(
                    b.qs.iter().zip(&raw[4..260]).all(|(a, r)| *a as u8 == *r),
                    "{src}: Q8_K quants"
                );
                let sums: Vec<i16> = raw[260..292]
                    .chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect();
                assert_eq!(b.bsums.to_vec(), sums, "{src}: Q8_K block sums");
            }
        }
    }
    for t in [
        QType::Q4_0,
        QType::Q4_1,
        QType::Q5_0,
        QType::Q5_1,
        QType::Q8_0,
        QType::IQ4NL,
        QType::Q2K,
        QType::Q3K,
        QType::Q4K,
        QType::Q5K,
        QType::Q6K,
        QType::IQ4XS,
    ] {
        assert!(types.contains(&t), "the fixture covers {t:?}");
    }
}
