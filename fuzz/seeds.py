"""Write seed inputs for a fuzz target into its corpus folder, from the test fixtures: a tiny
Llama GGUF (built with tests/gguf_writer.py), the tiny models' safetensors and tokenizer.json,
and chat templates in the styles models ship."""

import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "tests", "fixtures")
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

TEMPLATES = [
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}[INST] {{ m.content|trim }} [/INST]{% else %}{{ m.content }}{{ eos_token }}{% endif %}{% endfor %}",
    "{% set ns = namespace(s='') %}{% for m in messages %}{% set ns.s = ns.s ~ m.content|upper %}{% endfor %}{{ ns.s|replace('A', 'b')|join(',') }}{{ messages|tojson }}",
    "{% macro f(x) %}{{ x * 2 }}{% endmacro %}{% for i in range(3) %}{{ f(i) }}{{ loop.index }}{% endfor %}{{ 'x'.center(3) if false }}{{ '%5d'|format(3) }}",
]


def tiny_gguf():
    from gguf_writer import write_gguf

    h, v, ff, layers = 8, 16, 16, 1
    meta = {"general.architecture": "llama", "llama.embedding_length": h, "llama.attention.head_count": 2,
            "llama.block_count": layers, "llama.feed_forward_length": ff, "llama.context_length": 32,
            "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": [chr(97 + i) for i in range(v - 1)] + ["ab"],
            "tokenizer.ggml.merges": ["a b"], "tokenizer.ggml.bos_token_id": 0, "tokenizer.ggml.eos_token_id": 1}
    f = lambda *s: struct.pack(f"<{eval('*'.join(map(str, s)))}f", *([0.01] * eval("*".join(map(str, s)))))
    ts = [("token_embd.weight", [v, h], f(v, h)), ("output_norm.weight", [h], f(h))]
    for i in range(layers):
        for n, s in [("attn_norm", [h]), ("attn_q", [h, h]), ("attn_k", [h, h]), ("attn_v", [h, h]),
                     ("attn_output", [h, h]), ("ffn_norm", [h]), ("ffn_gate", [ff, h]), ("ffn_up", [ff, h]),
                     ("ffn_down", [h, ff])]:
            ts.append((f"blk.{i}.{n}.weight", s, f(*s)))
    return ts, meta, write_gguf


def main(target, out):
    os.makedirs(out, exist_ok=True)
    seeds = {}
    if target == "gguf":
        ts, meta, write = tiny_gguf()
        p = os.path.join(out, "seed-tiny-llama.gguf")
        write(p, meta, ts)
        return
    if target == "safetensors":
        seeds["tiny-llama"] = open(os.path.join(FIX, "tiny-llama", "model.safetensors"), "rb").read()
    elif target == "tokenizer_json":
        for m in ("tiny-llama", "tiny-gpt2", "tiny-bert-mlm", "tiny-t5-relu"):
            p = os.path.join(FIX, m, "tokenizer.json")
            if os.path.exists(p):
                seeds[m] = open(p, "rb").read()
    elif target == "chat_template":
        for i, t in enumerate(TEMPLATES):
            seeds[f"t{i}"] = t.encode()
    for k, b in seeds.items():
        with open(os.path.join(out, f"seed-{k}"), "wb") as f:
            f.write(b)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
