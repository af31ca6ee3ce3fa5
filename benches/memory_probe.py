"""Measure what the process really holds: resident memory (RSS) after freed heap memory is handed
back to the OS, for the weights of a loaded model and for a request's KV cache. Shared by
benches/bench_memory.py and tests/test_memory.py."""

import ctypes
import gc
import os

_libc = ctypes.CDLL(None)


def rss_bytes() -> int:
    """Resident bytes of this process, after malloc_trim (glibc) returns freed heap pages."""
    gc.collect()
    try:
        _libc.malloc_trim(0)
    except AttributeError:
        pass
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def mapped_rss(path_part: str) -> int:
    """Resident bytes of this process's mappings of files whose path contains `path_part`."""
    total, cur = 0, ""
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                cur = head[5] if len(head) > 5 else ""
            elif line.startswith("Rss:") and path_part in cur:
                total += int(head[1]) * 1024
    return total


def measure_weights(load, path_part, load_tokenizer=None):
    """After loading a model and running it once (so every weight page has been read), the bytes
    its weights take in this process, and the whole RSS growth. Weights are either mmapped (the
    resident bytes of the file's mapping) or copied into memory (GGUF tensor data and safetensors
    since candlewick reads them into its own memory: the RSS growth less that of loading the
    tokenizer alone, measured first with `load_tokenizer`)."""
    tok = 0
    if load_tokenizer is not None:
        load_tokenizer()  # warm: first-use allocations of the library are not the tokenizer's
        before = rss_bytes()
        keep = load_tokenizer()
        tok = rss_bytes() - before
        del keep
    before, mapped_before = rss_bytes(), mapped_rss(path_part)
    model = load()
    if model.config.architecture == "encoder":
        model.encode("Warm up: every weight is read once.")
    else:
        model.generate(model.tokenizer.encode("Warm up: every weight is read once."), max_new_tokens=2)
    grown = rss_bytes() - before
    mapped = mapped_rss(path_part) - mapped_before
    return model, (mapped if mapped > 0 else grown - tok), grown


def measure_kv(model, tokens):
    """RSS growth while a request holds a KV cache of `tokens` positions, filled by a prefill of
    tokens - 1 prompt tokens; and the bytes the engine says it allocated."""
    text = "The quick brown fox jumps over the lazy dog while the cat sleeps. " * (tokens // 8 + 8)
    ids = model.tokenizer.encode(text)[: tokens - 1]
    before = rss_bytes()
    stream = model.stream(ids, max_new_tokens=1, ignore_eos=True)
    next(iter(stream), None)
    grown = rss_bytes() - before
    allocated = stream.kv_cache_bytes
    stream.close()
    return grown, allocated


def measure_built(cw, cfg):
    """RSS growth from building `cfg` with random weights and running it once, after the same
    for a one-layer model of the same vocabulary has warmed the process up; less that small
    model's growth beyond its own weights (the ids-only tokenizer and tables)."""
    small = cw.ModelConfig.for_family(cfg.family, vocab_size=cfg.vocab_size, hidden_size=16, num_layers=1,
                                      num_heads=2, intermediate_size=16, max_position_embeddings=cfg.max_position_embeddings)

    def grow(c):
        before = rss_bytes()
        m = cw.Model.from_config(c, seed=0)
        if c.architecture == "encoder":
            m.encode("[1] [2] [3]")
        else:
            m.generate([1, 2, 3], max_new_tokens=2, ignore_eos=True)
        return m, rss_bytes() - before

    grow(small)  # warm-up: first-use allocations of the engine
    _, small_growth = grow(small)
    overhead = small_growth - small.num_parameters * 4
    model, grown = grow(cfg)
    return model, grown - overhead, grown
