"""The quantisation table: what each file type costs and keeps, for a GGUF model quantized by
cw.quantize (the bytes llama.cpp's quantize writes).

    python benches/bench_quant.py [--model smollm2-135m-instruct] [--types F32 F16 Q8_0 ...] [--runs 3]

For each type: the file size; the estimated weight and total memory (cw.estimate_memory, at
--seq-len); the measured memory (the model file's resident mapping after a run, and the process's
RSS growth, in a fresh process); decode tokens/s (greedy, --new tokens, the median of --runs
runs); and perplexity on the first --ppl-tokens tokens of examples/data/kjv-genesis-judges.txt
(model.perplexity, windows of 512). SmolLM2 ships only as Q4_1, so its F32 row is that file
dequantized and every other row a requantization of it: the table measures what each type loses
from there. Prints a Markdown table (and --json FILE for the numbers).
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
ppl = model.perplexity([model.tokenizer.decode(ids)], max_length=512).perplexity
print("RESULT" + json.dumps({"mapped": mapped, "grown": grown, "decode": decode, "ppl": ppl}))
"""


def run_worker(path, args):
    r = subprocess.run([sys.executable, "-c", WORKER, HERE, path, str(args.new), str(args.ppl_tokens), TEXT],
                       capture_output=True, text=True, check=True)
    line = next(x for x in r.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--types", nargs="+", default=["F32", "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--new", type=int, default=64, help="tokens generated for the decode speed")
    ap.add_argument("--ppl-tokens", type=int, default=2048)
    ap.add_argument("--seq-len", type=int, default=2048, help="context of the memory estimate")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import candlewick as cw

    src = cw.resolve(args.model)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for t in args.types:
            path = os.path.join(d, f"{t}.gguf")
            cw.quantize(src, path, type=t, progress=False)
            est = cw.estimate_memory(path, seq_len=args.seq_len)
            runs = [run_worker(path, args) for _ in range(args.runs)]
            med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
            rows.append({
                "type": t, "file_bytes": os.path.getsize(path), "est_weights": est.breakdown.get("weights", 0),
                "est_total": est.total_bytes, "mapped": med("mapped"), "rss_growth": med("grown"),
                "decode_tok_s": med("decode"), "perplexity": runs[0]["ppl"],
            })
            print(f"{t}: done", file=sys.stderr)
    mb = lambda b: f"{b / 1e6:.1f}"  # noqa: E731
    print(f"{args.model} ({os.path.basename(src)}), memory estimated at seq_len {args.seq_len}, "
          f"medians of {args.runs} runs, perplexity over {args.ppl_tokens} tokens\n")
    print("| type | file MB | est. weights MB | est. total MB | mapped MB | RSS growth MB | decode tok/s | perplexity |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['type']} | {mb(r['file_bytes'])} | {mb(r['est_weights'])} | {mb(r['est_total'])} | {mb(r['mapped'])} | "
              f"{mb(r['rss_growth'])} | {r['decode_tok_s']:.1f} | {r['perplexity']:.3f} |")
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
