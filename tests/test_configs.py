"""cw.ModelConfig and cw.GenerationConfig are the engine's own types: one set of fields and
defaults, one validation, errors naming the field; and the .pyi stubs say what the module has."""

import ast
import copy
import dataclasses
import os
import pickle

import pytest

import candlewick as cw
from candlewick import _native


def test_configs_are_the_engines_classes():
    assert cw.ModelConfig is _native.ModelConfig and cw.GenerationConfig is _native.GenerationConfig
    c = cw.ModelConfig()
    assert (c.family, c.architecture, c.vocab_size, c.position, c.sliding_window) == ("llama", "decoder", 32000, "rope", None)
    g = cw.GenerationConfig()
    assert g.max_new_tokens == 128 and g.stop == [] and g.seed is None and g.logit_bias == {}


def test_generate_uses_the_one_default(smollm2):
    out = smollm2.generate("Once upon a time", ignore_eos=True)
    assert len(out.token_ids) == cw.GenerationConfig().max_new_tokens


def test_fields_read_change_compare_and_pickle():
    c = cw.ModelConfig.for_family("gpt2", hidden_size=64, num_heads=4)
    assert c.head_dim == 16 and c.num_kv_heads == 4  # derived, as the preset says
    d = dataclasses.replace(c, num_layers=3)
    assert d.num_layers == 3 and d != c and d == c.replace(num_layers=3)
    assert cw.ModelConfig(**c.to_dict()) == c and hash(cw.ModelConfig(**c.to_dict())) == hash(c)
    assert pickle.loads(pickle.dumps(c)) == c and copy.deepcopy(c) == c
    assert [f.name for f in dataclasses.fields(c)] == list(c.to_dict())
    assert "ModelConfig(family='gpt2'" in repr(c)
    g = cw.GenerationConfig(stop="\n", logit_bias={5: -1.5}, seed=3)
    assert g.stop == ["\n"] and g.logit_bias == {5: -1.5}
    assert pickle.loads(pickle.dumps(g)) == g and dataclasses.asdict(g)["seed"] == 3
    with pytest.raises(AttributeError):
        c.num_layers = 9
    with pytest.raises(AttributeError):
        c.no_such_field


@pytest.mark.parametrize("kw, exc, match", [
    (dict(num_layers=True), TypeError, "num_layers must be an int, got bool"),
    (dict(num_layers="2"), TypeError, "num_layers"),
    (dict(hidden_size=-1), ValueError, "hidden_size must be >= 0"),
    (dict(norm_eps="tiny"), TypeError, "norm_eps must be a number"),
    (dict(position="alibi"), ValueError, "position must be one of learned, sinusoidal, rope, relative_bias"),
    (dict(widht=3), TypeError, "widht"),
    (dict(family="mamba"), ValueError, "unknown family 'mamba'"),
])
def test_model_config_errors_name_the_field(kw, exc, match):
    with pytest.raises(exc, match=match):
        cw.ModelConfig(**kw)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(max_new_tokens=-1), ValueError, "max_new_tokens must be >= 0"),
    (dict(do_sample=1), TypeError, "do_sample must be a bool"),
    (dict(stop=[1]), TypeError, "stop"),
    (dict(logit_bias={"x": 1.0}), TypeError, "logit_bias key"),
    (dict(top_p=1.5), ValueError, "top_p"),
    (dict(max_tokens=3), TypeError, "unknown generation parameter"),
])
def test_generation_config_errors_name_the_field(kw, exc, match):
    with pytest.raises(exc, match=match):
        cw.GenerationConfig(**kw)


def test_presets_come_from_the_family_registry():
    names = cw.ModelConfig.families()
    assert names == ["llama", "phi3", "gemma2", "gemma3", "gpt2", "bert", "t5", "rnn"]
    for name in names:
        c = cw.ModelConfig.for_family(name, hidden_size=32, num_heads=4, num_layers=1)
        assert c.family == name and c.num_parameters > 0
    t5 = cw.ModelConfig.for_family("t5", num_layers=3)
    assert t5.num_decoder_layers == 3 and t5.scale_decoder_outputs
    with pytest.raises(ValueError, match="family must be one of llama, phi3, gemma2, gemma3, gpt2, bert, t5, rnn"):
        cw.ModelConfig.for_family("mamba")
    with pytest.raises(cw.UnsupportedError, match="gemma3"):
        cw.Model.from_config(cw.ModelConfig.for_family("gemma3", hidden_size=32, num_heads=4, num_layers=1))


def _stub_names():
    tree = ast.parse(open(os.path.join(os.path.dirname(cw.__file__), "_native.pyi")).read())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = [n.target.id for n in node.body if isinstance(n, ast.AnnAssign)] + [
                n.name for n in node.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("__")]
        elif isinstance(node, ast.FunctionDef):
            out[node.name] = None
    return out


def test_stubs_describe_the_module():
    stubs = _stub_names()
    public = {n for n in dir(_native) if not n.startswith("__")}
    assert set(stubs) == public, set(stubs) ^ public
    for cls in ("ModelConfig", "GenerationConfig"):
        fields = list(getattr(_native, cls).__dataclass_fields__)
        declared = [n for n in stubs[cls] if n in fields]
        assert declared == fields, cls  # every field, in the engine's order
    for cls, members in stubs.items():
        if members is None:
            continue
        obj = getattr(_native, cls)
        for m in members:
            if m not in getattr(obj, "__dataclass_fields__", {}):
                assert hasattr(obj, m), f"{cls}.{m}"
