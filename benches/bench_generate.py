"""candlewick vs llama.cpp (llama-cpp-python) on SmolLM2-135M-Instruct Q4_1, side by side.

    python benches/bench_generate.py [--threads 2] [--runs 5] [--llama-python PATH] [--baseline-python PATH]

Same GGUF file, same prompt tokens, same thread count, greedy. Prefill: a ~128-token prompt, time
to its first logits (last position only, as both engines do when generating). Decode: 64 tokens
after that prompt. Each engine runs in its own process; runs alternate and the medians are
reported with the ratio candlewick / llama.cpp (> 1 means candlewick is faster).
llama-cpp-python is taken from --llama-python (a Python that can import llama_cpp), default: this one.
--baseline-python runs a second candlewick (say, an earlier commit's wheel in its own venv) in the
same alternation, for before/after figures measured side by side.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PROMPT = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
    "combined movable metal type, oil-based inks and a wooden press adapted from wine making. "
    "Within fifty years, presses had spread to more than two hundred cities across Europe, and "
    "millions of books had been printed. Scholars argue about the consequences: literacy rose, "
    "vernacular languages gained prestige, and ideas travelled faster than ever before. Explain, "
    "in simple words, why this invention mattered so much for science and religion."
)
N_DECODE = 64

WORKER = r"""
import json, sys, time
import numpy as np
engine, path, threads, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ids = json.loads(sys.stdin.read())
N = %d
out = []
if engine.startswith("candlewick"):
    import candlewick as cw
    m = cw.load(path, threads=threads)
    m.generate(ids[:8], max_new_tokens=2)  # warm-up
    for _ in range(runs):
        t0 = time.perf_counter(); m.generate(ids, max_new_tokens=1); t1 = time.perf_counter()
        o = m.generate(ids, max_new_tokens=N + 1, ignore_eos=True); t2 = time.perf_counter()
        out.append({"prefill_s": t1 - t0, "decode_s": (t2 - t1) - (t1 - t0), "tokens": o.token_ids})
else:
    from llama_cpp import Llama
    llm = Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    llm.eval(ids[:8]); llm.reset()
    for _ in range(runs):
        llm.reset()
        t0 = time.perf_counter(); llm.eval(ids); t1 = time.perf_counter()
        toks = []
        t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        for _ in range(N):
            toks.append(t); llm.eval([t]); t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        t2 = time.perf_counter()
        out.append({"prefill_s": t1 - t0, "decode_s": t2 - t1, "tokens": toks})
print("RESULT" + json.dumps(out))
""" % N_DECODE


def run(python, engine, path, ids, threads, runs):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), CANDLE_NUM_THREADS=str(threads))
    r = subprocess.run(
        [python, "-c", WORKER, engine, path, str(threads), str(runs)],
        input=json.dumps(ids), capture_output=True, text=True, env=env,
    )
    if r.returncode != 0:
        sys.exit(f"{engine} failed:\n{r.stderr[-3000:]}")
    line = [l for l in r.stdout.splitlines() if l.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct", help="a GGUF path or model name (smollm2-135m-instruct, gemma3-270m)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of each engine")
    ap.add_argument("--llama-python", default=os.environ.get("LLAMA_PYTHON", sys.executable))
    ap.add_argument("--baseline-python", default=None, help="a Python with another candlewick build, run side by side")
    args = ap.parse_args()

    import candlewick as cw

    path = cw.resolve(args.model)
    ids = cw.load(path).tokenizer.encode(PROMPT)
    res = {"candlewick": [], "llama.cpp": []}
    if args.baseline_python:
        res["cw baseline"] = []
    for _ in range(args.rounds):
        res["candlewick"] += run(sys.executable, "candlewick", path, ids, args.threads, args.runs)
        res["llama.cpp"] += run(args.llama_python, "llama.cpp", path, ids, args.threads, args.runs)
        if args.baseline_python:
            res["cw baseline"] += run(args.baseline_python, "candlewick", path, ids, args.threads, args.runs)

    med = {}
    for eng, rs in res.items():
        pre = statistics.median(len(ids) / r["prefill_s"] for r in rs)
        dec = statistics.median(N_DECODE / r["decode_s"] for r in rs)
        med[eng] = (pre, dec)
    same = res["candlewick"][0]["tokens"][:N_DECODE] == res["llama.cpp"][0]["tokens"]
    print(f"{os.path.basename(path)}, prompt {len(ids)} tokens, decode {N_DECODE} tokens, "
          f"{args.threads} threads, median of {args.runs * args.rounds} runs")
    print(f"{'engine':12s} {'prefill tok/s':>14s} {'decode tok/s':>13s}")
    for eng, (pre, dec) in med.items():
        print(f"{eng:12s} {pre:14.1f} {dec:13.1f}")
    (cp, cd), (lp, ld) = med["candlewick"], med["llama.cpp"]
    print(f"{'ratio cw/ll':12s} {cp / lp:14.2f} {cd / ld:13.2f}")
    if "cw baseline" in med:
        bp, bd = med["cw baseline"]
        print(f"{'ratio cw/base':12s} {cp / bp:14.2f} {cd / bd:13.2f}")
    print(f"same greedy tokens: {same} (llama.cpp runs its default f16 KV cache here; for SmolLM2 with an f32 cache the tokens are identical: tests/test_generation.py)")


if __name__ == "__main__":
    main()
