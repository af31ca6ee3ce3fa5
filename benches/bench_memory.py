"""The memory estimate against what a process really holds, for models candlewick runs.

    python benches/bench_memory.py [--contexts 256 1024 2048 4096]

Weights: for GGUF, the resident bytes of the model file's mapping after one run (candlewick
keeps those weights mmapped); for safetensors (copied into memory as float32), the RSS growth of
loading the model less that of loading its tokenizer alone; beside the process's whole RSS growth. KV cache: RSS
growth while one request holds a cache of N positions filled by a prefill of N - 1 tokens (after
malloc_trim, so transient activations do not count), beside the bytes the engine allocated.
Each figure is the median of --runs runs in fresh processes.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = r"""
import json, os, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
from memory_probe import measure_kv, measure_weights
import candlewick as cw
path, contexts = sys.argv[2], json.loads(sys.argv[3])
# weights are read into the process's own memory (GGUF tensor data too): RSS growth less the
# tokenizer's
tok = lambda: cw.Tokenizer.from_file(os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path)
model, mapped, grown = measure_weights(lambda: cw.load(path), os.path.basename(path), tok)
out = {"mapped": mapped, "grown": grown, "kv": {}}
for t in (contexts if model.config.architecture != "encoder" else []):
    rss, allocated = measure_kv(model, t)
    out["kv"][t] = [rss, allocated]
print("RESULT" + json.dumps(out))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "all-minilm-l6-v2"])
    ap.add_argument("--contexts", type=int, nargs="+", default=[256, 1024, 2048, 4096])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    import candlewick as cw

    for name in args.models:
        report(cw, cw.resolve(name), args)
    built(cw, args)


BUILT = r"""
import json, os, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
from memory_probe import measure_built, measure_kv
import candlewick as cw
cfg = cw.ModelConfig(**json.loads(sys.argv[2]))
model, weights, grown = measure_built(cw, cfg)
print("RESULT" + json.dumps({"weights": weights, "grown": grown, "kv": {t: measure_kv(model, t) for t in json.loads(sys.argv[3])}}))
"""


def built(cw, args):
    cfg = cw.ModelConfig.for_family("llama", vocab_size=8000, hidden_size=256, num_layers=6, num_heads=8,
                                    num_kv_heads=8, intermediate_size=704, max_position_embeddings=4096)
    ctx = [t for t in args.contexts if t <= 4096] or [1024]
    runs = []
    for _ in range(args.runs):
        p = subprocess.run([sys.executable, "-c", BUILT, os.path.abspath(__file__), json.dumps(cfg.to_dict()), json.dumps(ctx)],
                           capture_output=True, text=True, check=True)
        runs.append(json.loads([l for l in p.stdout.splitlines() if l.startswith("RESULT")][0][6:]))
    med = statistics.median
    print(f"built by candlewick: llama-family config, {cfg.num_parameters:,} parameters, float32")
    print(f"{'item':<28}{'estimate':>12}{'measured':>12}{'ratio':>9}")
    w = cw.estimate_memory(cfg).breakdown["weights"]
    m = med([r["weights"] for r in runs])
    print(f"{'weights (RSS)':<28}{w / 1e6:>12.2f}{m / 1e6:>12.2f}{m / w:>9.3f}  process RSS growth {med([r['grown'] for r in runs]) / 1e6:.1f} MB")
    for t in ctx:
        kv = cw.estimate_memory(cfg, seq_len=t).breakdown["kv_cache"]
        rss = med([r["kv"][str(t)][0] for r in runs])
        print(f"{'kv_cache, ' + str(t) + ' tokens (RSS)':<28}{kv / 1e6:>12.2f}{rss / 1e6:>12.2f}{rss / kv:>9.3f}")


def report(cw, path, args):
    here = os.path.abspath(__file__)
    runs = []
    for _ in range(args.runs):
        p = subprocess.run([sys.executable, "-c", WORKER, here, path, json.dumps(args.contexts)],
                           capture_output=True, text=True, check=True)
        runs.append(json.loads([l for l in p.stdout.splitlines() if l.startswith("RESULT")][0][6:]))
    med = lambda xs: statistics.median(xs)  # noqa: E731

    def row(what, est, measured, extra=""):
        print(f"{what:<28}{est / 1e6:>12.2f}{measured / 1e6:>12.2f}{measured / est:>9.3f}  {extra}")

    print(f"{path}\nmedians of {args.runs} fresh processes; MB = 10^6 bytes")
    print(f"{'item':<28}{'estimate':>12}{'measured':>12}{'ratio':>9}")
    w = cw.estimate_memory(path, dtype="auto", seq_len=16).breakdown["weights"]
    row("weights (measured)", w, med([r["mapped"] for r in runs]),
        f"process RSS growth {med([r['grown'] for r in runs]) / 1e6:.1f} MB")
    for t in (args.contexts if runs[0]["kv"] else []):
        kv = cw.estimate_memory(path, dtype="auto", seq_len=t).breakdown["kv_cache"]
        rss = med([r["kv"][str(t)][0] for r in runs])
        alloc = med([r["kv"][str(t)][1] for r in runs])
        row(f"kv_cache, {t} tokens (RSS)", kv, rss, f"engine allocated {alloc / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
