import os
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "candlewick", *args], capture_output=True, text=True, timeout=300)


def test_generate_streams_text():
    r = run("generate", "The capital of France is", "--max-new-tokens", "6")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout


def test_generate_chat_and_sampling_flags():
    r = run("generate", "Hi!", "--chat", "-n", "8", "--temperature", "0.7", "--top-k", "20", "--top-p", "0.9", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_info():
    r = run("info")
    assert r.returncode == 0, r.stderr
    for word in ("llama", "parameters", "Q4_1", "context length", "8192", "kernel"):
        assert word in r.stdout, word


def test_bad_argument_is_an_error_not_a_traceback():
    r = run("generate", "x", "--top-p", "0")
    assert r.returncode == 2 and "top_p" in r.stderr and "Traceback" not in r.stderr


def test_train_a_folder_and_a_config(tmp_path):
    import candlewick as cw

    fix = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat\n" * 60)
    out = run("train", os.path.join(fix, "tiny-gpt2"), str(text), "--out", str(tmp_path / "ft"), "--steps", "4",
              "--batch-size", "2", "--seq-len", "8", "--log-every", "2", "--seed", "0")
    assert out.returncode == 0, out.stderr
    assert "step 4: loss" in out.stdout and "saved to" in out.stdout
    assert cw.load(tmp_path / "ft").config.family == "gpt2"
    new = run("train", os.path.join(fix, "cw-built", "llama", "config.json"), str(text), "--out", str(tmp_path / "new"),
              "--tokenizer", os.path.join(fix, "cw-built", "llama", "tokenizer.json"), "--steps", "2", "--batch-size", "2",
              "--seq-len", "8", "--seed", "0")
    assert new.returncode == 0, new.stderr
    again = run("train", os.path.join(fix, "tiny-gpt2"), str(text), "--out", str(tmp_path / "ft"), "--steps", "1")
    assert again.returncode == 2 and "not empty" in again.stderr
