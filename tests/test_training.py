"""Training: losses, gradients and one AdamW step equal to transformers + torch
(fixtures/make_train_fixtures.py), cw.train end to end (loss falls, checkpoints, resume, Ctrl-C,
fine-tuning a folder), and bad input."""

import os
import sys

import numpy as np
import pytest

import candlewick as cw
from candlewick import _native

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")
REF = np.load(os.path.join(FIX, "train_reference.npz"))
MODELS = sorted({k[: -len("/loss")] for k in REF.files if k.endswith("/loss")})
OBJECTIVE = {"decoder": "clm", "encoder": "mlm", "encoder-decoder": "span_corruption"}


def ref(name, key):
    return REF[f"{name}/{key}"]


def ours(name, table, param):
    """transformers names GPT2Model checkpoints' parameters with the LM head's prefix."""
    if param in table:
        return table[param]
    return table[param.split(".", 1)[1]]


def batch(name):
    return ref(name, "input_ids"), ref(name, "labels"), ref(name, "attention_mask")


@pytest.mark.parametrize("name", MODELS)
def test_loss_and_gradients_equal_transformers(name):
    m = cw.load(os.path.join(FIX, name))
    ids, labels, mask = batch(name)
    want = float(ref(name, "loss"))
    assert m.loss(ids, labels, attention_mask=mask) == pytest.approx(want, abs=1e-5)
    loss, grads = m.gradients(ids, labels, attention_mask=mask)
    assert loss == pytest.approx(want, abs=1e-5)
    prefix = f"{name}/grad/"
    params = [k[len(prefix):] for k in REF.files if k.startswith(prefix)]
    assert len(params) == len(grads), "every parameter torch has, and no other"
    for p in params:
        g, w = ours(name, grads, p), REF[prefix + p]
        assert g.shape == w.shape, p
        # relative per parameter (a gradient that is zero in exact arithmetic, such as a key
        # bias's, is rounding noise on both sides)
        err = np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-6)
        assert err <= 1e-4, f"{p}: relative error {err:.2e}"


@pytest.mark.parametrize("name", MODELS)
def test_one_adamw_step_equals_torch(name):
    m = cw.load(os.path.join(FIX, name))
    ids, labels, mask = batch(name)
    r = cw.train(m, {"input_ids": ids, "labels": labels, "attention_mask": mask}, OBJECTIVE[str(m.config.architecture)],
                 steps=1, batch_size=ids.shape[0], seq_len=ids.shape[1], lr=1e-3, schedule="constant",
                 weight_decay=0.01, grad_clip=1.0, seed=0, progress=False)
    assert r.final_loss == pytest.approx(float(ref(name, "loss")), abs=1e-5)
    after = m.state_dict()
    prefix = f"{name}/after/"
    for k in REF.files:
        if not k.startswith(prefix):
            continue
        p = k[len(prefix):]
        got, want, g = ours(name, after, p), REF[k], REF[f"{name}/grad/{p}"]
        # Adam's first step moves every element by about lr whatever its gradient's size: where
        # the gradient is rounding noise (|g| < 1e-6) its sign is noise too
        sel = np.abs(g) >= 1e-6
        assert np.abs(got - want)[sel].max(initial=0) <= 1e-5, p


def test_forward_with_labels_gives_the_loss():
    name = "tiny-llama"
    m = cw.load(os.path.join(FIX, name))
    ids = ref(name, "input_ids")[0]
    out = m.forward(ids.tolist(), labels=ids.tolist())
    assert out.loss == pytest.approx(m.loss(ids[None], ids[None]))
    assert out.logits.shape == (len(ids), m.config.vocab_size)


TEXT = ["the cat sat on the mat and the dog sat on the log"] * 40


def small(family, **kw):
    tok = cw.Tokenizer.from_file(os.path.join(FIX, "tiny-gpt2" if family != "bert" else "tiny-bert-mlm", "tokenizer.json"))
    args = dict(vocab_size=len(tok), hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position_embeddings=64)
    args.update(kw)
    return cw.Model.from_config(cw.ModelConfig.for_family(family, **args), seed=1, tokenizer=tok)


def test_clm_training_lowers_the_loss_and_the_model_generates(tmp_path):
    m = small("llama")
    r = cw.train(m, TEXT, "clm", steps=25, batch_size=4, seq_len=16, lr=5e-3, seed=0, progress=False, eval_data=TEXT[:8])
    assert len(r.history) == 25 and r.losses[-1] < 0.5 * r.losses[0]
    assert r.evals and r.eval_perplexity == pytest.approx(np.exp(r.evals[-1]["loss"]))
    assert all(h["tokens_per_s"] > 0 and h["grad_norm"] > 0 for h in r.history)
    # cosine schedule: the lr falls to (nearly) zero
    assert r.history[0]["lr"] == pytest.approx(5e-3) and r.history[-1]["lr"] < 1e-4
    out = m.generate("the cat", max_new_tokens=6, do_sample=False)
    words = out.text.split()
    assert words and set(words) <= set(TEXT[0].split()), out.text
    m.save(tmp_path / "trained")
    again = cw.load(tmp_path / "trained")
    assert again.generate("the cat", max_new_tokens=6, do_sample=False).text == out.text


def test_mlm_and_span_corruption_train():
    bert = small("bert", mlm_head=True)
    r = cw.train(bert, TEXT, "mlm", steps=15, batch_size=4, seq_len=16, lr=5e-3, seed=0, progress=False)
    assert r.losses[-1] < r.losses[0]
    # the GPT-2 BPE tokenizer's <|endoftext|> ends the spans; its sentinels are the top ids
    t5 = small("t5")
    r = cw.train(t5, TEXT, "span_corruption", steps=15, batch_size=4, seq_len=12, lr=5e-3, seed=0, progress=False)
    assert r.losses[-1] < r.losses[0]
    r = cw.train(t5, {"input_ids": np.full((4, 12), 5), "labels": np.full((4, 4), 6)},
                 "span_corruption", steps=10, batch_size=4, seq_len=12, lr=5e-3, seed=0, progress=False)
    assert r.losses[-1] < r.losses[0]


def test_a_folder_fine_tunes_and_a_gguf_is_refused(smollm2_path):
    m = cw.load(os.path.join(FIX, "tiny-gpt2"))
    before = m.loss(*[np.array([m.tokenizer.encode(TEXT[0])])] * 2)
    cw.train(m, TEXT, steps=10, batch_size=2, seq_len=12, lr=3e-3, seed=0, progress=False)
    assert m.loss(*[np.array([m.tokenizer.encode(TEXT[0])])] * 2) < before
    g = cw.load(smollm2_path)
    with pytest.raises(cw.UnsupportedError, match="dtype=.float32"):
        cw.train(g, TEXT, steps=1, batch_size=1, seq_len=8, lr=1e-3, progress=False)


def test_a_gguf_trains_after_dequantization(smollm2_path):
    g = cw.load(smollm2_path, dtype="float32")
    ids = np.array([g.tokenizer.encode("The capital of France is Paris. " * 3)])
    # dequantized weights: the same model, to the rounding of float32 kernels vs quantized ones
    assert g.generate("The capital of France is", max_new_tokens=3, do_sample=False).text.strip().startswith("Paris")
    before = g.loss(ids, ids)
    r = cw.train(g, {"input_ids": ids, "labels": ids}, "clm", steps=2, batch_size=1, seq_len=ids.shape[1], lr=1e-4,
                 seed=0, progress=False)
    assert r.history[0]["loss"] == pytest.approx(before, rel=1e-3) and g.loss(ids, ids) < before
    with pytest.raises(cw.UnsupportedError, match="dequantized from GGUF"):
        g.save("/tmp/never-written")
    with pytest.raises(ValueError, match="dtype"):
        cw.load(smollm2_path, dtype="int4")


def run(model, steps, ckdir, resume=False, stop_at=None):
    """cw.train's engine call, with a callback that presses Ctrl-C after step stop_at."""

    def cb(step, *rest):
        if stop_at is not None and step >= stop_at:
            raise KeyboardInterrupt

    data = _native.tokenize_corpus(model._m, TEXT)
    return _native.train(model._m, data, None, "clm", steps, 2, 12, 3e-3, 2, "cosine", 0.01, 1.0, 1, 7, None,
                         os.fspath(ckdir), None, resume, None, 0.15, 0.15, 3.0, cb)


def test_resume_gives_the_losses_of_an_uninterrupted_run(tmp_path):
    _, full = run(small("llama"), 8, tmp_path / "a")
    _, part = run(small("llama"), 8, tmp_path / "b", stop_at=3)
    assert part["interrupted"] and len(part["history"]) == 3
    assert os.listdir(tmp_path / "b") == ["step-00000003"], "one complete checkpoint, nothing partial"
    m = small("llama")
    r = cw.train(m, TEXT, "clm", steps=8, batch_size=2, seq_len=12, lr=3e-3, warmup_steps=2, seed=7,
                 checkpoint_dir=tmp_path / "b", resume=True, progress=False)
    assert r.resumed_from == 3
    assert [h["loss"] for h in r.history] == [h[1] for h in full["history"]]
    assert os.listdir(tmp_path / "b") == ["step-00000008"]
    # a checkpoint folder is a model folder
    assert cw.load(tmp_path / "b" / "step-00000008").config.num_layers == 2
    # without a seed a resumed run takes its checkpoint's; other settings are refused
    _, part = run(small("llama"), 8, tmp_path / "c", stop_at=2)
    r = cw.train(small("llama"), TEXT, "clm", steps=8, batch_size=2, seq_len=12, lr=3e-3, warmup_steps=2,
                 checkpoint_dir=tmp_path / "c", resume=True, progress=False)
    assert [h["loss"] for h in r.history] == [h[1] for h in full["history"]]
    with pytest.raises(ValueError, match="another run"):
        cw.train(small("llama"), TEXT, "clm", steps=8, batch_size=4, seq_len=12, lr=3e-3, warmup_steps=2,
                 checkpoint_dir=tmp_path / "c", resume=True, progress=False)


def test_bad_arguments_name_what_is_wrong(tmp_path):
    m = small("llama")
    ids = np.array([[5, 6, 7, 8]])
    with pytest.raises(ValueError, match="labels has shape"):
        m.loss(ids, np.array([[5, 6, 7]]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        m.loss(ids, np.array([[5, 6, 7, 10**6]]))
    with pytest.raises(ValueError, match="counts no token"):
        m.loss(ids, np.full((1, 4), -100))
    kw = dict(batch_size=2, seq_len=8, lr=1e-3, progress=False)
    with pytest.raises(ValueError, match="empty"):
        cw.train(m, [], "clm", steps=1, **kw)
    with pytest.raises(ValueError, match="fewer than one block"):
        cw.train(m, ["the cat"], "clm", steps=1, **kw)
    with pytest.raises(ValueError, match="positions"):
        cw.train(m, TEXT, "clm", steps=1, batch_size=2, seq_len=65, lr=1e-3, progress=False)
    with pytest.raises(ValueError, match="lr"):
        cw.train(m, TEXT, "clm", steps=1, batch_size=2, seq_len=8, lr=0.0, progress=False)
    with pytest.raises(ValueError, match="steps"):
        cw.train(m, TEXT, "clm", steps=0, **kw)
    with pytest.raises(ValueError, match="objective"):
        cw.train(m, TEXT, "mlm", steps=1, **kw)
    with pytest.raises(ValueError, match="schedule"):
        cw.train(m, TEXT, "clm", steps=1, schedule="step", **kw)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no checkpoint"):
        cw.train(m, TEXT, "clm", steps=1, checkpoint_dir=tmp_path / "empty", resume=True, **kw)
    with pytest.raises(TypeError, match="data"):
        cw.train(m, [1.5, 2.5], "clm", steps=1, **kw)
    with pytest.raises(ValueError, match="labels"):
        cw.train(m, {"input_ids": ids}, "clm", steps=1, **kw)
    assert os.listdir(tmp_path / "empty") == []


@pytest.mark.parametrize("family", ["llama", "gpt2", "bert", "t5", "rnn"])
def test_training_memory_estimate_within_15_percent_of_the_heap(family):
    import sys

    sys.path.insert(0, os.path.join(HERE, "..", "benches"))
    from bench_train_memory import measure

    measure("llama", 2, 12, dict(vocab_size=96, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position_embeddings=64))
    for b, s, kw in [(2, 12, dict(vocab_size=96, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position_embeddings=64)),
                     (4, 64, dict(vocab_size=2048, hidden_size=128, num_layers=2, num_heads=4, intermediate_size=384, max_position_embeddings=128))]:
        n, got, est = measure(family, b, s, kw)
        assert 0.85 <= est.total_bytes / got <= 1.15, (family, kw, got, est.breakdown)


def test_progress_bar_of_a_resumed_run_starts_where_it_resumed(monkeypatch):
    import types

    from candlewick import _train

    class Bar:
        def __init__(self, total, initial=0, **_):
            self.total, self.n = total, initial

        def update(self, k):
            self.n += k

        def set_postfix_str(self, text, refresh=True):
            self.text = text

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "tqdm.auto", types.SimpleNamespace(tqdm=Bar))
    bar = _train._Progress(10, True)
    bar.update(7, 1.0, 1e-3, 0.5, 100.0, None)  # the first step after resuming at 6
    assert bar.bar.tqdm.n == 7
    bar.update(8, 1.0, 1e-3, 0.5, 100.0, None)
    assert bar.bar.tqdm.n == 8 and "loss 1.0000" in bar.bar.tqdm.text
