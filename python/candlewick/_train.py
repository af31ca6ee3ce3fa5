"""cw.train: pretraining and fine-tuning in the engine, with a progress bar and a history."""

import math
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native, _progress
from .objectives import _float as _num, _int

if TYPE_CHECKING:
    from ._model import Model

# what train reads: texts, a text file's path (one text per line), token id lists (or a 2-D int
# array), or prepared arrays by name (input_ids, labels[, attention_mask, decoder_input_ids])
TrainData = Union[str, "os.PathLike[str]", Sequence[str], Sequence[Sequence[int]], np.ndarray, Mapping[str, Any]]

__all__ = ["TrainResult", "train"]


@dataclass
class TrainResult:
    """What cw.train returns: one row per optimizer step in `history` (step, loss, lr, grad_norm,
    tokens, tokens_per_s), evaluations in `evals` (step, loss, perplexity), whether Ctrl-C stopped
    the run early, the step a resumed run started after, and the last checkpoint written.

        result = cw.train(model, texts, steps=100)
        result.final_loss, result.history[-1]["tokens_per_s"], result.interrupted
    """

    history: List[Dict[str, float]] = field(default_factory=list)
    evals: List[Dict[str, float]] = field(default_factory=list)
    interrupted: bool = False
    resumed_from: Optional[int] = None
    checkpoint: Optional[str] = None
    seconds: float = 0.0

    def plot(self, path: Optional[Union[str, "os.PathLike[str]"]] = None) -> Any:
        """Loss and learning rate by step (matplotlib Figure; saved as PNG with `path`). Needs
        `pip install 'candlewick[plot]'`.

            cw.train(model, texts, steps=100).plot(path="loss.png")
        """
        from . import plot

        return plot.training(self, path)

    @property
    def losses(self) -> List[float]:
        """The loss of each optimizer step."""
        return [h["loss"] for h in self.history]

    @property
    def final_loss(self) -> Optional[float]:
        """The last step's loss (None before any step)."""
        return self.history[-1]["loss"] if self.history else None

    @property
    def eval_perplexity(self) -> Optional[float]:
        """The last evaluation's perplexity (None without eval_data)."""
        return self.evals[-1]["perplexity"] if self.evals else None


def _data(model: "Model", data: Any, name: str) -> Union[List[List[int]], Dict[str, np.ndarray]]:
    """texts, a text file's path, token id lists / arrays, or a dict of prepared arrays ->
    what the engine takes."""
    if data is None:
        raise ValueError(f"{name} is empty")
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{name}: no such text file: {path}")
        with open(path, encoding="utf-8") as f:
            texts = [line for line in f.read().splitlines() if line.strip()]
        if not texts:
            raise ValueError(f"{name}: {path} holds no text")
        return _native.tokenize_corpus(model._m, texts)
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if k not in ("input_ids", "labels", "attention_mask", "decoder_input_ids"):
                raise ValueError(f"{name} has an unknown key {k!r} (input_ids, labels, attention_mask, decoder_input_ids)")
            a = np.asarray(v)
            if a.ndim != 2 or (a.size and not np.issubdtype(a.dtype, np.integer)):
                raise ValueError(f"{name}[{k!r}] must be a 2-D array of ints")
            out[k] = np.ascontiguousarray(a, dtype=np.int64)
        return out
    if isinstance(data, np.ndarray):
        if data.ndim != 2 or not np.issubdtype(data.dtype, np.integer):
            raise TypeError(f"{name} as an array must be 2-D ints (token ids)")
        return data.astype(np.int64).tolist()
    items = list(data)
    if not items:
        raise ValueError(f"{name} is empty")
    if all(isinstance(t, str) for t in items):
        return _native.tokenize_corpus(model._m, items)
    rows = []
    for r in items:
        r = np.asarray(r)
        if r.ndim != 1 or (r.size and not np.issubdtype(r.dtype, np.integer)):
            raise TypeError(f"{name} must be texts, a text file's path, token id lists or a dict of arrays")
        rows.append(r.astype(np.int64).tolist())
    return rows


class _Progress:
    """Training's bar: steps, with the loss, learning rate and speed after the count."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = _progress.Bar("train", "step") if enabled else None
        self.total = total

    def update(self, step: int, loss: float, lr: float, grad_norm: float, tps: float,
               ev: Optional[Tuple[int, float, float]]) -> None:
        if self.bar is None:
            return
        text = f"loss {loss:.4f} lr {lr:.2e} {tps:,.0f} tok/s"
        if ev is not None:
            text += f" eval {ev[1]:.4f} (ppl {ev[2]:.2f})"
        self.bar.postfix(text)  # before the count, which redraws (a resumed run's first step jumps)
        self.bar(step, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(model: "Model", data: TrainData, objective: Optional[str] = None, *, steps: int, batch_size: int = 8, seq_len: int = 128,
          lr: float = 5e-4, warmup_steps: int = 0, schedule: str = "cosine", weight_decay: float = 0.01,
          grad_clip: Optional[float] = 1.0, grad_accum_steps: int = 1, seed: Optional[int] = None,
          eval_data: Optional[TrainData] = None, eval_every: Optional[int] = None,
          checkpoint_dir: Optional[Union[str, "os.PathLike[str]"]] = None, checkpoint_every: Optional[int] = None,
          resume: bool = False, progress: Optional[bool] = None, mask_token_id: Optional[int] = None,
          mlm_probability: float = 0.15, noise_density: float = 0.15, mean_noise_span_length: float = 3.0) -> TrainResult:
    """Train `model` in place with its architecture's objective ("clm" for decoders, "mlm" for
    encoders, "span_corruption" for encoder-decoders; None picks it) and AdamW.

        model = cw.Model.from_config(cw.ModelConfig.for_family("llama", vocab_size=..., ...), tokenizer=tok)
        result = cw.train(model, ["some text", ...], "clm", steps=200, batch_size=8, seq_len=128, lr=1e-3)
        result.losses[-1], model.generate("Once upon")

    data: texts, a text file's path (one text per line), token id lists, or a dict of prepared
    arrays (input_ids, labels[, attention_mask, decoder_input_ids]) drawn as they are. The corpus
    is tokenized, packed into blocks of seq_len (span corruption: the raw length giving inputs of
    seq_len) and each step draws batch_size blocks per micro-batch (grad_accum_steps of them) in
    a seeded order, the objective's masking seeded by the step: a run resumed from a checkpoint
    gives the same losses as one never stopped. lr follows a linear warmup then `schedule`
    ("cosine", "linear", "constant"); weight decay applies to matrices and embeddings; gradients
    are clipped to a global norm of grad_clip. eval_data (same kinds) is evaluated every
    eval_every steps and at the end (loss and perplexity). checkpoint_dir: checkpoints (weights,
    optimizer moments, step, seed, history) every checkpoint_every steps and at the end, written
    atomically, the newest kept; resume=True continues from the newest. Ctrl-C stops after the
    current step (a checkpoint is written when checkpoint_dir is set) and returns the history so
    far with interrupted=True. After training the model holds the trained weights (save writes
    them). A GGUF model (quantized weights) cannot be trained."""
    from ._model import Model

    if not isinstance(model, Model):
        raise TypeError(f"model must be a cw.Model, got {type(model).__name__}")
    if objective is None:
        objective = {"decoder": "clm", "encoder": "mlm", "encoder-decoder": "span_corruption"}[str(model.config.architecture)]
    if not isinstance(objective, str):
        raise TypeError("objective must be 'clm', 'mlm' or 'span_corruption'")
    steps = _int("steps", steps, 1)
    batch_size = _int("batch_size", batch_size, 1)
    seq_len = _int("seq_len", seq_len, 1)
    lr = _num("lr", lr)
    if lr <= 0 or math.isinf(lr):
        raise ValueError(f"lr must be a positive number, got {lr}")
    warmup_steps = _int("warmup_steps", warmup_steps, 0)
    grad_accum_steps = _int("grad_accum_steps", grad_accum_steps, 1)
    if seed is not None:
        # None: drawn by the engine, or a resumed run's own
        seed = _int("seed", seed, 0)
        if seed >= 2**64:
            raise ValueError(f"seed must be below 2**64, got {seed}")
    eval_every = None if eval_every is None else _int("eval_every", eval_every, 1)
    checkpoint_every = None if checkpoint_every is None else _int("checkpoint_every", checkpoint_every, 1)
    grad_clip = None if grad_clip is None else _num("grad_clip", grad_clip)
    if not isinstance(resume, bool):
        raise TypeError("resume must be a bool")
    show = _progress.enabled(progress)
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir")
    ckdir = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
    if resume and not (ckdir is not None and os.path.isdir(ckdir)):
        raise ValueError(f"resume=True but checkpoint_dir {ckdir} holds no checkpoint")
    native_data = _data(model, data, "data")
    native_eval = None if eval_data is None else _data(model, eval_data, "eval_data")
    bar = _Progress(steps, show)
    try:
        trained, res = _native.train(
            model._m, native_data, native_eval, objective, steps, batch_size, seq_len, lr, warmup_steps, schedule,
            _num("weight_decay", weight_decay), grad_clip, grad_accum_steps, seed, eval_every, ckdir, checkpoint_every,
            resume, None if mask_token_id is None else _int("mask_token_id", mask_token_id, 0),
            _num("mlm_probability", mlm_probability), _num("noise_density", noise_density),
            _num("mean_noise_span_length", mean_noise_span_length), bar.update)
    finally:
        bar.close()
    model._replace(trained)
    keys = ("step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s")
    return TrainResult(
        history=[dict(zip(keys, h)) for h in res["history"]],
        evals=[dict(zip(("step", "loss", "perplexity"), e)) for e in res["evals"]],
        interrupted=res["interrupted"], resumed_from=res["resumed_from"], checkpoint=res["checkpoint"], seconds=res["seconds"])
