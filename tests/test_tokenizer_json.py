"""tokenizer.json files load as HF tokenizers loads them: same ids, same decoding."""

import json
import os

import pytest

import candlewick as cw

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def minilm_tok():
    return cw.Tokenizer.from_file(os.path.join(cw.resolve("all-minilm-l6-v2"), "tokenizer.json"))


@pytest.fixture(scope="module")
def ref():
    with open(os.path.join(HERE, "fixtures", "minilm_tokenizers.json"), encoding="utf-8") as f:
        return json.load(f)["cases"]


def test_ids_match_hf_tokenizers(minilm_tok, ref):
    assert len(ref) >= 40
    bad = [(c["text"], minilm_tok.encode(c["text"]), c["ids"]) for c in ref if minilm_tok.encode(c["text"]) != c["ids"]]
    assert not bad, bad
    for c in ref:
        assert minilm_tok.encode(c["text"], add_special_tokens=False) == c["ids_no_special"]


def test_decode_matches_hf_tokenizers(minilm_tok, ref):
    for c in ref:
        assert minilm_tok.decode(c["ids"]) == c["decoded"]
        assert minilm_tok.decode(c["ids"], skip_special_tokens=True) == c["decoded_skip"]


def test_wordpiece_specials(minilm_tok):
    ids = minilm_tok.encode("hello world")
    assert ids[0] == minilm_tok.token_to_id("[CLS]") and ids[-1] == minilm_tok.token_to_id("[SEP]")
    assert minilm_tok.vocab_size == 30522


def test_bad_tokenizer_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        cw.Tokenizer.from_file(str(tmp_path / "missing.json"))
    p = tmp_path / "tokenizer.json"
    p.write_text("{not json")
    with pytest.raises(cw.ModelFileError, match="not a valid tokenizer.json"):
        cw.Tokenizer.from_file(str(p))
