"""cw.quantize: a GGUF model into another llama.cpp file type, as llama.cpp's quantize tool writes it."""

import os
from typing import Dict, Optional, Union

from . import _native, _progress
from ._model import Model
from ._native import UnsupportedError
from ._registry import resolve

_Source = Union[str, "os.PathLike[str]", Model]


def quantize(model_or_path: _Source, out_path: Union[str, "os.PathLike[str]"], type: str = "Q8_0",
             progress: Optional[bool] = None) -> Dict[str, str]:
    """Write the GGUF model `model_or_path` (a .gguf path, a model name, or a Model loaded from a
    GGUF file) to `out_path` as file type `type`: "Q4_K_M", "Q5_K_M", "Q8_0", "Q4_0", "Q6_K",
    "F16", "BF16" or "F32". The tensors are the bytes llama.cpp's quantize tool (no importance
    matrix) writes: every 2-D weight in that type, the output projection (or the embeddings tied
    to it) in Q6_K unless the type is Q8_0 or a float, and for the _M mixes attn_v and ffn_down
    in Q6_K in the layers llama.cpp picks; norms, metadata, tokenizer and chat template copied.
    The file is written atomically (a failure leaves no partial file). Returns {tensor name: type
    written}. Quantizing HF folders or models built in candlewick, and the other llama.cpp types
    (Q4_K_S, Q3_K_M, IQ4_XS, ...), are not built yet and raise UnsupportedError.

        types = cw.quantize("model-f16.gguf", "model-q4_k_m.gguf", type="Q4_K_M")
        cw.load("model-q4_k_m.gguf").generate("Hello", max_new_tokens=8)
    """
    if not isinstance(type, str):
        raise TypeError(f"type must be a str such as 'Q8_0', got {type.__class__.__name__}")
    if isinstance(model_or_path, Model):
        info = model_or_path.info
        if info.get("format") != "gguf":
            raise UnsupportedError(
                f"quantizing a {info.get('format', 'built')} model is not built yet (only GGUF models are quantized)")
        src = str(info["path"])
    elif isinstance(model_or_path, (str, os.PathLike)):
        src = resolve(model_or_path)
        if os.path.isdir(src):
            raise UnsupportedError(f"quantizing {src} is not built yet: only GGUF files are quantized (not HF folders)")
    else:
        raise TypeError(f"model_or_path must be a path, a model name or a Model, got {model_or_path.__class__.__name__}")
    if not isinstance(out_path, (str, os.PathLike)):
        raise TypeError(f"out_path must be a path, got {out_path.__class__.__name__}")
    with _progress.bar(progress, f"quantize {type}", "tensor") as cb:
        pairs = _native.quantize_gguf(src, os.fspath(out_path), type, progress=cb)
    return dict(pairs)
