"""The one checkpoint reader: folders without a tokenizer, sizes read from files checked before
anything is allocated, memory estimates of files as they store their weights, chunked packages,
and every architecture run through the same start/step."""

import hashlib
import json
import os
import shutil
import struct

import numpy as np
import pytest

import candlewick as cw
from candlewick import _native
from gguf_writer import write_gguf

FIX = os.path.join(os.path.dirname(__file__), "fixtures")


def _copy(name, dest, drop=(), config=None):
    shutil.copytree(os.path.join(FIX, name), dest)
    for f in drop:
        os.remove(dest / f)
    if config:
        conf = json.loads((dest / "config.json").read_text())
        (dest / "config.json").write_text(json.dumps({**conf, **config}))
    return dest


def test_a_folder_without_tokenizer_runs_on_ids(tmp_path):
    full = cw.load(os.path.join(FIX, "tiny-llama"))
    bare = cw.load(_copy("tiny-llama", tmp_path / "m", drop=["tokenizer.json"]))
    assert bare.tokenizer is None and bare.config == full.config
    ids = full.tokenizer.encode("the cat sat")
    assert np.array_equal(bare.logits(ids), full.logits(ids))
    a, b = bare.generate(ids, max_new_tokens=6), full.generate(ids, max_new_tokens=6)
    assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason and a.text == ""
    for call in (lambda: bare.generate("the cat"), lambda: bare.score("the", " cat"),
                 lambda: bare.forward("the cat"), lambda: bare.chat([{"role": "user", "content": "hi"}]),
                 lambda: bare.stream(ids)):
        with pytest.raises(cw.UnsupportedError, match="no tokenizer"):
            call()
    with pytest.raises(cw.UnsupportedError, match="stop"):
        bare.generate(ids, stop=["\n"])
    t5 = cw.load(_copy("tiny-t5-gated", tmp_path / "t5", drop=["tokenizer.json"]))
    want = cw.load(os.path.join(FIX, "tiny-t5-gated")).generate([5, 6, 7], max_new_tokens=4).token_ids
    assert t5.generate([5, 6, 7], max_new_tokens=4).token_ids == want


def test_context_lengths_from_files_allocate_nothing_up_front(tmp_path):
    m = cw.load(_copy("tiny-llama", tmp_path / "m", config={"max_position_embeddings": 2**40}))
    assert m.context_length == 2**40
    ref = cw.load(os.path.join(FIX, "tiny-llama"))
    assert np.array_equal(m.logits([3, 4, 5]), ref.logits([3, 4, 5]))  # RoPE rows made as needed
    with pytest.raises(ValueError, match="KV cache"):
        m.generate([3, 4, 5], max_new_tokens=10**15)


def test_huge_configs_are_refused_before_building():
    cfg = cw.ModelConfig.for_family("llama", vocab_size=10**9, hidden_size=8192, num_heads=64)
    assert cfg.num_parameters > 10**12  # counted without a byte of weights
    with pytest.raises(ValueError, match="memory"):
        cw.Model.from_config(cfg)


def test_estimates_of_files_and_models_use_their_stored_types(smollm2, smollm2_path):
    file_bytes = smollm2.info["weight_bytes"]
    for x in (smollm2_path, smollm2):
        est = cw.estimate_memory(x, seq_len=16)
        assert est.breakdown["weights"] == file_bytes and est.dtype == "as stored"
        assert cw.estimate_memory(x, dtype="float32").breakdown["weights"] == 4 * est.num_parameters
    cfg = cw.estimate_memory(smollm2.config)
    assert cfg.breakdown["weights"] == 4 * smollm2.config.num_parameters  # configs and counts: float32
    built = cw.Model.from_config(cw.ModelConfig.for_family("gpt2", vocab_size=64, hidden_size=32, num_heads=4,
                                                           num_layers=1, max_position_embeddings=16))
    assert cw.estimate_memory(built).breakdown["weights"] == 4 * built.config.num_parameters


def test_info_names_the_tables_types(smollm2):
    assert set(smollm2.info["tensor_types"]) <= {"F32", "Q4_1", "Q8_0", "Q6_K"}


def test_a_misshapen_gguf_tensor_is_a_file_error(tmp_path):
    meta = {"general.architecture": "llama", "llama.embedding_length": 32, "llama.attention.head_count": 4,
            "llama.block_count": 1, "llama.feed_forward_length": 64, "llama.context_length": 16}
    p = tmp_path / "m.gguf"
    write_gguf(p, meta, [("token_embd.weight", [10, 32], b"\0" * 1280), ("blk.0.attn_norm.weight", [16], b"\0" * 64)])
    with pytest.raises(cw.ModelFileError, match=r"blk.0.attn_norm.weight has shape \[16\], the model expects \[32\]"):
        cw.load(p)


def _tiny_llama_gguf(path, extra_meta):
    """A complete one-layer Llama GGUF (f32 weights, 10 tokens), with `extra_meta` added."""
    h, f, v = 32, 64, 10
    meta = {"general.architecture": "llama", "llama.embedding_length": h, "llama.attention.head_count": 4,
            "llama.block_count": 1, "llama.feed_forward_length": f, "llama.context_length": 16, **extra_meta}
    rng = np.random.default_rng(0)
    shapes = [("token_embd.weight", [v, h]), ("blk.0.attn_norm.weight", [h]), ("blk.0.attn_q.weight", [h, h]),
              ("blk.0.attn_k.weight", [h, h]), ("blk.0.attn_v.weight", [h, h]), ("blk.0.attn_output.weight", [h, h]),
              ("blk.0.ffn_norm.weight", [h]), ("blk.0.ffn_gate.weight", [f, h]), ("blk.0.ffn_up.weight", [f, h]),
              ("blk.0.ffn_down.weight", [h, f]), ("output_norm.weight", [h])]
    tensors = [(n, s, (rng.standard_normal(int(np.prod(s))) * 0.1).astype("<f4").tobytes()) for n, s in shapes]
    write_gguf(path, meta, tensors)


def test_a_gguf_without_a_vocabulary_is_named_once_its_weights_load(tmp_path):
    # the tokenizer is built before the weights (so its transient is freed first), but its
    # failure is raised after them: a sound file without a vocabulary says so
    p = tmp_path / "m.gguf"
    _tiny_llama_gguf(p, {})
    with pytest.raises(cw.ModelFileError, match="no tokenizer"):
        cw.load(p)
    # one that says it has none runs on ids
    _tiny_llama_gguf(p, {"tokenizer.ggml.model": "none"})
    m = cw.load(p)
    out = m.generate([1, 2, 3], max_new_tokens=4, min_new_tokens=4)
    assert len(out.token_ids) == 4 and all(0 <= t < 10 for t in out.token_ids)


def test_chunked_packages_are_assembled_once_and_checked(tmp_path):
    parts = []
    for i, chunk in enumerate([b"GGUF" + b"a" * 100, b"b" * 50]):
        parts.append(tmp_path / f"x.part{i}")
        parts[-1].write_bytes(chunk)
    whole = b"".join(p.read_bytes() for p in parts)
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{hashlib.sha256(whole).hexdigest()}  model.gguf\n")
    out = _native.assemble_parts(sums, parts, tmp_path / "cache")
    assert open(out, "rb").read() == whole and os.path.basename(out) == "model.gguf"
    bad = tmp_path / "BAD"
    bad.write_text(f"{'0' * 64}  other.gguf\n")
    with pytest.raises(cw.ModelFileError, match="SHA256SUMS"):
        _native.assemble_parts(bad, parts, tmp_path / "cache")
    assert sorted(os.listdir(tmp_path / "cache")) == ["model.gguf"]  # nothing half-written
    escape = tmp_path / "ESC"
    escape.write_text(f"{'0' * 64}  ../evil.gguf\n")
    with pytest.raises(cw.ModelFileError):
        _native.assemble_parts(escape, parts, tmp_path / "cache")


def test_encoder_decoders_score_like_their_logits():
    m = cw.load(os.path.join(FIX, "tiny-t5-gated"))
    tok = m.tokenizer
    (s,) = m.score("the cat", " sat")
    ctx, cont = tok.encode("the cat"), tok.encode(" sat")
    logits = m.logits(ctx, decoder_input_ids=[m.config.decoder_start_token_id] + cont[:-1]).astype(np.float64)
    lp = logits - logits.max(1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(1, keepdims=True))
    assert abs(s.logprob - sum(lp[j, t] for j, t in enumerate(cont))) < 1e-4


def test_absurd_sizes_are_counted_without_allocating_or_wrapping():
    c = cw.ModelConfig(hidden_size=2**24, num_heads=8, head_dim=64, vocab_size=2**40,
                       intermediate_size=2**24, max_position_embeddings=2**40)
    assert c.num_parameters == 2**64 - 1  # saturates: no weight is made to count them
    est = cw.estimate_memory(c, seq_len=2**40, batch_size=2**40)
    assert est.breakdown["kv_cache"] == 2**64 - 1 and not est.fits("1TB")
    for kw, field in ((dict(num_layers=10**12), "num_layers"), (dict(hidden_size=2**30), "hidden_size")):
        with pytest.raises(ValueError, match=f"{field}: .* larger than any model's"):
            cw.ModelConfig(**kw)
