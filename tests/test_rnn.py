"""The recurrent LM: logits, loss and gradients equal torch's nn.LSTM / nn.GRU model
(fixtures/make_rnn_fixtures.py), built from a config, trained with cw.train, saved and loaded,
and generating through the one Generator with its state as the request's state."""

import os

import numpy as np
import pytest

import candlewick as cw

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")
REF = np.load(os.path.join(FIX, "rnn_reference.npz"))
TEXT = ["the cat sat on the mat", "the dog ate the bone", "a bird can fly over the house",
        "the sun is hot and the moon is cold", "she reads a book every night"] * 4


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_logits_loss_and_gradients_equal_torch(cell):
    m = cw.load(os.path.join(FIX, f"tiny-rnn-{cell}"))
    assert m.config.architecture == "rnn" and m.config.cell == cell and m.config.family == "rnn"
    ids, labels = REF["input_ids"], REF["labels"]
    want = REF[f"{cell}/logits"]
    got = np.stack([m.logits(row) for row in ids])
    assert np.abs(got - want).max() <= 1e-5
    loss, grads = m.gradients(ids, labels)
    assert loss == pytest.approx(float(REF[f"{cell}/loss"]), abs=1e-5)
    prefix = f"{cell}/grad/"
    names = [k[len(prefix):] for k in REF.files if k.startswith(prefix)]
    assert sorted(names) == sorted(grads)
    for n in names:
        assert np.abs(grads[n] - REF[prefix + n]).max() <= 1e-5, n


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_generation_runs_the_state_through_the_one_generator(cell):
    m = cw.load(os.path.join(FIX, f"tiny-rnn-{cell}"))
    prompt = "the cat sat"
    ids = m.tokenizer.encode(prompt)
    out = m.generate(prompt, max_new_tokens=10, ignore_eos=True)
    assert len(out.token_ids) == 10 and out.finish_reason == "length"
    # each greedy token is the argmax of the whole sequence's logits at its position
    full = m.logits(ids + out.token_ids)
    assert [int(np.argmax(full[len(ids) - 1 + i])) for i in range(10)] == out.token_ids
    assert "".join(m.stream(prompt, max_new_tokens=10, ignore_eos=True)) == out.text
    # sampling: seeded, every control
    kw = dict(max_new_tokens=8, do_sample=True, temperature=0.8, top_k=20, top_p=0.9, min_p=0.01, repetition_penalty=1.1,
              ignore_eos=True)
    a, b = m.generate(prompt, seed=3, **kw), m.generate(prompt, seed=3, **kw)
    assert a.token_ids == b.token_ids
    assert any(m.generate(prompt, seed=s, **kw).token_ids != a.token_ids for s in range(4, 10))
    # a batch, beams and stop strings go through the same path
    batch = m.generate([prompt, "a bird"], max_new_tokens=6, ignore_eos=True)
    assert batch[0].token_ids == out.token_ids[:6]
    beams = m.generate(prompt, max_new_tokens=5, num_beams=3, ignore_eos=True)
    assert len(beams.token_ids) == 5
    stop = out.text[3:6]
    if stop.strip():
        s = m.generate(prompt, max_new_tokens=10, stop=[stop], ignore_eos=True)
        assert s.finish_reason == "stop" and stop not in s.text


def test_config_builds_trains_saves_and_loads(tmp_path):
    tok = cw.load(os.path.join(FIX, "tiny-llama")).tokenizer
    cfg = cw.ModelConfig(architecture="rnn", cell="gru", vocab_size=tok.vocab_size, hidden_size=32, num_layers=2,
                         tie_word_embeddings=True)
    assert cfg.family == "rnn" and cfg.num_parameters == tok.vocab_size * 32 + 2 * (2 * 3 * 32 * 32 + 2 * 3 * 32)
    m = cw.Model.from_config(cfg, seed=0, tokenizer=tok)
    r = cw.train(m, TEXT, "clm", steps=30, batch_size=4, seq_len=12, lr=1e-2, seed=0, progress=False, eval_data=TEXT[:5])
    assert r.losses[-1] < 0.7 * r.losses[0]
    assert r.eval_perplexity == pytest.approx(np.exp(r.evals[-1]["loss"]))
    # the perplexity of the training text fell with the loss
    assert m.perplexity(TEXT[:5]).perplexity < 0.5 * cw.Model.from_config(cfg, seed=0, tokenizer=tok).perplexity(TEXT[:5]).perplexity
    out = m.generate("the cat", max_new_tokens=6)
    m.save(tmp_path / "rnn")
    again = cw.load(tmp_path / "rnn")
    assert again.config == m.config
    assert again.generate("the cat", max_new_tokens=6).token_ids == out.token_ids
    np.testing.assert_array_equal(again.logits([5, 6, 7]), m.logits([5, 6, 7]))
    with pytest.raises(ValueError, match="objective"):
        cw.train(m, TEXT, "mlm", steps=1, batch_size=2, seq_len=8, progress=False)


def test_bad_configs_and_what_an_rnn_does_not_do():
    with pytest.raises(ValueError, match="cell must be one of lstm, gru"):
        cw.ModelConfig(architecture="rnn", cell="transformer")
    # a family and an architecture that disagree are refused when the model is built
    for family, arch in (("rnn", "decoder"), ("llama", "rnn")):
        with pytest.raises(ValueError, match="architecture"):
            cw.Model.from_config(cw.ModelConfig(family=family, architecture=arch))
    with pytest.raises(ValueError, match="hidden_size"):
        cw.ModelConfig(architecture="rnn", hidden_size=0)
    m = cw.load(os.path.join(FIX, "tiny-rnn-lstm"))
    ids = np.array([[5, 6, 7, 8], [5, 6, 7, 8]])
    right = np.array([[1, 1, 1, 1], [1, 1, 1, 0]])
    assert np.isfinite(m.loss(ids, ids, attention_mask=right))
    with pytest.raises(ValueError, match="right-padded"):
        m.loss(ids, ids, attention_mask=right[:, ::-1].copy())
    with pytest.raises(cw.UnsupportedError, match="recurrent"):
        m.forward([1, 2, 3], output_hidden_states=True)
    with pytest.raises(cw.UnsupportedError):
        m.embed("the cat")
    est = cw.estimate_memory(m.config, seq_len=64)
    assert est.breakdown["kv_cache"] == 2 * 2 * 24 * 4  # (h, c) x layers x hidden x f32, at any length
