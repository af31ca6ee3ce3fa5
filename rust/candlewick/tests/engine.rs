//! Engine tests that need no model file: GGUF validation, sampler, config.
use candlewick::io::gguf::GgufFile;
use candlewick::sampling::{argmax, Sampler};
use candlewick::Error;
use candlewick::GenerationConfig;

fn gguf_bytes(
    n_tensors: u64,
    kv: &[(&str, u32)],
    tensors: &[(&str, &[u64], u64)],
    data: usize,
) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(n_tensors.to_le_bytes());
    b.extend((kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        b.extend((k.len() as u64).to_le_bytes());
        b.extend(k.as_bytes());
        b.extend(4u32.to_le_bytes()); // u32
        b.extend(v.to_le_bytes());
    }
    for (name, ne, off) in tensors {
        b.extend((name.len() as u64).to_le_bytes());
        b.extend(name.as_bytes());
        b.extend((ne.len() as u32).to_le_bytes());
        for d in *ne {
            b.extend(d.to_le_bytes());
        }
        b.extend(0u32.to_le_bytes()); // F32
        b.extend(off.to_le_bytes());
    }
    while b.len() % 32 != 0 {
        b.push(0);
    }
    b.extend(vec![0u8; data]);
    b
}

fn open(bytes: &[u8]) -> candlewick::Result<GgufFile> {
    let dir = std::env::temp_dir().join(format!("cw-test-{}-{}", std::process::id(), bytes.len()));
    std::fs::write(&dir, bytes).unwrap();
    let r = GgufFile::open(&dir);
    std::fs::remove_file(&dir).ok();
    r
}

#[test]
fn gguf_valid_file_parses() -> candlewick::Result<()> {
    let g = open(&gguf_bytes(1, &[("a.b", 7)], &[("w", &[8, 2], 0)], 64))?;
    assert_eq!(g.require_u64("a.b")?, 7);
    let t = g.tensor_info("w").unwrap();
    assert_eq!(t.shape, vec![2, 8]);
    assert_eq!(t.size_in_bytes, 64);
    Ok(())
}

#[test]
fn gguf_rejects_bad_files_without_panicking() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"GGML\0\0\0\0".repeat(4), "not a GGUF file"),
        (gguf_bytes(u64::MAX, &[], &[], 0), "tensor count"),
        (gguf_bytes(1, &[], &[("w", &[8, 2], 0)], 10), "truncated"),
        (
            gguf_bytes(1, &[], &[("w", &[8, 0], 0)], 64),
            "zero dimension",
        ),
        (
            gguf_bytes(1, &[], &[("w", &[u64::MAX, 4], 0)], 64),
            "overflow",
        ),
        (gguf_bytes(1, &[], &[("w", &[8, 2], 3)], 128), "not aligned"),
        (
            gguf_bytes(2, &[], &[("w", &[8], 0), ("w", &[8], 32)], 128),
            "twice",
        ),
    ];
    for (bytes, want) in cases {
        match open(&bytes) {
            Err(Error::InvalidFile { msg, .. }) => {
                assert!(msg.contains(want), "{msg} should mention {want}")
            }
            Err(e) => panic!("expected InvalidFile({want}), got {e}"),
            Ok(_) => panic!("expected an error mentioning {want}"),
        }
    }
}

#[test]
fn gguf_truncated_everywhere_is_an_error() {
    let full = gguf_bytes(1, &[("k", 1)], &[("w", &[8, 2], 0)], 64);
    for cut in 0..full.len() - 1 {
        assert!(open(&full[..cut]).is_err(), "cut at {cut} parsed");
    }
}

#[test]
fn sampler_greedy_and_validation() -> candlewick::Result<()> {
    let logits = vec![0.1f32, 2.0, -1.0, 1.9];
    let mut s = Sampler::new(&GenerationConfig::default(), Some(0))?;
    assert_eq!(s.sample(&mut logits.clone(), Default::default())?, 1);
    assert_eq!(argmax(&logits), 1);
    for bad in [
        GenerationConfig {
            top_p: 0.0,
            ..Default::default()
        },
        GenerationConfig {
            temperature: -1.0,
            ..Default::default()
        },
        GenerationConfig {
            min_p: 1.5,
            ..Default::default()
        },
        GenerationConfig {
            repetition_penalty: 0.0,
            ..Default::default()
        },
        GenerationConfig {
            typical_p: 0.0,
            ..Default::default()
        },
        GenerationConfig {
            presence_penalty: f64::NAN,
            ..Default::default()
        },
        GenerationConfig {
            logit_bias: [(3, f64::NAN)].into_iter().collect(),
            ..Default::default()
        },
    ] {
        assert!(matches!(
            Sampler::new(&bad, None),
            Err(Error::InvalidArgument(_))
        ));
    }
    Ok(())
}

#[test]
fn sampler_top_k_top_p_distribution() -> candlewick::Result<()> {
    let logits: Vec<f32> = (0..100).map(|i| (i as f32) * 0.1).collect();
    let p = GenerationConfig {
        do_sample: true,
        top_k: 10,
        top_p: 0.5,
        ..Default::default()
    };
    let (ids, probs) = Sampler::new(&p, Some(1))?.distribution(&logits)?;
    assert!(ids.len() <= 10 && !ids.is_empty());
    assert_eq!(ids[0], 99);
    assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    // Over the top-10 distribution, the mass strictly before the last kept token is below top_p
    // and the kept tokens hold at least top_p.
    let z: f32 = (90..100).map(|i| (logits[i] - 9.9).exp()).sum();
    let q = |id: u32| (logits[id as usize] - 9.9).exp() / z;
    let before: f32 = ids[..ids.len() - 1].iter().map(|&i| q(i)).sum();
    let kept: f32 = ids.iter().map(|&i| q(i)).sum();
    assert!(before < 0.5 && kept >= 0.5, "{before} {kept}");
    Ok(())
}

#[test]
fn processors_follow_their_definitions() -> candlewick::Result<()> {
    use candlewick::sampling::{banned_ngram_tokens, History};
    // no_repeat_ngram_size = 3: "1 2 3 ... 1 2" bans 3.
    assert_eq!(banned_ngram_tokens(&[1, 2, 3, 9, 1, 2], 3), vec![3]);
    assert!(banned_ngram_tokens(&[1, 2], 3).is_empty());
    let p = GenerationConfig {
        logit_bias: [(0, 5.0)].into_iter().collect(),
        presence_penalty: 1.0,
        frequency_penalty: 0.5,
        repetition_penalty: 2.0,
        ..Default::default()
    };
    let s = Sampler::new(&p, Some(0))?;
    let mut l = vec![1.0f32, 2.0, -2.0, 4.0];
    s.process(
        &mut l,
        History {
            prompt: &[2],
            output: &[3, 3],
            suppress: &[1],
        },
    )?;
    assert_eq!(l[0], 6.0); // bias only
    assert_eq!(l[1], f32::NEG_INFINITY); // suppressed
    assert_eq!(l[2], -4.0); // repetition penalty on a negative logit (prompt token)
    assert_eq!(l[3], 4.0 / 2.0 - 1.0 - 0.5 * 2.0); // repetition, then presence + 2 x frequency
    Ok(())
}

#[test]
fn memory_formulas() {
    use candlewick::io::types::TensorType;
    use candlewick::memory::{estimate, MemoryOptions, Subject};
    assert_eq!(TensorType::parse("Q4_K_M").unwrap().bytes(256 * 3), 3 * 144);
    assert_eq!(TensorType::parse("q8_0").unwrap().bytes(33), 2 * 34); // whole blocks
    assert!(TensorType::parse("fp7").is_err());
    let cfg: serde_json::Value = serde_json::json!({
        "model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 3, "intermediate_size": 128, "vocab_size": 100, "tie_word_embeddings": true
    });
    let c = candlewick::model::families::from_hf_json(&cfg).unwrap();
    // embed 100*64; per layer q 64*64, k,v 32*64 each, o 64*64, mlp 3*64*128, norms 2*64; final norm
    let per_layer = 64 * 64 * 2 + 2 * 32 * 64 + 3 * 64 * 128 + 2 * 64;
    assert_eq!(
        candlewick::model::families::num_parameters(&c).unwrap(),
        100 * 64 + 3 * per_layer + 64
    );
    let s = Subject::from_config(&c).unwrap();
    let e = estimate(
        &s,
        &MemoryOptions {
            seq_len: Some(10),
            batch_size: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let kv = e.items.iter().find(|i| i.key == "kv_cache").unwrap().bytes;
    assert_eq!(kv, 2 * 3 * 2 * 16 * 10 * 2 * 4);
}

/// Plain reference for the warpers: HF's order in f64 with full sorts.
fn reference_distribution(
    logits: &[f32],
    t: f64,
    k: usize,
    top_p: f64,
    min_p: f64,
) -> Vec<(u32, f64)> {
    let l: Vec<f64> = logits.iter().map(|&x| x as f64 / t).collect();
    let mut order: Vec<usize> = (0..l.len()).collect();
    order.sort_by(|&a, &b| l[b].total_cmp(&l[a]).then(a.cmp(&b)));
    let mut keep: Vec<usize> = if k > 0 && k < l.len() {
        let kth = l[order[k - 1]];
        order.iter().copied().filter(|&i| l[i] >= kth).collect()
    } else {
        order.clone()
    };
    let m = l[keep[0]];
    let mut p: Vec<f64> = keep.iter().map(|&i| (l[i] - m).exp()).collect();
    let z: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= z);
    if top_p < 1.0 {
        let mut before = 0.0;
        let mut n = p.len();
        for (j, &q) in p.iter().enumerate() {
            if before >= top_p {
                n = j;
                break;
            }
            before += q;
        }
        keep.truncate(n.max(1));
        p.truncate(n.max(1));
    }
    if min_p > 0.0 {
        let th = min_p * p[0];
        let n = p.iter().take_while(|&&q| q >= th).count().max(1);
        keep.truncate(n);
        p.truncate(n);
    }
    let z: f64 = p.iter().sum();
    keep.into_iter()
        .zip(p)
        .map(|(i, q)| (i as u32, q / z))
        .collect()
}

#[test]
fn fast_warpers_equal_the_plain_reference() {
    use candlewick::sampling::Sampler;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let combos = [
        (1.0, 0, 0.9, 0.0),
        (0.7, 0, 0.95, 0.0),
        (1.0, 40, 0.95, 0.0),
        (1.3, 0, 1.0, 0.05),
        (0.8, 50, 0.9, 0.02),
        (1.0, 0, 0.5, 0.1),
        (2.0, 0, 0.99, 0.0),
    ];
    for trial in 0..12 {
        let n = if trial % 2 == 0 { 49152 } else { 3000 };
        let spread = [0.5f32, 2.0, 4.0][trial % 3];
        let logits: Vec<f32> = (0..n)
            .map(|_| (rng.random::<f32>() - 0.5) * 2.0 * spread * 3.0)
            .collect();
        for &(t, k, top_p, min_p) in &combos {
            let params = GenerationConfig {
                do_sample: true,
                temperature: t,
                top_k: k,
                top_p,
                min_p,
                ..Default::default()
            };
            let (ids, probs) = Sampler::new(&params, Some(0))
                .unwrap()
                .distribution(&logits)
                .unwrap();
            let want = reference_distribution(&logits, t, k, top_p, min_p);
            assert_eq!(
                ids.len(),
                want.len(),
                "trial {trial} combo {t} {k} {top_p} {min_p}"
            );
            for ((i, q), (wi, wq)) in ids.iter().zip(&probs).zip(&want) {
                assert_eq!(i, wi);
                assert!((*q as f64 - wq).abs() < 1e-4 * wq.max(1e-3), "{q} vs {wq}");
            }
        }
    }
}

fn tiny_llama() -> candlewick::Result<candlewick::Model> {
    let cfg = candlewick::ModelConfig {
        vocab_size: 64,
        hidden_size: 32,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        intermediate_size: 48,
        max_position_embeddings: 2048,
        ..Default::default()
    };
    candlewick::Model::from_config(cfg, 1, None)
}

#[test]
fn long_prompts_run_in_micro_batches_and_bad_ids_change_nothing() -> candlewick::Result<()> {
    use candlewick::model::{Logits, Step, UBATCH};
    let m = tiny_llama()?;
    let ids: Vec<u32> = (0..(2 * UBATCH + 37) as u32).map(|i| i * 7 % 64).collect();
    // all positions: pieces one after another give every row
    let mut state = m.start(&ids, 0)?;
    let all = m.step(
        &mut [Step {
            state: &mut state,
            ids: &ids,
        }],
        Logits::All,
    )?;
    assert_eq!((all[0].len(), state.len()), (ids.len() * 64, ids.len()));
    // last position only: the same last row (to rounding: the head runs on 1 row, not 37)
    let mut state = m.start(&ids, 0)?;
    let last = m.step(
        &mut [Step {
            state: &mut state,
            ids: &ids,
        }],
        Logits::Last,
    )?;
    let want = &all[0][(ids.len() - 1) * 64..];
    assert!(last[0].iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5));
    // a bad id in the last piece is refused before the first piece touches the cache
    let mut bad = ids.clone();
    bad[2 * UBATCH + 5] = 64;
    let mut state = m.start(&ids, 0)?;
    assert!(m
        .step(
            &mut [Step {
                state: &mut state,
                ids: &bad
            }],
            Logits::Last
        )
        .is_err());
    assert_eq!(state.len(), 0);
    Ok(())
}

/// Every family's build lists the tensors it reads (names once, through the prefix path), and
/// the random initialisation makes exactly those.
#[test]
fn families_list_what_they_build() -> candlewick::Result<()> {
    use candlewick::model::families;
    for name in families::names() {
        let over: Vec<(String, candlewick::config::Value)> = [
            ("vocab_size", 50),
            ("hidden_size", 16),
            ("num_heads", 2),
            ("num_layers", 2),
            ("intermediate_size", 24),
            ("max_position_embeddings", 32),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), candlewick::config::Value::Int(v)))
        .collect();
        let c = families::for_family(name, over)?;
        let shapes = families::tensor_shapes(&c)?;
        assert!(!shapes.is_empty(), "{name}");
        let mut names: Vec<&String> = shapes.iter().map(|(n, _)| n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), shapes.len(), "{name}: a tensor listed twice");
        if families::get(name)?.check(&c).is_err() {
            continue; // read from files only (gemma3)
        }
        let m = candlewick::Model::from_config(c.clone(), 3, None)?;
        let built = m.built.as_ref().unwrap();
        assert_eq!(built.len(), shapes.len(), "{name}");
        for (n, shape) in &shapes {
            assert_eq!(built[n].dims(), shape.as_slice(), "{name}: {n}");
        }
        assert_eq!(m.info.num_parameters as u64, families::num_parameters(&c)?);
    }
    Ok(())
}

/// Each HF model type maps to a family, and a config written back reads to the same config.
#[test]
fn hf_configs_round_trip() -> candlewick::Result<()> {
    use candlewick::model::families;
    assert_eq!(
        families::hf_model_types(),
        [
            "llama",
            "mistral",
            "qwen2",
            "qwen3",
            "phi3",
            "gemma2",
            "gpt2",
            "bert",
            "t5",
            "candlewick_rnn"
        ]
    );
    for (name, extra) in [
        ("llama", vec![]),
        ("llama", vec![("qkv_bias", true)]),
        ("llama", vec![("qk_norm", true)]),
        ("phi3", vec![]),
        ("gemma2", vec![]),
        ("gpt2", vec![]),
        ("bert", vec![("mlm_head", true)]),
        ("t5", vec![]),
        ("rnn", vec![]),
        ("rnn", vec![("tie_word_embeddings", true)]),
    ] {
        let mut over: Vec<(String, candlewick::config::Value)> =
            vec![("hidden_size".into(), candlewick::config::Value::Int(32))];
        if name != "rnn" {
            // (a recurrent LM has no heads to store)
            over.push(("num_heads".into(), candlewick::config::Value::Int(4)));
        }
        over.extend(
            extra
                .into_iter()
                .map(|(k, v)| (k.to_string(), candlewick::config::Value::Bool(v))),
        );
        let c = families::for_family(name, over)?;
        let back = families::from_hf_json(&families::to_hf_json(&c)?)?;
        assert_eq!(back, c, "{name}");
    }
    assert!(matches!(
        families::from_hf_json(&serde_json::json!({"model_type": "mamba"})),
        Err(Error::Unsupported(m)) if m.contains("llama, mistral, qwen2, qwen3, phi3, gemma2, gpt2, bert, t5")
    ));
    Ok(())
}
