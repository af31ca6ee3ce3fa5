"""cw.sample: the sampler on a single distribution, checked statistically against the exact
filtered distribution."""

import numpy as np
import pytest

import candlewick as cw


def exact(logits, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0):
    """Reference: HF order temperature -> top-k -> top-p -> min-p -> typical-p, in float64."""
    l = np.asarray(logits, dtype=np.float64) / temperature
    keep = np.ones(len(l), bool)
    if top_k:
        keep &= l >= np.sort(l)[-top_k]
    p = np.where(keep, np.exp(l - l.max()), 0)
    p /= p.sum()
    if top_p < 1:
        order = np.argsort(-p, kind="stable")
        before = np.cumsum(p[order]) - p[order]
        drop = order[before >= top_p]
        p[drop] = 0
        p /= p.sum()
    if min_p > 0:
        p[p < min_p * p.max()] = 0
        p /= p.sum()
    if typical_p < 1:
        # HF TypicalLogitsWarper: keep the tokens whose surprisal is closest to the entropy, in
        # that order, until their mass reaches typical_p (the token that crosses it included)
        nz = p > 0
        logp = np.where(nz, np.log(np.where(nz, p, 1)), -np.inf)
        ent = -(p[nz] * logp[nz]).sum()
        shifted = np.where(nz, np.abs(-logp - ent), np.inf)
        order = np.argsort(shifted, kind="stable")
        last = min(int((np.cumsum(p[order]) < typical_p).sum()), len(p) - 1)
        drop = order[last + 1 :]
        p[drop] = 0
        p /= p.sum()
    return p


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(temperature=0.5),
        dict(temperature=2.0),
        dict(top_k=5),
        dict(top_p=0.8),
        dict(min_p=0.1),
        dict(temperature=0.7, top_k=8, top_p=0.9),
        dict(temperature=1.5, top_p=0.95, min_p=0.05),
        dict(typical_p=0.5),
        dict(temperature=0.8, typical_p=0.9),
        dict(temperature=1.2, top_k=20, top_p=0.95, min_p=0.02, typical_p=0.7),
    ],
)
def test_empirical_frequencies_match(kw):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=40).astype(np.float32)
    n = 40000
    draws = cw.sample(logits, seed=123, num_samples=n, **kw)
    freq = np.bincount(draws, minlength=len(logits)) / n
    p = exact(logits, **kw)
    assert (freq[p == 0] == 0).all(), "drew a token the filters remove"
    # 5 sigma of a binomial proportion, per token
    tol = 5 * np.sqrt(p * (1 - p) / n) + 1e-3
    assert (np.abs(freq - p) <= tol).all(), (freq, p)


def test_seed_reproducible_and_top_k_1_is_argmax():
    logits = np.random.default_rng(1).normal(size=1000).astype(np.float32)
    a = cw.sample(logits, seed=5, num_samples=20, temperature=1.0)
    b = cw.sample(logits, seed=5, num_samples=20, temperature=1.0)
    assert (a == b).all()
    assert (cw.sample(logits, top_k=1, num_samples=5) == np.argmax(logits)).all()
    assert (cw.sample(logits, temperature=0.0, num_samples=3) == np.argmax(logits)).all()


def test_large_vocab_top_p():
    logits = np.random.default_rng(2).normal(0, 3, size=49152).astype(np.float32)
    out = cw.sample(logits, top_p=0.9, seed=0, num_samples=200)
    p = exact(logits, top_p=0.9)
    assert all(p[i] > 0 for i in out)


@pytest.mark.parametrize(
    "kw, exc",
    [
        (dict(top_p=0), ValueError),
        (dict(top_k=-1), ValueError),
        (dict(temperature=-1), ValueError),
        (dict(num_samples=-2), ValueError),
        (dict(seed="x"), TypeError),
    ],
)
def test_bad_arguments(kw, exc):
    with pytest.raises(exc):
        cw.sample(np.zeros(10, np.float32), **kw)


def test_bad_logits():
    with pytest.raises(ValueError):
        cw.sample(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError):
        cw.sample(np.array([], np.float32))
    with pytest.raises(ValueError, match="finite"):
        cw.sample(np.full(4, np.nan, np.float32))
