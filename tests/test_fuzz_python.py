"""Property-based fuzzing of the Python entry points (hypothesis), in a subprocess under a
watchdog (timeout + address-space limit): arbitrary argument values of every type must give a
result or an Exception (ValueError, TypeError, a candlewick error, ...), never a PanicException,
an abort, a hang or runaway memory. CI runs a bounded number of examples
(CANDLEWICK_FUZZ_EXAMPLES, default 60 per entry point); `make fuzz-python` runs more."""

import os

import pytest

import hostile

pytest.importorskip("hypothesis")

HARNESS = r'''
import math, numpy as np
from hypothesis import given, settings, strategies as st, HealthCheck

N = int(os.environ.get("CANDLEWICK_FUZZ_EXAMPLES", "60"))
cfg = settings(max_examples=N, deadline=None, derandomize=True, database=None,
               suppress_health_check=list(HealthCheck))
m = cw.load(TINY)
tok = m.tokenizer

scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.integers(-3, 400),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
value = st.one_of(scalar, st.lists(scalar, max_size=4), st.dictionaries(st.integers(-3, 400), scalar, max_size=3))

def ok(fn):
    try:
        fn()
    except Exception:
        pass  # clean refusals are fine; BaseExceptions (PanicException) propagate and fail

GEN_KEYS = ["max_new_tokens", "min_new_tokens", "do_sample", "temperature", "top_k", "top_p", "min_p",
            "typical_p", "repetition_penalty", "presence_penalty", "frequency_penalty",
            "no_repeat_ngram_size", "logit_bias", "stop", "stop_token_ids", "ignore_eos", "seed",
            "num_return_sequences", "num_beams", "length_penalty", "logprobs", "prompt_logprobs"]

@cfg
@given(st.dictionaries(st.sampled_from(GEN_KEYS), value, max_size=5), st.one_of(st.text(max_size=30), st.lists(st.integers(-2, 330), max_size=6)))
def generate(kw, prompt):
    kw.setdefault("max_new_tokens", 3)
    if isinstance(kw.get("max_new_tokens"), int) and kw["max_new_tokens"] > 8:
        kw["max_new_tokens"] = 8
    ok(lambda: m.generate(prompt, **kw))
    ok(lambda: cw.GenerationConfig(**kw))

@cfg
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=40),
       st.dictionaries(st.sampled_from(["temperature", "top_k", "top_p", "min_p", "typical_p", "seed", "num_samples"]), value, max_size=4))
def sample(logits, kw):
    if isinstance(kw.get("num_samples"), int) and kw["num_samples"] > 1000:
        kw["num_samples"] = 1000
    ok(lambda: cw.sample(np.array(logits, dtype=np.float32), **kw))

MC_KEYS = ["vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
           "intermediate_size", "max_position_embeddings", "norm_eps", "rope_theta", "activation",
           "tie_word_embeddings", "sliding_window", "position", "architecture", "cell"]

@cfg
@given(st.sampled_from(["llama", "gpt2", "bert", "t5", "rnn"]), st.dictionaries(st.sampled_from(MC_KEYS), value, max_size=3))
def model_config(family, kw):
    def build():
        c = cw.ModelConfig.for_family(family, **kw)
        cw.estimate_memory(c)
        if c.vocab_size * c.hidden_size * c.num_layers < 10**6:
            cw.Model.from_config(c, seed=0)
    ok(build)

@cfg
@given(st.text(max_size=200), st.lists(st.integers(-2**40, 2**40), max_size=10), st.booleans())
def tokenizer(text, ids, special):
    ok(lambda: tok.encode(text, add_special_tokens=special))
    ok(lambda: tok.decode(ids, skip_special_tokens=special))
    ok(lambda: m.logits([ids]))
    ok(lambda: m.perplexity(text))
    ok(lambda: m.score(text, [text[:5] or "x"]))
    ok(lambda: tok.apply_chat_template([{"role": text[:5], "content": text}]))
    ok(lambda: tok.apply_chat_template([{"role": ids, "content": special}]))

for f in (generate, sample, model_config, tokenizer):
    f()
    print("done", f.__name__)
print("ALL OK")
'''


def test_python_entry_points_fuzzed():
    here = os.path.dirname(os.path.abspath(__file__))
    tiny = os.path.join(here, "fixtures", "tiny-llama")
    out = hostile.check(f"TINY = {tiny!r}\n" + HARNESS, timeout=900, mem_gib=6)
    assert "ALL OK" in out, out
