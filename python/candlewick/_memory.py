"""cw.estimate_memory: what a model needs to run or train, item by item. The formulas live in the
engine (rust/candlewick/src/memory.rs), each with its source; this file only routes arguments."""

import numbers
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Union

from . import _native
from ._native import ModelConfig

if TYPE_CHECKING:
    from ._model import Model

KEYS = ("weights", "kv_cache", "activations", "gradients", "optimizer_states", "master_weights")
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}


def parse_count(text: str) -> Optional[int]:
    """'1B' -> 10**9, '135M' -> 135 * 10**6, '7e9' -> 7 * 10**9; None when text is no count."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmbgt]?)\s*(?:params?)?\s*", text, re.IGNORECASE)
    if not m:
        return None
    return int(round(float(m.group(1)) * _SUFFIX[m.group(2).lower()]))


def human(n: float) -> str:
    """Bytes as GB (10^9) with GiB (2^30) beside it."""
    if n < 1e6:
        return f"{n / 1e3:.1f} kB ({n / 1024:.1f} KiB)"
    if n < 1e9:
        return f"{n / 1e6:.1f} MB ({n / 2**20:.1f} MiB)"
    return f"{n / 1e9:.1f} GB ({n / 2**30:.2f} GiB)"


@dataclass(frozen=True)
class MemoryEstimate:
    """The estimate: bytes per item (`breakdown`), their sum, and how each was computed.
    print(estimate) shows the table, item by item with its formula.

        est = cw.estimate_memory("smollm2-135m-instruct", training=True, batch_size=4, seq_len=512)
        est.breakdown["optimizer_states"], est.total_bytes, est.fits("8GB")
    """

    source: str
    num_parameters: int
    breakdown: Dict[str, int]
    formulas: Dict[str, str] = field(repr=False)
    notes: List[str] = field(default_factory=list, repr=False)
    seq_len: Optional[int] = None
    dtype: str = "float32"
    training: bool = False
    # the same estimate for another dtype (what plot(dtypes=...) draws); set by estimate_memory
    _redo: Optional[Callable[[str], "MemoryEstimate"]] = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> Dict[str, Any]:
        # pickled (to another process: Ray, multiprocessing) without the way to redo it
        state = dict(self.__dict__)
        state["_redo"] = None
        return state

    def plot(self, dtypes: Optional[Sequence[str]] = None, path: Optional[Union[str, "os.PathLike[str]"]] = None) -> Any:
        """The breakdown as a stacked bar (matplotlib Figure; saved as PNG with `path`), or one bar
        per dtype in `dtypes`, each estimated as this one was. Needs `pip install 'candlewick[plot]'`.

            cw.estimate_memory("1B", seq_len=2048).plot(dtypes=["float32", "bfloat16", "q8_0", "q4_0"], path="mem.png")
        """
        from . import plot

        if dtypes is None:
            return plot.memory([self], path)
        if isinstance(dtypes, str) or not all(isinstance(d, str) for d in dtypes):
            raise TypeError("dtypes must be a list of dtype names")
        if self._redo is None:
            raise ValueError("this estimate was not made by cw.estimate_memory, so it cannot be redone for other dtypes")
        return plot.memory([self._redo(d) for d in dtypes], path)

    @property
    def total_bytes(self) -> int:
        """The sum of the breakdown."""
        return sum(self.breakdown.values())

    @property
    def bytes_per_parameter(self) -> float:
        """total_bytes / num_parameters."""
        return self.total_bytes / self.num_parameters

    def fits(self, capacity_bytes: Union[int, float, str]) -> bool:
        """Whether the total fits in `capacity_bytes` (a number of bytes, or a size such as "8GB",
        "16GiB").

            >>> cw.estimate_memory("1B", dtype="q4_0").fits("8GB")
            True
        """
        if isinstance(capacity_bytes, str):
            capacity_bytes = parse_size(capacity_bytes)
        if isinstance(capacity_bytes, bool) or not isinstance(capacity_bytes, numbers.Real) or capacity_bytes < 0:
            raise ValueError(f"fits() takes a non-negative number of bytes, got {capacity_bytes!r}")
        return self.total_bytes <= float(capacity_bytes)

    def to_dict(self) -> Dict[str, Any]:
        """The estimate as plain data (total_bytes and bytes_per_parameter included), for JSON.

            json.dumps(cw.estimate_memory("135M").to_dict())
        """
        return {
            "source": self.source, "num_parameters": self.num_parameters, "total_bytes": self.total_bytes,
            "bytes_per_parameter": self.bytes_per_parameter, "breakdown": dict(self.breakdown),
            "formulas": dict(self.formulas), "notes": list(self.notes), "seq_len": self.seq_len,
            "dtype": self.dtype, "training": self.training,
        }

    def __str__(self) -> str:
        mode = "training" if self.training else "inference"
        head = f"{self.source}: {self.num_parameters:,} parameters, {mode}, weights {self.dtype}"
        if self.seq_len:
            head += f", seq_len {self.seq_len}"
        lines = [head, f"{'item':<17}{'bytes':>16}  {'size':<24}how"]
        for k in KEYS:
            b = self.breakdown[k]
            lines.append(f"{k:<17}{b:>16,}  {human(b):<24}{self.formulas[k]}")
        lines.append(f"{'total':<17}{self.total_bytes:>16,}  {human(self.total_bytes):<24}"
                     f"{self.bytes_per_parameter:.2f} bytes per parameter")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"not a size: {text!r} (write e.g. '8GB' or '16GiB')")
    unit = m.group(2).lower()
    scale = (1024 ** "kmgt".index(unit) * 1024 if m.group(3) else 1000 ** ("kmgt".index(unit) + 1)) if unit else 1
    return int(float(m.group(1)) * scale)


def _positive(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v <= 0:
        raise ValueError(f"{name} must be positive, got {v}")
    return int(v)


def estimate_memory(
    x: Union[int, str, "os.PathLike[str]", ModelConfig, "Model"],
    dtype: Optional[str] = None,
    batch_size: int = 1,
    seq_len: Optional[int] = None,
    training: bool = False,
    optimizer: str = "adamw",
    mixed_precision: bool = False,
    gradient_checkpointing: Union[bool, str] = False,
    zero_stage: int = 0,
    num_devices: int = 1,
    kv_dtype: Optional[str] = None,
) -> MemoryEstimate:
    """Estimate the memory to run (or, with training=True, to train) a model.

    x: a cw.ModelConfig, a loaded cw.Model, a path (.gguf, .safetensors, config.json or a model
    folder; only headers are read), an installed model's short name, or a parameter count (an
    int, or a string such as "1B", "135M"). dtype: the weights' type (float32, float16, bfloat16,
    int8, or a GGUF type such as q4_0, q8_0, q4_k); None or "auto": a file's weights as it stores
    them, a loaded model's as it holds them (GGUF as stored, safetensors as float32), float32 for
    a config or a count. seq_len: tokens per sequence (default: the model's context).
    gradient_checkpointing: False, True/"full" or "selective". zero_stage 0-3 partitions training
    state over num_devices. kv_dtype: the KV cache's type (default: dtype when it is a float
    type, else float32).

        print(cw.estimate_memory(cw.ModelConfig.for_family("llama"), seq_len=2048))
        cw.estimate_memory("7B", dtype="bfloat16", training=True, zero_stage=3, num_devices=8).total_bytes
    """
    from ._model import Model

    if dtype == "auto":
        dtype = None
    for name, v in (("dtype", dtype), ("kv_dtype", kv_dtype), ("optimizer", optimizer)):
        if v is not None and not isinstance(v, str):
            raise TypeError(f"{name} must be a string, got {type(v).__name__}")
    for name, flag in (("training", training), ("mixed_precision", mixed_precision)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    if gradient_checkpointing is True:
        gradient_checkpointing = "full"
    elif gradient_checkpointing is False or gradient_checkpointing is None:
        gradient_checkpointing = "none"
    if not isinstance(gradient_checkpointing, str):
        raise TypeError("gradient_checkpointing must be a bool, 'full' or 'selective'")
    if isinstance(zero_stage, bool) or not isinstance(zero_stage, numbers.Integral) or not 0 <= zero_stage <= 3:
        raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage!r}")
    if isinstance(x, bool):
        raise TypeError("x must be a model, config, path or parameter count, not a bool")
    source: Union[int, str, ModelConfig, _native.NativeModel]
    if isinstance(x, numbers.Integral):
        source = _positive("parameter count", x)
    elif isinstance(x, ModelConfig):
        source = x
    elif isinstance(x, Model):
        source = x._m
    elif isinstance(x, (str, os.PathLike)):
        text = os.fspath(x)
        n = parse_count(text) if isinstance(x, str) and not os.path.exists(text) else None
        if n is not None:
            source = _positive("parameter count", n)
        else:
            from ._registry import resolve

            source = resolve(text)  # a path, an installed model's short name, or a clear error
    else:
        raise TypeError(f"x must be a ModelConfig, Model, path or parameter count, got {type(x).__name__}")
    label, n, items, notes, seq, dt = _native.estimate_memory(
        source, dtype, kv_dtype, _positive("batch_size", batch_size), None if seq_len is None else _positive("seq_len", seq_len),
        training, optimizer, mixed_precision, gradient_checkpointing, int(zero_stage), _positive("num_devices", num_devices),
    )
    return MemoryEstimate(
        source=label, num_parameters=n, breakdown={k: b for k, b, _ in items},
        formulas={k: f for k, _, f in items}, notes=list(notes), seq_len=seq, dtype=dt, training=training,
        _redo=lambda d: estimate_memory(x, d, batch_size, seq_len, training, optimizer, mixed_precision,
                                        gradient_checkpointing, zero_stage, num_devices, kv_dtype),
    )
