"""The GGUF architectures and RoPE scalings people download, on tiny random models
(tests/fixtures/make_arch_fixtures.py): each as an HF folder against transformers and as the GGUF
file llama.cpp's own converter made of it against llama.cpp (arch_reference.npz). Logits at every
position of a 40-token prompt, and 12 greedy tokens after it."""

import json
import os
import shutil

import numpy as np
import pytest

import candlewick as cw
from gguf_writer import Gguf


def load(*args, **kwargs):
    """cw.load with an f32 KV cache: the fixtures are llama.cpp's (and transformers') logits with
    f32 keys and values (type_k=0), and these tests pin them; the f16 default is tested in
    test_kv_cache.py."""
    return cw.load(*args, kv_cache_dtype="float32", **kwargs)

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
ARCH = os.path.join(FIX, "arch")
REF = np.load(os.path.join(FIX, "arch_reference.npz"))
PROMPT = [int(t) for t in REF["prompt"]]
NAMES = sorted(k[3:-7] for k in REF.files if k.startswith("hf_") and k.endswith("_logits") and k != "hf_quant_logits")
NEW = 12


def greedy(m):
    return m.generate(PROMPT, max_new_tokens=NEW, do_sample=False, ignore_eos=True).token_ids


def test_every_fixture_has_both_references():
    assert set(NAMES) == {"llama3-rope", "llama-linear-rope", "llama-yarn-rope", "qwen2", "qwen3", "tiny-phi", "gemma2"}
    for n in NAMES:
        assert f"lc_{n}_logits" in REF.files and os.path.exists(os.path.join(ARCH, f"{n}.gguf"))


@pytest.mark.parametrize("name", NAMES)
def test_hf_folder_matches_transformers(name):
    m = load(os.path.join(ARCH, name))
    got = m.logits(PROMPT)
    assert np.abs(got - REF[f"hf_{name}_logits"]).max() < 1e-4
    assert list(greedy(m)) == list(REF[f"hf_{name}_greedy"])


@pytest.mark.parametrize("name", NAMES)
def test_gguf_matches_llama_cpp(name):
    m = load(os.path.join(ARCH, f"{name}.gguf"))
    got = m.logits(PROMPT)
    assert np.abs(got - REF[f"lc_{name}_logits"]).max() < 1e-4
    assert list(greedy(m)) == list(REF[f"lc_{name}_greedy"])


def test_configs_read_from_both_formats():
    for fmt in ("", ".gguf"):
        c = {n: load(os.path.join(ARCH, n + fmt)).config for n in NAMES}
        assert c["llama3-rope"].rope_scaling == "llama3"
        assert c["llama-linear-rope"].rope_scaling == "linear" and c["llama-linear-rope"].rope_scaling_factor == 4.0
        y = c["llama-yarn-rope"]
        assert y.rope_scaling == "yarn" and y.rope_scaling_factor == 4.0
        assert y.rope_original_max_position_embeddings == 128
        assert c["qwen2"].qkv_bias and not c["qwen2"].qk_norm
        assert c["qwen3"].qk_norm and not c["qwen3"].qkv_bias
        # llama.cpp's llama graph rotates adjacent pairs (its converter permuted q and k); qwen's halves
        assert c["llama3-rope"].rope_adjacent_pairs == (fmt == ".gguf")
        assert not c["qwen3"].rope_adjacent_pairs
        assert c["tiny-phi"].family == "phi3" and c["gemma2"].family == "gemma2"
        g = c["gemma2"]
        assert (g.attn_logit_softcapping, g.final_logit_softcapping, g.query_pre_attn_scalar) == (3.0, 2.0, 16.0)
        assert g.sliding_window == 8 and g.sliding_window_pattern == 2 and g.tie_word_embeddings
    hf = load(os.path.join(ARCH, "llama3-rope")).config
    assert (hf.rope_scaling_factor, hf.rope_low_freq_factor, hf.rope_high_freq_factor) == (8.0, 1.0, 4.0)
    assert hf.rope_original_max_position_embeddings == 64


def hf_copy(name, folder, **changes):
    """A copy of a fixture folder whose config.json has `changes` (None deletes a key)."""
    src = os.path.join(ARCH, name)
    shutil.copytree(src, folder)
    conf = json.load(open(os.path.join(src, "config.json")))
    conf.update(changes)
    json.dump({k: v for k, v in conf.items() if v is not None}, open(folder / "config.json", "w"))
    return folder


@pytest.mark.parametrize("name", ["llama3-rope", "llama-linear-rope", "llama-yarn-rope"])
def test_the_scaling_is_what_matches(tmp_path, name):
    # the same weights with plain RoPE are far from the reference: the fixture tests the scaling
    theta = json.load(open(os.path.join(ARCH, name, "config.json")))["rope_parameters"]["rope_theta"]
    m = load(hf_copy(name, tmp_path / "plain", rope_parameters={"rope_type": "default", "rope_theta": theta}))
    assert m.config.rope_scaling == "none"
    assert np.abs(m.logits(PROMPT) - REF[f"hf_{name}_logits"]).max() > 1e-2


def test_gemma2_soft_caps_and_window_are_what_matches(tmp_path):
    # each of Gemma 2's options changes these logits: the fixture tests them
    for change in ({"attn_logit_softcapping": None}, {"final_logit_softcapping": None}, {"sliding_window": 64},
                   {"query_pre_attn_scalar": 64}):
        m = load(hf_copy("gemma2", tmp_path / next(iter(change)), **change))
        assert np.abs(m.logits(PROMPT) - REF["hf_gemma2_logits"]).max() > 1e-3, change


def test_new_families_build_save_and_reload(tmp_path):
    for family, kw in (("phi3", {}), ("gemma2", dict(sliding_window=4, attn_logit_softcapping=5.0, final_logit_softcapping=3.0))):
        cfg = cw.ModelConfig.for_family(family, vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                                        intermediate_size=48, max_position_embeddings=64, **kw)
        m = cw.Model.from_config(cfg, seed=0)
        m.save(tmp_path / family)
        back = load(tmp_path / family)
        assert back.config == cfg and np.array_equal(back.logits([1, 2, 3, 4, 5, 6]), m.logits([1, 2, 3, 4, 5, 6]))


def test_unread_gguf_tensors_are_refused(tmp_path):
    # a Llama 3 file whose rope_freqs tensor has a name the engine does not know: refused, naming
    # it, never run without it
    g = Gguf(os.path.join(ARCH, "llama3-rope.gguf"))
    for t in g.tensors:
        if t[0] == "rope_freqs.weight":
            t[0] = "rope_freqs_v2.weight"
    g.write(tmp_path / "renamed.gguf")
    with pytest.raises(cw.UnsupportedError, match="rope_freqs_v2.weight"):
        load(tmp_path / "renamed.gguf")
    # and an extra tensor beside the ones a qwen3 model reads
    g = Gguf(os.path.join(ARCH, "qwen3.gguf"))
    end = (len(g.data) + g.alignment - 1) // g.alignment * g.alignment
    g.tensors.append(["blk.0.attn_extra.weight", [16], 0, end])
    g.write(tmp_path / "extra.gguf", g.data.ljust(end, b"\0") + bytes(64))
    with pytest.raises(cw.UnsupportedError, match="attn_extra"):
        load(tmp_path / "extra.gguf")


def test_rope_freqs_in_a_qwen_file_is_refused(tmp_path):
    g = Gguf(os.path.join(ARCH, "llama3-rope.gguf"))
    arch = b"qwen3"
    g.set("general.architecture", len(arch).to_bytes(8, "little") + arch, ty=8)
    g.kvs = [(k.replace("llama.", "qwen3.", 1), ty, raw) for k, ty, raw in g.kvs]
    g.write(tmp_path / "q.gguf")
    with pytest.raises(cw.CandlewickError):
        load(tmp_path / "q.gguf")


@pytest.mark.parametrize("scaling,match", [
    ({"rope_type": "dynamic", "factor": 2.0}, "dynamic"),
    ({"rope_type": "longrope", "factor": 2.0, "short_factor": [1.0], "long_factor": [1.0]}, "longrope"),
    ({"rope_type": "yarn", "factor": 2.0, "mscale": 0.7}, "mscale"),
    ({"rope_type": "llama3", "factor": 8.0}, "low_freq_factor"),
    ({"rope_type": "linear"}, "factor"),
    ({"rope_type": "linear", "factor": "big"}, "factor"),
    ({"rope_type": "linear", "factor": -2.0}, "rope_scaling_factor"),
])
def test_scalings_not_built_or_broken_are_refused(tmp_path, scaling, match):
    with pytest.raises((cw.CandlewickError, ValueError, TypeError), match=match):
        load(hf_copy("llama-linear-rope", tmp_path / "m", rope_parameters={**scaling, "rope_theta": 10000.0}))


def test_gguf_scaling_metadata_not_built_is_refused(tmp_path):
    g = Gguf(os.path.join(ARCH, "llama-linear-rope.gguf"))
    kind = b"longrope"
    g.set("llama.rope.scaling.type", len(kind).to_bytes(8, "little") + kind, ty=8)
    g.write(tmp_path / "l.gguf")
    with pytest.raises(cw.UnsupportedError, match="longrope"):
        load(tmp_path / "l.gguf")


def test_scaled_and_qwen3_configs_build_save_and_reload(tmp_path):
    for kw, model_type in ((dict(qk_norm=True), "qwen3"),
                           (dict(rope_scaling="llama3", rope_scaling_factor=8.0, rope_original_max_position_embeddings=32), "llama"),
                           (dict(rope_scaling="yarn", rope_scaling_factor=2.0, rope_original_max_position_embeddings=64), "llama")):
        cfg = cw.ModelConfig.for_family("llama", vocab_size=64, hidden_size=32, num_layers=1, num_heads=4,
                                        intermediate_size=48, max_position_embeddings=64, **kw)
        m = cw.Model.from_config(cfg, seed=0)
        out = tmp_path / f"{model_type}-{kw.get('rope_scaling', 'none')}"
        m.save(out)
        assert json.load(open(out / "config.json"))["model_type"] == model_type
        back = load(out)
        assert back.config == cfg and np.array_equal(back.logits([1, 2, 3]), m.logits([1, 2, 3]))
    with pytest.raises(ValueError, match="rope_high_freq_factor"):
        cw.ModelConfig.for_family("llama", rope_scaling="llama3", rope_low_freq_factor=4.0, rope_high_freq_factor=1.0)
    with pytest.raises(ValueError, match="qk_norm"):
        cw.Model.from_config(cw.ModelConfig.for_family("llama", qk_norm=True, sliding_window=8, hidden_size=32, num_heads=4))


# --- block types ------------------------------------------------------------------------------
# One Llama with rows of 256 (the K-quants' super-block) in every llama.cpp file type, each made
# by llama.cpp's own quantizer from the same F32 file; judged by KL from the fp32 transformers
# logits (hf_quant_logits), which must be no larger than llama.cpp's on the same file.

QUANT = os.path.join(ARCH, "quant")
# file types whose every tensor runs candlewick's own ggml-exact kernels: equal to llama.cpp
OWN_KERNELS = ["F32", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"]
# candlewick's float kernel: f32 activations where llama.cpp rounds them to the weights' type, so
# closer to fp32 than llama.cpp, not equal to it
FLOAT = ["F16", "BF16"]


def kl(p_logits, q_logits):
    """Mean over positions of KL(softmax p || softmax q)."""
    lp = p_logits - np.logaddexp.reduce(p_logits, axis=-1, keepdims=True)
    lq = q_logits - np.logaddexp.reduce(q_logits, axis=-1, keepdims=True)
    return float((np.exp(lp) * (lp - lq)).sum(-1).mean())


def quant_file(t):
    return os.path.join(QUANT, "base.gguf" if t == "F32" else f"{t}.gguf")


def test_every_file_type_has_a_reference():
    assert sorted(OWN_KERNELS + FLOAT) == sorted(
        k[len("lc_quant_"):-len("_logits")] for k in REF.files if k.startswith("lc_quant_") and k.endswith("_logits"))


@pytest.mark.parametrize("t", OWN_KERNELS + FLOAT)
def test_block_type_is_as_close_to_fp32_as_llama_cpp(t):
    m = load(quant_file(t))
    got, lc = m.logits(PROMPT), REF[f"lc_quant_{t}_logits"]
    ours, theirs = kl(REF["hf_quant_logits"], got), kl(REF["hf_quant_logits"], lc)
    print(f"{t}: KL from fp32 {ours:.3e} (llama.cpp {theirs:.3e}), max |logit - llama.cpp's| {np.abs(got - lc).max():.1e}")
    assert ours <= theirs * 1.02 + 1e-8
    assert list(greedy(m)) == list(REF[f"lc_quant_{t}_greedy"])
    if t in OWN_KERNELS:
        assert np.abs(got - lc).max() <= 1e-5


def test_file_types_mix_as_llama_cpp_made_them():
    # Q4_K_M is Q4_K with some tensors in Q6_K, and so on: the file's own choice, read as it is
    types = lambda t: set(load(quant_file(t)).info["tensor_types"])  # noqa: E731
    assert {"Q4_K", "Q6_K"} <= types("Q4_K_M") and {"Q5_K", "Q6_K"} <= types("Q5_K_M")


def test_block_types_not_built_are_refused_by_name(tmp_path):
    # IQ2_XXS is sized but not run: a file of it is refused, naming the type
    g = Gguf(quant_file("Q2_K"))
    g.tensors = [[n, ne, 16 if ty == 10 else ty, off] for n, ne, ty, off in g.tensors]  # Q2_K -> IQ2_XXS
    g.write(tmp_path / "iq2.gguf")
    with pytest.raises((cw.UnsupportedError, cw.CandlewickError), match="IQ2_XXS"):
        load(tmp_path / "iq2.gguf")


@pytest.mark.parametrize("key,value", [("llama.rope.scaling.factor", float("nan")), ("llama.rope.scaling.factor", -4.0),
                                       ("llama.rope.scaling.yarn_beta_fast", float("inf"))])
def test_hostile_gguf_scaling_numbers_are_refused(tmp_path, key, value):
    g = Gguf(os.path.join(ARCH, "llama-yarn-rope.gguf"))
    g.set(key, value, ty=6)  # f32
    g.write(tmp_path / "h.gguf")
    with pytest.raises((cw.CandlewickError, ValueError)):
        load(tmp_path / "h.gguf")


def test_hostile_rope_freqs_are_refused(tmp_path):
    g = Gguf(os.path.join(ARCH, "llama3-rope.gguf"))
    name, ne, ty, off = next(t for t in g.tensors if t[0] == "rope_freqs.weight")
    start = off
    data = bytearray(g.data)
    data[start:start + 4] = np.float32(0.0).tobytes()  # a zero factor would divide by zero
    g.write(tmp_path / "zero.gguf", bytes(data))
    with pytest.raises(cw.CandlewickError, match="rope_freqs"):
        load(tmp_path / "zero.gguf")
    for t in g.tensors:
        if t[0] == "rope_freqs.weight":
            t[1] = [ne[0] // 2]  # too short for the head
    g.write(tmp_path / "short.gguf")
    with pytest.raises(cw.CandlewickError, match="rope_freqs"):
        load(tmp_path / "short.gguf")
