"""Bad input gets a clear Python exception, never a panic."""

import os
import shutil
import struct
import subprocess
import sys

import pytest

import candlewick as cw
from gguf_writer import write_gguf


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        cw.load(str(tmp_path / "nope.gguf"))


def test_unknown_model_name():
    with pytest.raises(FileNotFoundError, match="not a known model name"):
        cw.load("no-such-model-xyz")


def test_not_gguf(tmp_path):
    p = tmp_path / "model.gguf"
    p.write_text("this is just text, not a model at all")
    with pytest.raises(cw.ModelFileError, match="not a GGUF file"):
        cw.load(str(p))


def test_empty_file(tmp_path):
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    with pytest.raises(cw.ModelFileError):
        cw.load(str(p))


def test_folder_without_a_model(tmp_path):
    with pytest.raises(cw.ModelFileError, match="config.json is missing"):
        cw.load(str(tmp_path))


def test_pickle_refused(tmp_path):
    p = tmp_path / "pytorch_model.bin"
    p.write_bytes(b"\x80\x04fake pickle")
    with pytest.raises(cw.UnsupportedError, match="pickle.*safetensors"):
        cw.load(str(p))


def test_truncated_gguf_data(tmp_path, smollm2_path):
    p = tmp_path / "truncated.gguf"
    with open(smollm2_path, "rb") as src:
        p.write_bytes(src.read(8 << 20))  # header whole, tensor data cut
    with pytest.raises(cw.ModelFileError, match="truncated"):
        cw.load(str(p))


def test_truncated_gguf_header(tmp_path, smollm2_path):
    p = tmp_path / "header.gguf"
    with open(smollm2_path, "rb") as src:
        p.write_bytes(src.read(4096))  # cut inside the vocabulary
    with pytest.raises(cw.ModelFileError, match="truncated or corrupt GGUF header"):
        cw.load(str(p))


def test_huge_counts_do_not_allocate(tmp_path):
    p = tmp_path / "lies.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2**60, 2**60) + b"\0" * 64)
    with pytest.raises(cw.ModelFileError, match="truncated or corrupt GGUF header: tensor count"):
        cw.load(str(p))


def test_tensor_past_end_of_file(tmp_path):
    p = tmp_path / "short.gguf"
    write_gguf(p, {"general.architecture": "llama"}, [("w", [4, 8], b"\0" * 128)])
    data = p.read_bytes()
    p.write_bytes(data[:-64])
    with pytest.raises(cw.ModelFileError, match="tensor w needs bytes"):
        cw.load(str(p))


def test_unsupported_architecture(tmp_path):
    p = tmp_path / "mamba.gguf"
    write_gguf(p, {"general.architecture": "mamba"}, [("w", [2, 32], b"\0" * 256)])
    with pytest.raises(cw.UnsupportedError, match="architecture 'mamba'"):
        cw.load(str(p))


def test_missing_tensor_is_named(tmp_path):
    meta = {
        "general.architecture": "llama",
        "llama.embedding_length": 32,
        "llama.attention.head_count": 4,
        "llama.block_count": 1,
        "llama.feed_forward_length": 64,
        "llama.context_length": 16,
    }
    p = tmp_path / "partial.gguf"
    write_gguf(p, meta, [("token_embd.weight", [10, 32], b"\0" * (10 * 32 * 4))])
    with pytest.raises(cw.ModelFileError, match="blk.0.attn_norm.weight is missing"):
        cw.load(str(p))


def test_prompt_longer_than_context(smollm2):
    ids = [100] * (smollm2.context_length + 5)
    with pytest.raises(ValueError, match="context"):
        smollm2.generate(ids, max_new_tokens=1)
    with pytest.raises(ValueError, match="context"):
        smollm2.logits(ids)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_new_tokens=-1), "max_new_tokens must be >= 0"),
        (dict(temperature=-0.5, do_sample=True), "temperature must be >= 0"),
        (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
        (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
        (dict(top_k=-3), "top_k must be >= 0"),
        (dict(min_p=2.0), "min_p"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(seed=-1), "seed"),
        (dict(stop=[""]), "stop strings must not be empty"),
    ],
)
def test_bad_generation_arguments(smollm2, kwargs, match):
    with pytest.raises(ValueError, match=match):
        smollm2.generate("Hello", **kwargs)
    with pytest.raises(ValueError, match=match):
        smollm2.stream("Hello", **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [dict(max_new_tokens="10"), dict(temperature="hot"), dict(top_k=2.5), dict(stop=[1, 2])],
)
def test_wrong_argument_types(smollm2, kwargs):
    with pytest.raises(TypeError):
        smollm2.generate("Hello", **kwargs)


def test_bad_prompts(smollm2):
    with pytest.raises(TypeError):
        smollm2.generate(12345)
    with pytest.raises(ValueError, match="empty"):
        smollm2.generate([])
    with pytest.raises(ValueError, match="out of range"):
        smollm2.generate([10**9])
    with pytest.raises(ValueError, match="non-negative"):
        smollm2.generate([-1, 2])


def test_bad_token_ids_in_decode(smollm2):
    with pytest.raises(ValueError, match="out of range"):
        smollm2.tokenizer.decode([1, 10**7])


def test_bad_chat_messages(smollm2):
    with pytest.raises(TypeError):
        smollm2.tokenizer.apply_chat_template("hello")
    with pytest.raises(ValueError, match="role"):
        smollm2.tokenizer.apply_chat_template([{"content": "no role"}])


def test_bad_threads():
    with pytest.raises(ValueError, match="threads"):
        cw.load("smollm2-135m-instruct", threads=0)


def test_cli_reports_errors_cleanly(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "candlewick", "generate", "hi", "--model", str(tmp_path / "missing.gguf")],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 2
    assert "error" in r.stderr and "missing.gguf" in r.stderr
    assert "Traceback" not in r.stderr and "panic" not in r.stderr
