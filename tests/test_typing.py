"""The public API type-checks as users write it: mypy (settings in mypy.ini) passes on the package,
the examples and tests/typing/usage.py, and fails on tests/typing/bad_usage.py exactly on the lines
marked `# E: code` (with that error code; `a|b` where mypy versions differ). Skipped without mypy
(python3 -m pip install mypy). And the package's annotations evaluate on Python 3.9, the oldest
candlewick supports, which mypy no longer targets."""

import ast
import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD = os.path.join("tests", "typing", "bad_usage.py")


def _mypy(*args):
    pytest.importorskip("mypy")
    r = subprocess.run([sys.executable, "-m", "mypy", "--show-error-codes", "--no-pretty", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    return r.returncode, r.stdout + r.stderr


def test_mypy_passes_on_the_package_the_examples_and_usage():
    rc, out = _mypy()
    assert rc == 0 and "Success" in out, out


def test_mypy_fails_on_bad_usage_where_marked():
    expected = {}
    with open(os.path.join(ROOT, BAD), encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            m = re.search(r"# E: ([\w|-]+)\s*$", line)
            if m:
                expected[n] = set(m.group(1).split("|"))
    assert len(expected) >= 10
    rc, out = _mypy(BAD)
    assert rc == 1, out
    found = {}
    for m in re.finditer(rf"^{re.escape(BAD)}:(\d+): error: .*\[([\w-]+)\]$", out, re.MULTILINE):
        found.setdefault(int(m.group(1)), set()).add(m.group(2))
    unexpected = sorted(set(found) - set(expected))
    missed = sorted(set(expected) - set(found))
    wrong = sorted(n for n in set(found) & set(expected) if not found[n] & expected[n])
    assert not (unexpected or missed or wrong), (
        f"errors on unmarked lines {unexpected}, no error on marked lines {missed}, "
        f"other codes on lines {[(n, sorted(found[n])) for n in wrong]}\n{out}")


# typing's names that Python 3.9 does not have
NEWER_TYPING = {"TypeAlias", "ParamSpec", "Concatenate", "TypeGuard", "Self", "LiteralString", "Never",
                "assert_type", "reveal_type", "Required", "NotRequired", "Unpack", "TypeVarTuple", "override",
                "dataclass_transform", "assert_never", "TypeIs", "ReadOnly"}


def _evaluated_annotations(tree):
    """Annotations Python evaluates (without `from __future__ import annotations`): those of
    parameters, returns, and module or class attributes; string annotations are not evaluated."""
    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = child.args
                for arg in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg]:
                    if arg is not None and arg.annotation is not None:
                        yield arg.annotation
                if child.returns is not None:
                    yield child.returns
                yield from walk(child, True)
            elif isinstance(child, ast.AnnAssign):
                if not in_function:
                    yield child.annotation
            else:
                yield from walk(child, in_function)
    return walk(tree, False)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "python", "candlewick", "*.py"))
                                        + glob.glob(os.path.join(ROOT, "examples", "*.py"))),
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_annotations_evaluate_on_python_3_9(path):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
                 for n in tree.body)
    problems = []
    if not future:
        for ann in _evaluated_annotations(tree):
            for n in ast.walk(ann):
                if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr):
                    problems.append(f"line {n.lineno}: `X | Y` in an annotation needs Python 3.10 (write Optional/Union)")
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module == "typing":
            for a in n.names:
                if a.name in NEWER_TYPING:
                    problems.append(f"line {n.lineno}: typing.{a.name} is not in Python 3.9 (typing_extensions has it)")
        if type(n).__name__ == "Match":
            problems.append(f"line {n.lineno}: `match` needs Python 3.10")
    assert not problems, "\n".join(problems)
