"""candlewick: build, run and size transformer language models on ordinary machines.

    import candlewick as cw
    model = cw.load("smollm2-135m-instruct")
    print(model.generate("The capital of France is", max_new_tokens=16).text)
"""

from ._native import CandlewickError, ModelFileError, UnsupportedError, __version__
from ._model import GenerationOutput, Model, ModelConfig, Tokenizer, load, sample
from ._registry import available_models, resolve

__all__ = [
    "CandlewickError",
    "GenerationOutput",
    "Model",
    "ModelConfig",
    "ModelFileError",
    "Tokenizer",
    "UnsupportedError",
    "__version__",
    "available_models",
    "load",
    "resolve",
    "sample",
]
