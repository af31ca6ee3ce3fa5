"""Perplexity with transformers' sliding windows: equal to transformers (and torch for the RNN) on
tiny random models (fixtures/make_rnn_fixtures.py), to the perplexity of llama.cpp's own logits on
SmolLM2 (fixtures/make_llamacpp_perplexity.py), from the command line, and bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import candlewick as cw


def load(*args, **kwargs):
    """cw.load with an f32 KV cache: the fixtures are llama.cpp's (and transformers') logits with
    f32 keys and values (type_k=0), and these tests pin them; the f16 default is tested in
    test_kv_cache.py."""
    return cw.load(*args, kv_cache_dtype="float32", **kwargs)

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")
REF = json.load(open(os.path.join(FIX, "perplexity_reference.json"), encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(REF["models"]))
def test_equals_transformers_on_every_window_layout(name):
    m = load(os.path.join(FIX, name))
    ref = REF["models"][name]
    assert m.tokenizer.encode(REF["text"]) == ref["ids"]
    for w in ref["windows"]:
        r = m.perplexity(REF["text"], max_length=w["max_length"], stride=w["stride"])
        assert r.tokens == w["tokens"], w
        assert r.perplexity == pytest.approx(w["perplexity"], rel=1e-5), w
        # ids give the same; windows batched together give the same
        assert m.perplexity(ref["ids"], max_length=w["max_length"], stride=w["stride"], batch_size=3).perplexity == pytest.approx(
            r.perplexity, rel=1e-5)


def test_smollm2_equals_the_perplexity_of_llamacpps_logits(smollm2):
    ref = json.load(open(os.path.join(FIX, "smollm2_perplexity_llamacpp.json"), encoding="utf-8"))
    assert ref["ids"] == ref["llamacpp_ids"], "candlewick and llama.cpp tokenize the text alike"
    assert smollm2.tokenizer.encode(ref["text"]) == ref["ids"]
    for w in ref["windows"]:
        r = smollm2.perplexity(ref["text"], max_length=w["max_length"], stride=w["stride"])
        assert r.tokens == w["tokens"]
        # the issue asks for 0.5%; the kernels follow ggml's order, so the logits are llama.cpp's
        assert abs(r.perplexity / w["perplexity"] - 1) < 1e-4, (r.perplexity, w)


def test_smaller_strides_give_more_context_and_lower_perplexity():
    m = load(os.path.join(FIX, "tiny-rnn-lstm"))
    ids = REF["models"]["tiny-rnn-lstm"]["ids"]
    r = m.perplexity(ids, max_length=16, stride=4, return_token_nll=True)
    nll = r.token_nll[0]
    assert np.isnan(nll[0]) and np.isfinite(nll[1:]).all() and len(nll) == len(ids)
    assert np.mean(nll[1:]) == pytest.approx(r.nll, rel=1e-6)
    assert float(r) == r.perplexity == pytest.approx(np.exp(r.nll))


def test_several_texts_are_pooled_by_token_and_short_ones_skipped():
    m = load(os.path.join(FIX, "tiny-llama"))
    a, b = "the cat sat on the mat", "paris is the capital of france and berlin of germany"
    ra, rb = m.perplexity(a), m.perplexity(b)
    both = m.perplexity([a, "", b, "x"])
    # "" has no token; "x" has one: nothing to predict
    assert both.skipped == 2 and both.texts == 2
    assert both.tokens == ra.tokens + rb.tokens
    assert both.nll == pytest.approx((ra.nll * ra.tokens + rb.nll * rb.tokens) / both.tokens, rel=1e-9)
    assert both.text_perplexities == pytest.approx([ra.perplexity, rb.perplexity])


def test_bad_input_is_a_clear_error():
    m = load(os.path.join(FIX, "tiny-llama"))
    text = REF["text"]
    with pytest.raises(ValueError, match="stride 32 is larger than max_length 16"):
        m.perplexity(text, max_length=16, stride=32)
    with pytest.raises(ValueError, match="longer than the model's context of 64"):
        m.perplexity(text, max_length=65)
    with pytest.raises(ValueError, match="at least 2"):
        m.perplexity(text, max_length=1)
    with pytest.raises(ValueError, match="positive"):
        m.perplexity(text, stride=0)
    with pytest.raises(ValueError, match="no text has two tokens"):
        m.perplexity(["", "a"])
    with pytest.raises(TypeError):
        m.perplexity([1.5, 2.5])
    with pytest.raises(TypeError):
        m.perplexity([])
    with pytest.raises(ValueError, match="out of range"):
        m.perplexity([[1, 2, 10**6]])
    with pytest.raises(TypeError):
        m.perplexity(text, stride="8")
    enc = load(os.path.join(FIX, "tiny-bert-mlm"))
    with pytest.raises(cw.UnsupportedError, match="perplexity is for decoders"):
        enc.perplexity("the cat sat on the mat")
    t5 = load(os.path.join(FIX, "tiny-t5-gated"))
    with pytest.raises(cw.UnsupportedError, match="encoder-decoder"):
        t5.perplexity("the cat sat on the mat")


def test_cli(tmp_path):
    f = tmp_path / "text.txt"
    f.write_text(REF["text"], encoding="utf-8")
    name = "tiny-llama"
    out = subprocess.run([sys.executable, "-m", "candlewick", "perplexity", os.path.join(FIX, name), str(f), "--max-length", "16",
                          "--stride", "8"], capture_output=True, text=True, check=True).stdout
    want = next(w for w in REF["models"][name]["windows"] if (w["max_length"], w["stride"]) == (16, 8))
    assert out.startswith("perplexity ") and float(out.split()[1]) == pytest.approx(want["perplexity"], rel=1e-5), out
    assert f"{want['tokens']} tokens" in out
    bad = subprocess.run([sys.executable, "-m", "candlewick", "perplexity", os.path.join(FIX, name), str(f), "--stride", "100",
                          "--max-length", "16"], capture_output=True, text=True)
    assert bad.returncode != 0 and "larger than max_length" in bad.stderr and "Traceback" not in bad.stderr
