"""Encoders (BERT): all-MiniLM-L6-v2 token vectors and sentence embeddings against HF
transformers, a small random BertForMaskedLM's logits, and the encoder verbs' errors. Reference
outputs: tests/fixtures/make_hf_fixtures.py."""

import json
import os
import shutil

import numpy as np
import pytest

import candlewick as cw

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
TINY = os.path.join(FIX, "tiny-bert-mlm")


@pytest.fixture(scope="module")
def minilm():
    return cw.load("all-minilm-l6-v2")


@pytest.fixture(scope="module")
def tiny():
    return cw.load(TINY)


def cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_minilm_matches_transformers(minilm):
    ref = np.load(os.path.join(FIX, "minilm_reference.npz"))
    sentences = [str(s) for s in ref["sentences"]]
    out = minilm.encode(sentences, max_length=256)
    lens = out.attention_mask.sum(1)
    assert list(lens) == list(ref["lengths"])
    assert [i for row in out.input_ids for i in row] == list(ref["input_ids"])
    ours = np.concatenate([out.last_hidden_state[i, :n] for i, n in enumerate(lens)])
    cos = cosine(ours, ref["tokens"].astype(np.float32))
    assert cos.min() >= 0.9999, cos.min()
    emb = minilm.embed(sentences)
    assert emb.shape == (10, 384)
    assert cosine(emb, ref["embeddings"]).min() >= 0.9999
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # one string gives one vector, equal to its row in a batch
    assert np.allclose(minilm.embed(sentences[3]), emb[3], atol=1e-5)


def test_embed_options(minilm):
    texts = ["first sentence here", "a second, longer sentence with more words in it"]
    mean = minilm.embed(texts, normalize=False)
    out = minilm.encode(texts)
    for i in range(2):
        n = out.attention_mask[i].sum()
        assert np.allclose(mean[i], out.last_hidden_state[i, :n].mean(0), atol=1e-5)
    cls = minilm.embed(texts, pooling="cls", normalize=False)
    assert np.allclose(cls, out.last_hidden_state[:, 0], atol=1e-6)
    with pytest.raises(ValueError, match="pooling"):
        minilm.embed(texts, pooling="median")


def test_truncation(minilm):
    long = "word " * 600
    v = minilm.embed(long)  # truncated to max_seq_length (256), as sentence-transformers does
    ids = minilm.encode(long, max_length=256).input_ids[0]
    assert len(ids) == 256 and ids[0] == 101 and ids[-1] == 102  # [CLS] ... [SEP] kept
    assert v.shape == (384,)
    assert len(minilm.encode(long).input_ids[0]) == 512
    with pytest.raises(ValueError, match="longer than the 512 positions"):
        minilm.encode(long, truncation=False)
    with pytest.raises(ValueError, match="max_length"):
        minilm.encode("x", max_length=1000)


def test_tiny_bert_mlm_logits_match_transformers(tiny):
    ref = np.load(os.path.join(FIX, "tiny_bert_mlm_reference.npz"))
    ids, mask = ref["input_ids"], ref["attention_mask"]
    assert [tiny.tokenizer.encode(str(t)) for t in ref["texts"]] == [list(r[m == 1]) for r, m in zip(ids, mask)]
    logits = tiny.logits(ids, attention_mask=mask)
    assert logits.shape == ref["logits"].shape
    real = mask.astype(bool)
    assert np.abs(logits[real] - ref["logits"][real]).max() < 1e-4


def test_fill_mask(tiny):
    out = tiny.fill_mask("the cat sat on the [MASK]", top_k=3)
    assert len(out) == 1 and len(out[0]) == 3
    ids = tiny.tokenizer.encode("the cat sat on the [MASK]")
    row = tiny.logits(ids)[ids.index(tiny.tokenizer.mask_token_id)].astype(np.float64)
    p = np.exp(row - row.max())
    p /= p.sum()
    assert [c["token"] for c in out[0]] == list(np.argsort(-p, kind="stable")[:3])
    assert abs(out[0][0]["score"] - p.max()) < 1e-5
    assert out[0][0]["sequence"].startswith("the cat sat on the")
    with pytest.raises(ValueError, match="mask"):
        tiny.fill_mask("no mask here")


def test_verbs_an_architecture_lacks(minilm, smollm2):
    with pytest.raises(cw.UnsupportedError, match="encoder"):
        minilm.generate("hello")
    with pytest.raises(cw.UnsupportedError, match="masked-LM head"):
        minilm.fill_mask("a [MASK] b")
    with pytest.raises(cw.UnsupportedError, match="no LM head"):
        minilm.logits([101, 102])
    with pytest.raises(cw.UnsupportedError, match="for encoders"):
        smollm2.encode("hello")
    with pytest.raises(cw.UnsupportedError, match="for encoders"):
        smollm2.embed("hello")


def _copy_tiny(tmp_path):
    d = tmp_path / "m"
    shutil.copytree(TINY, d)
    return d


def test_bad_checkpoints(tmp_path):
    d = _copy_tiny(tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] = 48
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(cw.ModelFileError, match=r"bert.encoder.layer.0.intermediate.dense.weight has shape \[64, 32\], expected \[48, 32\]"):
        cw.load(d)
    d2 = tmp_path / "m2"
    shutil.copytree(TINY, d2)
    cfg = json.loads((d2 / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (d2 / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(cw.ModelFileError, match=r"bert.encoder.layer.2.* is missing \(expected shape"):
        cw.load(d2)
    d3 = tmp_path / "m3"
    shutil.copytree(TINY, d3)
    os.remove(d3 / "model.safetensors")
    (d3 / "pytorch_model.bin").write_bytes(b"\x80\x02not really")
    with pytest.raises(cw.UnsupportedError, match="pickle.*safetensors"):
        cw.load(d3)
    with pytest.raises(cw.UnsupportedError, match="pickle"):
        cw.load(d3 / "pytorch_model.bin")
    d4 = tmp_path / "m4"
    shutil.copytree(TINY, d4)
    raw = (d4 / "model.safetensors").read_bytes()
    (d4 / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(cw.ModelFileError, match="data_offsets|does not fit"):
        cw.load(d4)


def test_parameter_count_of_fixture_models(tiny):
    assert tiny.config.num_parameters == tiny.info["num_parameters"]
    assert cw.estimate_memory(TINY).num_parameters == tiny.info["num_parameters"]
