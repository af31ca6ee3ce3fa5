"""python/candlewick/_native.pyi says exactly what the compiled module has: every name of the
module and of its classes (no stale or missing one), each member's kind (method, property,
classmethod, staticmethod), every parameter with its kind and default, and for the config classes
their fields (in the engine's order), the engine's defaults and the choices of their str fields.
A native function or argument added in rust/candlewick-py without its stub fails here.

The stub read is the one installed beside the module (as `make install` copies it); the
names compared are the module's `__all__` (PyO3 lists every added function, class and
attribute there) and each class's own members. Plain assignments at the stub's top level whose
names start with "_" are the stub's own type aliases."""

import ast
import inspect
import os
import re

import pytest

from candlewick import _native

STUB = os.path.join(os.path.dirname(_native.__file__), "_native.pyi")

# dunder members a type checker reads; any other dunder (__repr__, __hash__, __reduce__, ...)
# needs no stub
PROTOCOL = {"__iter__", "__next__", "__len__", "__getitem__", "__contains__", "__call__", "__enter__",
            "__exit__", "__float__", "__int__", "__bool__"}
CONFIGS = ("ModelConfig", "GenerationConfig")


def _tree():
    with open(STUB, encoding="utf-8") as f:
        return ast.parse(f.read())


def _decorators(fn):
    return {d.id for d in fn.decorator_list if isinstance(d, ast.Name)}


def _kind(fn):
    d = _decorators(fn)
    for k in ("property", "classmethod", "staticmethod"):
        if k in d:
            return k
    return "method"


def _stub():
    """{name: ("function", FunctionDef) | ("class", {member: (kind, node)}) | ("attribute", None)},
    and the stub's aliases."""
    out, aliases = {}, set()
    for node in _tree().body:
        if isinstance(node, ast.ClassDef):
            members = {}
            for n in node.body:
                if isinstance(n, ast.AnnAssign):
                    members[n.target.id] = ("attribute", n)
                elif isinstance(n, ast.FunctionDef):
                    if any(isinstance(d, ast.Attribute) and d.attr == "setter" for d in n.decorator_list):
                        continue  # a property's setter: the property is its getter's entry
                    members[n.name] = (_kind(n), n)
            out[node.name] = ("class", members)
        elif isinstance(node, ast.FunctionDef):
            out[node.name] = ("function", node)
        elif isinstance(node, ast.AnnAssign):
            out[node.target.id] = ("attribute", None)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                aliases.add(t.id)
    return out, aliases


def _runtime_kind(cls, name):
    raw = inspect.getattr_static(cls, name)
    if isinstance(raw, (classmethod, type(dict.__dict__["fromkeys"]))):  # classmethod_descriptor
        return "classmethod"
    if isinstance(raw, staticmethod):
        return "staticmethod"
    if inspect.isgetsetdescriptor(raw) or isinstance(raw, property):
        return "property"
    return "method"


def _class_members(cls):
    """A native class's own members, as a user sees them: its methods and getters, its config
    fields (read through __getattr__), the protocol dunders it implements."""
    names = {n for n in vars(cls) if not n.startswith("__") or n in PROTOCOL}
    names |= set(getattr(cls, "__dataclass_fields__", {}))
    return names


def _defaults(args, defaults):
    return [None] * (len(args) - len(defaults)) + list(defaults)


def _stub_params(fn, kind):
    """[(name, kind, default)] of a stub function, self/cls dropped; default is the literal
    value, `...` for an elided one, inspect.Parameter.empty for none."""
    a = fn.args
    empty = inspect.Parameter.empty
    out = []
    positional = a.posonlyargs + a.args
    pos_defaults = _defaults(positional, a.defaults)
    for i, (arg, d) in enumerate(zip(positional, pos_defaults)):
        k = "POSITIONAL_ONLY" if i < len(a.posonlyargs) else "POSITIONAL_OR_KEYWORD"
        out.append((arg.arg, k, empty if d is None else ast.literal_eval(d)))
    if a.vararg:
        out.append((a.vararg.arg, "VAR_POSITIONAL", empty))
    for arg, d in zip(a.kwonlyargs, a.kw_defaults):
        out.append((arg.arg, "KEYWORD_ONLY", empty if d is None else ast.literal_eval(d)))
    if a.kwarg:
        out.append((a.kwarg.arg, "VAR_KEYWORD", empty))
    if kind in ("method", "classmethod", "property") and out:
        out = out[1:]
    return out


def _runtime_params(obj, kind):
    sig = inspect.signature(obj)
    params = [(p.name, p.kind.name, p.default) for p in sig.parameters.values()]
    if kind == "method":
        params = params[1:]  # self (unbound method descriptor)
    return params


def _compare(where, stub, runtime, fields=None):
    """Stub parameters against the module's. A runtime `**kwargs` of a config class takes exactly
    its fields: the stub lists them as keyword-only parameters instead (`fields`)."""
    if runtime and runtime[-1][1] == "VAR_KEYWORD" and fields is not None:
        runtime = runtime[:-1]
        listed = [n for n, k, _ in stub if k == "KEYWORD_ONLY"]
        expected = [f for f in fields if f not in {n for n, _, _ in runtime}]
        assert listed == expected, f"{where}: keyword parameters {listed} are not the fields {expected}"
        stub = [p for p in stub if p[1] != "KEYWORD_ONLY"]
    names = [p[0] for p in stub]
    assert names == [p[0] for p in runtime], f"{where}: parameters {names} != module's {[p[0] for p in runtime]}"
    for (n, sk, sd), (_, rk, rd) in zip(stub, runtime):
        if rk == "POSITIONAL_OR_KEYWORD" or sk == "POSITIONAL_OR_KEYWORD":
            assert sk == rk, f"{where}({n}): {sk} in the stub, {rk} in the module"
        if rd is inspect.Parameter.empty:
            assert sd is inspect.Parameter.empty, f"{where}({n}): the stub gives a default the module does not have"
        else:
            assert sd is not Ellipsis, f"{where}({n}): write the default, {rd!r}, in the stub"
            assert sd == rd and type(sd) is type(rd), f"{where}({n}): default {sd!r} in the stub, {rd!r} in the module"


def test_every_name_of_the_module_is_stubbed_and_no_other():
    stub, aliases = _stub()
    module = set(_native.__all__)
    assert module == {n for n in dir(_native) if not n.startswith("__") or n == "__version__"}, "__all__ misses a name"
    missing, stale = module - set(stub), set(stub) - module
    assert not missing, f"in candlewick._native but not in _native.pyi: {sorted(missing)}"
    assert not stale, f"in _native.pyi but not in candlewick._native: {sorted(stale)}"
    assert all(a.startswith("_") and a not in module for a in aliases), "a stub alias must be private to the stub"
    for name, (kind, _) in stub.items():
        obj = getattr(_native, name)
        expected = "class" if inspect.isclass(obj) else "function" if callable(obj) else "attribute"
        assert kind == expected, f"{name} is a {expected} in the module, a {kind} in the stub"


@pytest.mark.parametrize("name", [n for n in _native.__all__ if inspect.isclass(getattr(_native, n))])
def test_every_member_of_each_class_is_stubbed_and_no_other(name):
    stub, _ = _stub()
    cls = getattr(_native, name)
    members = stub[name][1]
    declared = {n for n in members if not n.startswith("__") or n in PROTOCOL}
    expected = _class_members(cls)
    assert not expected - declared, f"{name}: not in the stub: {sorted(expected - declared)}"
    assert not declared - expected, f"{name}: in the stub but not on the class: {sorted(declared - expected)}"
    for m in members:
        if m.startswith("__") and m not in PROTOCOL:
            assert hasattr(cls, m), f"{name}.{m} is not on the class"
    fields = set(getattr(cls, "__dataclass_fields__", {}))
    for m, (kind, _) in members.items():
        if m.startswith("__"):
            continue
        if m in fields:
            assert kind == "attribute", f"{name}.{m} is a field: an attribute in the stub"
        else:
            assert kind == _runtime_kind(cls, m), f"{name}.{m}: a {_runtime_kind(cls, m)} in the module, a {kind} in the stub"


def _callables():
    stub, _ = _stub()
    for name, (kind, node) in sorted(stub.items()):
        if kind == "function" and hasattr(_native, name):
            yield name, getattr(_native, name), node, "function", None
        elif kind == "class" and hasattr(_native, name):
            cls = getattr(_native, name)
            fields = list(getattr(cls, "__dataclass_fields__", {})) or None
            for m, (mk, n) in sorted(node.items()):
                if mk in ("attribute", "property") or (m.startswith("__") and m != "__init__"):
                    continue
                if m == "__init__":
                    if issubclass(cls, BaseException):
                        continue
                    yield f"{name}()", cls, n, "init", fields
                elif hasattr(cls, m):  # a stale member fails the test above
                    yield f"{name}.{m}", getattr(cls, m), n, mk, fields


@pytest.mark.parametrize("where,obj,node,kind,fields", [pytest.param(*c, id=c[0]) for c in _callables()])
def test_signatures_match(where, obj, node, kind, fields):
    stub = _stub_params(node, "method" if kind == "init" else kind)
    runtime = _runtime_params(obj, "init" if kind == "init" else "method" if kind == "method" else "bound")
    _compare(where, stub, runtime, fields)


def _literal_choices(tree, alias):
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == alias:
            return [e.value for e in node.value.slice.elts] if isinstance(node.value.slice, ast.Tuple) else [node.value.slice.value]
    raise AssertionError(f"no alias {alias}")


@pytest.mark.parametrize("cls_name", CONFIGS)
def test_config_fields_defaults_and_choices(cls_name):
    tree = _tree()
    cls = getattr(_native, cls_name)
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name)
    fields = list(cls.__dataclass_fields__)
    attrs = [n for n in node.body if isinstance(n, ast.AnnAssign) and not n.target.id.startswith("__")]
    assert [a.target.id for a in attrs] == fields, f"{cls_name}: attributes not the fields, in the engine's order"
    init = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    engine = cls().to_dict()
    for arg, d in zip(init.args.kwonlyargs, init.args.kw_defaults):
        stub_default = ast.literal_eval(d)
        # None is how the stub writes an empty default (stop=[], logit_bias={}): the engine takes it so
        want = engine[arg.arg]
        if stub_default is None and want in ([], {}):
            assert cls(**{arg.arg: None}).to_dict()[arg.arg] == want
            continue
        assert stub_default == want and type(stub_default) is type(want), f"{cls_name}.{arg.arg}: default {stub_default!r}, engine's {want!r}"
    # a field typed as a Literal alias takes exactly those strings (the engine's error lists them)
    for a in attrs:
        if isinstance(a.annotation, ast.Name) and a.annotation.id.startswith("_"):
            choices = _literal_choices(tree, a.annotation.id)
            with pytest.raises(ValueError) as e:
                cls(**{a.target.id: "no-such-choice"})
            engine_choices = re.search(r"must be one of (.*); got", str(e.value)).group(1).split(", ")
            assert choices == engine_choices, f"{cls_name}.{a.target.id}: {choices} != the engine's {engine_choices}"
