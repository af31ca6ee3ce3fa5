"""Pretraining objectives, numpy in and numpy out, computed in the engine (seeded).

    ids = np.array([[101, 2023, 2003, 1037, 7099, 102]])
    batch = cw.objectives.mlm(ids, mask_token_id=103, vocab_size=30522, special_token_ids=[0, 101, 102], seed=0)
    batch["input_ids"], batch["labels"]        # labels are -100 where nothing was masked

- mlm: BERT's masked LM with the semantics of transformers' DataCollatorForLanguageModeling;
- clm: a decoder's causal LM (the shift happens in the loss);
- span_corruption: T5's span corruption with sentinels (counting down from vocab_size - 1);
- t5_input_length: the raw length span corruption needs for inputs of a given length;
- pack: a tokenized corpus concatenated and cut into blocks (group_texts).
"""

import numbers
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native

__all__ = ["mlm", "clm", "span_corruption", "t5_input_length", "pack"]

# token ids: one row or a batch of rows (lists, or an int array of 1 or 2 dimensions)
Ids = Union[Sequence[int], Sequence[Sequence[int]], np.ndarray]


def _array(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got {a.ndim} dimensions")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold ints, got {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.int64)


def _int(name: str, v: Any, minimum: Optional[int] = None) -> int:
    if isinstance(v, bool) or not isinstance(v, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def _float(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(v).__name__}")
    v = float(v)
    if v != v:
        raise ValueError(f"{name} must be a number, got nan")
    return v


def _seed(seed: Optional[int]) -> Optional[int]:
    return None if seed is None else _int("seed", seed, 0)


def _shape_back(out: Dict[str, np.ndarray], one_d: bool) -> Dict[str, np.ndarray]:
    return {k: (v[0] if one_d else v) for k, v in out.items()}


def mlm(input_ids: Ids, *, mask_token_id: int, vocab_size: int, special_token_ids: Sequence[int], probability: float = 0.15,
        mask_replace_prob: float = 0.8, random_replace_prob: float = 0.1, whole_word_mask: bool = False,
        word_ids: Optional[Union[Sequence[Sequence[Optional[int]]], Sequence[Optional[int]], np.ndarray]] = None,
        seed: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Masked LM (transformers' DataCollatorForLanguageModeling): each token is picked with
    `probability`, independently, never a special token (pass pad among special_token_ids);
    of the picked, mask_replace_prob become mask_token_id, random_replace_prob a random id over
    the whole vocabulary, the rest stay. labels: the original id where picked, -100 elsewhere.
    whole_word_mask: words (runs of equal word_ids, e.g. from a fast tokenizer's word_ids();
    negative for no word) are picked and replaced as one.

        cw.objectives.mlm([[101, 7592, 2088, 102]], mask_token_id=103, vocab_size=30522,
                          special_token_ids=[0, 101, 102], seed=0)
    """
    one_d = np.asarray(input_ids).ndim == 1
    ids = _array(input_ids, "input_ids")
    words = None
    if whole_word_mask:
        if word_ids is None:
            raise ValueError("whole_word_mask=True needs word_ids (the word index of every token)")
        words = _array([[-1 if w is None else w for w in row] for row in np.asarray(word_ids, dtype=object).reshape(ids.shape)], "word_ids")
    elif word_ids is not None:
        raise ValueError("word_ids is only read with whole_word_mask=True")
    specials = [_int("special_token_ids", s) for s in special_token_ids]
    i, l = _native.objective_mlm(ids, _int("mask_token_id", mask_token_id, 0), _int("vocab_size", vocab_size, 1), specials,
                                 _float("probability", probability), _float("mask_replace_prob", mask_replace_prob),
                                 _float("random_replace_prob", random_replace_prob), words, _seed(seed))
    return _shape_back({"input_ids": i, "labels": l}, one_d)


def clm(input_ids: Ids, *, pad_token_id: Optional[int]) -> Dict[str, np.ndarray]:
    """Causal LM: labels are the inputs with pad set to -100 (the loss shifts them, as in
    transformers); attention_mask is 0 on pad.

        cw.objectives.clm([[5, 6, 7, 0]], pad_token_id=0)["labels"]   # [[5, 6, 7, -100]]
    """
    one_d = np.asarray(input_ids).ndim == 1
    ids = _array(input_ids, "input_ids")
    pad = None if pad_token_id is None else _int("pad_token_id", pad_token_id)
    i, l, m = _native.objective_clm(ids, pad)
    return _shape_back({"input_ids": i, "labels": l, "attention_mask": m}, one_d)


def span_corruption(input_ids: Ids, *, vocab_size: int, eos_token_id: int, noise_density: float = 0.15,
                    mean_noise_span_length: float = 3.0, seed: Optional[int] = None) -> Dict[str, np.ndarray]:
    """T5's span corruption (random_spans_noise_mask + noise_span_to_unique_sentinel): about
    noise_density of each row's tokens, in spans of mean length mean_noise_span_length, are
    replaced in input_ids by one sentinel each (vocab_size - 1 = <extra_id_0>, then - 2, ...);
    labels hold the dropped spans after their sentinels. EOS ends both. Rows of length
    t5_input_length(n)[0] give inputs of exactly n tokens.

        cw.objectives.span_corruption(np.arange(2, 32)[None], vocab_size=32128, eos_token_id=1, seed=0)
    """
    one_d = np.asarray(input_ids).ndim == 1
    ids = _array(input_ids, "input_ids")
    i, l = _native.objective_span_corruption(ids, _int("vocab_size", vocab_size, 1), _int("eos_token_id", eos_token_id, 0),
                                             _float("noise_density", noise_density),
                                             _float("mean_noise_span_length", mean_noise_span_length), _seed(seed))
    return _shape_back({"input_ids": i, "labels": l}, one_d)


def t5_input_length(target_inputs_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0) -> Tuple[int, int]:
    """(raw length, targets length), as transformers' compute_input_and_target_lengths: cut the
    corpus into blocks of the raw length and span corruption gives inputs of
    target_inputs_length tokens and labels of the targets length.

        cw.objectives.t5_input_length(512)   # (568, 114)
    """
    return _native.t5_input_length(_int("target_inputs_length", target_inputs_length, 1), _float("noise_density", noise_density),
                                   _float("mean_noise_span_length", mean_noise_span_length))


def pack(token_lists: Union[Sequence[Sequence[int]], np.ndarray], block_size: int) -> np.ndarray:
    """A tokenized corpus concatenated and cut into rows of block_size (the remainder dropped),
    as transformers' group_texts.

        cw.objectives.pack([[1, 2, 3], [4, 5]], 2)   # [[1, 2], [3, 4]]
    """
    lists = [[_int("token_lists", t) for t in (row.tolist() if isinstance(row, np.ndarray) else row)] for row in token_lists]
    return _native.objective_pack(lists, _int("block_size", block_size, 1))
