"""model.forward(output_hidden_states=True, output_attentions=True) against HF transformers'
hidden_states and attentions (eager attention) for a decoder with RoPE + GQA, one with learned
positions, and a BERT encoder. Reference outputs: tests/fixtures/make_hf_fixtures.py."""

import os

import numpy as np
import pytest

import candlewick as cw

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
REF = np.load(os.path.join(FIX, "inspect_reference.npz"))


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-bert-mlm"])
def test_hidden_states_and_attentions_match_transformers(name):
    m = cw.load(os.path.join(FIX, name))
    key = name.replace("-", "_")
    ids = [int(i) for i in REF[f"{key}_ids"]]
    out = m.forward(ids, output_hidden_states=True, output_attentions=True)
    hidden, attn = np.stack(out.hidden_states), np.stack(out.attentions)
    assert hidden.shape == REF[f"{key}_hidden"].shape and attn.shape == REF[f"{key}_attn"].shape
    assert np.abs(hidden - REF[f"{key}_hidden"]).max() < 1e-4
    assert np.abs(attn - REF[f"{key}_attn"]).max() < 1e-5
    assert np.allclose(attn.sum(-1), 1.0, atol=1e-5)
    # the logits agree with the fast path
    assert np.abs(out.logits - m.logits(ids)).max() < 1e-4
    plain = m.forward(ids)
    assert plain.hidden_states is None and plain.attentions is None


def test_forward_on_smollm2_is_causal(smollm2):
    out = smollm2.forward("The capital of France is", output_attentions=True)
    a = out.attentions[0]
    assert np.allclose(np.triu(a, k=1), 0)  # no token attends to a later one
    assert len(out.attentions) == smollm2.config.num_layers
