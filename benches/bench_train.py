"""Training speed and memory, candlewick against transformers on torch (eager, CPU), side by side
in one run on the same shapes: vocab 8192, hidden 256, 4 layers, 4 heads, feed-forward 1024,
sequence 128, batch 8, AdamW (lr 1e-3), for llama, gpt2, bert (masked LM) and t5 (span
corruption), and recurrent LMs of the same width (2 layers of LSTM or GRU: torch's nn.LSTM / nn.GRU
between an embedding and a head), at 1 and 2 threads. tokens/s counts the input tokens of each forward + backward +
optimizer step (median of the timed steps after warmup); peak RSS is the process's high-water mark.
Each measurement runs in its own process, alternating candlewick and torch, `--rounds` times.

    python benches/bench_train.py --torch-python ~/.cache/candlewick/torch-venv/bin/python [--rounds 3] [--steps 6]

The torch side needs a Python with torch and transformers (a throwaway venv); candlewick's side
runs in this Python.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

SHAPE = dict(vocab=8192, hidden=256, layers=4, heads=4, ff=1024, seq=128, batch=8)
FAMILIES = ["llama", "gpt2", "bert", "t5", "lstm", "gru"]

WORKER = r'''
import json, os, resource, sys, time
import numpy as np
fam, steps, threads, side = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
S = json.loads(sys.argv[5])
V, H, L, NH, FF, T, B = S["vocab"], S["hidden"], S["layers"], S["heads"], S["ff"], S["seq"], S["batch"]
rng = np.random.default_rng(0)
ids = rng.integers(5, V - 200, size=(B, T))
if fam == "bert":
    labels = np.where(rng.random((B, T)) < 0.15, ids, -100)
    dec = None
elif fam == "t5":
    labels = rng.integers(5, V - 200, size=(B, T // 4))
    dec = None
else:
    labels = ids.copy()
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
times = []
if side == "torch":
    import torch
    torch.set_num_threads(threads)
    import transformers as tr
    torch.manual_seed(0)
    class Rnn(torch.nn.Module):
        def __init__(self, cell):
            super().__init__()
            self.embed = torch.nn.Embedding(V, H)
            self.rnn = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(H, H, 2, batch_first=True)
            self.lm_head = torch.nn.Linear(H, V, bias=False)
        def forward(self, input_ids, labels):
            logits = self.lm_head(self.rnn(self.embed(input_ids))[0])
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1))
            return type("Out", (), {"loss": loss})
    if fam in ("lstm", "gru"):
        m = Rnn(fam)
    elif fam == "llama":
        m = tr.LlamaForCausalLM(tr.LlamaConfig(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=NH, num_key_value_heads=NH, intermediate_size=FF, max_position_embeddings=512, tie_word_embeddings=False))
    elif fam == "gpt2":
        m = tr.GPT2LMHeadModel(tr.GPT2Config(vocab_size=V, n_embd=H, n_layer=L, n_head=NH, n_inner=FF, n_positions=512, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0))
    elif fam == "bert":
        m = tr.BertForMaskedLM(tr.BertConfig(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=NH, intermediate_size=FF, max_position_embeddings=512, hidden_dropout_prob=0, attention_probs_dropout_prob=0))
    else:
        m = tr.T5ForConditionalGeneration(tr.T5Config(vocab_size=V, d_model=H, d_kv=H // NH, d_ff=FF, num_layers=L, num_heads=NH, dropout_rate=0, feed_forward_proj="relu", decoder_start_token_id=0, pad_token_id=0))
    m.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01)
    x, y = torch.tensor(ids), torch.tensor(labels)
    for s in range(steps):
        t0 = time.perf_counter()
        loss = m(input_ids=x, labels=y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step(); opt.zero_grad()
        times.append(time.perf_counter() - t0)
else:
    import candlewick as cw
    cw._native.set_num_threads(threads)
    if fam in ("lstm", "gru"):
        cfg = cw.ModelConfig(architecture="rnn", cell=fam, vocab_size=V, hidden_size=H, num_layers=2, max_position_embeddings=512)
    elif fam == "llama":
        cfg = cw.ModelConfig.for_family("llama", vocab_size=V, hidden_size=H, num_layers=L, num_heads=NH, num_kv_heads=NH, intermediate_size=FF, max_position_embeddings=512)
    elif fam == "gpt2":
        cfg = cw.ModelConfig.for_family("gpt2", vocab_size=V, hidden_size=H, num_layers=L, num_heads=NH, intermediate_size=FF, max_position_embeddings=512)
    elif fam == "bert":
        cfg = cw.ModelConfig.for_family("bert", vocab_size=V, hidden_size=H, num_layers=L, num_heads=NH, intermediate_size=FF, max_position_embeddings=512, mlm_head=True)
    else:
        cfg = cw.ModelConfig.for_family("t5", vocab_size=V, hidden_size=H, num_layers=L, num_heads=NH, intermediate_size=FF, max_position_embeddings=512)
    m = cw.Model.from_config(cfg, seed=0)
    obj = {"llama": "clm", "gpt2": "clm", "bert": "mlm", "t5": "span_corruption", "lstm": "clm", "gru": "clm"}[fam]
    data = {"input_ids": ids, "labels": labels}
    r = cw.train(m, data, obj, steps=steps, batch_size=B, seq_len=T, lr=1e-3, schedule="constant", seed=0, progress=False)
    times = [h["tokens"] / h["tokens_per_s"] for h in r.history]
timed = times[2:] if len(times) > 3 else times
print(json.dumps({"tokens_per_s": B * T / sorted(timed)[len(timed) // 2], "rss": rss()}))
'''


def run(python, fam, steps, threads, side):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([python, "-c", WORKER, fam, str(steps), str(threads), side, json.dumps(SHAPE)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{side} {fam} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--torch-python", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--families", default=",".join(FAMILIES))
    a = ap.parse_args()
    print(f"shape {SHAPE}, {a.steps} steps per run, medians of {a.rounds} rounds")
    print(f"{'family':8} {'thr':>3} {'cw tok/s':>9} {'torch tok/s':>11} {'ratio':>6} {'cw RSS MB':>9} {'torch RSS MB':>12} {'RSS ratio':>9}")
    for fam in a.families.split(","):
        for th in [int(t) for t in a.threads.split(",")]:
            cw_r, t_r = [], []
            for _ in range(a.rounds):
                cw_r.append(run(sys.executable, fam, a.steps, th, "cw"))
                t_r.append(run(a.torch_python, fam, a.steps, th, "torch"))
            med = lambda rs, k: statistics.median(r[k] for r in rs)
            c, t = med(cw_r, "tokens_per_s"), med(t_r, "tokens_per_s")
            cr, tr_ = med(cw_r, "rss") / 2**20, med(t_r, "rss") / 2**20
            print(f"{fam:8} {th:>3} {c:>9.0f} {t:>11.0f} {c / t:>5.2f}x {cr:>9.0f} {tr_:>12.0f} {cr / tr_:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
