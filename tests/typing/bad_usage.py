"""Calls the public types forbid: tests/test_typing.py runs mypy on this file and expects an error
on each line marked `# E: code` (mypy's error code) and on no other line, so the typing check is
shown to be able to fail. Never run."""

from typing import List

import numpy as np

import candlewick as cw


def loading(model: cw.Model) -> None:
    cw.load(5)  # E: arg-type
    cw.load("model.gguf", threads="4")  # E: arg-type
    cw.Model.from_config({"family": "llama"})  # E: arg-type
    model.save(None)  # E: arg-type


def configs() -> None:
    cw.GenerationConfig(max_new_tokens="a")  # E: arg-type
    cw.GenerationConfig(max_tokens=16)  # E: call-arg
    cw.GenerationConfig(stop=5)  # E: arg-type
    cw.GenerationConfig().replace(temprature=0.5)  # E: call-arg
    cw.ModelConfig(architecture="transformer")  # E: arg-type
    cw.ModelConfig.for_family("llama", num_layers=2.5)  # E: arg-type
    layers: str = cw.ModelConfig().num_layers  # E: assignment


def generating(model: cw.Model) -> None:
    model.generate("Hello").texts  # E: attr-defined
    model.generate(["a", "b"]).text  # E: attr-defined
    model.generate("Hello", {"max_new_tokens": 5})  # E: call-overload
    model.generate(42)  # E: call-overload
    text: str = model.stream("Hello")  # E: assignment
    model.score(5, [" a"])  # E: arg-type
    ids: List[str] = model.tokenizer.encode("x") if model.tokenizer else []  # E: assignment
    model.logits("not ids")  # E: arg-type


def the_rest(model: cw.Model) -> None:
    cw.estimate_memory(1.5)  # E: arg-type
    cw.estimate_memory("1B").fits([8])  # E: arg-type
    cw.train(model, ["some text"])  # E: call-arg
    cw.train(model, ["some text"], steps="100")  # E: arg-type
    cw.prompts.few_shot("Classify.", [("a", 1)], "q")  # E: list-item
    cw.prompts.zero_shot("Answer.", "q", "Input: ")  # E: call-arg|misc
    cw.objectives.pack([[1, 2]], block_size="2")  # E: arg-type
    cw.objectives.clm(np.zeros((1, 4), dtype=np.int64))  # E: call-arg
    cw.sample([0.1, 0.9], seed="0")  # E: arg-type
