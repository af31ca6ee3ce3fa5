"""Progress bars for long work: tqdm when it is installed, else one plain line on stderr.

`progress` arguments take None (the default: a bar only when stderr is a terminal and the work
is more than one item), True (always, even into a log file) or False (never)."""

import sys
import time
from typing import Any, Callable, Iterator, Optional
from contextlib import contextmanager

Callback = Callable[[int, int], None]


def enabled(progress: Optional[bool], many: bool = True) -> bool:
    """Whether to draw a bar for `progress` (None, True or False)."""
    if progress is None:
        stream = sys.stderr
        return many and stream is not None and hasattr(stream, "isatty") and stream.isatty()
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {type(progress).__name__}")
    return progress


class Bar:
    """A bar told (done, total) by the engine; `unit` names what is counted ("B" scales bytes)."""

    def __init__(self, desc: str, unit: str, total: int = 0, initial: int = 0) -> None:
        self.desc, self.unit = desc, unit
        self.tqdm: Any = None
        self.start = time.monotonic()
        self.last = 0.0
        self.shown = False
        try:
            from tqdm.auto import tqdm

            self.tqdm = tqdm(total=total or None, initial=initial, desc=desc, unit=unit, unit_scale=unit == "B",
                             dynamic_ncols=True, file=sys.stderr)
        except ImportError:
            pass

    def __call__(self, done: int, total: int) -> None:
        if self.tqdm is not None:
            if self.tqdm.total != total:
                self.tqdm.total = total
            self.tqdm.update(done - self.tqdm.n)
            return
        now = time.monotonic()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        pct = f"{100 * done / total:3.0f}%" if total else "   "
        count = f"{done / 2**20:.1f}/{total / 2**20:.1f} MiB" if self.unit == "B" else f"{done}/{total} {self.unit}"
        print(f"\r{self.desc}: {pct} {count} [{now - self.start:.1f}s]", end="", file=sys.stderr, flush=True)
        self.shown = True

    def postfix(self, text: str) -> None:
        """Text after the count (training's loss)."""
        if self.tqdm is not None:
            self.tqdm.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()
        elif self.shown:
            print(file=sys.stderr, flush=True)


@contextmanager
def bar(progress: Optional[bool], desc: str, unit: str, many: bool = True) -> Iterator[Optional[Callback]]:
    """The callback to hand the engine (None when no bar is wanted), closed on the way out."""
    if not enabled(progress, many):
        yield None
        return
    b = Bar(desc, unit)
    try:
        yield b
    finally:
        b.close()
