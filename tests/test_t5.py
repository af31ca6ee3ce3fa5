"""Encoder-decoder (T5) from HF safetensors, both variants (v1.0: ReLU, tied and scaled LM head;
v1.1: gated-GELU, untied head), against HF transformers: logits of a padded batch with decoder
inputs, and greedy generations. Reference outputs: tests/fixtures/make_hf_fixtures.py."""

import os

import numpy as np
import pytest

import candlewick as cw

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
REF = np.load(os.path.join(FIX, "tiny_t5_reference.npz"))


@pytest.mark.parametrize("name", ["tiny-t5-relu", "tiny-t5-gated"])
def test_t5_logits_match_transformers(name):
    m = cw.load(os.path.join(FIX, name))
    assert m.config.architecture == "encoder-decoder"
    key = name.replace("-", "_")
    logits = m.logits(REF[f"{key}_input_ids"], attention_mask=REF[f"{key}_attention_mask"],
                      decoder_input_ids=REF[f"{key}_decoder_input_ids"])
    assert np.abs(logits - REF[f"{key}_logits"]).max() < 1e-4


@pytest.mark.parametrize("name", ["tiny-t5-relu", "tiny-t5-gated"])
def test_t5_greedy_matches_transformers(name):
    m = cw.load(os.path.join(FIX, name))
    key = name.replace("-", "_")
    for prompt, want in zip(REF["prompts"], REF[f"{key}_greedy"]):
        want = [int(t) for t in want if t >= 0]
        out = m.generate(str(prompt), max_new_tokens=10)
        assert out.token_ids == want
        assert out.finish_reason == ("eos" if len(want) < 10 else "length")


def test_t5_sampling_and_errors():
    m = cw.load(os.path.join(FIX, "tiny-t5-gated"))
    a = m.generate("the cat", max_new_tokens=6, do_sample=True, temperature=0.9, top_p=0.9, seed=4, ignore_eos=True)
    b = m.generate("the cat", max_new_tokens=6, do_sample=True, temperature=0.9, top_p=0.9, seed=4, ignore_eos=True)
    assert a.token_ids == b.token_ids and len(a.token_ids) == 6
    out = m.generate(["the cat", "the dog"], max_new_tokens=4, logprobs=2)
    assert len(out) == 2 and all(len(o.logprobs) == len(o.token_ids) for o in out)
    assert m.config.num_parameters == m.info["num_parameters"]
    with pytest.raises(ValueError, match="decoder_input_ids"):
        m.logits([5, 6, 7])
    beams = m.generate("the cat", num_beams=2, num_return_sequences=2, max_new_tokens=5)
    assert len(beams) == 2 and beams[0].score >= beams[1].score
    # streaming and batches run the same loop as decoders
    whole = m.generate("the cat sat", max_new_tokens=8, ignore_eos=True)
    assert "".join(m.stream("the cat sat", max_new_tokens=8, ignore_eos=True)) == whole.text
    batch = m.generate(["the cat sat", "the dog"], max_new_tokens=8, ignore_eos=True)
    assert batch[0].token_ids == whole.token_ids
    assert batch[1].token_ids == m.generate("the dog", max_new_tokens=8, ignore_eos=True).token_ids
    est = cw.estimate_memory(os.path.join(FIX, "tiny-t5-gated"), seq_len=16)
    c = m.config
    # decoder self-attention + cross-attention K/V
    assert est.breakdown["kv_cache"] == 2 * 2 * c.num_decoder_layers * c.num_heads * c.head_dim * 16 * 4
    assert est.num_parameters == m.info["num_parameters"]
