"""What context buys: a recurrent LM (LSTM) and a decoder transformer (Llama) of about the same
parameter count, trained on the same text with the same tokenizer and the same token budget, then
compared by their validation loss at each position of the context window.

    python examples/rnn_vs_transformer.py [--steps 400] [--seq-len 128] [--plot rnn_vs_transformer.png]

A token at position p of a window is predicted from the p tokens before it. If a model profits
from far context, its loss keeps falling as p grows; a model that only uses the last few tokens
flattens early. The RNN carries everything it knows of the past in a state of fixed size; the
transformer attends to every earlier token of the window. The table prints the mean loss (nats
per token) of each model over position buckets, and how much each gains past a position.

The text is the one examples/pretrain.py uses (examples/data/kjv-genesis-judges.txt, public
domain); the last verses are held out for validation. With matplotlib installed
(pip install candlewick[plot]) --plot writes the curves as a PNG.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

import candlewick as cw

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from pretrain import TEXT, train_tokenizer  # noqa: E402  (the same byte-level BPE trainer)

HELD_OUT = 600  # verses kept for validation


def buckets(n):
    """Position buckets 1, 2-3, 4-7, ... up to n - 1 (position 0 is never predicted)."""
    out, lo = [], 1
    while lo < n:
        hi = min(2 * lo, n)
        out.append((lo, hi))
        lo = hi
    return out


def rnn_config(vocab, target, seq_len, cell):
    """The recurrent LM (2 layers) whose parameter count is closest to `target`."""
    best = None
    for hidden in range(32, 1025, 8):
        cfg = cw.ModelConfig(architecture="rnn", cell=cell, vocab_size=vocab, hidden_size=hidden, num_layers=2,
                             max_position_embeddings=max(seq_len, 256))
        if best is None or abs(cfg.num_parameters - target) < abs(best.num_parameters - target):
            best = cfg
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3, help="the transformer's peak learning rate")
    ap.add_argument("--rnn-lr", type=float, default=1e-2, help="the RNN's (it learns slowly at the transformer's)")
    ap.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    ap.add_argument("--merges", type=int, default=512)
    ap.add_argument("--eval-windows", type=int, default=2000, help="held-out windows of seq-len tokens to score (at most)")
    ap.add_argument("--eval-stride", type=int, default=8, help="tokens between the starts of held-out windows: each token is "
                    "scored at many positions, so that position, not content, is what differs between positions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default=None, help="write the loss-by-position curves to this PNG (needs matplotlib)")
    a = ap.parse_args()

    with open(TEXT, encoding="utf-8") as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    # one verse per line, each ending in its newline (the training data packs them back to back)
    lines = [line + "\n" for line in lines]
    train_lines, held_out = lines[:-HELD_OUT], lines[-HELD_OUT:]
    tmp = tempfile.mkdtemp()
    t0 = time.perf_counter()
    tok = train_tokenizer(train_lines, a.merges, os.path.join(tmp, "tokenizer.json"))
    print(f"tokenizer: {len(tok)} tokens (byte-level BPE, {a.merges} merges), trained in {time.perf_counter() - t0:.1f} s")

    transformer = cw.ModelConfig.for_family("llama", vocab_size=len(tok), hidden_size=128, num_layers=4, num_heads=4,
                                            intermediate_size=344, max_position_embeddings=max(a.seq_len, 256))
    rnn = rnn_config(len(tok), transformer.num_parameters, a.seq_len, a.cell)
    budget = a.steps * a.batch_size * a.seq_len
    print(f"budget: {a.steps} steps x {a.batch_size} x {a.seq_len} = {budget:,} training tokens each\n")

    # the held-out text as windows of seq_len tokens, each scored from an empty context
    ids = [i for line in held_out for i in tok.encode(line)]
    windows = [ids[i:i + a.seq_len] for i in range(0, len(ids) - a.seq_len + 1, a.eval_stride)][: a.eval_windows]
    print(f"validation: {len(windows)} held-out windows of {a.seq_len} tokens, starting every {a.eval_stride} tokens of "
          f"{len(ids):,} ({HELD_OUT} verses), each scored from an empty context")

    curves = {}
    for name, cfg, lr in ((f"{a.cell.upper()} ({rnn.hidden_size} hidden x 2)", rnn, a.rnn_lr),
                          ("transformer (llama, 128 x 4)", transformer, a.lr)):
        model = cw.Model.from_config(cfg, seed=a.seed, tokenizer=tok)
        t0 = time.perf_counter()
        r = cw.train(model, train_lines, "clm", steps=a.steps, batch_size=a.batch_size, seq_len=a.seq_len, lr=lr,
                     warmup_steps=a.steps // 20, seed=a.seed, progress=False)
        secs = time.perf_counter() - t0
        ppl = model.perplexity(windows, max_length=a.seq_len, batch_size=32, return_token_nll=True)
        assert ppl.token_nll is not None  # asked for with return_token_nll
        curves[name] = np.stack(ppl.token_nll)[:, 1:].mean(axis=0)  # positions 1.. (0 is never predicted)
        print(f"{name}: {cfg.num_parameters:,} parameters; trained in {secs:.0f} s ({budget / secs:,.0f} tokens/s), "
              f"final train loss {r.losses[-1]:.3f}; validation loss {ppl.nll:.3f}, perplexity {ppl.perplexity:.1f}")

    names = list(curves)
    print(f"\nvalidation loss (nats/token) by position in the window of {a.seq_len}:")
    print(f"{'positions':>10}  " + "  ".join(f"{n[:28]:>28}" for n in names))
    for lo, hi in buckets(a.seq_len):
        label = f"{lo}" if hi == lo + 1 else f"{lo}-{hi - 1}"
        print(f"{label:>10}  " + "  ".join(f"{curves[n][lo - 1:hi - 1].mean():>28.3f}" for n in names))
    print("\nwhat far context buys (mean loss at positions 8-15 minus mean loss from each position on):")
    last = a.seq_len
    for start in (16, 32, 64):
        if start >= last:
            continue
        row = "  ".join(f"{curves[n][7:15].mean() - curves[n][start - 1:].mean():>+28.3f}" for n in names)
        print(f"{f'{start}-{last - 1}':>10}  {row}")

    if a.plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("--plot needs matplotlib: pip install candlewick[plot]")
            return
        fig, ax = plt.subplots(figsize=(7, 4))
        x = np.arange(1, a.seq_len)
        for n in names:
            ax.plot(x, curves[n], label=n)
        ax.set_xscale("log")
        ax.set_xlabel("position in the context window (tokens before it)")
        ax.set_ylabel("validation loss (nats/token)")
        ax.set_title(f"What context buys: same text, tokenizer, {budget:,} training tokens")
        ax.legend()
        fig.tight_layout()
        fig.savefig(a.plot, dpi=120)
        print(f"\nwrote {a.plot}")


if __name__ == "__main__":
    main()
