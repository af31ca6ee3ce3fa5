"""Generation: parity with llama.cpp, controls, streaming, seeds."""

import numpy as np
import pytest

import candlewick as cw

# Measured against llama.cpp (f32 KV cache) on the 8 fixture prompts, SmolLM2-135M Q4_1: the
# first-step logits are bit-identical (max |difference| 0.0 over the reference's top-40), so the
# top-5 order and all 32-token greedy continuations are identical too. Every step follows ggml's
# order of operations (quantized matmuls, RMSNorm, RoPE, attention, softmax, SwiGLU); the small
# tolerance only leaves room for a different CPU (ggml's own paths differ between AVX2 and AVX-512).
LOGITS_ATOL = 1e-3


def test_first_step_logits_match_llamacpp(smollm2, llamacpp_ref):
    for g in llamacpp_ref["generations"]:
        ids = smollm2.tokenizer.encode(g["prompt"])
        assert ids == g["prompt_ids"]
        logits = smollm2.logits(ids)
        assert logits.shape == (len(ids), smollm2.config.vocab_size) and logits.dtype == np.float32
        last = logits[-1]
        top5 = [int(i) for i in np.argsort(-last, kind="stable")[:5]]
        assert top5 == g["top_ids"][:5], g["prompt"]
        np.testing.assert_allclose(last[g["top_ids"]], np.array(g["top_logits"]), rtol=0, atol=LOGITS_ATOL)


def test_logits_to_keep(smollm2):
    ids = smollm2.tokenizer.encode("The quick brown fox jumps over the lazy dog")
    full = smollm2.logits(ids)
    last = smollm2.logits(ids, logits_to_keep=1)
    assert last.shape == (1, full.shape[1]) and np.array_equal(last[0], full[-1])
    assert np.array_equal(smollm2.logits(ids, logits_to_keep=3), full[-3:])
    with pytest.raises(ValueError, match="logits_to_keep"):
        smollm2.logits(ids, logits_to_keep=-1)


def test_greedy_matches_llamacpp(smollm2, llamacpp_ref):
    gens = llamacpp_ref["generations"]
    assert len(gens) >= 8
    same = 0
    for g in gens:
        out = smollm2.generate(g["prompt_ids"], max_new_tokens=32, ignore_eos=True)
        assert len(out.token_ids) == 32
        same += out.token_ids == g["greedy_ids"]
    assert same == len(gens), f"identical greedy continuations on {same} of {len(gens)} prompts"


def test_generate_text_and_finish(smollm2):
    out = smollm2.generate("The capital of France is", max_new_tokens=5)
    assert isinstance(out, cw.GenerationOutput)
    assert out.finish_reason == "length" and len(out.token_ids) == 5
    assert out.text == smollm2.tokenizer.decode(out.token_ids)
    assert out.prompt_tokens == len(smollm2.tokenizer.encode("The capital of France is"))


def test_stops_at_eos_in_chat(smollm2):
    out = smollm2.chat([{"role": "user", "content": "Say only the word: yes"}], max_new_tokens=64)
    assert out.finish_reason == "eos"
    assert all(t not in smollm2.tokenizer.eog_token_ids for t in out.token_ids)
    assert "<|im_end|>" not in out.text


def test_zero_new_tokens(smollm2):
    out = smollm2.generate("Hello", max_new_tokens=0)
    assert out.token_ids == [] and out.text == "" and out.finish_reason == "length"


def test_batch_of_prompts(smollm2):
    outs = smollm2.generate(["One", "Two two"], max_new_tokens=4)
    assert [o.token_ids for o in outs] == [smollm2.generate(p, max_new_tokens=4).token_ids for p in ["One", "Two two"]]


def test_stream_equals_generate(smollm2):
    prompt = "Write a haiku about the sea:"
    pieces = list(smollm2.stream(prompt, max_new_tokens=24))
    assert len(pieces) > 1
    assert "".join(pieces) == smollm2.generate(prompt, max_new_tokens=24).text


def test_stream_can_stop_early(smollm2):
    s = smollm2.stream("Count: 1, 2, 3,", max_new_tokens=200)
    first = next(iter(s))
    assert isinstance(first, str)
    s.close()
    assert list(s) == []
    assert len(s.token_ids) >= 1 and s.finish_reason is None


def test_stop_string(smollm2):
    full = smollm2.generate("List three colors:\n1.", max_new_tokens=24).text
    assert "\n" in full
    cut = full.index("\n")
    out = smollm2.generate("List three colors:\n1.", max_new_tokens=24, stop="\n")
    assert out.finish_reason == "stop" and out.text == full[:cut]
    streamed = "".join(smollm2.stream("List three colors:\n1.", max_new_tokens=24, stop=["\n"]))
    assert streamed == full[:cut]


def test_seeded_sampling_is_reproducible(smollm2):
    kw = dict(max_new_tokens=12, do_sample=True, temperature=0.9, top_k=40, top_p=0.95)
    a = smollm2.generate("Once upon a time", seed=7, **kw)
    b = smollm2.generate("Once upon a time", seed=7, **kw)
    assert a.token_ids == b.token_ids
    d = [smollm2.generate("Once upon a time", seed=s, **kw).token_ids for s in range(4)]
    assert len({tuple(x) for x in d}) > 1, "sampling with different seeds should vary"


def test_top_k_1_is_greedy(smollm2):
    g = smollm2.generate("The sky is", max_new_tokens=8)
    s = smollm2.generate("The sky is", max_new_tokens=8, do_sample=True, top_k=1, temperature=1.3, seed=3)
    assert g.token_ids == s.token_ids


def test_repetition_penalty_changes_output(smollm2):
    a = smollm2.generate("go go go go go go", max_new_tokens=8)
    b = smollm2.generate("go go go go go go", max_new_tokens=8, repetition_penalty=1.5)
    assert a.token_ids != b.token_ids


def test_logits_batch_and_mask(smollm2):
    ids = smollm2.tokenizer.encode("Hello there, friend")
    single = smollm2.logits(ids)
    batch = smollm2.logits([ids, ids])
    assert batch.shape == (2,) + single.shape
    np.testing.assert_array_equal(batch[0], single)
    pad = smollm2.tokenizer.eos_token_id
    masked = smollm2.logits([ids + [pad, pad]], attention_mask=[[1] * len(ids) + [0, 0]])
    np.testing.assert_allclose(masked[0, : len(ids)], single, atol=1e-4)
    assert not masked[0, len(ids):].any()
    with pytest.raises(ValueError, match="decoder_input_ids"):
        smollm2.logits(ids, decoder_input_ids=[1])
