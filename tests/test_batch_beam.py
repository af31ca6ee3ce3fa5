"""Batched generation (rows equal their single-prompt results) and beam search (HF semantics)."""

import os

import numpy as np
import pytest

import candlewick as cw


def load(*args, **kwargs):
    """cw.load with an f32 KV cache: the fixtures are llama.cpp's (and transformers') logits with
    f32 keys and values (type_k=0), and these tests pin them; the f16 default is tested in
    test_kv_cache.py."""
    return cw.load(*args, kv_cache_dtype="float32", **kwargs)

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea, there lived",
    "1, 2, 3, 4,",
]


def test_greedy_batch_rows_equal_single_runs(smollm2):
    batch = smollm2.generate(PROMPTS, max_new_tokens=12, stop=["\n\n"])
    assert len(batch) == len(PROMPTS)
    for p, b in zip(PROMPTS, batch):
        one = smollm2.generate(p, max_new_tokens=12, stop=["\n\n"])
        assert (b.token_ids, b.text, b.finish_reason) == (one.token_ids, one.text, one.finish_reason)


def test_batch_rows_finish_at_different_times(smollm2):
    chat = smollm2.tokenizer.apply_chat_template([{"role": "user", "content": "Say only: yes"}])
    prompts = [chat, "Count: 1, 2, 3,"]
    batch = smollm2.generate(prompts, max_new_tokens=24)
    assert batch[0].finish_reason == "eos" and batch[1].finish_reason == "length"
    for p, b in zip(prompts, batch):
        assert b.token_ids == smollm2.generate(p, max_new_tokens=24).token_ids


def test_sampled_row_does_not_depend_on_its_batch(smollm2):
    cfg = cw.GenerationConfig(max_new_tokens=10, do_sample=True, temperature=0.9, top_p=0.95, seed=11)
    alone = smollm2.generate(PROMPTS[2], cfg)
    in_batch = smollm2.generate([PROMPTS[0], PROMPTS[2], PROMPTS[1]], cfg)[1]
    assert in_batch.token_ids == alone.token_ids
    several = smollm2.generate([PROMPTS[2]], cfg, num_return_sequences=3)[0]
    assert several[0].token_ids == alone.token_ids
    assert len({tuple(o.token_ids) for o in several}) > 1  # seeds seed, seed+1, seed+2


def _log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def reference_beam_search(model, prompt_ids, num_beams, max_new, length_penalty, eos):
    """HF beam search (early_stopping=False) written out plainly over full-sequence logits."""
    running = [([], 0.0)]
    finished = []
    for step in range(max_new):
        cands = []
        for bi, (toks, s) in enumerate(running):
            lp = _log_softmax(model.logits(prompt_ids + toks)[-1])
            for t in np.argsort(-lp, kind="stable")[: 2 * num_beams]:
                cands.append((s + lp[t], bi, int(t)))
        cands.sort(key=lambda c: (-c[0], c[1], c[2]))
        cands = cands[: 2 * num_beams]
        nxt = []
        last = step + 1 == max_new
        for rank, (s, bi, t) in enumerate(cands):
            toks = running[bi][0]
            if t in eos or last:
                if rank < num_beams:
                    finished.append((toks + ([] if t in eos else [t]), s / (step + 1) ** length_penalty))
            elif len(nxt) < num_beams:
                nxt.append((toks + [t], s))
        finished = sorted(finished, key=lambda h: -h[1])[:num_beams]
        if last:
            break
        if len(finished) == num_beams and finished[-1][1] >= nxt[0][1] / (step + 1) ** length_penalty:
            break
        running = nxt
    return finished


@pytest.mark.parametrize("length_penalty", [1.0, 0.0])
def test_beam_search_matches_reference(smollm2, length_penalty):
    prompt = "The best way to learn a language is"
    ids = smollm2.tokenizer.encode(prompt)
    eos = set(smollm2.tokenizer.eog_token_ids)
    ref = reference_beam_search(smollm2, ids, 3, 6, length_penalty, eos)
    outs = smollm2.generate(prompt, max_new_tokens=6, num_beams=3, num_return_sequences=3, length_penalty=length_penalty)
    assert [o.token_ids for o in outs] == [toks for toks, _ in ref]
    for o, (_, score) in zip(outs, ref):
        assert abs(o.score - score) < 2e-3
        # the score is the sequence's log-likelihood under the model, normalised by length
        lp = _log_softmax_rows(smollm2.logits(ids + o.token_ids))
        total = sum(lp[len(ids) - 1 + j, t] for j, t in enumerate(o.token_ids))
        assert abs(o.score - total / len(o.token_ids) ** length_penalty) < 2e-3


def _log_softmax_rows(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def test_beam_search_finds_likelier_sequences_than_greedy(smollm2):
    prompt = "Question: What is the largest planet in the solar system?\nAnswer:"
    ids = smollm2.tokenizer.encode(prompt)
    greedy = smollm2.generate(prompt, max_new_tokens=8, ignore_eos=True)
    beam = smollm2.generate(prompt, max_new_tokens=8, num_beams=4, ignore_eos=True, length_penalty=0.0)
    lp = lambda toks: sum(  # noqa: E731
        _log_softmax_rows(smollm2.logits(ids + toks))[len(ids) - 1 + j, t] for j, t in enumerate(toks)
    )
    assert len(beam.token_ids) == 8
    assert lp(beam.token_ids) >= lp(greedy.token_ids) - 1e-4


def test_beam_search_errors(smollm2):
    with pytest.raises(ValueError, match="num_beams"):
        list(smollm2.stream("x", num_beams=2))
    with pytest.raises(ValueError, match="beam search"):
        smollm2.generate("x", num_beams=2, prompt_logprobs=True)


def test_beam_search_stop_strings_and_logprobs(smollm2):
    prompt = "List three colors:\n1."
    plain = smollm2.generate(prompt, num_beams=3, max_new_tokens=16)
    assert "\n" in plain.text  # the best beam writes a new line: a stop string can end it
    out = smollm2.generate(prompt, num_beams=3, max_new_tokens=16, stop=["\n"], logprobs=2)
    assert out.finish_reason == "stop" and "\n" not in out.text
    assert out.text == plain.text[: len(out.text)] or out.score >= plain.score - 1e-6
    # the hypothesis' score is its summed processed log-probs over its length (length_penalty 1);
    # without processors those are the raw log-probs reported per token
    lps = [t.logprob for t in out.logprobs]
    assert len(lps) == len(out.token_ids)
    assert abs(sum(lps) / len(lps) - out.score) < 1e-4
    assert all(len(t.top) == 2 and t.top[0][1] >= t.top[1][1] for t in out.logprobs)


def _beam_ref(path, key):
    return np.load(os.path.join(os.path.dirname(__file__), "fixtures", path))[key]


@pytest.mark.parametrize("fixture, ref, key", [
    ("tiny-llama", "tiny_decoders_reference.npz", "tiny_llama"),
    ("tiny-gpt2", "tiny_decoders_reference.npz", "tiny_gpt2"),
    ("tiny-t5-gated", "tiny_t5_reference.npz", "tiny_t5_gated"),
    ("tiny-t5-relu", "tiny_t5_reference.npz", "tiny_t5_relu"),
])
def test_beam_search_matches_transformers(fixture, ref, key):
    """HF generate(num_beams=3, num_return_sequences=2, length_penalty 1.0 / 0.5) on tiny random
    decoders and encoder-decoders (seq2seq beam search encodes once, one decoder state per beam)."""
    m = load(os.path.join(os.path.dirname(__file__), "fixtures", fixture))
    want = _beam_ref(ref, f"{key}_beams")
    prompts = [str(p) for p in _beam_ref(ref, "prompts")]
    for i, prompt in enumerate(prompts):
        for j, lp in enumerate((1.0, 0.5)):
            outs = m.generate(prompt, max_new_tokens=8, num_beams=3, num_return_sequences=2, length_penalty=lp)
            got = [o.token_ids for o in outs]
            exp = [[int(t) for t in row if t >= 0] for row in want[i, j]]
            assert got == exp, (prompt, lp)
