"""What training really allocates, against cw.estimate_memory(training=True): the engine's heap
high-water mark over cw.train (two AdamW steps, so the optimizer moments exist during the second
step's forward and backward), counted by the allocator (cw._native.heap_bytes), minus what was
held before. Tiny models (the fixtures' shapes) and ~30M-parameter ones, per family.

    python benches/bench_train_memory.py [FAMILY,FAMILY...]
"""

import numpy as np

import candlewick as cw
from candlewick import _native

SHAPES = {
    "tiny": (2, 12, dict(vocab_size=96, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position_embeddings=64)),
    "bench": (8, 128, dict(vocab_size=8192, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024, max_position_embeddings=512)),
    "30M": (4, 192, dict(vocab_size=16384, hidden_size=512, num_layers=8, num_heads=8, intermediate_size=1536, max_position_embeddings=512)),
}
OBJECTIVE = {"decoder": "clm", "encoder": "mlm", "encoder-decoder": "span_corruption", "rnn": "clm"}
FAMILIES = ["llama", "gpt2", "bert", "t5", "rnn"]


def measure(family, batch, seq, kw):
    kw = dict(kw)
    if family == "bert":
        kw["mlm_head"] = True
    if family == "rnn":
        # a recurrent LM of the same width and depth (it has no heads or feed-forward layers)
        kw = {k: kw[k] for k in ("vocab_size", "hidden_size", "num_layers", "max_position_embeddings")}
    if family == "t5" and kw["num_layers"] > 4:
        kw["num_layers"] //= 2  # an encoder and a decoder stack
    cfg = cw.ModelConfig.for_family(family, **kw)
    model = cw.Model.from_config(cfg, seed=0)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, cfg.vocab_size - 5, size=(batch, seq))
    # span corruption's targets are about a quarter of its inputs
    labels = ids[:, : max(seq // 4, 2)] if family == "t5" else ids
    before, _ = _native.heap_bytes(reset=True)
    cw.train(model, {"input_ids": ids, "labels": labels}, OBJECTIVE[str(cfg.architecture)], steps=2, batch_size=batch,
             seq_len=seq, lr=1e-3, progress=False, seed=0)
    _, peak = _native.heap_bytes()
    est = cw.estimate_memory(cfg, training=True, batch_size=batch, seq_len=seq)
    return est.num_parameters, peak - before, est


def main():
    import sys

    families = sys.argv[1].split(",") if len(sys.argv) > 1 else FAMILIES
    measure("llama", *SHAPES["tiny"])  # first use: the worker pool and lazy tables, not training
    print(f"{'family':6} {'shape':6} {'params':>10} {'measured MB':>11} {'estimate MB':>11} {'ratio':>6}  breakdown (MB)")
    for name, (b, s, kw) in SHAPES.items():
        for family in families:
            n, got, est = measure(family, b, s, kw)
            parts = ", ".join(f"{k} {v / 2**20:.1f}" for k, v in est.breakdown.items() if v)
            print(f"{family:6} {name:6} {n:>10,} {got / 2**20:>11.1f} {est.total_bytes / 2**20:>11.1f} {est.total_bytes / got:>5.2f}x  {parts}", flush=True)


if __name__ == "__main__":
    main()
