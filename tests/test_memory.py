"""cw.estimate_memory: formulas against their sources, exact parameter counts, and the estimate
against what this process really holds."""

import json
import os
import subprocess
import sys

import pytest

import candlewick as cw

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benches"))
from memory_probe import measure_built, measure_kv, measure_weights  # noqa: E402


def test_one_billion_float32_is_four_gb():
    est = cw.estimate_memory("1B")
    assert est.num_parameters == 10**9
    assert est.breakdown["weights"] == 4 * 10**9 and est.total_bytes == 4 * 10**9
    assert est.bytes_per_parameter == 4.0
    assert set(est.breakdown) == {"weights", "kv_cache", "activations", "gradients", "optimizer_states", "master_weights"}
    assert est.fits(4 * 10**9) and not est.fits(4 * 10**9 - 1) and est.fits("4GB") and not est.fits("3.5GiB")
    assert est.to_dict()["total_bytes"] == 4 * 10**9
    out = subprocess.run([sys.executable, "-m", "candlewick", "memory", "1B"], capture_output=True, text=True)
    assert out.returncode == 0 and "4.0 GB" in out.stdout and "3.73 GiB" in out.stdout


@pytest.mark.parametrize(
    "dtype, per_param",
    [("float16", 2), ("bf16", 2), ("int8", 1), ("q8_0", 34 / 32), ("q4_0", 18 / 32), ("q4_1", 20 / 32),
     ("q4_k", 144 / 256), ("Q4_K_M", 144 / 256), ("q6_k", 210 / 256), ("q5_k", 176 / 256)],
)
def test_bytes_per_parameter_by_type(dtype, per_param):
    est = cw.estimate_memory(2**20, dtype=dtype)
    assert est.breakdown["weights"] == 2**20 * per_param


def test_parameter_counts_equal_the_real_tensors(smollm2):
    # SmolLM2 (GGUF): the config read from the file counts what the file stores
    assert smollm2.config.num_parameters == smollm2.info["num_parameters"]
    assert cw.estimate_memory(smollm2).num_parameters == smollm2.info["num_parameters"]
    # all-MiniLM-L6-v2 (safetensors + config.json): config.json alone counts the checkpoint's floats
    folder = cw.resolve("all-minilm-l6-v2")
    cfg = cw.ModelConfig.from_hf(folder)
    from_file = cw.estimate_memory(os.path.join(folder, "model.safetensors"))
    assert cfg.num_parameters == from_file.num_parameters == 22_713_216
    assert cw.estimate_memory(os.path.join(folder, "config.json")).num_parameters == cfg.num_parameters


def test_kv_cache_counts_kv_heads_not_query_heads(smollm2):
    c = smollm2.config
    assert c.num_kv_heads < c.num_heads  # grouped-query attention
    for t, b in [(128, 1), (2048, 4)]:
        est = cw.estimate_memory(smollm2, dtype="auto", seq_len=t, batch_size=b)
        assert est.breakdown["kv_cache"] == 2 * c.num_layers * c.num_kv_heads * c.head_dim * t * b * 4
        half = cw.estimate_memory(smollm2, dtype="auto", seq_len=t, batch_size=b, kv_dtype="float16")
        assert half.breakdown["kv_cache"] * 2 == est.breakdown["kv_cache"]
    enc = cw.estimate_memory(cw.resolve("all-minilm-l6-v2"), seq_len=128)
    assert enc.breakdown["kv_cache"] == 0


def test_zero_matches_the_paper():
    # Rajbhandari et al. 2019, fig. 1: 7.5B parameters, mixed-precision Adam (K = 12), 64 GPUs
    kw = dict(training=True, mixed_precision=True, num_devices=64)
    psi = 7_500_000_000
    base = cw.estimate_memory(psi, **kw)
    assert base.total_bytes == 16 * psi  # 2 + 2 + 12 bytes per parameter: 120 GB
    gb = lambda stage: cw.estimate_memory(psi, zero_stage=stage, **kw).total_bytes / 1e9  # noqa: E731
    assert gb(1) == pytest.approx(31.4, abs=0.05)
    assert gb(2) == pytest.approx(16.6, abs=0.05)
    assert gb(3) == pytest.approx(1.875, abs=0.01)


def test_optimizers_and_precision():
    n = 10**6
    adam = cw.estimate_memory(n, training=True)
    assert adam.breakdown == {"weights": 4 * n, "kv_cache": 0, "activations": 0, "gradients": 4 * n,
                              "optimizer_states": 8 * n, "master_weights": 0}
    assert cw.estimate_memory(n, training=True, optimizer="sgd").breakdown["optimizer_states"] == 0
    assert cw.estimate_memory(n, training=True, optimizer="sgd_momentum").breakdown["optimizer_states"] == 4 * n
    eight = cw.estimate_memory(n, training=True, optimizer="adamw8bit").breakdown["optimizer_states"]
    assert 2 * n <= eight < 2.01 * n
    assert "copies them" in str(adam)


def test_training_activations_follow_korthikanti():
    cfg = cw.ModelConfig(vocab_size=1000, hidden_size=256, num_layers=3, num_heads=4, num_kv_heads=4,
                         head_dim=64, intermediate_size=1024, max_position_embeddings=512)
    s, b, h, a, L, v = 128, 2, 256, 4, 3, 1000
    per_layer = s * b * h * (34 + 5 * a * s / h)
    est = cw.estimate_memory(cfg, training=True, mixed_precision=True, seq_len=s, batch_size=b)
    assert est.breakdown["activations"] == int(L * per_layer + 4 * s * b * h + 4 * s * b * v)
    sel = cw.estimate_memory(cfg, training=True, mixed_precision=True, seq_len=s, batch_size=b,
                             gradient_checkpointing="selective")
    assert sel.breakdown["activations"] == int(L * 34 * s * b * h + 4 * s * b * h + 4 * s * b * v)
    full = cw.estimate_memory(cfg, training=True, mixed_precision=True, seq_len=s, batch_size=b,
                              gradient_checkpointing=True)
    assert full.breakdown["activations"] < sel.breakdown["activations"] < est.breakdown["activations"]


def test_estimate_matches_what_the_process_holds():
    """Weights: RSS growth of loading SmolLM2 and running it, less that of its vocabulary alone
    (the tensor data is read into the process's own memory at load, so a file changed later
    cannot fault it); KV cache: RSS growth while a request holds a filled cache, at several
    context lengths. Within 10% of the estimate."""
    path = cw.resolve("smollm2-135m-instruct")
    model, mapped, grown = measure_weights(lambda: cw.load(path), os.path.basename(path),
                                           lambda: cw.Tokenizer.from_file(path))
    est = cw.estimate_memory(model, dtype="auto", seq_len=16)
    assert abs(mapped - est.breakdown["weights"]) <= 0.10 * est.breakdown["weights"], (mapped, est.breakdown)
    assert grown >= mapped
    # all-MiniLM-L6-v2: safetensors weights copied into memory as float32
    folder = cw.resolve("all-minilm-l6-v2")
    enc, weights, _ = measure_weights(lambda: cw.load(folder), "model.safetensors",
                                      lambda: cw.Tokenizer.from_file(os.path.join(folder, "tokenizer.json")))
    want = cw.estimate_memory(enc).breakdown["weights"]
    assert abs(weights - want) <= 0.10 * want, (weights, want)
    # a model candlewick builds from a config (float32 weights in memory)
    cfg = cw.ModelConfig.for_family("llama", vocab_size=8000, hidden_size=256, num_layers=6, num_heads=8,
                                    num_kv_heads=2, intermediate_size=704, max_position_embeddings=512)
    _, weights, _ = measure_built(cw, cfg)
    want = cw.estimate_memory(cfg).breakdown["weights"]
    assert want == cfg.num_parameters * 4
    assert abs(weights - want) <= 0.10 * want, (weights, want)
    for tokens in (256, 1024):
        rss, allocated = measure_kv(model, tokens)
        want = cw.estimate_memory(model, dtype="auto", seq_len=tokens).breakdown["kv_cache"]
        assert allocated == want
        assert abs(rss - want) <= 0.10 * want, (tokens, rss, want)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="num_kv_heads"):
        cw.ModelConfig(num_heads=8, num_kv_heads=3)
    with pytest.raises(ValueError, match="activation"):
        cw.ModelConfig(activation="swishy")
    with pytest.raises(ValueError, match="hidden_size"):
        cw.ModelConfig(hidden_size=0)
    with pytest.raises(ValueError, match="num_decoder_layers"):
        cw.ModelConfig(family="t5", architecture="encoder-decoder", position="relative_bias",
                       relative_attention_num_buckets=32, norm="rms_norm")
    with pytest.raises(TypeError, match="num_layers"):
        cw.ModelConfig(num_layers=2.5)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        cw.estimate_memory("1B", batch_size=0)
    with pytest.raises(ValueError, match="seq_len"):
        cw.estimate_memory("1B", seq_len=-5)
    with pytest.raises(ValueError, match="parameter count"):
        cw.estimate_memory(-3)
    with pytest.raises(ValueError, match="unknown dtype 'float64x'"):
        cw.estimate_memory("1B", dtype="float64x")
    with pytest.raises(ValueError, match="zero_stage"):
        cw.estimate_memory("1B", zero_stage=4, training=True)
    with pytest.raises(ValueError, match="training"):
        cw.estimate_memory("1B", zero_stage=2)
    with pytest.raises(ValueError, match="optimizer"):
        cw.estimate_memory("1B", training=True, optimizer="lion9")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    with pytest.raises(cw.CandlewickError, match="not a model"):
        cw.estimate_memory(notes)
    bad = tmp_path / "model.safetensors"
    bad.write_bytes((10**6).to_bytes(8, "little") + b"{}")
    with pytest.raises(cw.ModelFileError, match="header length"):
        cw.estimate_memory(bad)
    with pytest.raises(FileNotFoundError):
        cw.estimate_memory(tmp_path / "missing.gguf")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "mamba", "hidden_size": 8}))
    with pytest.raises(cw.UnsupportedError, match="mamba"):
        cw.estimate_memory(cfg)
    out = subprocess.run([sys.executable, "-m", "candlewick", "memory", "1B", "--dtype", "fp7"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown dtype" in out.stderr
