"""candlewick: build, run and size transformer language models on ordinary machines.

    import candlewick as cw
    model = cw.load("smollm2-135m-instruct")
    print(model.generate("The capital of France is", max_new_tokens=16).text)
"""

from ._native import CandlewickError, GenerationConfig, ModelConfig, ModelFileError, UnsupportedError, __version__
from . import objectives, plot, prompts
from ._train import TrainResult, train
from ._memory import MemoryEstimate, estimate_memory
from ._model import EncoderOutput, ForwardOutput, GenerationOutput, Model, PerplexityResult, ScoreResult, TokenLogprob, Tokenizer, load, sample
from ._profile import Profile, profile
from ._quantize import quantize
from ._registry import available_models, resolve

__all__ = [
    "CandlewickError",
    "EncoderOutput",
    "ForwardOutput",
    "GenerationConfig",
    "GenerationOutput",
    "Model",
    "MemoryEstimate",
    "ModelConfig",
    "ModelFileError",
    "PerplexityResult",
    "Profile",
    "ScoreResult",
    "TokenLogprob",
    "TrainResult",
    "Tokenizer",
    "UnsupportedError",
    "__version__",
    "available_models",
    "estimate_memory",
    "load",
    "objectives",
    "plot",
    "profile",
    "prompts",
    "quantize",
    "resolve",
    "sample",
    "train",
]
