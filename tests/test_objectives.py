"""cw.objectives: the rates of masked LM over many draws, T5 span corruption's layout, packing."""

import math

import numpy as np
import pytest

import candlewick as cw

V, MASK, SPECIAL = 1000, 3, [0, 1, 2, 3]


def test_mlm_rates_within_five_sigma_and_specials_never_picked():
    rng = np.random.default_rng(0)
    ids = rng.integers(4, V, size=(200, 256))
    ids[:, 0], ids[:, -1], ids[:10, -20:] = 1, 2, 0  # CLS, SEP, pad
    out = cw.objectives.mlm(ids, mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIAL, seed=5)
    picked = out["labels"] != -100
    eligible = ~np.isin(ids, SPECIAL)
    assert not picked[~eligible].any(), "a special token was picked"
    assert (out["input_ids"][~eligible] == ids[~eligible]).all()
    assert (out["labels"][picked] == ids[picked]).all()
    n = eligible.sum()

    def within(k, total, p):
        return abs(k - total * p) <= 5 * math.sqrt(total * p * (1 - p))

    assert within(picked.sum(), n, 0.15)
    k = picked.sum()
    masked = (out["input_ids"] == MASK) & picked
    kept = (out["input_ids"] == ids) & picked & ~masked
    random = picked & ~masked & ~kept
    assert within(masked.sum(), k, 0.8)
    # a random replacement may draw the original id (1 in V) and read as kept
    assert within(random.sum(), k, 0.1 * (1 - 1 / V))
    assert within(kept.sum(), k, 0.1 + 0.1 / V)
    # random replacements cover the whole vocabulary (specials included, as transformers draws)
    assert out["input_ids"][random].min() < 50 and out["input_ids"][random].max() > V - 50


def test_mlm_is_seeded_and_validates():
    ids = np.arange(4, 100)[None]
    a = cw.objectives.mlm(ids, mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIAL, seed=1)
    b = cw.objectives.mlm(ids, mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIAL, seed=1)
    assert (a["input_ids"] == b["input_ids"]).all() and (a["labels"] == b["labels"]).all()
    with pytest.raises(ValueError, match="probability"):
        cw.objectives.mlm(ids, mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIAL, probability=1.5)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        cw.objectives.mlm(ids + V, mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIAL)
    with pytest.raises(ValueError, match="word_ids"):
        cw.objectives.mlm(ids, mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIAL, whole_word_mask=True)


def test_whole_word_masking_picks_words_as_one():
    rng = np.random.default_rng(1)
    ids = rng.integers(4, V, size=(50, 120))
    words = np.repeat(np.arange(40), 3)[None].repeat(50, 0)  # words of 3 tokens
    out = cw.objectives.mlm(ids, mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIAL, whole_word_mask=True,
                            word_ids=words, seed=2)
    picked = (out["labels"] != -100).reshape(50, 40, 3)
    assert (picked.all(-1) == picked.any(-1)).all(), "a word was partly picked"
    frac = picked[..., 0].mean()
    assert abs(frac - 0.15) <= 5 * math.sqrt(0.15 * 0.85 / picked[..., 0].size)
    inp = out["input_ids"].reshape(50, 40, 3)
    masked = (inp == MASK).all(-1) & picked[..., 0]
    assert ((inp == MASK).any(-1) & picked[..., 0] == masked).all(), "a word was partly replaced by the mask"


def test_clm_labels_and_mask():
    out = cw.objectives.clm([[5, 6, 7, 0, 0]], pad_token_id=0)
    assert out["labels"].tolist() == [[5, 6, 7, -100, -100]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0, 0]]
    assert cw.objectives.clm([5, 0], pad_token_id=0)["labels"].tolist() == [5, -100]


def hf_compute_input_and_target_lengths(inputs_length, noise_density, mean_noise_span_length):
    """transformers' examples/flax/language-modeling/run_t5_mlm_flax.py, as a reference."""

    def lengths(tokens_length):
        num_noise_tokens = int(round(tokens_length * noise_density))
        num_nonnoise_tokens = tokens_length - num_noise_tokens
        num_noise_spans = int(round(num_noise_tokens / mean_noise_span_length))
        return num_nonnoise_tokens + num_noise_spans + 1, num_noise_tokens + num_noise_spans + 1

    tokens_length = inputs_length
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    inputs_length, targets_length = lengths(tokens_length)
    if noise_density == 0.5 and targets_length > inputs_length:
        tokens_length -= 1
        targets_length -= 1
    return tokens_length, targets_length


@pytest.mark.parametrize("density,span", [(0.15, 3.0), (0.5, 3.0), (0.3, 2.0), (0.15, 1.0)])
def test_t5_input_length_matches_transformers(density, span):
    for n in [1, 2, 7, 64, 100, 128, 512, 1000]:
        assert cw.objectives.t5_input_length(n, density, span) == hf_compute_input_and_target_lengths(n, density, span)


def test_t5_input_length_is_quick_at_the_extremes():
    # transformers steps one token at a time; the engine's search gives the same answer at once
    assert cw.objectives.t5_input_length(2**40)[0] > 2**40
    assert cw.objectives.t5_input_length(512, 0.999999, 1e6)[0] > 512


def hf_counts(length, density, span):
    noise = int(np.round(length * density))
    nonnoise = length - noise
    noise = min(max(noise, 1), length - 1)
    spans = max(int(np.round(min(noise, nonnoise) / span)), 1)
    return noise, spans


@pytest.mark.parametrize("length", [2, 3, 10, 31, 142, 568])
def test_span_corruption_layout(length):
    rng = np.random.default_rng(length)
    eos, vocab = 1, 500
    ids = rng.integers(2, 400, size=(20, length))
    out = cw.objectives.span_corruption(ids, vocab_size=vocab, eos_token_id=eos, seed=length)
    noise, spans = hf_counts(length, 0.15, 3.0)
    assert out["input_ids"].shape == (20, length - noise + spans + 1)
    assert out["labels"].shape == (20, noise + spans + 1)
    sentinels = list(range(vocab - 1, vocab - 1 - spans - 1, -1))
    for row, inp, lab in zip(ids, out["input_ids"], out["labels"]):
        assert inp[-1] == eos and lab[-1] == eos
        s_in = [t for t in inp[:-1] if t >= 400]
        s_lab = [t for t in lab[:-1] if t >= 400]
        assert s_in == sentinels[:spans] and s_lab == sentinels[:spans], "sentinels count down from vocab_size - 1"
        assert inp[0] < 400, "a sequence starts with a kept span"
        assert lab[0] == vocab - 1
        # the inputs' spans and the labels' spans interleave back into the original
        rebuilt, li = [], 1
        for t in inp[:-1]:
            if t >= 400:
                while li < len(lab) - 1 and lab[li] < 400:
                    rebuilt.append(lab[li])
                    li += 1
                li += 1
            else:
                rebuilt.append(t)
        assert rebuilt == row.tolist()
    again = cw.objectives.span_corruption(ids, vocab_size=vocab, eos_token_id=eos, seed=length)
    assert (again["input_ids"] == out["input_ids"]).all()


def test_span_corruption_validates():
    with pytest.raises(ValueError, match="noise_density"):
        cw.objectives.span_corruption([[5, 6, 7]], vocab_size=100, eos_token_id=1, noise_density=0.0)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        cw.objectives.span_corruption([[5]], vocab_size=100, eos_token_id=1)


def test_pack_concatenates_and_drops_the_remainder():
    assert cw.objectives.pack([[1, 2, 3], [4, 5], [6, 7, 8]], 3).tolist() == [[1, 2, 3], [4, 5, 6]]
    assert cw.objectives.pack([[1]], 2).shape == (0, 2)
    with pytest.raises(ValueError, match="block_size"):
        cw.objectives.pack([[1, 2]], 0)
