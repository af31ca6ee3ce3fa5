"""The quantisation table: what each file type costs and keeps, for a GGUF model quantized by
cw.quantize (the bytes llama.cpp's quantize writes).

    python benches/bench_quant.py [--model smollm2-135m-instruct] [--types F32 F16 Q8_0 ...] [--runs 3]

For each type: the file size; the estimated weight and total memory (cw.estimate_memory, at
--seq-len); the measured memory (the model file's resident mapping after a run, and the process's
RSS growth, in a fresh process); decode tokens/s (greedy, --new tokens, the median of --runs
runs); and perplexity on the first --ppl-tokens tokens of examples/data/kjv-genesis-judges.txt
(model.perplexity, windows of 512). SmolLM2 ships only as Q4_1, so its F32 row is that file
dequantized and every other row a requantization of it: the table measures what each type loses
from there. Prints a Markdown table (and --json FILE for the numbers). --llama-cpp-python PYTHON
adds a column: llama.cpp's perplexity of the same file on the same token ids and windows.

--trained adds the same table for a model candlewick trains here (a 4-layer llama with rows of 256,
tests/fixtures/tiny-llama's byte-level tokenizer, --train-steps steps of causal LM on the first
lines of the text): its F32 row is the trained model itself, each other row cw.quantize of it,
and its perplexity is measured on lines it was not trained on.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TEXT = os.path.join(HERE, "..", "examples", "data", "kjv-genesis-judges.txt")

WORKER = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from memory_probe import measure_weights
import candlewick as cw
path, new, ppl_tokens, text_file = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
model, mapped, grown = measure_weights(lambda: cw.load(path), os.path.basename(path))
prompt = "The history of the printing press begins"
model.generate(prompt, max_new_tokens=4, do_sample=False)  # warm up
t = time.perf_counter()
out = model.generate(prompt, max_new_tokens=new, do_sample=False, ignore_eos=True)
decode = len(out.token_ids) / (time.perf_counter() - t)
text = open(text_file, encoding="utf-8").read()
ids = model.tokenizer.encode(text)[:ppl_tokens]
ppl = model.perplexity(ids, max_length=512).perplexity
print("RESULT" + json.dumps({"mapped": mapped, "grown": grown, "decode": decode, "ppl": ppl, "ids": ids}))
"""

# llama.cpp's perplexity of the same file on the same ids: disjoint windows of 512 from an empty
# cache, every label after a window's first token counted (model.perplexity's windows)
LLAMA_WORKER = r"""
import json, math, sys
import numpy as np
from llama_cpp import Llama
path, ids = sys.argv[1], json.load(open(sys.argv[2]))
llm = Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=2, logits_all=True, verbose=False, type_k=0, type_v=0)
nll, n = 0.0, 0
for b in range(0, len(ids) - 1, 512):
    w = ids[b:b + 512]
    if len(w) < 2:
        break
    llm.reset()
    llm.eval(w)
    lg = np.array(llm.scores[:len(w)], dtype=np.float64)
    lp = lg - np.logaddexp.reduce(lg, axis=-1, keepdims=True)
    nll -= sum(lp[i, w[i + 1]] for i in range(len(w) - 1))
    n += len(w) - 1
print("RESULT" + json.dumps({"ppl": math.exp(nll / n)}))
"""


def llama_cpp_ppl(python, path, ids):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(ids, f)
    try:
        r = subprocess.run([python, "-c", LLAMA_WORKER, path, f.name], capture_output=True, text=True, check=True)
    finally:
        os.unlink(f.name)
    return json.loads(next(x for x in r.stdout.splitlines() if x.startswith("RESULT"))[len("RESULT"):])["ppl"]


def run_worker(path, args, text_file):
    r = subprocess.run([sys.executable, "-c", WORKER, HERE, path, str(args.new), str(args.ppl_tokens), text_file],
                       capture_output=True, text=True, check=True)
    line = next(x for x in r.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def trained_model(cw, steps, train_lines):
    """A llama trained by candlewick on the first `train_lines` lines of the text (seeded)."""
    tok = os.path.join(HERE, "..", "tests", "fixtures", "tiny-llama", "tokenizer.json")
    cfg = cw.ModelConfig.for_family("llama", vocab_size=320, hidden_size=256, num_layers=4, num_heads=4,
                                    num_kv_heads=4, head_dim=64, intermediate_size=768, max_position_embeddings=512)
    model = cw.Model.from_config(cfg, seed=0, tokenizer=tok)
    lines = [x for x in open(TEXT, encoding="utf-8").read().splitlines() if x.strip()]
    r = cw.train(model, lines[:train_lines], "clm", steps=steps, batch_size=8, seq_len=128, lr=2e-3,
                 warmup_steps=steps // 10, seed=0, progress=False)
    print(f"trained {steps} steps: loss {r.losses[0]:.3f} -> {r.losses[-1]:.3f}", file=sys.stderr)
    return model, "\n".join(lines[train_lines:])


def table(cw, name, source, types, args, text_file):
    """Rows of the table for `source` (a path or a Model) quantized to each of `types`."""
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for t in types:
            path = os.path.join(d, f"{t}.gguf")
            cw.quantize(source, path, type=t, progress=False)
            est = cw.estimate_memory(path, seq_len=args.seq_len)
            runs = [run_worker(path, args, text_file) for _ in range(args.runs)]
            med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
            rows.append({
                "type": t, "file_bytes": os.path.getsize(path), "est_weights": est.breakdown.get("weights", 0),
                "est_total": est.total_bytes, "mapped": med("mapped"), "rss_growth": med("grown"),
                "decode_tok_s": med("decode"), "perplexity": runs[0]["ppl"],
                "llama_cpp_perplexity": llama_cpp_ppl(args.llama_cpp_python, path, runs[0]["ids"])
                if args.llama_cpp_python else None,
            })
            print(f"{name} {t}: done", file=sys.stderr)
    return rows


def show(title, rows):
    mb = lambda b: f"{b / 1e6:.1f}"  # noqa: E731
    print(title + "\n")
    lc = rows and rows[0]["llama_cpp_perplexity"] is not None
    print("| type | file MB | est. weights MB | est. total MB | mapped MB | RSS growth MB | decode tok/s | perplexity |"
          + (" llama.cpp's perplexity |" if lc else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|" if lc else ""))
    for r in rows:
        print(f"| {r['type']} | {mb(r['file_bytes'])} | {mb(r['est_weights'])} | {mb(r['est_total'])} | {mb(r['mapped'])} | "
              f"{mb(r['rss_growth'])} | {r['decode_tok_s']:.1f} | {r['perplexity']:.3f} |"
              + (f" {r['llama_cpp_perplexity']:.3f} |" if lc else ""))
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--types", nargs="+", default=["F32", "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--new", type=int, default=64, help="tokens generated for the decode speed")
    ap.add_argument("--ppl-tokens", type=int, default=2048)
    ap.add_argument("--seq-len", type=int, default=2048, help="context of the memory estimate")
    ap.add_argument("--json", default=None)
    ap.add_argument("--trained", action="store_true", help="also the table of a model candlewick trains here")
    ap.add_argument("--llama-cpp-python", default=None, metavar="PYTHON",
                    help="a Python with llama-cpp-python: adds llama.cpp's perplexity of each file on the same ids")
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--train-lines", type=int, default=5000)
    args = ap.parse_args()
    import candlewick as cw

    out = {}
    if args.model != "none":
        src = cw.resolve(args.model)
        out[args.model] = table(cw, args.model, src, args.types, args, TEXT)
        show(f"{args.model} ({os.path.basename(src)}), memory estimated at seq_len {args.seq_len}, "
             f"medians of {args.runs} runs, perplexity over {args.ppl_tokens} tokens", out[args.model])
    if args.trained:
        model, held_out = trained_model(cw, args.train_steps, args.train_lines)
        with tempfile.TemporaryDirectory() as d:
            text_file = os.path.join(d, "held-out.txt")
            open(text_file, "w", encoding="utf-8").write(held_out)
            out["trained"] = table(cw, "trained", model, args.types, args, text_file)
        show(f"a llama trained by candlewick ({args.train_steps} steps on {args.train_lines} lines), "
             f"perplexity over {args.ppl_tokens} tokens of held-out lines", out["trained"])
    if args.json:
        json.dump(out, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
