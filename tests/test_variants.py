"""Model options the other fixtures leave out, against transformers (variants_reference.npz, from
tests/fixtures/make_hf_fixtures.py --only variants): tied embeddings with every bias and
rope_parameters, head_dim apart from hidden/heads, Qwen2's q/k/v-only biases, Mistral's sliding
window, GPT-2 with ReLU, BERT-MLM with gelu_new and one token type, T5 gated-SiLU with a shallower
decoder. Decoder batches are left-padded; candlewick counts positions from the first real token
(as generate does), which the reference passes as position_ids."""

import json
import os

import numpy as np
import pytest

import candlewick as cw

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
REF = np.load(os.path.join(FIX, "variants_reference.npz"))
NAMES = [k for k in REF.files if k not in ("input_ids", "attention_mask", "decoder_input_ids", "versions")]


@pytest.mark.parametrize("name", NAMES)
def test_variant_logits_match_transformers(name):
    m = cw.load(os.path.join(FIX, "variants", name))
    ids, mask = REF["input_ids"], REF["attention_mask"]
    if name.startswith("t5"):
        got = m.logits(np.repeat(ids[:1], 2, axis=0), decoder_input_ids=REF["decoder_input_ids"])
        want = REF[name]
    elif name.startswith("bert"):
        got, want = m.logits(ids[0]), REF[name][0]
    else:
        real = mask.astype(bool)
        got, want = m.logits(ids, attention_mask=mask)[real], REF[name][real]
    assert np.abs(got - want).max() < 1e-4, name


def test_variant_configs():
    load = lambda n: cw.load(os.path.join(FIX, "variants", n)).config  # noqa: E731
    assert load("qwen2").qkv_bias and not load("qwen2").attention_bias
    assert load("mistral-window").sliding_window == 4
    assert load("llama-tied-bias").rope_theta == 500000.0  # from transformers 5's rope_parameters


def with_config(variant, folder, **changes):
    """A copy of a variant's folder (weights linked) whose config.json has `changes`."""
    src = os.path.join(FIX, "variants", variant)
    folder.mkdir()
    conf = json.load(open(os.path.join(src, "config.json")))
    json.dump({**conf, **changes}, open(folder / "config.json", "w"))
    for f in ("model.safetensors", "tokenizer.json"):
        os.symlink(os.path.join(src, f), folder / f)
    return folder


def test_scaled_rope_not_built_is_refused(tmp_path):
    # (linear, llama3 and yarn are built: tests/test_arch.py)
    scaled = {"rope_type": "dynamic", "rope_theta": 500000.0, "factor": 8.0}
    with pytest.raises(cw.UnsupportedError, match="dynamic"):
        cw.load(with_config("llama-head-dim", tmp_path / "m", rope_parameters=scaled))


def test_gpt2_attention_scaling_options_are_refused(tmp_path):
    for key, value in (("scale_attn_weights", False), ("scale_attn_by_inverse_layer_idx", True)):
        with pytest.raises(cw.UnsupportedError, match=key):
            cw.load(with_config("gpt2-relu", tmp_path / key, **{key: value}))


def test_qwen2_and_mistral_configs_build_and_save(tmp_path):
    for kw, model_type in ((dict(qkv_bias=True), "qwen2"), (dict(sliding_window=8), "mistral")):
        cfg = cw.ModelConfig.for_family("llama", vocab_size=64, hidden_size=32, num_layers=1, num_heads=4,
                                        intermediate_size=48, max_position_embeddings=64, **kw)
        m = cw.Model.from_config(cfg, seed=0)
        m.save(tmp_path / model_type)
        assert json.load(open(tmp_path / model_type / "config.json"))["model_type"] == model_type
        back = cw.load(tmp_path / model_type)
        assert back.config == cfg and np.array_equal(back.logits([1, 2, 3]), m.logits([1, 2, 3]))
    with pytest.raises(ValueError, match="qkv_bias"):
        cw.Model.from_config(cw.ModelConfig.for_family("llama", qkv_bias=True, mlp_bias=True, hidden_size=32, num_heads=4))
