"""cw.quantize / `candlewick quantize` against llama.cpp's own quantize tool: the same F32 file
(tests/fixtures/arch/quant/base.gguf) quantized by both must hold the same tensors, byte for
byte, and so give the same logits (make_arch_fixtures.py made llama.cpp's files)."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import candlewick as cw
from gguf_writer import Gguf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fixtures"))
import make_convert_fixtures as convert  # noqa: E402


def load(*args, **kwargs):
    """cw.load with an f32 KV cache: the fixtures are llama.cpp's (and transformers') logits with
    f32 keys and values (type_k=0), and these tests pin them; the f16 default is tested in
    test_kv_cache.py."""
    return cw.load(*args, kv_cache_dtype="float32", **kwargs)

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
QUANT = os.path.join(FIX, "arch", "quant")
BASE = os.path.join(QUANT, "base.gguf")
REF = np.load(os.path.join(FIX, "arch_reference.npz"))
PROMPT = [int(t) for t in REF["prompt"]]
BUILT = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K_M", "Q5_K_M", "Q6_K"]


def tensors(path):
    """name -> (type id, shape, data bytes) of a GGUF file."""
    g = Gguf(path)
    order = sorted(g.tensors, key=lambda t: t[3])
    out = {}
    for i, (name, ne, ty, off) in enumerate(order):
        end = order[i + 1][3] if i + 1 < len(order) else len(g.data)
        out[name] = (ty, ne, g.data[off:end].rstrip(b"\0"))
    return out


CONVERTED = json.load(open(os.path.join(FIX, "convert_llamacpp.json")))


def test_the_built_types_are_listed():
    assert cw._native.quantize_types() == ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K_M", "Q5_K_M", "Q6_K"]


@pytest.mark.parametrize("t", BUILT)
def test_quantized_tensors_are_llama_cpps_bytes(tmp_path, t):
    out = tmp_path / f"{t}.gguf"
    types = cw.quantize(BASE, out, type=t)
    ours, theirs = tensors(out), tensors(os.path.join(QUANT, f"{t}.gguf"))
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert ours[name][:2] == theirs[name][:2], name  # type and shape
        assert ours[name][2] == theirs[name][2], f"{t}: {name} differs from llama.cpp's"
    assert types["output.weight"] == (t if t in ("F16", "BF16", "Q8_0") else "Q6_K")
    assert types["blk.0.attn_norm.weight"] == "F32"
    m = load(out)
    assert m.info["tensor_types"] == load(os.path.join(QUANT, f"{t}.gguf")).info["tensor_types"]
    lc = REF[f"lc_quant_{t}_logits"]
    got = m.logits(PROMPT)
    # the same bytes run by the same kernels: llama.cpp's first-step top-5 on its own file
    assert list(np.argsort(-got[-1])[:5]) == list(np.argsort(-lc[-1])[:5])
    assert np.abs(got - load(os.path.join(QUANT, f"{t}.gguf")).logits(PROMPT)).max() == 0.0
    # the metadata came along: the tokenizer and the config read back the same
    src = load(BASE)
    assert m.config == src.config and m.tokenizer.encode("the cat sat") == src.tokenizer.encode("the cat sat")


def test_requantizing_and_the_model_object(tmp_path):
    q8 = tmp_path / "q8.gguf"
    cw.quantize(load(BASE), q8, type="q8_0")
    q4 = tmp_path / "q4.gguf"
    types = cw.quantize(str(q8), q4, type="Q4_0")
    assert types["blk.0.ffn_up.weight"] == "Q4_0"
    assert load(q4).generate(PROMPT, max_new_tokens=4, ignore_eos=True).token_ids


def test_cli(tmp_path):
    out = tmp_path / "cli.gguf"
    r = subprocess.run([sys.executable, "-m", "candlewick", "quantize", BASE, str(out), "--type", "Q8_0"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Q8_0 x9" in r.stdout and out.exists()
    hf = tmp_path / "hf.gguf"  # an HF folder, converted
    r = subprocess.run([sys.executable, "-m", "candlewick", "quantize", os.path.join(FIX, "arch", "qwen2"), str(hf),
                        "--type", "Q8_0"], capture_output=True, text=True)
    assert r.returncode == 0 and "F32 x" in r.stdout and load(hf).config.qkv_bias, r.stderr
    r = subprocess.run([sys.executable, "-m", "candlewick", "quantize", BASE, str(out), "--type", "Q9_9"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "unknown quantization type 'Q9_9'" in r.stderr


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown quantization type 'Q3'"):
        cw.quantize(BASE, tmp_path / "x.gguf", type="Q3")
    with pytest.raises(cw.UnsupportedError, match="Q4_K_S is not built"):
        cw.quantize(BASE, tmp_path / "x.gguf", type="q4_k_s")
    with pytest.raises(TypeError):
        cw.quantize(BASE, tmp_path / "x.gguf", type=8)
    with pytest.raises(cw.UnsupportedError, match="writing gpt2 models as GGUF is not built"):
        cw.quantize(os.path.join(FIX, "tiny-gpt2"), tmp_path / "x.gguf")
    mistral = cw.ModelConfig.for_family("llama", vocab_size=64, hidden_size=32, num_layers=1, num_heads=2,
                                        num_kv_heads=2, head_dim=16, intermediate_size=64, sliding_window=8)
    with pytest.raises(cw.UnsupportedError, match="sliding window"):
        cw.quantize(cw.Model.from_config(mistral), tmp_path / "x.gguf")
    with pytest.raises(TypeError, match="model_or_path"):
        cw.quantize(3, tmp_path / "x.gguf")
    with pytest.raises(cw.CandlewickError):  # not a GGUF file at all
        cw.quantize(os.path.join(FIX, "arch", "qwen3", "config.json"), tmp_path / "x.gguf")
    with pytest.raises(FileNotFoundError):
        cw.quantize(tmp_path / "missing.gguf", tmp_path / "x.gguf")
    with pytest.raises(OSError, match="does not exist"):
        cw.quantize(BASE, tmp_path / "no" / "such" / "x.gguf")
    with pytest.raises(ValueError, match="source itself"):
        cw.quantize(BASE, BASE)
    (tmp_path / "adir.gguf").mkdir()
    with pytest.raises(OSError, match="in the way"):
        cw.quantize(BASE, tmp_path / "adir.gguf")
    # a GGUF file whose architecture is unknown is no model to quantize
    g = Gguf(BASE)
    arch = b"mamba"
    g.set("general.architecture", len(arch).to_bytes(8, "little") + arch, ty=8)
    g.write(tmp_path / "mamba.gguf")
    with pytest.raises(cw.UnsupportedError, match="mamba"):
        cw.quantize(tmp_path / "mamba.gguf", tmp_path / "x.gguf")
    # nothing half-written was left behind by any of these
    assert sorted(os.listdir(tmp_path)) == ["adir.gguf", "mamba.gguf"]


def test_smollm2_to_q4_k_m_falls_back_as_llama_cpp_does(tmp_path, smollm2_path):
    # SmolLM2's rows of 576 do not split into K-quant blocks of 256: llama.cpp's fallbacks
    # (Q4_K -> Q5_0, Q6_K -> Q8_0; ffn_down's rows of 1536 do split) apply
    out = tmp_path / "smol-q4km.gguf"
    types = cw.quantize(smollm2_path, out, type="Q4_K_M")
    assert types["token_embd.weight"] == "Q8_0"  # tied to the output: Q6_K, which falls back
    assert types["blk.0.attn_q.weight"] == "Q5_0" and types["blk.0.ffn_down.weight"] == "Q6_K"
    assert types["blk.3.ffn_down.weight"] == "Q4_K" and types["blk.0.attn_v.weight"] == "Q8_0"
    text = load(out).generate("The capital of France is", max_new_tokens=6, do_sample=False).text
    assert "Paris" in text


# --- converting: HF folders, built and trained models -> GGUF -------------------------------
# convert_llamacpp.json (make_convert_fixtures.py) holds llama.cpp's first-step top-5 on the files
# candlewick writes from these sources; the same conversion here must write the same bytes.

@pytest.mark.parametrize("key", [k for k, c in CONVERTED["cases"].items() if c["source"] != "trained"])
def test_converted_files_are_the_ones_llama_cpp_read(tmp_path, key):
    case = CONVERTED["cases"][key]
    src = convert.source(cw, case["source"])
    out = tmp_path / f"{key}.gguf"
    cw.quantize(src, out, type=case["type"])
    assert hashlib.sha256(out.read_bytes()).hexdigest() == case["sha256"]
    back = load(out)
    prompt = CONVERTED["prompt"]
    got = back.logits(prompt)
    assert convert.top5(got[-1]) == case["llamacpp_top5"]
    if case["candlewick_tokens"] is not None:  # the vocabulary, as llama.cpp tokenized with it
        assert back.tokenizer.encode(convert.TEXT) == case["llamacpp_tokens"] == src.tokenizer.encode(convert.TEXT)
    if case["type"] == "F32":  # the same model: llama.cpp's arithmetic on the file, HF's on the folder
        assert back.config.family == "llama" and np.abs(got - src.logits(prompt)).max() < 1e-5


def test_a_trained_model_saves_and_quantizes_as_gguf(tmp_path):
    m = convert.trained_model(cw)
    m.save(tmp_path / "trained.gguf")  # F32: the trained weights as they are
    back = load(tmp_path / "trained.gguf")
    prompt = CONVERTED["prompt"]
    assert np.abs(back.logits(prompt) - m.logits(prompt)).max() < 1e-5
    assert back.tokenizer.encode(convert.TEXT) == m.tokenizer.encode(convert.TEXT)
    types = cw.quantize(m, tmp_path / "trained-q8.gguf", type="Q8_0")
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    q8 = load(tmp_path / "trained-q8.gguf")
    assert q8.generate("In the beginning", max_new_tokens=4, do_sample=False).token_ids
    # llama.cpp's reading of the fixture's trained file agreed with candlewick's
    case = CONVERTED["cases"]["trained-Q8_0"]
    assert case["llamacpp_top5"] == case["candlewick_top5"]


def test_save_of_a_gguf_model_writes_gguf(tmp_path):
    m = load(BASE)
    m.save(tmp_path / "copy.gguf")
    assert (tmp_path / "copy.gguf").read_bytes() == open(BASE, "rb").read()
    with pytest.raises(cw.UnsupportedError, match=r"\.gguf"):
        m.save(tmp_path / "folder")
    with pytest.raises(ValueError, match="loaded from"):
        m.save(BASE)
    with pytest.raises(OSError):
        m.save(tmp_path / "no" / "such" / "x.gguf")
    assert sorted(os.listdir(tmp_path)) == ["copy.gguf"]
