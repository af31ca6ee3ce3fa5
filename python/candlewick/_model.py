"""The Pythonic front door. Thin: arguments are converted here (with the TypeErrors of Python
types), results wrapped in named types; all work, the configs' defaults and every range check are
in the engine (rust/candlewick)."""

import numbers
import os
from dataclasses import dataclass, field
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import _native
from ._native import GenerationConfig, ModelConfig
from ._registry import resolve


class TokenLogprob(NamedTuple):
    """A generated token's natural-log probability under the model (before any sampling
    processor) and the most probable alternatives at that step, as (id, logprob) pairs."""

    token_id: int
    logprob: float
    top: List[Tuple[int, float]]


@dataclass
class GenerationOutput:
    """What `generate` returns: the generated part only."""

    text: str
    token_ids: List[int]
    finish_reason: str  # "length" | "eos" | "stop"
    prompt_tokens: int = 0
    prompt: Optional[str] = field(default=None, repr=False)
    logprobs: Optional[List[TokenLogprob]] = field(default=None, repr=False)
    # log p(prompt[i] | prompt[:i]); None for the first token, which has no context
    prompt_logprobs: Optional[List[Optional[float]]] = field(default=None, repr=False)
    # beam search: the hypothesis' length-normalised score, sum(logprobs) / len ** length_penalty
    score: Optional[float] = field(default=None, repr=False)


class ForwardOutput(NamedTuple):
    """What `forward` returns (HF's names): logits [seq, vocab] (None for an encoder without a
    head), hidden_states (num_layers + 1 arrays [seq, hidden]: the embeddings, then each layer's
    output, the last one after the final norm) and attentions (num_layers arrays
    [heads, seq, seq], each row a probability distribution), when asked for."""

    logits: Optional[np.ndarray]
    hidden_states: Optional[List[np.ndarray]] = None
    attentions: Optional[List[np.ndarray]] = None
    #: transformers' loss against `labels`, when forward was given them
    loss: Optional[float] = None


class EncoderOutput(NamedTuple):
    """What `encode` returns."""

    last_hidden_state: np.ndarray  # float32 [batch, seq, hidden], zeros past each row's end
    attention_mask: np.ndarray  # int64 [batch, seq], 1 = real token
    input_ids: List[List[int]]


class ScoreResult(NamedTuple):
    """Log-likelihood of a continuation after a context (natural log)."""

    logprob: float
    is_greedy: bool
    token_logprobs: List[float]


@dataclass
class PerplexityResult:
    """What `perplexity` returns: exp of the mean negative log-likelihood (nats) of every
    counted token (each token of a scored text but its first, counted once however windows
    overlap). float(result) is the perplexity."""

    perplexity: float
    nll: float
    tokens: int
    windows: int
    texts: int
    #: texts of fewer than two tokens, which nothing can be predicted in
    skipped: int
    #: each scored text's own perplexity
    text_perplexities: List[float] = field(default_factory=list, repr=False)
    #: with return_token_nll=True: per scored text, each token's nll (NaN for its first token)
    token_nll: Optional[List[np.ndarray]] = field(default=None, repr=False)

    def __float__(self) -> float:
        return self.perplexity


class Tokenizer:
    """Text <-> ids, exactly as the model's reference tokenizer."""

    def __init__(self, native):
        self._t = native

    @classmethod
    def from_file(cls, path) -> "Tokenizer":
        """Load a tokenizer.json (HF tokenizers' format); ids are exactly HF tokenizers' ids."""
        return cls(_native.tokenizer_from_file(resolve(path)))

    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self._t.encode(text, add_special_tokens)

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = True) -> List[List[int]]:
        return self._t.encode_batch(_texts(texts), add_special_tokens)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._t.decode(_ids(ids, "ids"), skip_special_tokens)

    def apply_chat_template(self, messages, add_generation_prompt: bool = True) -> str:
        import json

        if not isinstance(messages, (list, tuple)) or not all(isinstance(m, dict) for m in messages):
            raise TypeError("messages must be a list of {'role': ..., 'content': ...} dicts")
        return self._t.apply_chat_template_json(json.dumps(list(messages)), add_generation_prompt)

    def stream_decoder(self, skip_special_tokens: bool = False):
        """Incremental decoding: `d.step(id)` returns the text completed by that id, or None while
        a character is still incomplete; `d.flush()` returns what is left."""
        return self._t.stream_decoder(skip_special_tokens)

    @property
    def chat_template(self) -> Optional[str]:
        return self._t.chat_template

    @property
    def vocab_size(self) -> int:
        return self._t.vocab_size

    @property
    def mask_token_id(self) -> Optional[int]:
        """The mask token ([MASK] or <mask>) when the vocabulary has one."""
        return self._t.mask_token_id

    @property
    def bos_token_id(self) -> Optional[int]:
        return self._t.bos_token_id

    @property
    def eos_token_id(self) -> Optional[int]:
        return self._t.eos_token_id

    @property
    def eog_token_ids(self) -> List[int]:
        """Ids that end generation (EOS, end-of-turn, ...)."""
        return self._t.eog_token_ids

    def token_to_id(self, token: str) -> Optional[int]:
        return self._t.token_to_id(token)

    def id_to_token(self, id: int) -> Optional[str]:
        return self._t.id_to_token(id)

    def __len__(self):
        return self.vocab_size


def _ids(ids, name):
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"{name} must be a 1-D sequence of ints")
        ids = ids.tolist()
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise TypeError(f"{name} must be a sequence of ints, got {type(ids).__name__}")
    out = []
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"{name} must contain ints, got {type(i).__name__}")
        if i < 0:
            raise ValueError(f"{name} must contain non-negative token ids, got {i}")
        out.append(int(i))
    return out


def _is_int_seq(x):
    return isinstance(x, (list, tuple, np.ndarray)) and all(
        isinstance(i, (numbers.Integral, np.integer)) and not isinstance(i, bool) for i in x
    )


def _is_2d(x):
    return isinstance(x, np.ndarray) and x.ndim == 2 or (
        isinstance(x, (list, tuple)) and bool(x) and isinstance(x[0], (list, tuple, np.ndarray))
    )


def _rows(x, name):
    """1-D or 2-D ids as a list of rows, and whether they were 1-D."""
    if _is_2d(x):
        return [_ids(r, name) for r in x], False
    return [_ids(x, name)], True


def _texts(texts):
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a string or a non-empty list of strings")
    return texts


def _check_number(name, v, kind=float):
    if isinstance(v, bool) or not isinstance(v, numbers.Real if kind is float else numbers.Integral):
        raise TypeError(f"{name} must be {'a number' if kind is float else 'an int'}, got {type(v).__name__}")
    return kind(v)


def _optional_length(name, v):
    if v is None:
        return None
    v = _check_number(name, v, int)
    if v <= 0:
        raise ValueError(f"{name} must be positive, got {v}")
    return v


def _output(native, prompt) -> GenerationOutput:
    text, token_ids, finish, n_prompt, lp, plp, score = native
    return GenerationOutput(
        text,
        token_ids,
        finish,
        n_prompt,
        prompt if isinstance(prompt, str) else None,
        None if lp is None else [TokenLogprob(t, l, top) for t, l, top in lp],
        None if plp is None else [None] + list(plp),
        score,
    )


def _prompt(p):
    if isinstance(p, str):
        return p
    if _is_int_seq(p):
        return _ids(p, "prompt")
    raise TypeError(f"prompt must be a str or a list of token ids, got {type(p).__name__}")


class Model:
    """A loaded model. Decoders: logits, generate, stream, score, chat; encoders: encode, embed,
    fill_mask, logits (masked-LM); encoder-decoders: logits, generate, stream, score."""

    def __init__(self, native):
        self._replace(native)

    def _replace(self, native):
        """Hold another native model (training's result): the same tokenizer and settings."""
        self._m = native
        tok = native.tokenizer
        # None for a folder without tokenizer.json: calls with ids work, calls with text do not
        self.tokenizer = None if tok is None else Tokenizer(tok)
        self.config: ModelConfig = native.config
        # defaults for generate/stream (an HF folder's generation_config.json fills them in)
        self.generation_config: GenerationConfig = native.generation_config

    @classmethod
    def from_config(cls, config: ModelConfig, seed: int = 0, tokenizer=None) -> "Model":
        """A model with random weights (HF's initialisation: N(0, 0.02) matrices, norms 1, biases
        0; the same seed gives the same weights everywhere). config must be of a family that can
        be built from a config (cw.ModelConfig.families() but gemma3, which is read from GGUF
        files). tokenizer: a cw.Tokenizer or a tokenizer.json path; without one, token i
        reads as the text "[i]"."""
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a cw.ModelConfig, got {type(config).__name__}")
        seed = _check_number("seed", seed, int)
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
            tokenizer = Tokenizer.from_file(tokenizer)
        return cls(_native.model_from_config(config, seed, None if tokenizer is None else tokenizer._t))

    def save(self, folder) -> None:
        """Write config.json, model.safetensors and tokenizer.json in the HF layout of the model's
        family (transformers' from_pretrained and cw.load read it). A model from from_config
        writes its tensors; one loaded from an HF folder copies its checkpoint files unchanged;
        GGUF models are refused (converting them is not built yet)."""
        self._m.save(os.fspath(folder))

    def __repr__(self):
        c = self.config
        return f"<candlewick.Model {c.family} {c.architecture}: {c.num_layers} layers, d={c.hidden_size}, vocab={c.vocab_size}>"

    @property
    def info(self) -> dict:
        """Facts about the checkpoint: path, format, tensor types, parameters, context length."""
        return self._m.info

    @property
    def context_length(self) -> int:
        return self._m.context_length

    # ---- encoders -----------------------------------------------------------------------------

    def encode(self, texts, truncation: bool = True, max_length: Optional[int] = None) -> EncoderOutput:
        """Encoders: one vector per token. texts: a string or a list of strings, tokenized with
        special tokens and (by default) truncated to max_length (default: the model's positions).
        Returns last_hidden_state float32 [batch, seq, hidden] (zero past each row's end),
        attention_mask int64 [batch, seq] (1 = real token) and input_ids (one list per text)."""
        hidden, mask, ids = self._m.encode(_texts(texts), bool(truncation), _optional_length("max_length", max_length))
        return EncoderOutput(hidden, mask, ids)

    def embed(self, texts, pooling: Optional[str] = None, normalize: bool = True, truncation: bool = True,
              max_length: Optional[int] = None) -> np.ndarray:
        """Encoders: one vector per text, as sentence-transformers computes it: tokens pooled
        ("mean" over the text's tokens, "cls" = the first token, "max"), then L2-normalised.
        Defaults come from the model folder's sentence-transformers files (pooling mode,
        max_seq_length), else mean pooling and the model's positions. A string gives [hidden],
        a list [n, hidden]."""
        if pooling is not None and not isinstance(pooling, str):
            raise TypeError(f"pooling must be a str, got {type(pooling).__name__}")
        single = isinstance(texts, str)
        vecs = self._m.embed(_texts(texts), pooling, bool(normalize), bool(truncation),
                             _optional_length("max_length", max_length))
        return vecs[0] if single else vecs

    def fill_mask(self, text: str, top_k: int = 5):
        """Encoders with a masked-LM head: the top_k candidates for each mask token in `text`, as
        lists of {"token": id, "token_str": str, "score": probability, "sequence": filled text}
        (one list per mask, in order)."""
        if not isinstance(text, str):
            raise TypeError("text must be a str")
        top_k = _check_number("top_k", top_k, int)
        if top_k < 0:
            raise ValueError(f"top_k must be positive, got {top_k}")
        return self._m.fill_mask(text, top_k)

    def forward(self, ids, output_hidden_states: bool = False, output_attentions: bool = False, labels=None) -> ForwardOutput:
        """One sequence (token ids, or a str tokenized with special tokens) through the model,
        returning its logits and, when asked, every layer's hidden states and attention weights;
        with labels (one per token; -100 not counted), also transformers' loss.

            out = model.forward([1, 2, 3], labels=[1, 2, 3]); out.loss
        """
        if isinstance(ids, str):
            ids = self._tokenizer().encode(ids)
        row = _ids(ids, "ids")
        for name, v in (("output_hidden_states", output_hidden_states), ("output_attentions", output_attentions)):
            if not isinstance(v, bool):
                raise TypeError(f"{name} must be a bool")
        loss = None if labels is None else self.loss([row], [list(np.asarray(labels).reshape(-1))])
        logits, hidden, attn = self._m.forward(row, output_hidden_states, output_attentions)
        return ForwardOutput(logits, hidden if output_hidden_states else None, attn if output_attentions else None, loss)

    # ---- losses and gradients -----------------------------------------------------------------

    @staticmethod
    def _batch(input_ids, labels, attention_mask, decoder_input_ids):
        def arr(x, name):
            if x is None:
                return None
            a = np.asarray(x)
            if a.ndim == 1:
                a = a[None, :]
            if a.ndim != 2 or (a.size and not np.issubdtype(a.dtype, np.integer)):
                raise ValueError(f"{name} must be a 1-D or 2-D array of ints, got shape {a.shape} of {a.dtype}")
            return np.ascontiguousarray(a, dtype=np.int64)

        if labels is None:
            raise ValueError("labels is required")
        return (arr(input_ids, "input_ids"), arr(labels, "labels"), arr(attention_mask, "attention_mask"),
                arr(decoder_input_ids, "decoder_input_ids"))

    def loss(self, input_ids, labels, attention_mask=None, decoder_input_ids=None) -> float:
        """transformers' loss of a batch: the mean cross-entropy over labels that are not -100.
        Decoders shift inside (position t predicts labels[t + 1]); encoders (masked LM) do not;
        encoder-decoders read decoder_input_ids, or the labels shifted right after the decoder
        start token, and score the labels.

            model.loss([[5, 6, 7]], [[5, 6, 7]])
        """
        return _native.model_loss(self._m, *self._batch(input_ids, labels, attention_mask, decoder_input_ids))

    def state_dict(self) -> dict:
        """{parameter name: float32 array}: the weights by checkpoint name (copies), as
        transformers' state_dict names them. GGUF models (quantized) are refused.

            w = model.state_dict()["model.embed_tokens.weight"]
        """
        return _native.model_state_dict(self._m)

    def gradients(self, input_ids, labels, attention_mask=None, decoder_input_ids=None):
        """(loss, {parameter name: d loss / d parameter}) for a batch, the parameters named as
        in the model's checkpoint (what training computes before each optimizer step).

            loss, grads = model.gradients([[5, 6, 7]], [[5, 6, 7]])
        """
        return _native.model_gradients(self._m, *self._batch(input_ids, labels, attention_mask, decoder_input_ids))

    def _tokenizer(self) -> Tokenizer:
        """The tokenizer, for calls that take text (the engine's clear error when there is none)."""
        return self.tokenizer if self.tokenizer is not None else Tokenizer(self._m.require_tokenizer())

    # ---- logits -------------------------------------------------------------------------------

    def logits(self, ids, attention_mask=None, decoder_input_ids=None, logits_to_keep: int = 0) -> np.ndarray:
        """float32 logits: [seq, vocab] for 1-D ids, [batch, seq, vocab] for 2-D ids.
        With attention_mask (same shape, 1 = real token), padded positions are skipped and their
        rows are zeros; the real tokens of a row must be contiguous (left or right padding), and
        their positions count from the row's first real token (as transformers' generate sets
        position_ids; a plain transformers forward without position_ids would shift them).
        An encoder-decoder takes decoder_input_ids and gives their logits (attention_mask masks its
        input). logits_to_keep (as in transformers): only the last n positions (0 = all); a
        decoder asked for its last real position alone runs its LM head on that row only, as
        generate's prefill does (a matmul over one row may round differently from one over many,
        as in llama.cpp)."""
        keep = _check_number("logits_to_keep", logits_to_keep, int)
        if keep < 0:
            raise ValueError(f"logits_to_keep must be >= 0, got {keep}")
        rows, single = _rows(ids, "ids")
        masks = None
        if attention_mask is not None:
            masks = [[int(x) for x in m] for m in (attention_mask if not single else [attention_mask])]
        dec = None if decoder_input_ids is None else _rows(decoder_input_ids, "decoder_input_ids")[0]
        return self._m.logits(rows, masks, dec, keep, single)

    # ---- generation ---------------------------------------------------------------------------

    def _config(self, generation_config, kwargs) -> GenerationConfig:
        base = generation_config if generation_config is not None else self.generation_config
        if not isinstance(base, GenerationConfig):
            raise TypeError(f"generation_config must be a cw.GenerationConfig, got {type(base).__name__}")
        return base.replace(**kwargs) if kwargs else base

    def generate(self, prompt, generation_config: Optional[GenerationConfig] = None, **kwargs):
        """Generate a continuation of `prompt` (str or token ids). A list of prompts generates
        together as one batch (each step runs all unfinished rows through the model at once) and
        gives a list of results, each equal to what its prompt gives alone. Greedy by default;
        do_sample=True draws from the distribution shaped by the controls of cw.GenerationConfig
        (temperature, top_k, top_p, min_p, typical_p, penalties, stop strings, seed, ...), given as
        keyword arguments or as a GenerationConfig. num_return_sequences=N gives N results per
        prompt (seeds seed, seed+1, ...); num_beams > 1 runs beam search (with length_penalty) and
        returns its N best hypotheses."""
        cfg = self._config(generation_config, kwargs)
        batch = isinstance(prompt, (list, tuple)) and bool(prompt) and not _is_int_seq(prompt)
        prompts = list(prompt) if batch else [prompt]
        outs = self._m.generate([_prompt(p) for p in prompts], cfg)
        results = [[_output(o, p) for o in row] for row, p in zip(outs, prompts)]
        results = [r[0] if cfg.num_return_sequences == 1 else r for r in results]
        return results if batch else results[0]

    def stream(self, prompt, generation_config: Optional[GenerationConfig] = None, **kwargs) -> Iterator[str]:
        """Like generate, but yields text pieces as they are produced (never a split UTF-8
        character, never part of a stop string). Breaking out of the loop, or close(), frees the
        request. The iterator's token_ids, finish_reason and logprobs are readable as it goes."""
        return self._m.stream(_prompt(prompt), self._config(generation_config, kwargs))

    def score(self, context: str, continuations) -> List[ScoreResult]:
        """Log-likelihood of each continuation after `context`, with lm-evaluation-harness's
        boundary handling: trailing spaces of the context move to the continuation, and the
        continuation's tokens are those of tokenize(context + continuation) past the context's.
        is_greedy tells whether greedy decoding would produce exactly that continuation."""
        if not isinstance(context, str):
            raise TypeError("context must be a str")
        if isinstance(continuations, str):
            continuations = [continuations]
        continuations = list(continuations)
        if not all(isinstance(c, str) for c in continuations):
            raise TypeError("continuations must be strings")
        return [ScoreResult(lp, greedy, toks) for lp, greedy, toks in self._m.score(context, continuations)]

    def perplexity(self, texts, stride: Optional[int] = None, max_length: Optional[int] = None, batch_size: int = 1,
                   return_token_nll: bool = False) -> PerplexityResult:
        """Perplexity of `texts` (a string, a list of strings, or token ids: one list or a list
        of lists) as transformers' sliding-window guide computes it: each text is read in windows
        of max_length tokens (default: the model's context) starting every `stride` tokens
        (default: max_length, no overlap); the labels a window shares with the previous one are
        not counted again, so with a smaller stride every token is predicted with more context.
        Texts of fewer than two tokens are skipped (result.skipped). Decoders and recurrent LMs.

            >>> model.perplexity(open("wiki.txt").read(), max_length=1024, stride=512).perplexity
        """
        for name, v in (("stride", stride), ("max_length", max_length)):
            _optional_length(name, v)
        batch_size = _check_number("batch_size", batch_size, int)
        if isinstance(texts, str):
            texts, ids = [texts], None
        elif _is_2d(texts):
            texts, ids = None, [_ids(r, "texts") for r in texts]
        elif _is_int_seq(texts) and len(texts) > 0:
            texts, ids = None, [_ids(texts, "texts")]
        else:
            texts, ids = list(texts), None
            if not texts or not all(isinstance(t, str) for t in texts):
                raise TypeError("texts must be a string, a non-empty list of strings, or token ids")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        r = self._m.perplexity(texts, ids, max_length, stride, batch_size, bool(return_token_nll))
        return PerplexityResult(
            perplexity=r["perplexity"], nll=r["nll"], tokens=r["tokens"], windows=r["windows"], texts=r["texts"],
            skipped=r["skipped"], text_perplexities=[float(np.exp(s / n)) for s, n in r["per_text"]],
            token_nll=r["token_nll"] if return_token_nll else None)

    def chat(self, messages, **kwargs):
        """Apply the chat template to `messages` and generate the assistant's reply."""
        return self.generate(self._tokenizer().apply_chat_template(messages, add_generation_prompt=True), **kwargs)


def load(source, threads: Optional[int] = None, dtype: Optional[str] = None) -> Model:
    """Load a model: a .gguf file, an HF folder (config.json + *.safetensors, and tokenizer.json
    when it has one), or the short name of an installed model package (e.g.
    "smollm2-135m-instruct"). `threads` fixes the compute threads for this process.
    dtype="float32" dequantizes a GGUF model's weights (4 bytes a parameter), which training it
    needs; None keeps them as stored.

        model = cw.load("smollm2-135m-instruct")
    """
    if threads is not None:
        threads = _check_number("threads", threads, int)
        if threads <= 0:
            raise ValueError(f"threads must be a positive integer, got {threads}")
    if dtype is not None and not isinstance(dtype, str):
        raise TypeError(f"dtype must be a str or None, got {type(dtype).__name__}")
    return Model(_native.load(resolve(source), threads, dtype))


def sample(logits, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0, seed=None, num_samples=1) -> np.ndarray:
    """Draw token ids from one distribution (1-D logits) with the sampler `generate` uses:
    temperature -> top-k -> top-p -> min-p -> typical-p -> draw (temperature 0 or top_k 1: argmax).
    Returns an int array of num_samples ids."""
    arr = np.ascontiguousarray(np.asarray(logits, dtype=np.float32))
    if arr.ndim != 1:
        raise ValueError(f"logits must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("logits is empty")
    if seed is not None:
        seed = _check_number("seed", seed, int)
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
    return _native.sample(
        arr,
        _check_number("temperature", temperature),
        _check_number("top_k", top_k, int),
        _check_number("top_p", top_p),
        _check_number("min_p", min_p),
        _check_number("typical_p", typical_p),
        seed,
        _check_number("num_samples", num_samples, int),
    ).astype(np.int64)
