"""Gemma 3 270M (GGUF Q4_K_M, SentencePiece vocabulary) against llama.cpp: token ids and
detokenization of the tokenizer corpus, and greedy continuations. Reference outputs:
tests/fixtures/make_llamacpp_fixtures.py --gemma."""

import json
import os

import numpy as np

import pytest

import candlewick as cw


def load(*args, **kwargs):
    """cw.load with an f32 KV cache: the fixtures are llama.cpp's (and transformers') logits with
    f32 keys and values (type_k=0), and these tests pin them; the f16 default is tested in
    test_kv_cache.py."""
    return cw.load(*args, kv_cache_dtype="float32", **kwargs)

REF = json.load(open(os.path.join(os.path.dirname(__file__), "fixtures", "gemma3_llamacpp.json"), encoding="utf-8"))


@pytest.fixture(scope="module")
def gemma():
    return load("gemma3-270m")


def test_sentencepiece_vocabulary_matches_llamacpp(gemma):
    tok = gemma.tokenizer
    bad = [r["text"] for r in REF["tokenize"] if tok.encode(r["text"], add_special_tokens=False) != r["ids"]]
    assert not bad, bad
    assert all(tok.decode(r["ids"]) == r["decoded"] for r in REF["tokenize"])
    assert tok.encode("Hello")[0] == tok.bos_token_id == 2  # add_bos_token


def test_logits_and_greedy_tokens_are_llamacpps(gemma):
    """Gemma 3 amplifies every rounding difference (residual stream in the tens of thousands,
    activations quantized to 8 bits before every matmul), so parity needs every op to round as
    llama.cpp's do: the quantized matmuls (Q5_0, Q8_0, Q4_K repacked, Q6_K through ggml's vec_dot
    below 8 rows and its tiled kernel from 8 on, checked bit for bit by
    rust/candlewick/tests/ggml_kernels.rs), GEGLU through ggml's f16 table, RMSNorm, RoPE,
    attention and softmax in ggml's order, prompts over 512 tokens in llama.cpp's micro-batches.
    Measured: the prompt's logits (top 40) are bit-identical to llama.cpp's (f32 KV cache) on all
    9 prompts (6 to 980 tokens; the longest crosses the 512-token sliding window), and the 33
    greedy tokens are identical (issue 3 asks 24 tokens on 3 of 4 prompts)."""
    for g in REF["generations"]:
        ids = gemma.tokenizer.encode(g["prompt"])
        assert ids == g["prompt_ids"], g["prompt"]
        first = gemma.logits(ids, logits_to_keep=1)[-1]
        assert np.array_equal(first[g["top_ids"]], np.array(g["top_logits"], np.float32)), g["prompt"]
        out = gemma.generate(ids, max_new_tokens=33, ignore_eos=True).token_ids
        assert out == g["greedy_ids"] + g["last_top_ids"][:1], g["prompt"]


def test_gemma3_structure(gemma):
    c = gemma.config
    assert (c.family, c.num_layers, c.sliding_window, c.sliding_window_pattern) == ("gemma3", 18, 512, 6)
    assert (c.activation, c.num_kv_heads, c.head_dim) == ("gelu_tanh", 1, 256)
    assert c.num_parameters == gemma.info["num_parameters"]
    out = gemma.forward("The sky is", output_attentions=True)
    assert len(out.attentions) == 18


def test_forward_with_states_is_the_same_computation(gemma):
    """model.forward(output_hidden_states/attentions) runs the kernels logits and generate run:
    the same bits."""
    ids = gemma.tokenizer.encode("Once upon a time, in a land far away,")
    out = gemma.forward(ids, output_hidden_states=True, output_attentions=True)
    assert np.array_equal(out.logits, gemma.logits(ids))
    probs = out.attentions[0]
    assert probs.shape == (4, len(ids), len(ids))
    assert np.allclose(probs.sum(-1), 1, atol=1e-5) and np.all(np.triu(probs[0], 1) == 0)


def test_chat_format_without_a_template_in_the_file(gemma):
    """This GGUF carries no chat template: Gemma's turn format stands in (system text at the head
    of the first user turn), and the rendered BOS is not doubled when the prompt is encoded."""
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "A color?"}]
    text = gemma.tokenizer.apply_chat_template(msgs)
    assert text == ("<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
                    "<start_of_turn>user\nA color?<end_of_turn>\n<start_of_turn>model\n")
    ids = gemma.tokenizer.encode(text)
    assert ids[0] == 2 and ids[1] != 2
    with pytest.raises(ValueError, match="alternate"):
        gemma.tokenizer.apply_chat_template([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
