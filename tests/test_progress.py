"""Progress bars on long work: drawn on a terminal (tqdm, or a plain line without it), never into
non-interactive output unless asked, off with progress=False."""

import hashlib
import io
import sys

import numpy as np
import pytest

import candlewick as cw
from candlewick import _native


class Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(params=["tqdm", "plain"])
def tty(request, monkeypatch):
    """stderr as a terminal, with tqdm or (blocked) without it."""
    if request.param == "tqdm":
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setitem(sys.modules, "tqdm", None)
        monkeypatch.setitem(sys.modules, "tqdm.auto", None)

    def start():
        # in the test itself: pytest sets its own sys.stderr again between setup and call
        err = Tty()
        monkeypatch.setattr(sys, "stderr", err)
        return err

    return start


def _tiny():
    cfg = cw.ModelConfig.for_family("llama", vocab_size=64, hidden_size=32, num_layers=2, num_heads=4,
                                    intermediate_size=64, max_position_embeddings=256)
    return cw.Model.from_config(cfg, seed=0)


def test_batch_generation_bar(tty):
    tty = tty()
    m = _tiny()
    outs = m.generate([[1, 2, 3], [4, 5]], max_new_tokens=6)
    text = tty.getvalue()
    assert "generate" in text and "100%" in text and "12/12" in text, text
    # the bar does not change what is generated
    assert [o.token_ids for o in outs] == [m.generate(p, max_new_tokens=6, progress=False).token_ids for p in ([1, 2, 3], [4, 5])]


def test_bar_counts_what_finished_rows_leave(tty):
    tty = tty()
    m = _tiny()
    first = m.generate([1, 2, 3], max_new_tokens=1).token_ids[0]
    m.generate([[1, 2, 3], [4, 5]], max_new_tokens=5, stop_token_ids=[first])  # row 0 ends at once
    assert "10/10" in tty.getvalue()


def test_single_and_off(tty):
    tty = tty()
    m = _tiny()
    m.generate([1, 2, 3], max_new_tokens=4)           # one prompt: no bar by default
    m.generate([[1], [2]], max_new_tokens=4, progress=False)
    assert tty.getvalue() == ""
    m.generate([1, 2, 3], max_new_tokens=4, progress=True)
    assert "generate" in tty.getvalue()


def test_not_interactive_unless_asked(capfd):
    m = _tiny()
    m.generate([[1, 2], [3, 4]], max_new_tokens=4)
    m.perplexity([list(range(1, 60))], max_length=16)
    assert capfd.readouterr().err == ""
    m.generate([[1, 2], [3, 4]], max_new_tokens=4, progress=True)
    assert "generate" in capfd.readouterr().err


def test_embed_score_perplexity_bars(tty, smollm2):
    tty = tty()
    enc = cw.load("all-minilm-l6-v2")
    texts = [f"sentence number {i}" for i in range(40)]
    vecs = enc.embed(texts)
    assert "embed" in tty.getvalue() and "40/40" in tty.getvalue()
    # in batches of 32 the vectors are those of one text at a time
    assert np.abs(vecs[35] - enc.embed(texts[35])).max() < 1e-5
    smollm2.score("The sky is", [" blue", " green", " red"])
    assert "score" in tty.getvalue() and "3/3" in tty.getvalue()
    r = _tiny().perplexity([list(range(1, 60))], max_length=16, stride=8)
    assert "perplexity" in tty.getvalue() and f"{r.windows}/{r.windows}" in tty.getvalue()


def test_training_bar(tty):
    tty = tty()
    m = _tiny()
    cw.train(m, [list(range(1, 60))] * 4, "clm", steps=3, batch_size=2, seq_len=8)
    text = tty.getvalue()
    assert "train" in text and "3/3" in text and "loss" in text, text


def test_assembly_reports_bytes(tmp_path):
    parts = []
    for i in range(3):
        p = tmp_path / f"m.gguf.part{i}"
        p.write_bytes(bytes([i]) * (1 << 20) * 2)
        parts.append(str(p))
    data = b"".join(open(p, "rb").read() for p in parts)
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{hashlib.sha256(data).hexdigest()}  m.gguf\n")
    calls = []
    _native.assemble_parts(str(sums), parts, str(tmp_path / "cache"), lambda d, t: calls.append((d, t)))
    assert calls[-1] == (len(data), len(data)) and all(a <= b for (a, _), (b, _) in zip(calls, calls[1:]))
    # a callback that raises is reported, not fatal
    (tmp_path / "cache" / "m.gguf").unlink()
    out = _native.assemble_parts(str(sums), parts, str(tmp_path / "cache"), lambda d, t: 1 / 0)
    assert open(out, "rb").read() == data


def test_ctrl_c_inside_the_bar_still_stops_the_work():
    """Python's SIGINT handler may run inside the bar's update: its KeyboardInterrupt must stop
    the work (raised in the bar, it would otherwise be printed and lost)."""
    m = _tiny()
    calls = []

    def bar(done, total):
        calls.append(done)
        if len(calls) == 1:  # the first report, before the first step
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        m._m.generate([[1, 2, 3], [4, 5]], m.generation_config.replace(max_new_tokens=2000, ignore_eos=True), bar)
    assert calls[-1] < 4000  # stopped, not run to the end


def test_no_bar_when_nothing_is_done(tmp_path, monkeypatch):
    """An assembled package is found in the cache: no empty bar."""
    first = Tty()
    monkeypatch.setattr(sys, "stderr", first)
    cw.resolve("gemma3-270m", progress=True)   # assembles when the cache lacks it: a bar of bytes
    assert first.getvalue() == "" or "assemble gemma3-270m" in first.getvalue()
    again = Tty()
    monkeypatch.setattr(sys, "stderr", again)
    cw.resolve("gemma3-270m", progress=True)
    assert again.getvalue() == ""


def test_plain_bar_overwrites_a_longer_line(monkeypatch):
    from candlewick import _progress

    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    err = Tty()
    monkeypatch.setattr(sys, "stderr", err)
    b = _progress.Bar("train", "step")
    b.postfix("loss 1.0 eval 2.0 (ppl 7.39)")
    b(1, 3)
    b.postfix("loss 0.9")
    b(2, 3)
    b.close()
    lines = err.getvalue().split("\r")[1:]
    assert len(lines[0]) == len(lines[1].rstrip("\n")) and "eval" not in lines[1]


def test_bad_progress_argument():
    m = _tiny()
    with pytest.raises(TypeError, match="progress must be True, False or None"):
        m.generate([[1], [2]], max_new_tokens=2, progress="yes")
    with pytest.raises(TypeError, match="progress must be True, False or None"):
        cw.train(m, [list(range(1, 60))], "clm", steps=1, batch_size=1, seq_len=8, progress=1)
