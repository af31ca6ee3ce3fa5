"""Decoders from HF safetensors folders (Llama with GQA, GPT-2 with Conv1D weights) against
HF transformers: logits of a right-padded batch of 2 and greedy continuations. Reference outputs:
tests/fixtures/make_hf_fixtures.py."""

import os

import numpy as np
import pytest

import candlewick as cw

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
REF = np.load(os.path.join(FIX, "tiny_decoders_reference.npz"))


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_logits_match_transformers(name):
    m = cw.load(os.path.join(FIX, name))
    key = name.replace("-", "_")
    ids, mask = REF[f"{key}_input_ids"], REF[f"{key}_attention_mask"]
    logits = m.logits(ids, attention_mask=mask)
    real = mask.astype(bool)
    assert np.abs(logits[real] - REF[f"{key}_logits"][real]).max() < 1e-4


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_greedy_matches_transformers(name):
    m = cw.load(os.path.join(FIX, name))
    key = name.replace("-", "_")
    prompts = [str(p) for p in REF["prompts"]]
    batch = m.generate(prompts, max_new_tokens=12)
    for p, want, got in zip(prompts, REF[f"{key}_greedy"], batch):
        want = [int(t) for t in want if t >= 0]
        assert got.token_ids == want, p
        assert m.generate(p, max_new_tokens=12).token_ids == want


def test_family_details():
    llama = cw.load(os.path.join(FIX, "tiny-llama"))
    c = llama.config
    assert (c.family, c.num_heads, c.num_kv_heads, c.tie_word_embeddings) == ("llama", 4, 2, False)
    assert llama.config.num_parameters == llama.info["num_parameters"]
    gpt2 = cw.load(os.path.join(FIX, "tiny-gpt2"))
    assert (gpt2.config.family, gpt2.config.position, gpt2.config.norm) == ("gpt2", "learned", "layer_norm")
    assert gpt2.config.num_parameters == gpt2.info["num_parameters"]
    # learned positions end the context: generation stops at the model's 64 positions
    out = gpt2.generate("the cat", max_new_tokens=200, ignore_eos=True)
    assert out.finish_reason == "length" and out.prompt_tokens + len(out.token_ids) == 64
    # sampling controls apply to every decoder
    a = gpt2.generate("the cat", max_new_tokens=8, do_sample=True, top_k=20, seed=5, ignore_eos=True)
    b = gpt2.generate("the cat", max_new_tokens=8, do_sample=True, top_k=20, seed=5, ignore_eos=True)
    assert a.token_ids == b.token_ids
    beams = llama.generate("the cat sat on", max_new_tokens=6, num_beams=3, num_return_sequences=2)
    assert len(beams) == 2 and beams[0].score >= beams[1].score
