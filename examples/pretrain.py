"""Pretrain three tiny transformers from scratch on the text that ships with candlewick, each
with its architecture's objective, in a few minutes on 2 cores:

- an encoder (BERT) with masked LM: before and after, it fills in a masked word;
- a decoder (Llama) with causal LM: before and after, it continues a prompt;
- an encoder-decoder (T5) with span corruption: before and after, it reconstructs a dropped span.

    python examples/pretrain.py [--steps 300] [--seq-len 64]

The text: examples/data/kjv-genesis-judges.txt, the books Genesis to Judges of the King James
Version of the Bible (1611), about 1 MB, one verse per line. The translation's copyright has
expired (it is in the public domain outside the United Kingdom, where the Crown's letters patent
apply); the file was extracted from Debian's bible-kjv-text package, whose copyright file says
so. A byte-level BPE tokenizer (512 merges) is trained on it here, in plain Python, so nothing
is downloaded.
"""

import argparse
import collections
import json
import os
import re
import tempfile
import time
from typing import Any, Counter, Dict, Tuple

import candlewick as cw

HERE = os.path.dirname(os.path.abspath(__file__))
TEXT = os.path.join(HERE, "data", "kjv-genesis-judges.txt")
SENTINELS = 32


def bytes_to_unicode():
    """GPT-2's map of the 256 bytes to printable characters (what a ByteLevel pre-tokenizer uses)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def train_tokenizer(lines, merges_wanted, path):
    """A byte-level BPE tokenizer.json: the 256 bytes, `merges_wanted` merges learned from word
    counts, then <pad>, </s>, [MASK] and the T5 sentinels, <extra_id_0> last (T5 counts its
    sentinels down from the top of the vocabulary)."""
    b2u = bytes_to_unicode()
    words: Dict[Tuple[str, ...], int] = collections.Counter()
    for line in lines:
        for w in re.findall(r" ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+", line):
            words[tuple(b2u[b] for b in w.encode("utf-8"))] += 1
    vocab = {c: i for i, c in enumerate(b2u.values())}
    merges = []
    words = {w: c for w, c in words.items()}
    for _ in range(merges_wanted):
        pairs: Counter[Tuple[str, str]] = collections.Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[a, b] += c
        if not pairs:
            break
        (a, b), _ = pairs.most_common(1)[0]
        merges.append(f"{a} {b}")
        vocab[a + b] = len(vocab)
        new: Dict[Tuple[str, ...], int] = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] = c
        words = new
    specials = ["<pad>", "</s>", "[MASK]"] + [f"<extra_id_{i}>" for i in reversed(range(SENTINELS))]
    added = []
    for s in specials:
        vocab[s] = len(vocab)
        added.append({"id": vocab[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True})
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tok, f)
    return cw.Tokenizer.from_file(path)


def show(title, model, kind):
    if kind == "encoder":
        fills = model.fill_mask("And God said, Let there be[MASK]", top_k=3)
        print(f"  {title}: fill-mask 'Let there be[MASK]' ->", [f["token_str"] for f in fills[0]])
    elif kind == "decoder":
        out = model.generate("And the LORD said unto Moses,", max_new_tokens=24, do_sample=False)
        print(f"  {title}: continuation -> {out.text!r}")
    else:
        out = model.generate("In the beginning God created<extra_id_0> and the earth.", max_new_tokens=12, do_sample=False)
        # the sentinels are special tokens: decode with them, to see which span is which
        print(f"  {title}: span reconstruction of 'God created<extra_id_0> and the earth.' -> "
              f"{model.tokenizer.decode(out.token_ids)!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--merges", type=int, default=512)
    ap.add_argument("--only", choices=["encoder", "decoder", "encoder-decoder"])
    ap.add_argument("--lr", type=float, default=2e-3)
    a = ap.parse_args()
    with open(TEXT, encoding="utf-8") as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    print(f"{TEXT}: {sum(map(len, lines)):,} characters in {len(lines):,} verses")
    tmp = tempfile.mkdtemp()
    t0 = time.perf_counter()
    tok = train_tokenizer(lines, a.merges, os.path.join(tmp, "tokenizer.json"))
    print(f"tokenizer: {len(tok)} tokens, trained in {time.perf_counter() - t0:.1f} s")
    held_out = lines[-200:]
    train_lines = lines[:-200]
    common: Dict[str, Any] = dict(vocab_size=len(tok), hidden_size=128, num_layers=3, num_heads=4, intermediate_size=512,
                  max_position_embeddings=256)
    runs = [
        ("encoder", "mlm", cw.ModelConfig.for_family("bert", mlm_head=True, **common)),
        ("decoder", "clm", cw.ModelConfig.for_family("llama", **common)),
        ("encoder-decoder", "span_corruption", cw.ModelConfig.for_family("t5", **common)),
    ]
    for kind, objective, cfg in runs:
        if a.only and kind != a.only:
            continue
        model = cw.Model.from_config(cfg, seed=0, tokenizer=tok)
        print(f"\n{kind} ({cfg.family}, {model.info['num_parameters']:,} parameters), objective {objective}")
        show("before", model, kind)
        r = cw.train(model, train_lines, objective, steps=a.steps, batch_size=a.batch_size, seq_len=a.seq_len, lr=a.lr,
                     warmup_steps=a.steps // 10, seed=0, eval_data=held_out, eval_every=max(a.steps // 4, 1))
        for h in r.history[:: max(a.steps // 6, 1)] + r.history[-1:]:
            print(f"  step {h['step']:4}: loss {h['loss']:.3f}  ({h['tokens_per_s']:,.0f} tokens/s)")
        print(f"  held-out loss {r.evals[-1]['loss']:.3f} (perplexity {r.evals[-1]['perplexity']:.1f}) in {r.seconds:.0f} s")
        show("after", model, kind)


if __name__ == "__main__":
    main()
