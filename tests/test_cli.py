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
