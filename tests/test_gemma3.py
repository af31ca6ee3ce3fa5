"""Gemma 3 270M (GGUF Q4_K_M, SentencePiece vocabulary) against llama.cpp: token ids and
detokenization of the tokenizer corpus, and greedy continuations. Reference outputs:
tests/fixtures/make_llamacpp_fixtures.py --gemma."""

import json
import os

import pytest

import candlewick as cw

REF = json.load(open(os.path.join(os.path.dirname(__file__), "fixtures", "gemma3_llamacpp.json"), encoding="utf-8"))


@pytest.fixture(scope="module")
def gemma():
    return cw.load("gemma3-270m")


def test_sentencepiece_vocabulary_matches_llamacpp(gemma):
    tok = gemma.tokenizer
    bad = [r["text"] for r in REF["tokenize"] if tok.encode(r["text"], add_special_tokens=False) != r["ids"]]
    assert not bad, bad
    assert all(tok.decode(r["ids"]) == r["decoded"] for r in REF["tokenize"])
    assert tok.encode("Hello")[0] == tok.bos_token_id == 2  # add_bos_token


def test_greedy_follows_llamacpp(gemma):
    """Gemma 3 amplifies rounding differences (residual stream in the thousands, activations
    quantized to 8 bits before every matmul), so parity needs the matmuls to round as llama.cpp's
    do: every weight type of this file (Q5_0, Q8_0, Q4_K, Q6_K) runs candlewick's ggml-exact kernels
    (tests/fixtures/ggml_kernels.json checks them bit for bit). Issue 3 asks identical greedy
    tokens for at least 24 steps on 3 of the 4 prompts; measured: 32, 32, 32 and 10 (the last
    parts at a 0.2-logit near-tie: attention and norms still round differently from ggml's)."""
    agree = []
    for g in REF["generations"]:
        ids = gemma.tokenizer.encode(g["prompt"])
        assert ids == g["prompt_ids"]
        out = gemma.generate(ids, max_new_tokens=32, ignore_eos=True).token_ids
        agree.append(next((i for i, (a, b) in enumerate(zip(out, g["greedy_ids"])) if a != b), len(out)))
    assert all(n >= 1 for n in agree), agree
    assert sum(n >= 24 for n in agree) >= 3, agree


def test_gemma3_structure(gemma):
    c = gemma.config
    assert (c.family, c.num_layers, c.sliding_window, c.sliding_window_pattern) == ("gemma3", 18, 512, 6)
    assert (c.activation, c.num_kv_heads, c.head_dim) == ("gelu_tanh", 1, 256)
    assert c.num_parameters == gemma.info["num_parameters"]
    out = gemma.forward("The sky is", output_attentions=True)
    assert len(out.attentions) == 18
