"""Smoke test of an installed wheel, run by `make wheel-smoke` in a fresh venv whose PATH has no
cargo: the package must come from the venv, not from a source tree, and work without Rust.
Not collected by pytest (no test_ prefix)."""

import os
import shutil
import subprocess
import sys
import tempfile

import candlewick as cw

assert shutil.which("cargo") is None, "the smoke test must run on a PATH without cargo"
assert os.path.realpath(cw.__file__).startswith(os.path.realpath(sys.prefix)), f"candlewick imported from {cw.__file__}"

model = cw.load("smollm2-135m-instruct")
out = model.generate("The capital of France is", max_new_tokens=8)
assert out.finish_reason in ("length", "eos") and out.text.strip(), out
print(f"generate: {out.text!r}")

enc = cw.load("all-minilm-l6-v2")
vecs = enc.embed(["A man is eating food.", "A man is eating a piece of bread.", "A cheetah runs."])
sims = vecs @ vecs.T
assert vecs.shape == (3, 384) and sims[0, 1] > sims[0, 2], sims
print(f"embed: {vecs.shape}, similar {sims[0, 1]:.3f} > unrelated {sims[0, 2]:.3f}")

est = cw.estimate_memory("smollm2-135m-instruct", seq_len=2048)
assert est.total_bytes > est.breakdown["weights"] > 0, est.breakdown
print(f"estimate_memory: {est.total_bytes / 2**20:.0f} MiB")

cli = shutil.which("candlewick")
assert cli and os.path.realpath(cli).startswith(os.path.realpath(sys.prefix)), cli
with tempfile.TemporaryDirectory() as d:
    r = subprocess.run([cli, "generate", "Hello", "--max-new-tokens", "4"], capture_output=True, text=True, cwd=d,
                       timeout=300)
assert r.returncode == 0 and r.stdout.strip(), (r.returncode, r.stdout, r.stderr)
print(f"cli: {r.stdout.strip()!r}")
print(f"wheel smoke test passed: candlewick {cw.__version__} from {os.path.dirname(cw.__file__)}")
