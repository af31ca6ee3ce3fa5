"""Models candlewick builds from a config: saved in the HF layout, read by transformers (the
fixture script loads them with no missing weight and records its logits), read back bit-exactly."""

import dataclasses
import json
import os
import sys

import numpy as np
import pytest

import candlewick as cw

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
sys.path.insert(0, FIX)
from make_candlewick_models import CONFIGS, build  # noqa: E402

REF = np.load(os.path.join(FIX, "cw_built_reference.npz"))


def logits(m, name):
    if name.startswith("t5"):
        return m.logits(REF["input_ids"], decoder_input_ids=REF["decoder_input_ids"])
    return m.logits(REF["input_ids"])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_transformers_reads_what_candlewick_saved(name):
    m = cw.load(os.path.join(FIX, "cw-built", name))
    assert m.config.family == CONFIGS[name][0]
    assert np.abs(logits(m, name) - REF[name]).max() < 1e-4


@pytest.mark.parametrize("name", ["t5", "t5-gated"])
def test_built_encoder_decoder_generates_as_transformers(name):
    m = cw.load(os.path.join(FIX, "cw-built", name))
    out = m.generate(REF["input_ids"][0].tolist(), max_new_tokens=8, ignore_eos=True)
    assert out.token_ids == REF[name + "/greedy"].tolist()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_same_seed_same_model_and_save_load_is_exact(name, tmp_path):
    built = build(cw, name)
    saved = cw.load(os.path.join(FIX, "cw-built", name))
    assert np.array_equal(logits(built, name), logits(saved, name))  # seeded init is reproducible
    built.save(tmp_path / "m")
    back = cw.load(tmp_path / "m")
    assert back.config == built.config
    assert np.array_equal(logits(back, name), logits(built, name))
    other = cw.Model.from_config(built.config, seed=CONFIGS[name][2] + 1)
    assert not np.array_equal(logits(other, name), logits(built, name))


def test_sinusoidal_positions_are_the_original_transformers(tmp_path):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...): stored as GPT-2's position
    table (transformers runs it, see test_transformers_reads_what_candlewick_saved), read back as
    sinusoidal."""
    m = build(cw, "gpt2-sinusoidal")
    m.save(tmp_path / "m")
    raw = open(tmp_path / "m" / "model.safetensors", "rb").read()
    n = int.from_bytes(raw[:8], "little")
    meta = json.loads(raw[8:8 + n])["wpe.weight"]
    a, b = meta["data_offsets"]
    table = np.frombuffer(raw[8 + n + a:8 + n + b], np.float32).reshape(meta["shape"])
    pos, j = np.arange(64)[:, None], np.arange(32)[None, :]
    angle = pos / np.power(10000.0, 2 * (j // 2) / 32)
    assert np.abs(table - np.where(j % 2 == 0, np.sin(angle), np.cos(angle))).max() < 1e-6
    back = cw.load(tmp_path / "m")
    assert back.config.position == "sinusoidal" and back.config == m.config
    learned = cw.Model.from_config(dataclasses.replace(m.config, position="learned"), seed=CONFIGS["gpt2-sinusoidal"][2])
    assert not np.array_equal(logits(learned, "gpt2"), logits(m, "gpt2"))


def test_built_decoder_generates_and_encoder_embeds():
    gpt2 = build(cw, "gpt2")
    out = gpt2.generate([1, 2, 3], max_new_tokens=4, ignore_eos=True)
    assert len(out.token_ids) == 4 and out.text == " ".join(f"[{t}]" for t in out.token_ids)
    bert = build(cw, "bert")
    v = bert.embed("[1] [2] [3]")
    assert v.shape == (32,) and abs(np.linalg.norm(v) - 1) < 1e-5


def test_with_a_real_tokenizer(tmp_path):
    tok = os.path.join(FIX, "tiny-llama", "tokenizer.json")
    cfg = cw.ModelConfig.for_family("llama", vocab_size=320, hidden_size=32, num_layers=1, num_heads=4,
                                    intermediate_size=48, max_position_embeddings=64)
    m = cw.Model.from_config(cfg, seed=0, tokenizer=tok)
    out = m.generate("the cat", max_new_tokens=3, ignore_eos=True)
    assert out.text == m.tokenizer.decode(out.token_ids)
    small = cw.ModelConfig.for_family("llama", vocab_size=100, hidden_size=32, num_layers=1, num_heads=4)
    with pytest.raises(ValueError, match="vocab_size"):
        cw.Model.from_config(small, tokenizer=tok)


def test_config_errors(smollm2, tmp_path):
    with pytest.raises(ValueError, match="num_kv_heads"):
        cw.Model.from_config(cw.ModelConfig.for_family("gpt2", hidden_size=32, num_heads=4, num_kv_heads=2))
    with pytest.raises(ValueError, match="position"):
        cw.Model.from_config(cw.ModelConfig.for_family("bert", position="rope", hidden_size=32, num_heads=4))
    with pytest.raises(ValueError, match="family"):
        cw.Model.from_config(cw.ModelConfig(family="mamba"))
    with pytest.raises(ValueError, match="family must be one of"):
        cw.ModelConfig.for_family("t9")
    with pytest.raises(cw.UnsupportedError, match="gguf"):
        smollm2.save(tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(TypeError):
        cw.Model.from_config({"family": "llama"})
    with pytest.raises(ValueError, match="architecture"):
        cw.Model.from_config(cw.ModelConfig.for_family("t5", architecture="decoder", hidden_size=32, num_heads=4))
    with pytest.raises(ValueError, match="relative_attention_max_distance"):
        cw.ModelConfig.for_family("t5", relative_attention_max_distance=0)
    with pytest.raises(ValueError, match="activation"):
        cw.Model.from_config(cw.ModelConfig.for_family("t5", gated_mlp=True, activation="gelu", hidden_size=32,
                                                       num_heads=4))


def test_a_loaded_hf_folder_saves_as_a_copy(tmp_path):
    """save on a model loaded from an HF folder copies its checkpoint files; the copy loads to the
    same model (sentence-transformers settings included)."""
    for name in ("tiny-t5-gated", "tiny-llama"):
        src = cw.load(os.path.join(FIX, name))
        src.save(tmp_path / name)
        back = cw.load(tmp_path / name)
        assert back.config == src.config
        ids = [3, 7, 11, 5]
        kw = {"decoder_input_ids": [0, 4, 9]} if name.startswith("t5") or "t5" in name else {}
        assert np.array_equal(back.logits(ids, **kw), src.logits(ids, **kw))
        assert not list((tmp_path / name).glob("*.partial"))
    with pytest.raises(ValueError, match="loaded from"):
        src.save(os.path.join(FIX, "tiny-llama"))
