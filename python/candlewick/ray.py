"""Batch inference on a Ray cluster: callable classes for Ray Data's `Dataset.map_batches`.

Ray builds one object per actor (with `fn_constructor_kwargs`), so each actor loads the model once
and sets its compute threads to the number of CPUs Ray gave it; then it calls the object on every batch.

    import ray
    from candlewick.ray import Generator

    ds = ray.data.from_items([{"prompt": "The capital of France is"}, {"prompt": "Once upon a time"}])
    ds = ds.map_batches(Generator, fn_constructor_kwargs={"model": "smollm2-135m-instruct", "max_new_tokens": 16},
                        concurrency=2, num_cpus=1, batch_size=8)
    ds.take_all()   # [{"prompt": ..., "text": ..., "finish_reason": ..., "num_tokens": ...}, ...]

`concurrency` is the number of actors (one model each), `num_cpus` the CPUs each one gets and
computes with. Ray 2.51 and later deprecate `concurrency=2` for
`compute=ray.data.ActorPoolStrategy(size=2)`, which every Ray since 2.9 takes;
`candlewick.ray.map_batches(ds, Generator, concurrency=2, ...)` passes that.

Batches may be dicts of numpy arrays (batch_format="numpy", Ray's default) or pandas DataFrames
(batch_format="pandas"); each call returns the batch it was given, of the same kind, with the
result columns added.

Every node of the cluster needs candlewick and the model: the same file path, or the model's
package installed (a short name such as "smollm2-135m-instruct"). A cw.Model already loaded can
be given as `model=` when the object is called in this process; it cannot be sent to actors.

This module does not import Ray; the classes are plain callables and work without it.
"""

import os
import sys
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import _native
from ._model import Model, _optional_length, load
from ._native import GenerationConfig

#: Dict[str, np.ndarray] or a pandas.DataFrame (pandas is optional and ships no type stubs)
Batch = Any

__all__ = ["Embedder", "Generator", "Scorer", "actor_threads", "map_batches"]

_NEEDS_RAY = "candlewick.ray needs Ray: pip install 'candlewick[ray]'"


def _import_ray() -> Any:
    """Ray, for the helpers that need it, with an ImportError that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data: the "ray[data]" extra)
    except ImportError as err:
        raise ImportError(_NEEDS_RAY) from err
    return ray


def actor_threads() -> int:
    """The compute threads this process should use: inside a Ray actor or task, the CPUs Ray
    assigned to it (at least 1); elsewhere, the CPUs this process may run on."""
    # Ray is only looked at when it is already imported: a worker process of Ray always has it,
    # and a process that never imported Ray cannot be inside a Ray actor.
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        try:
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        except Exception:  # a driver, or a Ray too old to say: fall back to the affinity mask
            cpus = None
        if cpus is not None:
            # rounded down, not to oversubscribe the node; num_cpus=0 or 0.5 computes on one thread
            return max(1, int(cpus))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _load(model: Any, threads: Optional[int]) -> Tuple[Model, int]:
    """The model to run, loaded once, and the compute threads of this process, fixed before any
    forward pass (candle sizes its worker pool once, on first use)."""
    if threads is None:
        try:
            _native.set_num_threads(actor_threads())
        except ValueError:
            pass  # this process fixed its count before (a cw.load with threads=): keep that one
    elif isinstance(model, Model):
        _native.set_num_threads(threads)  # a count other than the process's is an error
    if not isinstance(model, Model):
        model = load(model, threads=threads)
    return model, _native.simd_report()[2]


def _require(model: Model, who: str, encoder: bool) -> None:
    """A model of the kind `who` runs, checked at construction rather than on the first batch."""
    arch = str(model.config.architecture)
    if encoder and arch != "encoder":
        raise ValueError(f"{who} needs an encoder model (e.g. all-minilm-l6-v2); this one is a {arch}")
    if not encoder and arch == "encoder":
        raise ValueError(f"{who} needs a model that generates (a decoder, encoder-decoder or RNN LM); "
                         f"this one is an encoder")


def _is_dataframe(batch: Any) -> bool:
    # pandas is not imported here: a DataFrame can only exist when pandas already is
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(batch, pd.DataFrame)


def _column(batch: Any, name: str, who: str) -> List[str]:
    """A batch's column as a list of str, whichever kind the batch is."""
    if not (_is_dataframe(batch) or isinstance(batch, dict)):
        raise TypeError(f"{who} takes a dict of numpy arrays (batch_format='numpy') or a pandas DataFrame "
                        f"(batch_format='pandas'), got {type(batch).__name__}")
    if name not in batch:
        raise KeyError(f"{who} reads the column {name!r}; the batch has {list(batch.keys())}")
    values = batch[name]
    out = []
    for v in (values.tolist() if hasattr(values, "tolist") else list(values)):
        if isinstance(v, bytes):  # Arrow binary columns come back as bytes
            v = v.decode("utf-8")
        if not isinstance(v, str):
            raise TypeError(f"{who}: column {name!r} must hold strings, got {type(v).__name__}")
        out.append(v)
    return out


def _with_columns(batch: Any, columns: Dict[str, Any]) -> Any:
    """The batch (not modified: Ray may hand over read-only views) with `columns` added, of the
    same kind. 2-D arrays become a column of 1-D arrays in a DataFrame."""
    if _is_dataframe(batch):
        out = batch.copy(deep=False)
        for k, v in columns.items():
            out[k] = list(v) if isinstance(v, np.ndarray) and v.ndim > 1 else v
        return out
    result = dict(batch)
    result.update(columns)
    return result


class Generator:
    """Generate a continuation of each row's "prompt"; adds "text", "finish_reason" ("length",
    "eos" or "stop") and "num_tokens" (tokens generated). A batch generates as one batch of the
    model (rows finish independently; each row's text is what its prompt gives alone).

    model: anything cw.load takes, or a cw.Model. threads: compute threads (default: the CPUs Ray
    assigned to the actor, else the CPUs of this process). Other keywords are generation options
    (cw.GenerationConfig's: max_new_tokens, do_sample, temperature, seed, stop, ...), checked when
    the object is built.

        ds.map_batches(Generator, fn_constructor_kwargs={"model": "smollm2-135m-instruct", "max_new_tokens": 16},
                       concurrency=2, num_cpus=1, batch_size=8)
        # the same, without Ray 2.51's deprecation warning:
        candlewick.ray.map_batches(ds, Generator, concurrency=2, num_cpus=1, batch_size=8,
                                   model="smollm2-135m-instruct", max_new_tokens=16)
    """

    def __init__(self, model: Any, threads: Optional[int] = None, **options: Any) -> None:
        # Bad options fail here, before the model is read, rather than on the first batch.
        GenerationConfig(**options)
        if options.get("num_return_sequences", 1) != 1:
            raise ValueError("Generator writes one text per prompt: num_return_sequences must be 1 "
                             "(repeat the prompt rows, with different seeds, for more samples)")
        self.model, self.threads = _load(model, threads)
        _require(self.model, "Generator", encoder=False)
        self.options = dict(options)
        # the model's own defaults (generation_config.json), with the options over them
        self.config: GenerationConfig = self.model.generation_config.replace(**options)

    def __call__(self, batch: Batch) -> Batch:
        prompts = _column(batch, "prompt", "Generator")
        outs = self.model.generate(prompts, generation_config=self.config, progress=False) if prompts else []
        return _with_columns(batch, {
            "text": np.array([o.text for o in outs], dtype=object),
            "finish_reason": np.array([o.finish_reason for o in outs], dtype=object),
            "num_tokens": np.array([len(o.token_ids) for o in outs], dtype=np.int64),
        })

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"<candlewick.ray.Generator {self.model!r}, threads={self.threads}{opts}>"


class Embedder:
    """Embed each row's "text" (sentence-transformers' pooling and normalisation); adds
    "embedding": float32 [rows, hidden] in a dict batch, a column of 1-D arrays in a DataFrame.

    model: an encoder, anything cw.load takes, or a cw.Model. threads as for Generator; pooling
    ("mean", "cls", "max"; default: the model folder's), normalize and max_length as model.embed.

        ds.map_batches(Embedder, fn_constructor_kwargs={"model": "all-minilm-l6-v2"},
                       concurrency=2, num_cpus=1, batch_size=32)
    """

    def __init__(self, model: Any, threads: Optional[int] = None, pooling: Optional[str] = None,
                 normalize: bool = True, max_length: Optional[int] = None) -> None:
        if pooling is not None and not isinstance(pooling, str):
            raise TypeError(f"pooling must be a str or None, got {type(pooling).__name__}")
        _optional_length("max_length", max_length)
        self.model, self.threads = _load(model, threads)
        _require(self.model, "Embedder", encoder=True)
        self.pooling = pooling
        self.normalize = bool(normalize)
        self.max_length = max_length

    def __call__(self, batch: Batch) -> Batch:
        texts = _column(batch, "text", "Embedder")
        if texts:
            vecs = self.model.embed(texts, pooling=self.pooling, normalize=self.normalize, max_length=self.max_length,
                                    progress=False)
        else:
            vecs = np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        return _with_columns(batch, {"embedding": np.asarray(vecs, dtype=np.float32)})

    def __repr__(self) -> str:
        return (f"<candlewick.ray.Embedder {self.model!r}, threads={self.threads}, pooling={self.pooling!r}, "
                f"normalize={self.normalize}, max_length={self.max_length}>")


class Scorer:
    """Log-likelihood (natural log) of each row's "continuation" after its "context", with
    model.score's boundary handling; adds "logprob" (float64) and "is_greedy" (whether greedy
    decoding gives exactly that continuation). Rows of a batch that share a context are scored in
    one call, so put a context's candidates next to each other (multiple-choice evaluation).

        ds.map_batches(Scorer, fn_constructor_kwargs={"model": "smollm2-135m-instruct"},
                       concurrency=2, num_cpus=1, batch_size=8)
    """

    def __init__(self, model: Any, threads: Optional[int] = None) -> None:
        self.model, self.threads = _load(model, threads)
        _require(self.model, "Scorer", encoder=False)

    def __call__(self, batch: Batch) -> Batch:
        contexts = _column(batch, "context", "Scorer")
        continuations = _column(batch, "continuation", "Scorer")
        logprob = np.zeros(len(contexts), dtype=np.float64)
        greedy = np.zeros(len(contexts), dtype=bool)
        # rows grouped by context, in the order contexts first appear
        groups: Dict[str, List[int]] = {}
        for i, c in enumerate(contexts):
            groups.setdefault(c, []).append(i)
        for context, rows in groups.items():
            for i, r in zip(rows, self.model.score(context, [continuations[i] for i in rows], progress=False)):
                logprob[i] = r.logprob
                greedy[i] = r.is_greedy
        return _with_columns(batch, {"logprob": logprob, "is_greedy": greedy})

    def __repr__(self) -> str:
        return f"<candlewick.ray.Scorer {self.model!r}, threads={self.threads}>"


def map_batches(ds: Any, cls: type, *, concurrency: int = 1, num_cpus: float = 1, batch_size: Optional[int] = 8,
                batch_format: str = "numpy", **fn_constructor_kwargs: Any) -> Any:
    """`ds.map_batches(cls, ...)` on a fixed pool of `concurrency` actors of `num_cpus` CPUs each,
    the keywords left over going to cls's constructor; the same on every Ray since 2.9 (which
    2.51 asks to write as compute=ActorPoolStrategy rather than concurrency=). Lazy, like Ray
    Data: nothing runs until the result is read.

        out = map_batches(ray.data.read_text("prompts.txt").rename_columns({"text": "prompt"}), Generator,
                          concurrency=4, num_cpus=2, model="smollm2-135m-instruct", max_new_tokens=64)
        out.write_json("out/")
    """
    ray = _import_ray()
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency <= 0:
        raise ValueError(f"concurrency (the number of actors) must be a positive int, got {concurrency!r}")
    return ds.map_batches(cls, fn_constructor_kwargs=fn_constructor_kwargs,
                          compute=ray.data.ActorPoolStrategy(size=concurrency), num_cpus=num_cpus,
                          batch_size=batch_size, batch_format=batch_format)
