"""cw.plot: each picture rendered to PNG without a display and checked (size, not blank)."""

import pickle
import sys

import numpy as np
import pytest

import candlewick as cw

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402


def _check_png(path, min_w=300, min_h=200):
    img = matplotlib.image.imread(str(path))
    h, w = img.shape[:2]
    assert w >= min_w and h >= min_h, (w, h)
    rgb = img[..., :3]
    # not blank: many distinct colours, and a good part of the picture is not background
    assert rgb.std() > 0.05
    assert (np.abs(rgb - rgb[0, 0]).sum(axis=-1) > 0.1).mean() > 0.02
    return img


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_sampling_from_model(smollm2, tmp_path):
    fig = cw.plot.sampling(smollm2, "The three primary colors are", temperature=0.7, top_k=12, top_p=0.9,
                           min_p=0.05, path=tmp_path / "s.png")
    assert len(fig.axes) == 5  # softmax, temperature, top-k, top-p, min-p
    titles = [a.get_title(loc="left") for a in fig.axes]
    assert titles[2].startswith("top-k 12: 12 of 49152 tokens kept")
    _check_png(tmp_path / "s.png")


def test_sampling_stages_are_the_samplers():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=500).astype(np.float32) * 3
    stages = cw._native.sampling_stages(logits, 0.5, 40, 0.8, 0.0)
    assert [n for n, _ in stages] == ["softmax", "temperature 0.5", "top-k 40", "top-p 0.8"]
    soft = np.exp(logits - logits.max())
    assert np.allclose(stages[0][1], soft / soft.sum(), atol=1e-6)
    for _, p in stages:
        assert abs(p.sum() - 1) < 1e-5
    assert (stages[2][1] > 0).sum() == 40
    # what survives the last step is exactly what cw.sample can draw
    draws = set(cw.sample(logits, temperature=0.5, top_k=40, top_p=0.8, seed=0, num_samples=4000).tolist())
    assert draws <= set(np.flatnonzero(stages[-1][1]).tolist())
    fig = cw.plot.sampling(logits, temperature=0.5, top_k=40, top_p=0.8, top_n=50)
    assert len(fig.axes) == 4
    with pytest.raises(ValueError, match="top_p"):
        cw.plot.sampling(logits, top_p=1.5)
    with pytest.raises(TypeError, match="needs a prompt"):
        cw.plot.sampling(cw.Model.from_config(cw.ModelConfig.for_family("llama", vocab_size=32, hidden_size=16,
                                                                        num_layers=1, num_heads=2)))


def test_memory_plot(tmp_path):
    est = cw.estimate_memory("smollm2-135m-instruct", seq_len=2048)
    fig = est.plot(path=tmp_path / "one.png")
    _check_png(tmp_path / "one.png")
    fig = est.plot(dtypes=["float32", "bfloat16", "q8_0", "q4_0"], path=tmp_path / "m.png")
    ax = fig.axes[0]
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["float32", "bfloat16", "q8_0", "q4_0"]
    # bar heights sum to each estimate's total
    tops = {}
    for patch in ax.patches:
        x = round(patch.get_x() + patch.get_width() / 2)
        tops[x] = max(tops.get(x, 0), patch.get_y() + patch.get_height())
    want = [cw.estimate_memory("smollm2-135m-instruct", dtype=d, seq_len=2048).total_bytes / 2**30
            for d in ("float32", "bfloat16", "q8_0", "q4_0")]
    assert np.allclose([tops[i] for i in range(4)], want)
    _check_png(tmp_path / "m.png")
    train = cw.estimate_memory("1B", training=True, seq_len=1024)
    cw.plot.memory([train, est], path=tmp_path / "t.png")
    _check_png(tmp_path / "t.png")
    with pytest.raises(TypeError, match="dtypes must be a list"):
        est.plot(dtypes="float32")
    # an estimate still pickles (to Ray, multiprocessing), without the way to redo it
    back = pickle.loads(pickle.dumps(est))
    assert back == est and back.total_bytes == est.total_bytes


def test_attention_plot(smollm2, tmp_path):
    fig = cw.plot.attention(smollm2, "The cat sat on the mat", layer=-1, head=2, path=tmp_path / "a.png")
    img = fig.axes[0].get_images()[0].get_array()
    n = len(smollm2.tokenizer.encode("The cat sat on the mat"))
    assert img.shape == (n, n)
    # causal: nothing above the diagonal, each row a distribution
    assert np.allclose(np.triu(img, 1), 0) and np.allclose(img.sum(axis=1), 1, atol=1e-4)
    _check_png(tmp_path / "a.png")
    with pytest.raises(ValueError, match="layer 30 is out of range: the model has 30 layers"):
        cw.plot.attention(smollm2, "hi", layer=30)
    with pytest.raises(ValueError, match="head 9 is out of range"):
        cw.plot.attention(smollm2, "hi", head=9)


def test_training_plot(tmp_path):
    m = cw.Model.from_config(cw.ModelConfig.for_family("llama", vocab_size=64, hidden_size=32, num_layers=2,
                                                       num_heads=4, intermediate_size=64), seed=0)
    res = cw.train(m, [list(range(1, 60))] * 4, "clm", steps=6, batch_size=2, seq_len=8, warmup_steps=2,
                   eval_data=[list(range(2, 40))], eval_every=3, progress=False)
    fig = res.plot(path=tmp_path / "loss.png")
    assert len(fig.axes) == 2  # loss and learning rate
    line = fig.axes[0].get_lines()[0]
    assert list(line.get_ydata()) == res.losses
    _check_png(tmp_path / "loss.png")
    with pytest.raises(ValueError, match="no steps"):
        cw.TrainResult().plot()


def test_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'candlewick\[plot\]'"):
        cw.plot.sampling(np.zeros(8, dtype=np.float32))
    with pytest.raises(ImportError, match=r"candlewick\[plot\]"):
        cw.estimate_memory("1B").plot()
