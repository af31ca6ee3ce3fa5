"""candlewick command line: `candlewick generate "PROMPT"`, `candlewick info MODEL`,
`candlewick memory MODEL_OR_PARAMS`, `candlewick train MODEL DATA --out DIR`,
`candlewick perplexity MODEL FILE`, `candlewick quantize SRC OUT --type T`."""

import argparse
import os
import sys
from typing import Dict, List, Optional

from ._registry import DEFAULT_MODEL


def _generate(args: argparse.Namespace) -> int:
    from . import load

    model = load(args.model, threads=args.threads)
    prompt = args.prompt
    if args.chat:
        prompt = model._tokenizer().apply_chat_template([{"role": "user", "content": prompt}])
    do_sample = args.temperature is not None and args.temperature > 0 or args.sample
    kw = dict(
        max_new_tokens=args.max_new_tokens,
        do_sample=do_sample,
        temperature=1.0 if args.temperature is None else args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        stop=args.stop or None,
    )
    for piece in model.stream(prompt, **kw):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    raise AssertionError("unreachable: GiB ends the loop")


def _info(args: argparse.Namespace) -> int:
    from . import _native, load

    model = load(args.model, threads=args.threads)
    info, c = model.info, model.config
    feats, paths, threads = _native.simd_report()
    lines = [
        f"model           {info['path']}",
        f"name            {info.get('name') or '-'}",
        f"format          {info['format']} ({_human(info['file_size'])})",
        f"architecture    {info['architecture']} -> {c.family} {c.architecture}",
        f"parameters      {info['num_parameters']:,} ({info['num_parameters'] / 1e6:.1f} M)",
        f"weights         {_human(info['weight_bytes'])}",
        f"layers          {c.num_layers} {c.cell.upper()}, hidden {c.hidden_size}" if c.architecture == "rnn" else
        f"layers          {c.num_layers}, hidden {c.hidden_size}, heads {c.num_heads} (kv {c.num_kv_heads}), head_dim {c.head_dim}, ffn {c.intermediate_size}",
        f"vocabulary      {c.vocab_size}",
        f"context length  {info['context_length']}",
        "tensor types    " + ", ".join(f"{k} x{v}" for k, v in info["tensor_types"].items()),
        f"threads         {threads}",
        "cpu features    " + (" ".join(feats) or "-"),
    ]
    # candle names types "Q4_1", "Q4K"; the report uses ggml's "Q4_K": compare without underscores.
    used = {k.replace("_", "") for k in info["tensor_types"]}
    for ty, path in paths:
        mark = "*" if ty.replace("_", "") in used else " "
        lines.append(f"kernel {mark} {ty:8s} {path}")
    print("\n".join(lines))
    return 0


def _memory(args: argparse.Namespace) -> int:
    from . import estimate_memory

    est = estimate_memory(
        args.model,
        dtype=args.dtype,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        training=args.train,
        optimizer=args.optimizer,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=False if args.checkpointing == "none" else args.checkpointing,
        zero_stage=args.zero_stage,
        num_devices=args.devices,
        kv_dtype=args.kv_dtype,
    )
    print(est)
    return 0


def _perplexity(args: argparse.Namespace) -> int:
    from . import load

    model = load(args.model, threads=args.threads)
    with open(args.file, encoding="utf-8") as f:
        text = f.read()
    texts = [line for line in text.splitlines() if line.strip()] if args.lines else [text]
    r = model.perplexity(texts, stride=args.stride, max_length=args.max_length, batch_size=args.batch_size)
    skipped = f", {r.skipped} texts of under two tokens skipped" if r.skipped else ""
    print(f"perplexity {r.perplexity:.4f} (nll {r.nll:.4f} nats/token) over {r.tokens} tokens in {r.windows} windows, "
          f"{r.texts} text{'s' if r.texts != 1 else ''}{skipped}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from . import Model, ModelConfig, Tokenizer, load, train

    if os.path.basename(args.model) == "config.json" or args.model.endswith(".json") and os.path.isfile(args.model):
        # a new model from a config (random weights), with the tokenizer given
        if args.tokenizer is None:
            raise ValueError("a model built from a config needs --tokenizer tokenizer.json")
        model = Model.from_config(ModelConfig.from_hf(args.model), seed=args.seed or 0, tokenizer=Tokenizer.from_file(args.tokenizer))
    else:
        model = load(args.model, threads=args.threads)
    if os.path.exists(args.out) and os.listdir(args.out) and not args.overwrite:
        raise ValueError(f"--out {args.out} is not empty (pass --overwrite to replace its files)")
    every = max(args.log_every, 1)
    interactive = sys.stderr.isatty()
    result = train(model, args.data, args.objective, steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len,
                   lr=args.lr, warmup_steps=args.warmup_steps, schedule=args.schedule, weight_decay=args.weight_decay,
                   grad_clip=None if args.grad_clip <= 0 else args.grad_clip, grad_accum_steps=args.grad_accum_steps,
                   seed=args.seed, eval_data=args.eval_data, eval_every=args.eval_every,
                   checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every, resume=args.resume,
                   progress=interactive)
    for h in result.history:
        if not interactive and (h["step"] % every == 0 or h["step"] == result.history[-1]["step"]):
            print(f"step {h['step']}: loss {h['loss']:.4f} lr {h['lr']:.3e} grad_norm {h['grad_norm']:.3f} {h['tokens_per_s']:,.0f} tok/s")
    for e in result.evals:
        print(f"eval at step {e['step']}: loss {e['loss']:.4f} perplexity {e['perplexity']:.2f}")
    model.save(args.out)
    state = "interrupted after" if result.interrupted else "trained"
    print(f"{state} {len(result.history)} steps in {result.seconds:.1f} s; saved to {args.out}")
    return 130 if result.interrupted else 0


def _quantize(args: argparse.Namespace) -> int:
    from . import quantize

    types = quantize(args.src, args.out, type=args.type, progress=True if sys.stderr.isatty() else False)
    counts: Dict[str, int] = {}
    for t in types.values():
        counts[t] = counts.get(t, 0) + 1
    size = os.path.getsize(args.out)
    print(f"wrote {args.out} ({size / 1e6:.1f} MB): " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="candlewick", description="Run and inspect transformer language models.")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate text, streamed to stdout")
    g.add_argument("prompt")
    g.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"a .gguf path or model name (default {DEFAULT_MODEL})")
    g.add_argument("--max-new-tokens", "-n", type=int, default=128)
    g.add_argument("--temperature", "-t", type=float, default=None, help="> 0 turns sampling on (default: greedy)")
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--sample", action="store_true", help="sample even at temperature 1.0")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--stop", action="append", help="stop string (repeatable)")
    g.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    g.add_argument("--threads", type=int, default=None)
    g.set_defaults(func=_generate)

    i = sub.add_parser("info", help="describe a model and the kernels this CPU uses")
    i.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    i.add_argument("--threads", type=int, default=None)
    i.set_defaults(func=_info)

    mm = sub.add_parser("memory", help="estimate the memory to run or train a model")
    mm.add_argument("model", help="a .gguf/.safetensors/config.json path, a model folder or name, or a parameter count (1B, 135M)")
    mm.add_argument("--dtype", default=None, help="float32, float16, bfloat16, int8, a GGUF type (q4_0, q8_0, q4_k ...) or auto (the default: a file as stored, a count or config as float32)")
    mm.add_argument("--kv-dtype", default=None, help="the KV cache's type (default: dtype if float, else float32)")
    mm.add_argument("--batch-size", type=int, default=1)
    mm.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default: the model's context)")
    mm.add_argument("--train", action="store_true", help="training instead of inference")
    mm.add_argument("--optimizer", default="adamw", help="adamw, adamw8bit, sgd_momentum, sgd")
    mm.add_argument("--mixed-precision", action="store_true")
    mm.add_argument("--checkpointing", choices=("none", "full", "selective"), default="none")
    mm.add_argument("--zero-stage", type=int, default=0)
    mm.add_argument("--devices", type=int, default=1)
    mm.set_defaults(func=_memory)

    pp = sub.add_parser("perplexity", help="perplexity of a decoder or recurrent LM on a text file (sliding windows)")
    pp.add_argument("model", help="a .gguf path, model folder or name")
    pp.add_argument("file", help="a UTF-8 text file, scored as one text (or one text per line with --lines)")
    pp.add_argument("--max-length", type=int, default=None, help="tokens per window (default: the model's context)")
    pp.add_argument("--stride", type=int, default=None, help="tokens between window starts (default: max-length, no overlap)")
    pp.add_argument("--batch-size", type=int, default=1, help="windows run together")
    pp.add_argument("--lines", action="store_true", help="score each non-empty line as its own text")
    pp.add_argument("--threads", type=int, default=None)
    pp.set_defaults(func=_perplexity)

    t = sub.add_parser("train", help="pretrain or fine-tune a model on a text file (clm, mlm or span corruption)")
    t.add_argument("model", help="a safetensors model folder or name, or a config.json to build a new model from (with --tokenizer)")
    t.add_argument("data", help="a text file, one text per line")
    t.add_argument("--out", required=True, help="folder the trained model is saved to")
    t.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    t.add_argument("--tokenizer", default=None, help="tokenizer.json for a model built from a config")
    t.add_argument("--objective", choices=("clm", "mlm", "span_corruption"), default=None, help="default: the architecture's")
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--seq-len", type=int, default=128)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--warmup-steps", type=int, default=0)
    t.add_argument("--schedule", choices=("cosine", "linear", "constant"), default="cosine")
    t.add_argument("--weight-decay", type=float, default=0.01)
    t.add_argument("--grad-clip", type=float, default=1.0, help="global gradient norm (0: no clipping)")
    t.add_argument("--grad-accum-steps", type=int, default=1)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--eval-data", default=None, help="a text file to report loss and perplexity on")
    t.add_argument("--eval-every", type=int, default=None)
    t.add_argument("--checkpoint-dir", default=None)
    t.add_argument("--checkpoint-every", type=int, default=None)
    t.add_argument("--resume", action="store_true")
    t.add_argument("--log-every", type=int, default=10, help="print every n-th step (when not on a terminal)")
    t.add_argument("--threads", type=int, default=None)
    t.set_defaults(func=_train)

    q = sub.add_parser("quantize", help="write a GGUF model (from a GGUF file or an HF folder) in a llama.cpp file type "
                                         "(Q4_K_M, Q5_K_M, Q8_0, Q4_0, Q6_K, F16, BF16, F32, ...)")
    q.add_argument("src", help="a .gguf path, an HF folder or a model name")
    q.add_argument("out", help="the .gguf file to write")
    q.add_argument("--type", required=True, help="the file type, as llama.cpp names it")
    q.set_defaults(func=_quantize)

    args = p.parse_args(argv)
    from . import CandlewickError

    try:
        return args.func(args)
    except (CandlewickError, ValueError, TypeError, OSError) as e:
        print(f"candlewick: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
