"""q/k/v run as one fused pass where all three are GGUF blocks; a file that mixes blocks with
dense F32 weights runs them one by one, each bias added once."""

import numpy as np

import candlewick as cw
from gguf_writer import Gguf

F32, F16 = 0, 1

def test_a_mix_of_f16_blocks_and_f32_weights_with_biases(tmp_path):
    cfg = cw.ModelConfig.for_family("llama", qkv_bias=True, vocab_size=64, hidden_size=64, num_layers=1, num_heads=4,
                                    num_kv_heads=2, intermediate_size=96, max_position_embeddings=64)
    assert cfg.qkv_bias
    cw.Model.from_config(cfg, seed=3).save(tmp_path / "f32.gguf")
    g = Gguf(tmp_path / "f32.gguf")
    data = bytearray(g.data)
    info = {t[0]: t for t in g.tensors}

    def f32_at(name):
        _, ne, ty, off = info[name]
        assert ty == F32
        return off, int(np.prod(ne))

    # biases that matter (a fresh model's are zeros), the same in both files
    for name in ("blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias"):
        off, n = f32_at(name)
        data[off:off + 4 * n] = np.linspace(-0.5, 0.5, n, dtype=np.float32).tobytes()
    g.data = bytes(data)
    g.write(tmp_path / "biased.gguf")
    # q alone in F16 (the map's kernels), k and v left in F32 (candle's): the data laid out anew
    out = bytearray()
    for t in sorted(g.tensors, key=lambda t: t[3]):
        name, ne, ty, off = t
        n = int(np.prod(ne))
        blob = bytes(data[off:off + 4 * n])
        if name == "blk.0.attn_q.weight":
            blob = np.frombuffer(blob, dtype=np.float32).astype(np.float16).tobytes()
            t[2] = F16
        out += b"\0" * ((-len(out)) % g.alignment)
        t[3] = len(out)
        out += blob
    g.data = bytes(out)
    g.write(tmp_path / "mixed.gguf")

    ids = [1, 5, 9, 13, 2]
    full, mixed = cw.load(tmp_path / "biased.gguf"), cw.load(tmp_path / "mixed.gguf")
    assert set(mixed.info["tensor_types"]) == {"F32", "F16"}
    diff = np.abs(mixed.logits(ids) - full.logits(ids)).max()
    assert diff < 1e-4, diff  # f16 rounding of q's weights only (a bias added twice: 6e-3)
