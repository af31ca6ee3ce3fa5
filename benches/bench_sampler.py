"""The sampler's cost per token: candlewick's processor chain vs llama.cpp's sampler chain
(llama-cpp-python), on the same logits, in microseconds per token.

    python benches/bench_sampler.py [--llama-python PATH] [--rounds 5] [--draws 2000]

Logits: 49,152-token rows (SmolLM2's vocabulary), 8 from SmolLM2 itself (last position of
real prompts) and 8 drawn from N(0, 3). Settings: top-p 0.9 alone, and top-k 40 + top-p 0.95 +
temperature 0.8, and min-p 0.05 + temperature 1.0. Each draw runs the whole chain on a fresh copy
of the row (candlewick: in Rust, `cw.sample(..., num_samples=N)` loops inside the engine;
llama.cpp: `llama_sampler_apply` on a fresh llama_token_data_array, as `llama_sampler_sample`
fills one from the logits each token, then the draw). The llama.cpp figure includes the copy of
the candidate array (590 KB) and one ctypes call per draw; the candlewick figure includes the copy
of the logits (196 KB). Medians over rounds; ratio > 1 means candlewick is faster.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

SETTINGS = {
    "top_p=0.9": dict(top_p=0.9),
    "top_k=40 top_p=0.95 temp=0.8": dict(top_k=40, top_p=0.95, temperature=0.8),
    "min_p=0.05": dict(min_p=0.05),
}

PROMPTS = [
    "The capital of France is",
    "def quicksort(xs):",
    "Once upon a time",
    "The three primary colors are",
    "In 1905, Albert Einstein",
    "Ingredients: flour, sugar,",
    "Translate to French: good morning",
    "The weather today is",
]

LLAMA_WORKER = r"""
import ctypes, json, sys, time
import numpy as np
import llama_cpp as L
path, settings, rounds, draws = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = np.load(path)["rows"].astype(np.float32)
n = rows.shape[1]
dt = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")], align=True)
assert dt.itemsize == ctypes.sizeof(L.llama_token_data)
templates = []
for r in rows:
    t = np.zeros(n, dt); t["id"] = np.arange(n); t["logit"] = r
    templates.append(t)
buf = np.zeros(n, dt)
arr = L.llama_token_data_array(data=buf.ctypes.data_as(L.llama_token_data_p), size=n, selected=-1, sorted=False)
out = {}
for name, kw in settings.items():
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    if kw.get("top_k"):
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(kw["top_k"]))
    if kw.get("top_p", 1.0) < 1.0:
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(kw["top_p"], 1))
    if kw.get("min_p", 0.0) > 0:
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_min_p(kw["min_p"], 1))
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(kw.get("temperature", 1.0)))
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(1234))
    per_round = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for i in range(draws):
            ctypes.memmove(buf.ctypes.data, templates[i % len(templates)].ctypes.data, buf.nbytes)
            arr.size = n; arr.selected = -1; arr.sorted = False
            L.llama_sampler_apply(chain, ctypes.byref(arr))
        per_round.append((time.perf_counter() - t0) / draws * 1e6)
    L.llama_sampler_free(chain)
    out[name] = per_round
print("RESULT" + json.dumps(out))
"""


def candlewick_times(rows, rounds, draws):
    import candlewick as cw

    out = {}
    for name, kw in SETTINGS.items():
        per_round = []
        for _ in range(rounds):
            k = max(1, draws // len(rows))
            t0 = time.perf_counter()
            for r in rows:
                cw.sample(r, seed=1, num_samples=k, **kw)
            per_round.append((time.perf_counter() - t0) / (k * len(rows)) * 1e6)
        out[name] = per_round
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama-python", default=sys.executable)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    args = ap.parse_args()

    import candlewick as cw

    model = cw.load(args.model)
    real = [model.logits(model.tokenizer.encode(p))[-1] for p in PROMPTS]
    rng = np.random.default_rng(0)
    rand = [rng.normal(0, 3, size=real[0].shape[0]).astype(np.float32) for _ in range(8)]
    results = {}
    for label, rows in (("SmolLM2 logits", real), ("N(0,3) logits", rand)):
        rows = [np.ascontiguousarray(r, dtype=np.float32) for r in rows]
        ours = candlewick_times(rows, args.rounds, args.draws)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "rows.npz")
            np.savez(path, rows=np.stack(rows))
            p = subprocess.run(
                [args.llama_python, "-c", LLAMA_WORKER, path, json.dumps(SETTINGS), str(args.rounds), str(args.draws)],
                capture_output=True, text=True,
            )
        line = [l for l in p.stdout.splitlines() if l.startswith("RESULT")]
        theirs = json.loads(line[0][6:]) if line else None
        if theirs is None:
            print(f"llama-cpp-python worker failed: {p.stderr.strip()[-400:]}", file=sys.stderr)
        results[label] = (ours, theirs)

    print(f"vocabulary {real[0].shape[0]}, medians of {args.rounds} rounds of ~{args.draws} draws, microseconds per token")
    print(f"{'logits':<16} {'setting':<30} {'candlewick':>11} {'llama.cpp':>10} {'ratio':>6}")
    for label, (ours, theirs) in results.items():
        for name in SETTINGS:
            a = statistics.median(ours[name])
            b = statistics.median(theirs[name]) if theirs else float("nan")
            print(f"{label:<16} {name:<30} {a:>11.1f} {b:>10.1f} {b / a:>6.2f}")


if __name__ == "__main__":
    main()
