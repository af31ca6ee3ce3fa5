"""Refit the float32 training-activation coefficients of estimate_memory (src/memory.rs) to the heap
cw.train really uses: measures 8 shapes per family (bench_train_memory.measure), then fits
c_h, c_ff, c_a, c_v, c_e by least squares on relative error, dropping (zeroing) any coefficient
that comes out negative and refitting the others, and prints them with
the estimate/measured ratio per shape.

    python benches/fit_train_memory.py
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train_memory import measure  # noqa: E402

SHAPES = [
    (4, 64, dict(vocab_size=2048, hidden_size=128, num_layers=2, num_heads=4, intermediate_size=384)),
    (2, 12, dict(vocab_size=96, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64)),
    (8, 128, dict(vocab_size=8192, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024)),
    (4, 256, dict(vocab_size=4096, hidden_size=256, num_layers=2, num_heads=8, intermediate_size=768)),
    (2, 64, dict(vocab_size=16384, hidden_size=384, num_layers=6, num_heads=6, intermediate_size=1024)),
    (4, 192, dict(vocab_size=16384, hidden_size=512, num_layers=4, num_heads=8, intermediate_size=1536)),
    (8, 64, dict(vocab_size=4096, hidden_size=192, num_layers=3, num_heads=3, intermediate_size=512)),
    (2, 128, dict(vocab_size=8192, hidden_size=256, num_layers=8, num_heads=4, intermediate_size=704)),
]


def nonnegative_fit(A, b):
    keep = list(range(A.shape[1]))
    while True:
        c = np.zeros(A.shape[1])
        c[keep] = np.linalg.lstsq(A[:, keep], b, rcond=None)[0]
        neg = [i for i in keep if c[i] < 0]
        if not neg:
            return c
        keep.remove(min(neg, key=lambda i: c[i]))


def stacked_layers(family, n):
    # bench_train_memory.measure gives T5 n encoder + n decoder layers, halving n above 4
    if family != "t5":
        return n
    return n if n > 4 else 2 * n


def main():
    measure("llama", *SHAPES[1])  # first use: the worker pool and lazy tables, not training
    for family in ["llama", "gpt2", "bert", "t5"]:
        X, y, w, rows = [], [], [], []
        for b, s, kw in SHAPES:
            kw = dict(kw, max_position_embeddings=512)
            _, got, est = measure(family, b, s, kw)
            rest = est.total_bytes - est.breakdown["activations"]
            L = stacked_layers(family, kw["num_layers"])
            h, ff, a, v = kw["hidden_size"], kw["intermediate_size"], kw["num_heads"], kw["vocab_size"]
            X.append([4 * L * s * b * h, 4 * L * s * b * ff, 4 * L * s * b * a * s, 4 * s * b * v, 4 * s * b * h])
            y.append(got - rest - 65536 * L)
            w.append(1.0 / got)
            rows.append((got, rest, L))
        X, y, w = np.array(X, float), np.array(y, float), np.array(w)
        c = nonnegative_fit(X * w[:, None], y * w)
        ratios = [(rest + 65536 * L + xr @ c) / got for (got, rest, L), xr in zip(rows, X)]
        print(family, "c_h, c_ff, c_a, c_v, c_e =", np.round(c, 2).tolist(), "estimate/measured", np.round(ratios, 3).tolist(), flush=True)


if __name__ == "__main__":
    main()
