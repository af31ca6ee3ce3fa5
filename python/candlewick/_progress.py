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
        tty = stream is not None and hasattr(stream, "isatty") and stream.isatty()
        return many and (tty or _in_notebook())
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {type(progress).__name__}")
    return progress


def _in_notebook() -> bool:
    """A Jupyter kernel (stderr is no terminal there, but tqdm.auto draws a widget)."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


class Bar:
    """A bar told (done, total) by the engine; `unit` names what is counted ("B" scales bytes)."""

    def __init__(self, desc: str, unit: str) -> None:
        self.desc, self.unit = desc, unit
        self.tqdm: Any = None
        self.plain = False
        self.start = time.monotonic()
        self.width = 0
        self.text = ""

    def _open(self, total: int) -> None:
        """The bar itself, made on the first report: work that never reports (a model already
        assembled) draws nothing."""
        try:
            from tqdm.auto import tqdm

            self.tqdm = tqdm(total=total, desc=self.desc, unit=self.unit, unit_scale=self.unit == "B",
                             dynamic_ncols=True, file=sys.stderr)
            if self.text:
                self.tqdm.set_postfix_str(self.text, refresh=False)
        except ImportError:
            self.plain = True

    def __call__(self, done: int, total: int) -> None:
        """Told by the engine (already at most ten times a second)."""
        if self.tqdm is None and not self.plain:
            self._open(total)
        if self.tqdm is not None:
            if self.tqdm.total != total:
                self.tqdm.total = total
            self.tqdm.update(done - self.tqdm.n)
            return
        pct = f"{100 * done / total:3.0f}%" if total else "   "
        count = f"{done / 2**20:.1f}/{total / 2**20:.1f} MiB" if self.unit == "B" else f"{done}/{total} {self.unit}"
        line = f"{self.desc}: {pct} {count} [{time.monotonic() - self.start:.1f}s]" + (f" {self.text}" if self.text else "")
        # padded over the previous line, which may have been longer
        print(f"\r{line:<{self.width}}", end="", file=sys.stderr, flush=True)
        self.width = max(self.width, len(line))

    def postfix(self, text: str) -> None:
        """Text after the count (training's loss)."""
        self.text = text
        if self.tqdm is not None:
            self.tqdm.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()
        elif self.width:
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
