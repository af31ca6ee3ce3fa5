"""The KV cache's dtype: float16 for GGUF models (llama.cpp's default), float32 for float
checkpoints; settable per model and at load; estimate_memory follows it. An f16 cache rounds each
key and value once, so its logits stay close to the f32 cache's (the kernel itself is checked bit
for bit against the f32 kernel on the rounded values in the Rust tests)."""
import os

import numpy as np
import pytest

import candlewick as cw

FIX = os.path.join(os.path.dirname(__file__), "fixtures")


def _kl(p_logits, q_logits):
    p = np.exp(p_logits - p_logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    q = np.exp(q_logits - q_logits.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)
    return float((p * (np.log(p) - np.log(q))).sum(-1).mean())


def test_defaults_follow_the_format():
    gguf = cw.load("smollm2-135m-instruct")
    assert gguf.kv_cache_dtype == "float16"
    assert cw.load("all-minilm-l6-v2").kv_cache_dtype == "float32"
    assert cw.load(os.path.join(FIX, "tiny-llama")).kv_cache_dtype == "float32"
    assert cw.load("smollm2-135m-instruct", kv_cache_dtype="float32").kv_cache_dtype == "float32"
    assert cw.load(os.path.join(FIX, "tiny-llama"), kv_cache_dtype="float16").kv_cache_dtype == "float16"


def test_bad_dtypes_are_refused():
    m = cw.load(os.path.join(FIX, "tiny-llama"))
    with pytest.raises(ValueError, match="kv_cache_dtype"):
        m.kv_cache_dtype = "int4"
    with pytest.raises(TypeError, match="kv_cache_dtype"):
        m.kv_cache_dtype = 16
    with pytest.raises(ValueError, match="kv_cache_dtype"):
        cw.load(os.path.join(FIX, "tiny-llama"), kv_cache_dtype="bfloat16")
    assert m.kv_cache_dtype == "float32"


def test_f16_cache_stays_close_to_f32_on_smollm2():
    m = cw.load("smollm2-135m-instruct")
    ids = m.tokenizer.encode("The quick brown fox jumps over the lazy dog. " * 12)
    half = m.logits(ids)
    m.kv_cache_dtype = "float32"
    full = m.logits(ids)
    assert half.shape == full.shape
    assert not np.array_equal(half, full)  # the cache really is rounded
    assert np.isfinite(half).all()
    assert _kl(full, half) < 1e-2  # measured 2.5e-3: Q8 activation rounding spreads the f16 rounding
    assert (half.argmax(-1) == full.argmax(-1)).mean() > 0.95
    # generation: the same greedy tokens at the start
    a = m.generate("The capital of France is", max_new_tokens=8, do_sample=False).token_ids
    m.kv_cache_dtype = "float16"
    b = m.generate("The capital of France is", max_new_tokens=8, do_sample=False).token_ids
    assert a[:4] == b[:4]


def test_f16_cache_on_a_float_model_stays_close():
    m = cw.load(os.path.join(FIX, "tiny-llama"))
    ids = list(range(3, 40))
    full = m.logits(ids)
    m.kv_cache_dtype = "float16"
    half = m.logits(ids)
    assert np.abs(half - full).max() < 5e-2  # logits of a few units, keys rounded to 11 bits
    assert _kl(full, half) < 1e-4


def test_estimate_memory_follows_the_dtype():
    path = cw.resolve("smollm2-135m-instruct")
    c = cw.load(path).config
    per = 2 * c.num_layers * c.num_kv_heads * c.head_dim * 256
    assert cw.estimate_memory(path, seq_len=256).breakdown["kv_cache"] == per * 2
    assert cw.estimate_memory(path, seq_len=256, kv_dtype="float32").breakdown["kv_cache"] == per * 4
    m = cw.load(path)
    assert cw.estimate_memory(m, seq_len=256).breakdown["kv_cache"] == per * 2
    m.kv_cache_dtype = "float32"
    assert cw.estimate_memory(m, seq_len=256).breakdown["kv_cache"] == per * 4
