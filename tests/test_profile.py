"""cw.profile(): where a forward pass's time goes, by op and layer, and nothing outside the block."""

import candlewick as cw


def tiny():
    cfg = cw.ModelConfig.for_family("llama", vocab_size=96, hidden_size=64, num_layers=3, num_heads=4,
                                    num_kv_heads=2, intermediate_size=128, max_position_embeddings=64)
    return cw.Model.from_config(cfg, seed=1)


def test_every_op_of_every_layer_is_timed_once_per_pass():
    m = tiny()
    with cw.profile() as p:
        m.generate([1, 2, 3, 4], max_new_tokens=5, do_sample=False, ignore_eos=True)
    passes = 5  # the prompt's pass, then one per further token (the last token needs none)
    ops = p.by_op()
    for op in ("embeddings", "norm", "q/k/v matmuls", "q/k norms, rope", "kv cache append", "attention",
               "o matmul", "residual add", "gate/up matmuls", "activation", "down matmul", "lm head", "sampling"):
        assert op in ops, (op, list(ops))
    assert p.calls("attention") == 3 * passes
    assert p.calls("norm") == (2 * 3 + 1) * passes  # two per block and the final norm
    assert p.calls("lm head") == passes and p.calls("embeddings") == passes
    layers = p.by_layer()
    assert set(layers) == {None, 0, 1, 2} and all(s > 0 for s in layers.values())
    assert abs(sum(layers.values()) - p.total) < 1e-9
    assert "attention" in str(p) and "total" in str(p)


def test_nothing_is_collected_outside_the_block():
    m = tiny()
    m.generate([1, 2, 3], max_new_tokens=2)
    with cw.profile() as p:
        pass
    assert p.rows == [] and p.total == 0
    with cw.profile() as p:
        m.logits([1, 2, 3])
    first = p.calls("attention")
    m.logits([1, 2, 3])
    assert p.calls("attention") == first == 3


def test_pooled_kernels_report_their_waits(tmp_path):
    # a quantized model large enough for the matmuls to use the worker pool (when it has threads)
    cfg = cw.ModelConfig.for_family("llama", vocab_size=4096, hidden_size=256, num_layers=1, num_heads=4,
                                    intermediate_size=512, max_position_embeddings=64)
    cw.Model.from_config(cfg, seed=0).save(tmp_path / "f32.gguf")
    cw.quantize(tmp_path / "f32.gguf", tmp_path / "q8.gguf", "Q8_0")
    m = cw.load(tmp_path / "q8.gguf", threads=2)
    with cw.profile() as p:
        m.logits(list(range(1, 9)))
    ops = p.by_op()
    matmuls = sum(ops[op] for op in ("q/k/v matmuls", "o matmul", "gate/up matmuls", "down matmul", "lm head"))
    assert 0 <= ops[cw._profile.WAIT] <= matmuls
