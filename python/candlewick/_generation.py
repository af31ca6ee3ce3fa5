"""cw.GenerationConfig: every generation control in one reusable, validated object."""

import dataclasses
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

# name -> (kind, check, message)
_INT, _FLOAT, _BOOL = "int", "float", "bool"


def _number(name, v, kind):
    if kind == _BOOL:
        if not isinstance(v, bool):
            raise TypeError(f"{name} must be a bool, got {type(v).__name__}")
        return v
    ok = numbers.Integral if kind == _INT else numbers.Real
    if isinstance(v, bool) or not isinstance(v, ok):
        raise TypeError(f"{name} must be {'an int' if kind == _INT else 'a number'}, got {type(v).__name__}")
    return int(v) if kind == _INT else float(v)


@dataclass(frozen=True)
class GenerationConfig:
    """Generation controls, with the names HF transformers, vLLM and llama.cpp users know.

    Processor order (HF's): logit_bias -> repetition_penalty (prompt + output) -> presence and
    frequency penalties (output only, OpenAI semantics) -> no_repeat_ngram_size -> min_new_tokens;
    then greedy argmax, or temperature -> top_k -> top_p -> min_p -> typical_p -> draw.
    num_beams > 1 runs beam search on the log-softmax after the same processors (HF semantics,
    early_stopping=False), hypotheses scored sum(logprobs) / generated_len ** length_penalty; a
    beam whose text comes to contain a stop string ends there (text cut before it), and logprobs
    gives each chosen token's raw log-probability with its top alternatives.
    """

    max_new_tokens: int = 128
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    typical_p: float = 1.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    no_repeat_ngram_size: int = 0
    logit_bias: Dict[int, float] = field(default_factory=dict)
    stop: List[str] = field(default_factory=list)
    stop_token_ids: List[int] = field(default_factory=list)
    ignore_eos: bool = False
    seed: Optional[int] = None
    num_return_sequences: int = 1
    num_beams: int = 1
    length_penalty: float = 1.0
    logprobs: Optional[int] = None
    prompt_logprobs: bool = False

    _KINDS = {
        "max_new_tokens": _INT, "min_new_tokens": _INT, "do_sample": _BOOL, "temperature": _FLOAT,
        "top_k": _INT, "top_p": _FLOAT, "min_p": _FLOAT, "typical_p": _FLOAT,
        "repetition_penalty": _FLOAT, "presence_penalty": _FLOAT, "frequency_penalty": _FLOAT,
        "no_repeat_ngram_size": _INT, "ignore_eos": _BOOL, "num_return_sequences": _INT,
        "num_beams": _INT, "length_penalty": _FLOAT, "prompt_logprobs": _BOOL,
    }

    def validated(self) -> "GenerationConfig":
        """Checks types and ranges (ValueError/TypeError naming the field); returns a normalised copy."""
        kw = {}
        for name, kind in self._KINDS.items():
            kw[name] = _number(name, getattr(self, name), kind)
        for name in ("max_new_tokens", "min_new_tokens", "top_k", "no_repeat_ngram_size"):
            if kw[name] < 0:
                raise ValueError(f"{name} must be >= 0, got {kw[name]}")
        if kw["num_return_sequences"] < 1:
            raise ValueError(f"num_return_sequences must be >= 1, got {kw['num_return_sequences']}")
        if kw["num_beams"] < 1:
            raise ValueError(f"num_beams must be >= 1, got {kw['num_beams']}")
        if kw["num_beams"] > 1:
            if kw["num_return_sequences"] > kw["num_beams"]:
                raise ValueError(
                    f"num_return_sequences ({kw['num_return_sequences']}) must be <= num_beams ({kw['num_beams']})"
                )
            if kw["do_sample"]:
                raise ValueError("num_beams > 1 with do_sample=True (beam sampling) is not built yet")
            if kw["prompt_logprobs"]:
                raise ValueError("prompt_logprobs are not built yet for beam search")
        if not math.isfinite(kw["length_penalty"]):
            raise ValueError(f"length_penalty must be finite, got {kw['length_penalty']}")
        stop = self.stop
        if stop is None:
            stop = []
        elif isinstance(stop, str):
            stop = [stop]
        stop = list(stop)
        if not all(isinstance(x, str) for x in stop):
            raise TypeError("stop must be a string or a list of strings")
        ids = list(self.stop_token_ids or [])
        for i in ids:
            _number("stop_token_ids", i, _INT)
            if i < 0:
                raise ValueError(f"stop_token_ids must be non-negative, got {i}")
        bias = dict(self.logit_bias or {})
        for k, v in bias.items():
            _number("logit_bias key", k, _INT)
            _number("logit_bias value", v, _FLOAT)
            if k < 0:
                raise ValueError(f"logit_bias names a negative token id {k}")
        seed = self.seed
        if seed is not None:
            seed = _number("seed", seed, _INT)
            if seed < 0:
                raise ValueError(f"seed must be >= 0, got {seed}")
        lp = self.logprobs
        if lp is not None:
            lp = _number("logprobs", lp, _INT)
            if lp < 0:
                raise ValueError(f"logprobs must be >= 0, got {lp}")
        out = dataclasses.replace(
            self, **kw, stop=stop, stop_token_ids=[int(i) for i in ids],
            logit_bias={int(k): float(v) for k, v in bias.items()}, seed=seed, logprobs=lp,
        )
        from . import _native  # ranges are checked once, in the engine

        _native.check_generation_params(out._native_dict(0))
        return out

    def replace(self, **changes) -> "GenerationConfig":
        """A copy with some fields changed; unknown names are a TypeError."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"unknown generation parameter(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes).validated()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GenerationConfig":
        """From HF-style keys (generation_config.json): known keys are taken, `eos_token_id`
        becomes stop_token_ids, `max_length`-only configs keep the default max_new_tokens; other
        HF keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names and v is not None}
        eos = d.get("eos_token_id")
        if eos is not None and "stop_token_ids" not in kw:
            kw["stop_token_ids"] = [eos] if isinstance(eos, int) else list(eos)
        if "logit_bias" in kw:
            kw["logit_bias"] = {int(k): v for k, v in kw["logit_bias"].items()}
        return cls(**kw).validated()

    @classmethod
    def from_file(cls, path) -> "GenerationConfig":
        """Read a generation_config.json (a file or the folder holding it)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "generation_config.json")
        with open(path, encoding="utf-8") as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path} does not hold a JSON object")
        return cls.from_dict(d)

    def native_params(self, seed_offset: int = 0) -> dict:
        """The dict the Rust engine takes."""
        return self.validated()._native_dict(seed_offset)

    def _native_dict(self, seed_offset: int) -> dict:
        c = self
        return {
            "max_new_tokens": c.max_new_tokens, "min_new_tokens": c.min_new_tokens,
            "do_sample": c.do_sample, "temperature": c.temperature, "top_k": c.top_k,
            "top_p": c.top_p, "min_p": c.min_p, "typical_p": c.typical_p,
            "repetition_penalty": c.repetition_penalty, "presence_penalty": c.presence_penalty,
            "frequency_penalty": c.frequency_penalty, "no_repeat_ngram_size": c.no_repeat_ngram_size,
            "logit_bias": c.logit_bias, "seed": None if c.seed is None else c.seed + seed_offset,
            "stop": c.stop, "stop_token_ids": c.stop_token_ids, "ignore_eos": c.ignore_eos,
            "logprobs": c.logprobs, "prompt_logprobs": c.prompt_logprobs,
        }
