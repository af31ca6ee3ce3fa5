"""Generation controls beyond the basics: each one checked against its definition."""

import json

import numpy as np
import pytest

import candlewick as cw


def log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def test_generation_config_reuse_and_overrides(smollm2):
    cfg = cw.GenerationConfig(max_new_tokens=6, do_sample=True, temperature=0.8, top_k=20, seed=3)
    a = smollm2.generate("Once upon a time", cfg)
    b = smollm2.generate("Once upon a time", generation_config=cfg)
    assert a.token_ids == b.token_ids and len(a.token_ids) == 6
    c = smollm2.generate("Once upon a time", cfg, max_new_tokens=3)
    assert c.token_ids == a.token_ids[:3]
    with pytest.raises(TypeError, match="unknown generation parameter"):
        smollm2.generate("x", max_tokens=3)
    with pytest.raises(ValueError, match="num_return_sequences"):
        smollm2.generate("x", num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match="beam sampling"):
        smollm2.generate("x", num_beams=2, do_sample=True)


def test_generation_config_from_hf_file(tmp_path):
    p = tmp_path / "generation_config.json"
    p.write_text(json.dumps({"do_sample": True, "temperature": 0.6, "top_p": 0.9, "eos_token_id": [2, 7],
                             "transformers_version": "4.44", "max_length": 2048}))
    cfg = cw.GenerationConfig.from_file(tmp_path)
    assert cfg.do_sample and cfg.temperature == 0.6 and cfg.top_p == 0.9 and cfg.stop_token_ids == [2, 7]
    p.write_text(json.dumps({"top_p": 2.0}))
    with pytest.raises(ValueError, match="top_p"):
        cw.GenerationConfig.from_file(p).native_params()


def test_min_new_tokens_suppresses_eos(smollm2):
    msgs = [{"role": "user", "content": "Say only the word: yes"}]
    short = smollm2.chat(msgs, max_new_tokens=64)
    assert short.finish_reason == "eos" and len(short.token_ids) < 20
    long = smollm2.chat(msgs, max_new_tokens=64, min_new_tokens=20)
    assert len(long.token_ids) >= 20


def test_stop_token_ids(smollm2):
    full = smollm2.generate("List three colors:\n1.", max_new_tokens=16)
    stop_id = full.token_ids[3]
    out = smollm2.generate("List three colors:\n1.", max_new_tokens=16, stop_token_ids=[stop_id])
    assert out.finish_reason == "stop"
    assert out.token_ids == full.token_ids[: full.token_ids.index(stop_id)]


def test_logprobs_are_the_models_distribution(smollm2):
    prompt = "The capital of France is"
    out = smollm2.generate(prompt, max_new_tokens=4, logprobs=3, prompt_logprobs=True)
    ids = smollm2.tokenizer.encode(prompt) + out.token_ids
    logits = smollm2.logits(ids)
    n = len(ids) - len(out.token_ids)
    assert len(out.logprobs) == 4
    for j, tl in enumerate(out.logprobs):
        ls = log_softmax(logits[n - 1 + j])
        assert tl.token_id == out.token_ids[j]
        assert abs(tl.logprob - ls[tl.token_id]) < 1e-4
        assert [t for t, _ in tl.top] == list(np.argsort(-ls, kind="stable")[:3])
        assert tl.top[0][0] == tl.token_id  # greedy picks the top token
    assert out.prompt_logprobs[0] is None and len(out.prompt_logprobs) == n
    for i in range(1, n):
        assert abs(out.prompt_logprobs[i] - log_softmax(logits[i - 1])[ids[i]]) < 1e-4


def test_no_repeat_ngram(smollm2):
    out = smollm2.generate("go go go go go go", max_new_tokens=20, no_repeat_ngram_size=2, ignore_eos=True)
    seq = smollm2.tokenizer.encode("go go go go go go") + out.token_ids
    grams = [tuple(seq[i : i + 2]) for i in range(len(seq) - 1)]
    new = grams[len(seq) - len(out.token_ids) - 1 :]
    assert all(grams.count(g) == 1 for g in new)


def test_logit_bias_forces_and_bans(smollm2):
    t = smollm2.tokenizer.encode(" banana")[0]
    out = smollm2.generate("The capital of France is", max_new_tokens=3, logit_bias={t: 100.0})
    assert out.token_ids == [t] * 3
    paris = smollm2.generate("The capital of France is", max_new_tokens=1).token_ids[0]
    out = smollm2.generate("The capital of France is", max_new_tokens=1, logit_bias={paris: float("-inf")})
    assert out.token_ids[0] != paris
    with pytest.raises(ValueError, match="outside the vocabulary"):
        smollm2.generate("x", max_new_tokens=1, logit_bias={10**7: 1.0})


def test_presence_and_frequency_penalties(smollm2):
    prompt = "Repeat after me: la la la la la la la la"
    base = smollm2.generate(prompt, max_new_tokens=12, ignore_eos=True)
    pen = smollm2.generate(prompt, max_new_tokens=12, ignore_eos=True, presence_penalty=1.5, frequency_penalty=1.0)
    count = lambda ids: max(ids.count(t) for t in set(ids))  # noqa: E731
    assert count(pen.token_ids) < count(base.token_ids)


def test_num_return_sequences(smollm2):
    outs = smollm2.generate("My favourite animal is", max_new_tokens=6, do_sample=True, seed=1, num_return_sequences=3)
    assert len(outs) == 3 and len({tuple(o.token_ids) for o in outs}) > 1
    again = smollm2.generate("My favourite animal is", max_new_tokens=6, do_sample=True, seed=1, num_return_sequences=3)
    assert [o.token_ids for o in outs] == [o.token_ids for o in again]


def test_row_does_not_depend_on_batch(smollm2):
    prompts = ["One", "Two two", "The capital of France is"]
    batch = smollm2.generate(prompts, max_new_tokens=5)
    assert [o.token_ids for o in batch] == [smollm2.generate(p, max_new_tokens=5).token_ids for p in prompts]


def test_score_is_consistent_with_generation(smollm2):
    ctx = "The capital of France is"
    paris, london = smollm2.score(ctx, [" Paris", " London"])
    assert paris.logprob > london.logprob
    assert paris.is_greedy and not london.is_greedy
    # the same number as generate's log-probs for that continuation
    out = smollm2.generate(ctx, max_new_tokens=1, logprobs=0)
    assert smollm2.tokenizer.decode(out.token_ids) == " Paris"
    assert abs(out.logprobs[0].logprob - paris.logprob) < 1e-3
    # trailing space of the context moves to the continuation (lm-eval)
    (moved,) = smollm2.score(ctx + " ", "Paris")
    assert abs(moved.logprob - paris.logprob) < 1e-6
    with pytest.raises(ValueError):
        smollm2.score(ctx, [])


def test_prompts_plain_and_chat(smollm2):
    ex = [("I loved it", "positive"), ("Awful.", "negative")]
    z = cw.prompts.zero_shot("Classify the sentiment.", "Great day")
    assert z == "Classify the sentiment.\n\nInput: Great day\nOutput:"
    f = cw.prompts.few_shot("Classify the sentiment.", ex, "Great day")
    assert f.count("Output:") == 3 and f.endswith("Input: Great day\nOutput:")
    o = cw.prompts.one_shot(None, ex[0], "Great day")
    assert o.startswith("Input: I loved it\nOutput: positive")
    c = cw.prompts.few_shot("Classify.", ex, "Great day", tokenizer=smollm2.tokenizer)
    assert c.count("<|im_start|>assistant") == 3 and c.endswith("<|im_start|>assistant\n")
    with pytest.raises(TypeError):
        cw.prompts.few_shot("x", [("only input",)], "q")
