"""Generate a completion for every prompt of a file on a Ray cluster, one model per actor.

    python examples/ray_batch.py --local                        # a 2-CPU Ray cluster on this machine
    python examples/ray_batch.py --address auto prompts.txt     # the cluster `ray start` made here

On several machines (each with candlewick and the model installed):

    head$    ray start --head --port=6379
    other$   ray start --address=HEAD_IP:6379
    head$    python examples/ray_batch.py --address auto --concurrency 8 --num-cpus 4 prompts.txt

Prompts: one a line of a text file (blank lines skipped), or a built-in list without one. Each
actor loads the model once and computes with the CPUs Ray gives it (--num-cpus); --concurrency is
the number of actors. Results go to a JSONL file, one {"prompt", "text", "finish_reason",
"num_tokens"} object a line, in the prompts' order. The address may also come from RAY_ADDRESS.
"""

import argparse
import json
import os
import sys
import time

import ray

from candlewick.ray import Generator, map_batches

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "The three primary colours are",
    "A good way to learn a new language is",
    "def fibonacci(n):",
    "The most important thing about writing is",
    "Water boils at",
    "My favourite season is autumn because",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("prompts", nargs="?", help="text file, one prompt a line (default: a built-in list)")
    p.add_argument("--model", default="smollm2-135m-instruct", help="a path or an installed model's name")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                   help="Ray cluster to join ('auto': the one `ray start` made on this machine)")
    p.add_argument("--local", action="store_true", help="start a local Ray cluster of 2 CPUs instead")
    p.add_argument("--concurrency", type=int, default=2, help="actors, each with its own model")
    p.add_argument("--num-cpus", type=float, default=1, help="CPUs (compute threads) per actor")
    p.add_argument("--batch-size", type=int, default=8, help="prompts an actor generates together")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--output", default="ray_batch.jsonl")
    args = p.parse_args()

    if args.prompts:
        with open(args.prompts, encoding="utf-8") as f:
            prompts = [line.rstrip("\n") for line in f if line.strip()]
    else:
        prompts = PROMPTS

    if args.local or not args.address:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=args.address, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    print(f"cluster: {ray.cluster_resources().get('CPU', 0):g} CPUs on {len(ray.nodes())} node(s); "
          f"{args.concurrency} actors x {args.num_cpus:g} CPUs", file=sys.stderr)

    t = time.time()
    ds = ray.data.from_items([{"i": i, "prompt": s} for i, s in enumerate(prompts)])
    out = map_batches(ds, Generator, concurrency=args.concurrency, num_cpus=args.num_cpus,
                      batch_size=args.batch_size, model=args.model, max_new_tokens=args.max_new_tokens)
    rows = sorted(out.take_all(), key=lambda r: r["i"])  # fine for a file; write_json(dir) for millions
    elapsed = time.time() - t

    with open(args.output, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"prompt": r["prompt"], "text": r["text"], "finish_reason": r["finish_reason"],
                                "num_tokens": int(r["num_tokens"])}, ensure_ascii=False) + "\n")
    tokens = sum(int(r["num_tokens"]) for r in rows)
    print(f"{len(rows)} prompts, {tokens} tokens in {elapsed:.1f} s (model loads included) -> {args.output}",
          file=sys.stderr)
    ray.shutdown()


if __name__ == "__main__":
    main()
