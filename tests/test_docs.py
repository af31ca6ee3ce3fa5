"""Every public function and class has a docstring with an example, and every public method of a
public class too: the names in `candlewick.__all__`, the functions of `cw.prompts` and of
`cw.objectives`, and the methods (including class- and static methods) each public class defines
itself. Properties need a docstring, not an example. Dunder methods and names starting with "_"
are not public.

An example is a line starting with `>>>`, or, in any paragraph of the docstring but the first
(paragraphs are separated by blank lines), a line that starts with a call, assigned or not:
`cw.load(...)`, `model = cw.load(...)`, `a, b = model.score(...)`. So

    Load a model.

        model = cw.load("smollm2-135m-instruct")

has one. (Indentation is not part of the rule: Python 3.13 strips it from docstrings.)

The classes and functions of the compiled module (ModelConfig, GenerationConfig, the exceptions)
carry their examples in the stub, python/candlewick/_native.pyi, which is what editors and
`help` on the stubs show; their docstrings are read from there."""

import ast
import inspect
import os
import re

import candlewick as cw
from candlewick import _native

STUB = os.path.join(os.path.dirname(_native.__file__), "_native.pyi")


CALL = re.compile(r"(\w+(\s*,\s*\w+)*\s*=\s*)?[A-Za-z_][\w.]*(\[[^\]]*\])*\(")


def has_example(doc):
    first_paragraph = True
    for line in inspect.cleandoc(doc).splitlines():
        text = line.strip()
        if text.startswith(">>>"):
            return True
        if not text:
            first_paragraph = False
        elif not first_paragraph and CALL.match(text):
            return True
    return False


def _stub_docs():
    """{"Name": doc, "Name.member": doc} of the stub."""
    with open(STUB, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    docs = {}
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            docs[node.name] = ast.get_docstring(node)
        if isinstance(node, ast.ClassDef):
            for n in node.body:
                if isinstance(n, ast.FunctionDef):
                    docs[f"{node.name}.{n.name}"] = ast.get_docstring(n)
    return docs


def _public_api():
    """(qualified name, kind, docstring) of every public function, class, method and property."""
    stub = _stub_docs()
    out = []

    def function(qual, f):
        out.append((qual, "function", inspect.getdoc(f)))

    def cls(qual, c):
        native = c.__module__ in ("candlewick", "candlewick._native") and c.__name__ in stub
        if native:
            out.append((qual, "class", stub[c.__name__]))
        else:
            out.append((qual, "class", c.__doc__))
        for name, raw in vars(c).items():
            if name.startswith("_"):
                continue
            if native:
                if f"{c.__name__}.{name}" in stub:
                    kind = "property" if isinstance(raw, property) or inspect.isgetsetdescriptor(raw) else "method"
                    out.append((f"{qual}.{name}", kind, stub[f"{c.__name__}.{name}"]))
                continue
            if isinstance(raw, property):
                out.append((f"{qual}.{name}", "property", raw.__doc__))
            elif isinstance(raw, (classmethod, staticmethod)) or inspect.isfunction(raw):
                fn = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw
                if fn.__module__.startswith("candlewick"):
                    out.append((f"{qual}.{name}", "method", fn.__doc__))

    for name in cw.__all__:
        obj = getattr(cw, name)
        if inspect.isclass(obj):
            cls(f"cw.{name}", obj)
        elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
            function(f"cw.{name}", obj)
        elif inspect.ismodule(obj):
            names = getattr(obj, "__all__", None) or [n for n in vars(obj) if not n.startswith("_")]
            for n in names:
                f = getattr(obj, n)
                if inspect.isfunction(f) and f.__module__ == obj.__name__:
                    function(f"cw.{name}.{n}", f)
                elif inspect.isclass(f) and f.__module__ == obj.__name__:
                    cls(f"cw.{name}.{n}", f)
    return out


def test_the_walk_sees_the_api():
    names = {q for q, _, _ in _public_api()}
    for q in ("cw.load", "cw.Model.generate", "cw.Model.from_config", "cw.Tokenizer.encode", "cw.ModelConfig.replace",
              "cw.GenerationConfig.from_dict", "cw.prompts.few_shot", "cw.objectives.mlm", "cw.MemoryEstimate.fits",
              "cw.ModelFileError", "cw.TrainResult.final_loss"):
        assert q in names, q


def test_every_public_name_has_a_docstring_with_an_example():
    missing_doc, missing_example = [], []
    for qual, kind, doc in _public_api():
        if not doc or not doc.strip():
            missing_doc.append(qual)
        elif kind != "property" and not has_example(doc):
            missing_example.append(qual)
    problems = ([f"no docstring: {', '.join(missing_doc)}"] if missing_doc else []) + (
        [f"docstring without an example (a '>>>' line, or a call after the first paragraph): {', '.join(missing_example)}"]
        if missing_example else [])
    assert not problems, "\n".join(problems)


def test_the_example_rule():
    assert has_example("Load.\n\n    >>> cw.load('x')\n")
    assert has_example("Load.\n\n        model = cw.load('x')\n    ")
    assert has_example("Score.\n\n    paris, london = model.score('The capital of France is', [' Paris', ' London'])")
    assert has_example("Errors.\n\n    try:\n        cw.load('bad.gguf')\n    except cw.ModelFileError as e: ...")
    assert has_example(">>> 1 + 1\n2")
    assert not has_example("Load a model (a path or a name).")
    assert not has_example("load(path) loads a model: the first paragraph is the summary.")
    assert not has_example("Load.\n\n    Text about the path (a str) and more words.\n")
