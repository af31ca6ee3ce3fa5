"""cw.quantize: a GGUF model into another llama.cpp file type, as llama.cpp's quantize tool writes it."""

import os
from typing import Dict, Optional, Union

from . import _native, _progress
from ._model import Model, load
from ._registry import resolve

_Source = Union[str, "os.PathLike[str]", Model]


def quantize(model_or_path: _Source, out_path: Union[str, "os.PathLike[str]"], type: str = "Q8_0",
             progress: Optional[bool] = None) -> Dict[str, str]:
    """Write `model_or_path` to `out_path` as a GGUF of file type `type`: "Q4_K_M", "Q5_K_M",
    "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q6_K", "F16", "BF16" or "F32". The source is a .gguf
    path, an HF folder (or a model name), or a Model: loaded from GGUF, from an HF folder, built
    with Model.from_config, or trained. The tensors are the bytes llama.cpp's quantize tool (no
    importance matrix) writes: every 2-D weight in that type, the output projection (or the
    embeddings tied to it) in Q6_K unless the type is Q8_0 or a float, and for the _M mixes
    attn_v and ffn_down in Q6_K in the layers llama.cpp picks. A GGUF source keeps its metadata,
    tokenizer and chat template; any other is converted as llama.cpp's converter would (its
    architecture's keys and tensor names, Llama's q/k rows permuted for RoPE on adjacent pairs,
    the tokenizer as a byte-level BPE vocabulary with its chat template; a model without one as
    llama.cpp's "none"). Converting is built for the llama family (llama, qwen2, qwen3); other
    families, SentencePiece/WordPiece tokenizers and the other llama.cpp types (Q4_K_S, Q3_K_M,
    IQ4_XS, ...) raise UnsupportedError. The file is written atomically (a failure leaves no
    partial file). Returns {tensor name: type written}.

        types = cw.quantize("model-f16.gguf", "model-q4_k_m.gguf", type="Q4_K_M")
        cw.quantize(cw.load("tiny-llama/"), "tiny-q8_0.gguf", type="Q8_0")
        cw.load("model-q4_k_m.gguf").generate("Hello", max_new_tokens=8)
    """
    if not isinstance(type, str):
        raise TypeError(f"type must be a str such as 'Q8_0', got {type.__class__.__name__}")
    if not isinstance(out_path, (str, os.PathLike)):
        raise TypeError(f"out_path must be a path, got {out_path.__class__.__name__}")
    if isinstance(model_or_path, (str, os.PathLike)):
        src = resolve(model_or_path)
        if not os.path.isdir(src) and not str(src).endswith(".safetensors"):
            with _progress.bar(progress, f"quantize {type}", "tensor") as cb:
                return dict(_native.quantize_gguf(src, os.fspath(out_path), type, progress=cb))
        model_or_path = load(src)  # an HF folder: converted from its checkpoint
    if not isinstance(model_or_path, Model):
        raise TypeError(f"model_or_path must be a path, a model name or a Model, got {model_or_path.__class__.__name__}")
    with _progress.bar(progress, f"quantize {type}", "tensor") as cb:
        return dict(_native.quantize_model(model_or_path._m, os.fspath(out_path), type, progress=cb))
