"""Hostile files and arguments, each in its own process (timeout + address-space limit): every
case must end in a clean exception naming what was wrong, or in correct behaviour — never an
abort, a PanicException, a hang, runaway memory or garbage. Cases follow the classes of
issue 12; the fuzzers (fuzz/, tests/test_fuzz_python.py) look for more."""

import json
import os
import shutil
import struct

import pytest

import hostile
from gguf_writer import Gguf

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
TINY = os.path.join(FIX, "tiny-llama")


@pytest.fixture(scope="module")
def smol():
    import candlewick as cw

    return cw.resolve("smollm2-135m-instruct")


def gguf_case(tmp_path, smol, edit, code, name="x.gguf", **kw):
    g = Gguf(smol)
    data = edit(g)
    p = tmp_path / name
    g.write(p, data)
    return hostile.check(f"P = {str(p)!r}\n" + code, **kw)


LOAD_FAILS = "expect(lambda: cw.load(P), cw.CandlewickError)\n"


# --- GGUF headers: numbers checked before anything is allocated from them -------------------

@pytest.mark.parametrize(
    "key,value,match",
    [
        ("llama.block_count", 2**40, "block_count"),
        ("llama.block_count", 0, "block_count"),
        ("llama.embedding_length", 2**62, "embedding_length"),
        ("llama.attention.head_count", 0, "head_count"),
        ("llama.feed_forward_length", 2**63, "feed_forward_length"),
        ("llama.vocab_size", 2**40, "vocab"),
        ("llama.rope.dimension_count", 2**33, "dimension_count"),
    ],
)
def test_gguf_huge_or_zero_sizes(tmp_path, smol, key, value, match):
    def edit(g):
        g.set(key, value, ty=10)

    gguf_case(tmp_path, smol, edit, f"expect(lambda: cw.load(P), cw.CandlewickError, match={match!r})\n")


def test_gguf_huge_context_is_lazy(tmp_path, smol):
    # the RoPE table and KV cache follow what is used, not the context the file claims
    def edit(g):
        g.set("llama.context_length", 2**40, ty=10)

    out = gguf_case(tmp_path, smol, edit, """
m = cw.load(P)
o = m.generate("Hi", max_new_tokens=3, do_sample=False)
print("OK", o.finish_reason, m.context_length)
""", mem_gib=3)
    assert "OK" in out


def test_gguf_duplicate_key_refused(tmp_path, smol):
    def edit(g):
        g.kvs.append(("llama.block_count", 4, struct.pack("<I", 3)))

    gguf_case(tmp_path, smol, edit, "expect(lambda: cw.load(P), cw.ModelFileError, match='llama.block_count')\n")


def test_gguf_array_longer_than_file(tmp_path, smol):
    def edit(g):
        for i, (k, ty, raw) in enumerate(g.kvs):
            if k == "tokenizer.ggml.token_type":
                g.kvs[i] = (k, ty, raw[:4] + struct.pack("<Q", 2**40) + raw[12:])

    gguf_case(tmp_path, smol, edit, LOAD_FAILS, mem_gib=2)


@pytest.mark.parametrize("how", ["type", "overlap", "gap", "order", "shape"])
def test_gguf_tensor_layout_checked(tmp_path, smol, how):
    def edit(g):
        t = g.tensors
        if how == "type":  # Q4_1 (3) -> Q8_0 (8): the bytes no longer match the type
            i = next(i for i, x in enumerate(t) if x[2] == 3)
            t[i][2] = 8
        elif how == "overlap":
            t[5][3] = t[4][3]
        elif how == "gap":
            for x in t[7:]:
                x[3] += 64
            return g.data + b"\0" * 64
        elif how == "order":
            t[3][3], t[4][3] = t[4][3], t[3][3]
        elif how == "shape":
            i = next(i for i, x in enumerate(t) if x[0] == "blk.0.attn_norm.weight")
            t[i][1] = [288]

    gguf_case(tmp_path, smol, edit, LOAD_FAILS)


def test_gguf_truncated_after_load_stays_safe(tmp_path, smol):
    # the weights are the process's own once loaded: a file shrinking under it cannot crash it
    p = tmp_path / "m.gguf"
    shutil.copy(smol, p)
    out = hostile.check(f"""
P = {str(p)!r}
m = cw.load(P)
os.truncate(P, 4096)
o = m.generate("Hello", max_new_tokens=4, do_sample=False)
print("OK", len(o.token_ids))
""")
    assert "OK" in out


@pytest.mark.parametrize("kind", ["fifo", "dir", "device", "dir-in-folder"])
def test_not_regular_files(tmp_path, kind):
    p = tmp_path / "x.gguf"
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "dir":
        p.mkdir()
    elif kind == "device":
        os.symlink("/dev/zero", p)
    else:
        d = tmp_path / "model"
        shutil.copytree(TINY, d)
        os.remove(d / "config.json")
        os.mkfifo(d / "config.json")
        p = d
    hostile.check(f"P = {str(p)!r}\nexpect(lambda: cw.load(P), cw.CandlewickError, OSError)\n", timeout=60)


def test_fifo_tokenizer_and_config(tmp_path):
    f = tmp_path / "tokenizer.json"
    os.mkfifo(f)
    hostile.check(f"""
expect(lambda: cw.Tokenizer.from_file({str(f)!r}), cw.CandlewickError, OSError)
expect(lambda: cw.estimate_memory({str(f)!r}), cw.CandlewickError, OSError, ValueError)
""", timeout=60)


# --- safetensors and HF folders ------------------------------------------------------------

def st_parts(path):
    b = open(path, "rb").read()
    (n,) = struct.unpack("<Q", b[:8])
    return json.loads(b[8 : 8 + n]), b[8 + n :]


def st_write(path, header, data, n=None):
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h) if n is None else n) + h + data)


def tiny_copy(tmp_path):
    d = tmp_path / "m"
    shutil.copytree(TINY, d)
    return d


@pytest.mark.parametrize("how", ["len-1", "len+8", "overlap", "gap", "past-end", "dup-key"])
def test_safetensors_layout_checked(tmp_path, how):
    d = tiny_copy(tmp_path)
    p = d / "model.safetensors"
    header, data = st_parts(p)
    names = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8) + b"        "
    if how == "len-1":
        with open(p, "wb") as f:
            f.write(struct.pack("<Q", len(h) - 1) + h + data)
    elif how == "len+8":
        with open(p, "wb") as f:
            f.write(struct.pack("<Q", len(h) - 8) + h + data)
    elif how == "overlap":
        a, b = names[0], names[1]
        s = header[a]["data_offsets"][0]
        n = header[b]["data_offsets"][1] - header[b]["data_offsets"][0]
        header[b]["data_offsets"] = [s, s + n] if s + n <= header[a]["data_offsets"][1] else header[b]["data_offsets"]
        header[b]["data_offsets"] = [header[a]["data_offsets"][0], header[a]["data_offsets"][0] + n]
        st_write(p, header, data)
    elif how == "gap":
        st_write(p, header, data + b"\0" * 16)
    elif how == "past-end":
        last = names[-1]
        s, e = header[last]["data_offsets"]
        header[last]["data_offsets"] = [s + 8, e + 8]
        st_write(p, header, data)
    elif how == "dup-key":
        a = names[0]
        h = json.dumps(header)[:-1] + ", " + json.dumps(a) + ": " + json.dumps(header[a]) + "}"
        hb = h.encode()
        hb += b" " * ((-len(hb)) % 8)
        with open(p, "wb") as f:
            f.write(struct.pack("<Q", len(hb)) + hb + data)
    hostile.check(f"P = {str(d)!r}\nexpect(lambda: cw.load(P), cw.ModelFileError)\n")


def test_stray_shard_cannot_override(tmp_path):
    d = tiny_copy(tmp_path)
    header, data = st_parts(d / "model.safetensors")
    name = next(k for k in header if k != "__metadata__")
    s, e = header[name]["data_offsets"]
    st_write(d / "zz-extra.safetensors", {name: dict(header[name], data_offsets=[0, e - s])}, b"\x7f" * (e - s))
    hostile.check(f"P = {str(d)!r}\nexpect(lambda: cw.load(P), cw.ModelFileError, match={name!r})\n")


def test_index_names_the_shards(tmp_path):
    # with model.safetensors.index.json, only the files it names are read, each tensor from its file
    d = tiny_copy(tmp_path)
    header, data = st_parts(d / "model.safetensors")
    names = [k for k in header if k != "__metadata__"]
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {n: "model.safetensors" for n in names}}))
    shutil.copy(d / "model.safetensors", d / "stray.safetensors")
    out = hostile.check(f"P = {str(d)!r}\nm = cw.load(P)\nprint('OK', m.generate('hi', max_new_tokens=2).finish_reason)\n")
    assert "OK" in out
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {names[0]: "missing.safetensors"}}))
    hostile.check(f"P = {str(d)!r}\nexpect(lambda: cw.load(P), cw.ModelFileError, match='missing.safetensors')\n")


CONFIG_EDITS = [
    ("hidden_size", "64"),
    ("hidden_size", 64.5),
    ("num_hidden_layers", 2**40),
    ("num_hidden_layers", 2**64 - 1),
    ("num_attention_heads", -4),
    ("intermediate_size", [64]),
    ("vocab_size", 2**62),
    ("rms_norm_eps", "1e-6"),
    ("rope_theta", "10000"),
    ("rope_theta", -1.0),
    ("tie_word_embeddings", "yes"),
    ("max_position_embeddings", "2048"),
    ("num_key_value_heads", 3),
    ("head_dim", {"a": 1}),
    ("hidden_act", 7),
    ("attention_bias", 1),
    ("model_type", ["llama"]),
    ("rope_scaling", "linear"),
    ("bos_token_id", "one"),
    ("eos_token_id", 2**40),
]


@pytest.mark.parametrize("key,value", CONFIG_EDITS, ids=[f"{k}={v!r}"[:40] for k, v in CONFIG_EDITS])
def test_config_json_fields_checked(tmp_path, key, value):
    d = tiny_copy(tmp_path)
    c = json.loads((d / "config.json").read_text())
    if key == "rope_theta":
        del c["rope_parameters"]  # transformers 5 reads rope_parameters first
    c[key] = value
    (d / "config.json").write_text(json.dumps(c))
    out = hostile.check(f"P = {str(d)!r}\ne = expect(lambda: cw.load(P), cw.CandlewickError, ValueError, TypeError)\n"
                        f"assert {key!r} in str(e), str(e)\nprint('usable', cw.load({TINY!r}).generate('hi', max_new_tokens=1).finish_reason)\n")
    assert "CLEAN" in out


def test_generation_config_fields_checked(tmp_path):
    d = tiny_copy(tmp_path)
    (d / "generation_config.json").write_text(json.dumps({"max_new_tokens": "many", "temperature": "hot"}))
    hostile.check(f"P = {str(d)!r}\ne = expect(lambda: cw.load(P), cw.CandlewickError, ValueError, TypeError)\n")


# --- configs users build --------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [("vocab_size", 2**40), ("num_layers", 2**40), ("hidden_size", 2**63),
                                         ("intermediate_size", 2**64 - 1), ("max_position_embeddings", 2**62)])
def test_model_config_sizes(field, value):
    hostile.check(f"""
expect(lambda: cw.Model.from_config(cw.ModelConfig.for_family("llama", {field}={value})), ValueError, OverflowError, match={field.split('_')[0]!r})
""")


# --- tokenizer.json ---------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["(a|aa)+$", "(\\w+\\s?)*$"])
def test_backtracking_regex_is_an_error(tmp_path, pattern):
    # onig stops at its retry limit and the tokenizers crate panics on that: a clean error here
    t = json.loads(open(os.path.join(TINY, "tokenizer.json")).read())
    t["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}
    p = tmp_path / "tokenizer.json"
    p.write_text(json.dumps(t))
    hostile.check(f"""
tok = cw.Tokenizer.from_file({str(p)!r})
expect(lambda: tok.encode("a" * 40000 + "!"), cw.CandlewickError, match="backtrack")
print("usable", tok.encode("b"))
""", timeout=60)


def test_tokenizer_json_that_made_the_tokenizers_crate_panic(tmp_path):
    # found by the tokenizer_json fuzzer: the tokenizers crate panicked on these (a decoder entry
    # it cannot parse; a template post-processor naming a special token it lacks)
    crash = os.path.join(FIX, "fuzz", "tokenizer_json")
    for f in os.listdir(crash):
        out = hostile.check(f"""
try:
    t = cw.Tokenizer.from_file({os.path.join(crash, f)!r})
    ids = t.encode("Hello wörld, <s> 12 345", add_special_tokens=True)
    print("ENCODED", t.decode(ids))
except cw.CandlewickError as e:
    print("CLEAN", e)
""")
        assert "CLEAN" in out or "ENCODED" in out


def test_tokenizer_json_hostile_numbers(tmp_path):
    t = json.loads(open(os.path.join(TINY, "tokenizer.json")).read())
    t["added_tokens"] = [{"id": 2**40, "content": "<x>", "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True}]
    p = tmp_path / "tokenizer.json"
    p.write_text(json.dumps(t))
    hostile.check(f"expect(lambda: cw.Tokenizer.from_file({str(p)!r}), cw.CandlewickError)\n")


# --- chat templates ---------------------------------------------------------------------------

TEMPLATES = [
    ("list doubling", "{% set ns = namespace(x=[1]) %}{% for i in range(64) %}{% set ns.x = ns.x + ns.x %}{% endfor %}{{ ns.x|length }}"),
    ("string doubling", "{% set ns = namespace(x='ab') %}{% for i in range(64) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x|length }}"),
    ("nested loops", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"),
    ("big filter", "{{ ('a' * 50000000)|replace('a', 'aaaaaaaaaaaaaaaaaaaa') }}"),
    ("big join", "{% set ns = namespace(x=['aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa']) %}{% for i in range(30) %}{% set ns.x = ns.x + ns.x %}{% endfor %}{{ ns.x|join(',') }}"),
    ("big center", "{{ 'a'|center(4000000000) }}"),
    ("big output", "{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}"),
    ("deep recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
    ("file access", "{% include '/etc/passwd' %}"),
    ("attribute walk", "{{ messages.__class__.__mro__ }}{{ cycler.__init__.__globals__ }}{{ ''.__class__ }}"),
    # found by the chat_template fuzzer: a namespace holding itself was printed until the stack
    # overflowed
    ("namespace cycle", "{% set ns = namespace(a=1) %}{% set ns.s = [{'x': ns}] %}{{ ns }}"),
    ("namespace pair cycle", "{% set a = namespace() %}{% set b = namespace(a=a) %}{% set a.b = b %}{{ a == b }}{{ a|tojson }}"),
    # found by the chat_template fuzzer: minijinja's printf parser sliced inside the 'é'
    ("format key utf8", "{{ '%(é)s and %(󎋞)s'|format({'é': 'ok', '󎋞': 'fine'}) }}"),
]


@pytest.mark.parametrize("name,template", TEMPLATES, ids=[n for n, _ in TEMPLATES])
def test_hostile_chat_templates(tmp_path, smol, name, template):
    # the template a GGUF file ships (tokenizer.chat_template), rendered by the tokenizer read
    # from that file
    g = Gguf(smol)
    raw = template.encode()
    g.set("tokenizer.chat_template", struct.pack("<Q", len(raw)) + raw, ty=8)
    p = tmp_path / "t.gguf"
    g.write(p)
    out = hostile.check(f"""
tok = cw.Tokenizer.from_file({str(p)!r})
assert tok.chat_template == {template!r}
t0 = time.monotonic()
try:
    r = tok.apply_chat_template([{{"role": "user", "content": "hi"}}])
    print("RENDERED", len(r), r[:200])
except (ValueError, cw.CandlewickError) as e:
    print("CLEAN", type(e).__name__, e)
print("seconds", round(time.monotonic() - t0, 2))
""", timeout=60, mem_gib=3)
    assert "root:" not in out and "__globals__" not in out and "mro" not in out
    print(name, out.strip().replace("\n", " | ")[:200])
    assert "no chat template" not in out, out
    if name == "format key utf8":
        assert "RENDERED" in out and "ok and fine" in out, out
    elif name != "attribute walk":
        assert "CLEAN" in out, out


# --- generation arguments --------------------------------------------------------------------

GEN_ARGS = [
    ("num_beams", 2**62), ("num_beams", 10**5), ("num_return_sequences", 10**9),
    ("max_new_tokens", 2**62), ("top_k", 2**63),
    ("num_beams", -1), ("temperature", "float('nan')"), ("top_p", "float('inf')"),
    ("repetition_penalty", 0.0), ("seed", 2**64), ("logprobs", 10**6),
]


@pytest.mark.parametrize("key,value", GEN_ARGS, ids=[f"{k}={v!r}" for k, v in GEN_ARGS])
def test_generation_argument_bounds(key, value):
    hostile.check(f"""
m = cw.load({TINY!r})
extra = {{"num_beams": 2}} if {key!r} == "num_return_sequences" else {{}}
expect(lambda: m.generate("hi", max_new_tokens=2, **extra, **{{{key!r}: {value if isinstance(value, str) else repr(value)}}}), ValueError, TypeError, OverflowError, match={key!r})
print("usable", m.generate("hi", max_new_tokens=2).finish_reason)
""", timeout=90)


def test_harmless_extremes_behave():
    # values a reference would accept and that cost nothing here run normally
    out = hostile.check(f"""
m = cw.load({TINY!r})
a = m.generate("hi", max_new_tokens=4, no_repeat_ngram_size=2**40).token_ids
b = m.generate("hi", max_new_tokens=4).token_ids
assert a == b, (a, b)
c = m.generate("hi", max_new_tokens=4, do_sample=True, top_k=2**62, seed=1).token_ids
d = m.generate("hi", max_new_tokens=4, do_sample=True, seed=1).token_ids
assert c == d, (c, d)
print("OK")
""")
    assert "OK" in out


def test_deeply_nested_arguments():
    hostile.check("""
x = 1
for _ in range(100000):
    x = [x]
expect(lambda: cw.GenerationConfig(stop=x), ValueError, TypeError)
d = {}
for _ in range(100000):
    d = {"a": d}
expect(lambda: cw.ModelConfig.for_family("llama", rope_scaling=d), ValueError, TypeError)
""")


def test_sample_count_bounded():
    hostile.check("""
import numpy as np
expect(lambda: cw.sample(np.zeros(8, np.float32), num_samples=10**12), ValueError, match="num_samples")
""", mem_gib=2)


def test_tiny_temperature_is_greedy():
    out = hostile.check(f"""
import numpy as np
m = cw.load({TINY!r})
g = m.generate("hello there", max_new_tokens=8, do_sample=False).token_ids
for t in (1e-40, 1e-30, 5e-324):
    s = m.generate("hello there", max_new_tokens=8, do_sample=True, temperature=t, seed=1).token_ids
    assert s == g, (t, s, g)
logits = np.array([0.0, 5.0, 1.0], np.float32)
assert list(cw.sample(logits, temperature=1e-40, num_samples=5, seed=3)) == [1] * 5
print("OK")
""")
    assert "OK" in out


def test_all_banned_vocabulary_is_an_error():
    hostile.check(f"""
import math
m = cw.load({TINY!r})
bias = {{i: -math.inf for i in range(m.tokenizer.vocab_size)}}
for sample in (False, True):
    expect(lambda: m.generate("hi", max_new_tokens=3, do_sample=sample, logit_bias=bias), ValueError, cw.CandlewickError, match="token")
""")


# --- Ctrl-C -------------------------------------------------------------------------------------

@pytest.mark.parametrize("verb", ["generate", "beams", "batch", "logits", "score"])
def test_ctrl_c_reaches_python(smol, verb):
    # a SIGINT 0.3 s into a long call must surface as KeyboardInterrupt long before the call
    # would have finished, and the model must stay usable
    calls = {
        "generate": 'm.generate("Once upon a time", max_new_tokens=1500, do_sample=False, stop=[])',
        "beams": 'm.generate("Once upon a time", max_new_tokens=1500, num_beams=4, min_new_tokens=1400)',
        "batch": 'm.generate(["Once upon a time"] * 8, max_new_tokens=1500, do_sample=False)',
        "logits": 'm.logits([[100] * 2000] * 6)',
        "score": 'm.score("Once upon a time " * 100, ["x " * 400] * 40)',
    }
    out = hostile.check(f"""
import threading
m = cw.load({smol!r})
def fire():
    time.sleep(0.3)
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=fire).start()
t0 = time.monotonic()
try:
    {calls[verb]}
    print("FINISHED", time.monotonic() - t0)
except KeyboardInterrupt:
    print("INTERRUPTED", round(time.monotonic() - t0 - 0.3, 3))
print("usable", m.generate("Hi", max_new_tokens=2, do_sample=False).finish_reason)
""", timeout=300)
    assert "INTERRUPTED" in out, out
    late = float(out.split("INTERRUPTED")[1].split()[0])
    print(verb, "interrupt latency", late)


def test_ctrl_c_in_embedding_training_and_templates(smol):
    minilm = None
    import candlewick as cw

    minilm = cw.resolve("all-minilm-l6-v2")
    out = hostile.check(f"""
import threading
def fire(after):
    def go():
        time.sleep(after)
        os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=go).start()

def timed(name, call):
    fire(0.3)
    t0 = time.monotonic()
    try:
        r = call()
        print(name, "FINISHED", round(time.monotonic() - t0, 3), r if name == "train" else "")
    except KeyboardInterrupt:
        print(name, "INTERRUPTED", round(time.monotonic() - t0 - 0.3, 3))

e = cw.load({minilm!r})
timed("embed", lambda: e.embed(["a fairly long sentence to embed, again and again"] * 3000))
print("usable", e.embed(["ok"]).shape)
cfg = cw.ModelConfig.for_family("llama", vocab_size=512, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=512,
                                max_position_embeddings=512)
m = cw.Model.from_config(cfg, seed=0)
data = [list(range(1, 500))] * 64
timed("train", lambda: cw.train(m, data, steps=3, batch_size=16, seq_len=480).interrupted)
""", timeout=300)
    assert "embed INTERRUPTED" in out, out
    assert "train INTERRUPTED" in out or "train FINISHED" in out and "True" in out, out


# --- saving -------------------------------------------------------------------------------------

def test_failed_save_leaves_old_folder_whole(tmp_path):
    # the second save fails part way (a file-size limit: EFBIG, as a full disk fails a write)
    out = hostile.check(f"""
cfg = cw.ModelConfig.for_family("llama", vocab_size=512, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128)
a = cw.Model.from_config(cfg, seed=1)
b = cw.Model.from_config(cfg, seed=2)
d = {str(tmp_path / 'out')!r}
a.save(d)
before = {{f: open(os.path.join(d, f), "rb").read() for f in os.listdir(d)}}
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
e = expect(lambda: b.save(d), OSError, cw.CandlewickError, match="cannot write")
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
after = {{f: open(os.path.join(d, f), "rb").read() for f in os.listdir(d)}}
assert before == after, "the old folder changed"
print("LEFT", sorted(os.listdir(os.path.dirname(d))))
b.save(d)
assert cw.load(d).state_dict()["model.embed_tokens.weight"].tobytes() == b.state_dict()["model.embed_tokens.weight"].tobytes()
print("OK", sorted(os.listdir(os.path.dirname(d))))
""")
    assert "LEFT ['out']" in out and "OK ['out']" in out, out
