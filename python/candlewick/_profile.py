"""Where a model's forward passes spend their time, by op and by layer.

    with cw.profile() as p:
        model.generate("Hello", max_new_tokens=32)
    print(p)              # the table: op, ms, % of the passes, calls
    p.by_layer()          # {layer: seconds}

Times are wall time on the thread that runs the model; the pooled kernels add a row for the time
their threads spent waiting for each other (part of the matmul rows, not on top of them).
Profiling is process-wide: one `profile()` at a time.
"""

from typing import Dict, List, NamedTuple, Optional

from . import _native

WAIT = "(in the matmuls: threads waiting)"


class ProfileRow(NamedTuple):
    op: str
    layer: Optional[int]
    seconds: float
    calls: int


class Profile:
    """The rows a `profile()` block collected (filled when the block ends): one `ProfileRow`
    (op, layer, seconds, calls) per op and layer.

        with cw.profile() as p:
            model.generate("Hello", max_new_tokens=8)
        slowest = max(p.by_op().items(), key=lambda kv: kv[1])
    """

    def __init__(self) -> None:
        self.rows: List[ProfileRow] = []

    def by_op(self) -> Dict[str, float]:
        """Seconds per op, summed over layers, in the order the ops first ran.

            attention_s = p.by_op()["attention"]
        """
        out: Dict[str, float] = {}
        for r in self.rows:
            out[r.op] = out.get(r.op, 0.0) + r.seconds
        return out

    def by_layer(self) -> Dict[Optional[int], float]:
        """Seconds per layer (None: outside the blocks), the wait rows left out.

            first_layer = p.by_layer()[0]
        """
        out: Dict[Optional[int], float] = {}
        for r in self.rows:
            if r.op != WAIT:
                out[r.layer] = out.get(r.layer, 0.0) + r.seconds
        return out

    def calls(self, op: str) -> int:
        """How many times `op` ran, over all layers.

            passes = p.calls("lm head")
        """
        return sum(r.calls for r in self.rows if r.op == op)

    @property
    def total(self) -> float:
        """Seconds in the timed ops (the wait rows, inside the matmuls, not added again)."""
        return sum(r.seconds for r in self.rows if r.op != WAIT)

    def __str__(self) -> str:
        total = self.total or 1.0
        lines = [f"{'op':<36} {'ms':>10} {'%':>6} {'calls':>8}"]
        for op, s in self.by_op().items():
            lines.append(f"{op:<36} {s * 1e3:10.2f} {100 * s / total:6.1f} {self.calls(op):8d}")
        lines.append(f"{'total':<36} {self.total * 1e3:10.2f}")
        return "\n".join(lines)


class profile:
    """Context manager: time every forward pass run inside it, by op and layer.

        with cw.profile() as p:
            model.generate("Hello", max_new_tokens=32)
        print(p)
    """

    def __enter__(self) -> Profile:
        self.result = Profile()
        _native.profile_start()
        return self.result

    def __exit__(self, *exc: object) -> None:
        self.result.rows = [ProfileRow(*r) for r in _native.profile_take()]
