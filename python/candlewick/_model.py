"""The Pythonic front door. Thin: arguments are converted here (with the TypeErrors of Python
types), results wrapped in named types; all work, the configs' defaults and every range check are
in the engine (rust/candlewick)."""

import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, NamedTuple, Optional, Sequence, Tuple, Union, overload

import numpy as np

from . import _native, _progress
from ._native import GenerationConfig, ModelConfig
from ._registry import resolve

# what the methods take: token ids (a list, tuple or 1-D int array), a batch of them (a list of
# those or a 2-D int array), a prompt (a str or token ids), a path, chat messages
_Ids = Union[Sequence[int], np.ndarray]
_IdsOrBatch = Union[Sequence[int], Sequence[Sequence[int]], np.ndarray]
_Prompt = Union[str, Sequence[int]]
_Path = Union[str, "os.PathLike[str]"]
_Messages = Sequence[Dict[str, Any]]


class TokenLogprob(NamedTuple):
    """A generated token's natural-log probability under the model (before any sampling
    processor) and the most probable alternatives at that step, as (id, logprob) pairs.

        out = model.generate("The capital of France is", max_new_tokens=4, logprobs=3)
        first = out.logprobs[0]; first.token_id, first.logprob, first.top
    """

    token_id: int
    logprob: float
    top: List[Tuple[int, float]]


@dataclass
class GenerationOutput:
    """What `generate` returns: the generated part only (`text`, its `token_ids`), why it ended
    ("length", "eos" or "stop") and the prompt's length; logprobs, prompt_logprobs and a beam's
    score when asked for.

        out = model.generate("The capital of France is", max_new_tokens=8)
        out.text, out.finish_reason, out.prompt_tokens   # (' Paris.\\n\\nThe answer is:', 'length', 5)
    """

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
    [heads, seq, seq], each row a probability distribution), when asked for.

        out = model.forward("Hello world", output_hidden_states=True)
        out.logits.shape, len(out.hidden_states)   # (2, 49152), 31: the embeddings and 30 layers
    """

    logits: Optional[np.ndarray]
    hidden_states: Optional[List[np.ndarray]] = None
    attentions: Optional[List[np.ndarray]] = None
    #: transformers' loss against `labels`, when forward was given them
    loss: Optional[float] = None


class EncoderOutput(NamedTuple):
    """What `encode` returns.

        out = encoder.encode(["a sentence", "another, longer sentence"])
        out.last_hidden_state.shape, out.attention_mask.sum(axis=1)
    """

    last_hidden_state: np.ndarray  # float32 [batch, seq, hidden], zeros past each row's end
    attention_mask: np.ndarray  # int64 [batch, seq], 1 = real token
    input_ids: List[List[int]]


class ScoreResult(NamedTuple):
    """Log-likelihood of a continuation after a context (natural log).

        paris, london = model.score("The capital of France is", [" Paris", " London"])
        paris.logprob > london.logprob, paris.is_greedy   # (True, True)
    """

    logprob: float
    is_greedy: bool
    token_logprobs: List[float]


@dataclass
class PerplexityResult:
    """What `perplexity` returns: exp of the mean negative log-likelihood (nats) of every
    counted token (each token of a scored text but its first, counted once however windows
    overlap). float(result) is the perplexity.

        r = model.perplexity(["The quick brown fox jumps over the lazy dog."])
        float(r), r.tokens, r.text_perplexities
    """

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
    """Text <-> ids, exactly as the model's reference tokenizer (`model.tokenizer`, or
    `Tokenizer.from_file`).

        tok = model.tokenizer
        tok.encode("Hello world"), tok.decode([19556, 905])   # ([19556, 905], 'Hello world')
    """

    def __init__(self, native: _native.Tokenizer) -> None:
        self._t = native

    @classmethod
    def from_file(cls, path: _Path) -> "Tokenizer":
        """Load a tokenizer.json (HF tokenizers' format); ids are exactly HF tokenizers' ids.

            tok = cw.Tokenizer.from_file("models/gpt2/tokenizer.json")
        """
        return cls(_native.tokenizer_from_file(resolve(path)))

    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        """Token ids of `text`, with the special tokens the tokenizer adds (BOS, [CLS] ... [SEP])
        unless add_special_tokens=False.

            ids = tok.encode("Hello world")   # [19556, 905]
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self._t.encode(text, add_special_tokens)

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = True) -> List[List[int]]:
        """`encode` of each text (in parallel).

            tok.encode_batch(["Hello", "world"])   # [[19556], [6693]]
        """
        return self._t.encode_batch(_texts(texts), add_special_tokens)

    def decode(self, ids: _Ids, skip_special_tokens: bool = False) -> str:
        """The text of token ids (special tokens dropped with skip_special_tokens=True).

            tok.decode([19556, 905])   # 'Hello world'
        """
        return self._t.decode(_ids(ids, "ids"), skip_special_tokens)

    def apply_chat_template(self, messages: _Messages, add_generation_prompt: bool = True) -> str:
        """The prompt the model's chat template makes of `messages` ({"role", "content"} dicts),
        ending with the assistant's turn opened when add_generation_prompt.

            prompt = tok.apply_chat_template([{"role": "user", "content": "Hi"}])
        """
        import json

        if not isinstance(messages, (list, tuple)) or not all(isinstance(m, dict) for m in messages):
            raise TypeError("messages must be a list of {'role': ..., 'content': ...} dicts")
        return self._t.apply_chat_template_json(json.dumps(list(messages)), add_generation_prompt)

    def stream_decoder(self, skip_special_tokens: bool = False) -> _native.StreamDecoder:
        """Incremental decoding: `d.step(id)` returns the text completed by that id, or None while
        a character is still incomplete; `d.flush()` returns what is left.

            d = tok.stream_decoder()
            [d.step(i) for i in tok.encode("héllo")], d.flush()   # (['h', 'é', 'llo'], None)
        """
        return self._t.stream_decoder(skip_special_tokens)

    @property
    def chat_template(self) -> Optional[str]:
        """The chat template's source (Jinja), or None."""
        return self._t.chat_template

    @property
    def vocab_size(self) -> int:
        """Ids the tokenizer knows, added tokens included."""
        return self._t.vocab_size

    @property
    def mask_token_id(self) -> Optional[int]:
        """The mask token ([MASK] or <mask>) when the vocabulary has one."""
        return self._t.mask_token_id

    @property
    def bos_token_id(self) -> Optional[int]:
        """The beginning-of-sequence id, when the vocabulary has one."""
        return self._t.bos_token_id

    @property
    def eos_token_id(self) -> Optional[int]:
        """The end-of-sequence id, when the vocabulary has one."""
        return self._t.eos_token_id

    @property
    def eog_token_ids(self) -> List[int]:
        """Ids that end generation (EOS, end-of-turn, ...)."""
        return self._t.eog_token_ids

    def token_to_id(self, token: str) -> Optional[int]:
        """The id of a token (as the vocabulary writes it), or None.

            tok.token_to_id("Hello")   # 19556
        """
        return self._t.token_to_id(token)

    def id_to_token(self, id: int) -> Optional[str]:
        """The token of an id (as the vocabulary writes it), or None.

            tok.id_to_token(19556)   # 'Hello'
        """
        return self._t.id_to_token(id)

    def __len__(self) -> int:
        return self.vocab_size


def _ids(ids: Any, name: str) -> List[int]:
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


def _is_int_seq(x: Any) -> bool:
    return isinstance(x, (list, tuple, np.ndarray)) and all(
        isinstance(i, (numbers.Integral, np.integer)) and not isinstance(i, bool) for i in x
    )


def _is_2d(x: Any) -> bool:
    return isinstance(x, np.ndarray) and x.ndim == 2 or (
        isinstance(x, (list, tuple)) and bool(x) and isinstance(x[0], (list, tuple, np.ndarray))
    )


def _rows(x: Any, name: str) -> Tuple[List[List[int]], bool]:
    """1-D or 2-D ids as a list of rows, and whether they were 1-D."""
    if _is_2d(x):
        return [_ids(r, name) for r in x], False
    return [_ids(x, name)], True


def _texts(texts: Any) -> List[str]:
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a string or a non-empty list of strings")
    return texts


def _check_number(name: str, v: Any, kind: type = float) -> Any:
    if isinstance(v, bool) or not isinstance(v, numbers.Real if kind is float else numbers.Integral):
        raise TypeError(f"{name} must be {'a number' if kind is float else 'an int'}, got {type(v).__name__}")
    return kind(v)


def _optional_length(name: str, v: Optional[int]) -> Optional[int]:
    if v is None:
        return None
    v = _check_number(name, v, int)
    if v <= 0:
        raise ValueError(f"{name} must be positive, got {v}")
    return v


def _output(native: "_native._GenOut", prompt: Any) -> GenerationOutput:
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


def _prompt(p: Any) -> Union[str, List[int]]:
    if isinstance(p, str):
        return p
    if _is_int_seq(p):
        return _ids(p, "prompt")
    raise TypeError(f"prompt must be a str or a list of token ids, got {type(p).__name__}")


class Model:
    """A loaded model. Decoders: logits, generate, stream, score, chat; encoders: encode, embed,
    fill_mask, logits (masked-LM); encoder-decoders: logits, generate, stream, score.

        model = cw.load("smollm2-135m-instruct")
        model.generate("The capital of France is", max_new_tokens=8).text   # ' Paris.\\n\\nThe answer is:'
    """

    def __init__(self, native: _native.NativeModel) -> None:
        self._replace(native)

    def _replace(self, native: _native.NativeModel) -> None:
        """Hold another native model (training's result): the same tokenizer and settings."""
        self._m = native
        tok = native.tokenizer
        # None for a folder without tokenizer.json: calls with ids work, calls with text do not
        self.tokenizer: Optional[Tokenizer] = None if tok is None else Tokenizer(tok)
        self.config: ModelConfig = native.config
        # defaults for generate/stream (an HF folder's generation_config.json fills them in)
        self.generation_config: GenerationConfig = native.generation_config

    @classmethod
    def from_config(cls, config: ModelConfig, seed: int = 0, tokenizer: Optional[Union[Tokenizer, _Path]] = None) -> "Model":
        """A model with random weights (HF's initialisation: N(0, 0.02) matrices, norms 1, biases
        0; the same seed gives the same weights everywhere). config must be of a family that can
        be built from a config (cw.ModelConfig.families() but gemma3, which is read from GGUF
        files). tokenizer: a cw.Tokenizer or a tokenizer.json path; without one, token i
        reads as the text "[i]".

            cfg = cw.ModelConfig.for_family("llama", vocab_size=1000, hidden_size=64, num_layers=2, num_heads=4,
                                            num_kv_heads=4, head_dim=16, intermediate_size=128)
            model = cw.Model.from_config(cfg, seed=0)
        """
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a cw.ModelConfig, got {type(config).__name__}")
        seed = _check_number("seed", seed, int)
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
            tokenizer = Tokenizer.from_file(tokenizer)
        return cls(_native.model_from_config(config, seed, None if tokenizer is None else tokenizer._t))

    def save(self, folder: _Path) -> None:
        """Write config.json, model.safetensors and tokenizer.json in the HF layout of the model's
        family (transformers' from_pretrained and cw.load read it). A model from from_config
        writes its tensors; one loaded from an HF folder copies its checkpoint files unchanged.
        A path ending in .gguf writes one GGUF file instead: a GGUF model's own file, any other
        model converted in F32 as cw.quantize converts it (type="F32"). GGUF models are saved only
        as GGUF (converting them to the HF layout is not built yet). Written atomically.

            model.save("out/tiny-llama"); cw.load("out/tiny-llama")
            model.save("out/tiny-llama.gguf"); cw.load("out/tiny-llama.gguf")
        """
        self._m.save(os.fspath(folder))

    def __repr__(self) -> str:
        c = self.config
        return f"<candlewick.Model {c.family} {c.architecture}: {c.num_layers} layers, d={c.hidden_size}, vocab={c.vocab_size}>"

    @property
    def kv_cache_dtype(self) -> str:
        """How the self-attention caches of new requests store keys and values: "float16"
        (GGUF models' default, as llama.cpp: half the memory, each value rounded once) or
        "float32" (float checkpoints' default, as transformers). Settable:

            model.kv_cache_dtype = "float32"
        """
        return self._m.kv_cache_dtype

    @kv_cache_dtype.setter
    def kv_cache_dtype(self, dtype: str) -> None:
        if not isinstance(dtype, str):
            raise TypeError(f"kv_cache_dtype must be a str, got {type(dtype).__name__}")
        self._m.kv_cache_dtype = dtype

    @property
    def info(self) -> Dict[str, Any]:
        """Facts about the checkpoint: path, format, tensor types, parameters, context length."""
        return self._m.info

    @property
    def context_length(self) -> int:
        """Positions the model reads at most (prompt and generated tokens together)."""
        return self._m.context_length

    # ---- encoders -----------------------------------------------------------------------------

    def encode(self, texts: Union[str, Sequence[str]], truncation: bool = True, max_length: Optional[int] = None) -> EncoderOutput:
        """Encoders: one vector per token. texts: a string or a list of strings, tokenized with
        special tokens and (by default) truncated to max_length (default: the model's positions).
        Returns last_hidden_state float32 [batch, seq, hidden] (zero past each row's end),
        attention_mask int64 [batch, seq] (1 = real token) and input_ids (one list per text).

            out = encoder.encode(["a sentence", "another one"]); out.last_hidden_state.shape   # (2, seq, hidden)
        """
        hidden, mask, ids = self._m.encode(_texts(texts), bool(truncation), _optional_length("max_length", max_length))
        return EncoderOutput(hidden, mask, ids)

    def embed(self, texts: Union[str, Sequence[str]], pooling: Optional[str] = None, normalize: bool = True, truncation: bool = True,
              max_length: Optional[int] = None, progress: Optional[bool] = None) -> np.ndarray:
        """Encoders: one vector per text, as sentence-transformers computes it: tokens pooled
        ("mean" over the text's tokens, "cls" = the first token, "max"), then L2-normalised.
        Defaults come from the model folder's sentence-transformers files (pooling mode,
        max_seq_length), else mean pooling and the model's positions. A string gives [hidden],
        a list [n, hidden]. progress: a bar over the texts, embedded 32 at a time (None: for more
        than 32, on a terminal; True: always; False: never).

            encoder = cw.load("all-minilm-l6-v2")
            a, b = encoder.embed(["A cat sits.", "A kitten is sitting."]); float(a @ b)   # cosine similarity
        """
        if pooling is not None and not isinstance(pooling, str):
            raise TypeError(f"pooling must be a str, got {type(pooling).__name__}")
        single = isinstance(texts, str)
        items = _texts(texts)
        with _progress.bar(progress, "embed", "text", many=len(items) > 32) as cb:
            vecs = self._m.embed(items, pooling, bool(normalize), bool(truncation),
                                 _optional_length("max_length", max_length), cb)
        return vecs[0] if single else vecs

    def fill_mask(self, text: str, top_k: int = 5) -> List[List[Dict[str, Any]]]:
        """Encoders with a masked-LM head: the top_k candidates for each mask token in `text`, as
        lists of {"token": id, "token_str": str, "score": probability, "sequence": filled text}
        (one list per mask, in order).

            best = bert.fill_mask("Paris is the [MASK] of France.")[0][0]; best["token_str"]
        """
        if not isinstance(text, str):
            raise TypeError("text must be a str")
        top_k = _check_number("top_k", top_k, int)
        if top_k < 0:
            raise ValueError(f"top_k must be positive, got {top_k}")
        return self._m.fill_mask(text, top_k)

    def forward(self, ids: Union[str, _Ids], output_hidden_states: bool = False, output_attentions: bool = False,
                labels: Optional[_Ids] = None) -> ForwardOutput:
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
    def _batch(input_ids: Any, labels: Any, attention_mask: Any, decoder_input_ids: Any) -> Tuple[Any, Any, Any, Any]:
        def arr(x: Any, name: str) -> Optional[np.ndarray]:
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

    def loss(self, input_ids: _IdsOrBatch, labels: _IdsOrBatch, attention_mask: Optional[_IdsOrBatch] = None,
             decoder_input_ids: Optional[_IdsOrBatch] = None) -> float:
        """transformers' loss of a batch: the mean cross-entropy over labels that are not -100.
        Decoders shift inside (position t predicts labels[t + 1]); encoders (masked LM) do not;
        encoder-decoders read decoder_input_ids, or the labels shifted right after the decoder
        start token, and score the labels.

            model.loss([[5, 6, 7]], [[5, 6, 7]])
        """
        return _native.model_loss(self._m, *self._batch(input_ids, labels, attention_mask, decoder_input_ids))

    def state_dict(self) -> Dict[str, np.ndarray]:
        """{parameter name: float32 array}: the weights by checkpoint name (copies), as
        transformers' state_dict names them. GGUF models (quantized) are refused.

            w = model.state_dict()["model.embed_tokens.weight"]
        """
        return _native.model_state_dict(self._m)

    def gradients(self, input_ids: _IdsOrBatch, labels: _IdsOrBatch, attention_mask: Optional[_IdsOrBatch] = None,
                  decoder_input_ids: Optional[_IdsOrBatch] = None) -> Tuple[float, Dict[str, np.ndarray]]:
        """(loss, {parameter name: d loss / d parameter}) for a batch, the parameters named as
        in the model's checkpoint (what training computes before each optimizer step).

            loss, grads = model.gradients([[5, 6, 7]], [[5, 6, 7]])
        """
        return _native.model_gradients(self._m, *self._batch(input_ids, labels, attention_mask, decoder_input_ids))

    def _tokenizer(self) -> Tokenizer:
        """The tokenizer, for calls that take text (the engine's clear error when there is none)."""
        return self.tokenizer if self.tokenizer is not None else Tokenizer(self._m.require_tokenizer())

    # ---- logits -------------------------------------------------------------------------------

    def logits(self, ids: _IdsOrBatch, attention_mask: Optional[_IdsOrBatch] = None,
               decoder_input_ids: Optional[_IdsOrBatch] = None, logits_to_keep: int = 0) -> np.ndarray:
        """float32 logits: [seq, vocab] for 1-D ids, [batch, seq, vocab] for 2-D ids.
        With attention_mask (same shape, 1 = real token), padded positions are skipped and their
        rows are zeros; the real tokens of a row must be contiguous (left or right padding), and
        their positions count from the row's first real token (as transformers' generate sets
        position_ids; a plain transformers forward without position_ids would shift them).
        An encoder-decoder takes decoder_input_ids and gives their logits (attention_mask masks its
        input). logits_to_keep (as in transformers): only the last n positions (0 = all); a
        decoder asked for its last real position alone runs its LM head on that row only, as
        generate's prefill does (a matmul over one row may round differently from one over many,
        as in llama.cpp).

            model.logits([1, 2, 3]).shape, model.logits([[1, 2, 3], [4, 5, 6]]).shape   # (3, vocab), (2, 3, vocab)
        """
        keep = _check_number("logits_to_keep", logits_to_keep, int)
        if keep < 0:
            raise ValueError(f"logits_to_keep must be >= 0, got {keep}")
        rows, single = _rows(ids, "ids")
        masks = None
        if attention_mask is not None:
            mask_rows: Any = attention_mask if not single else [attention_mask]
            masks = [[int(x) for x in m] for m in mask_rows]
        dec = None if decoder_input_ids is None else _rows(decoder_input_ids, "decoder_input_ids")[0]
        return self._m.logits(rows, masks, dec, keep, single)

    # ---- generation ---------------------------------------------------------------------------

    def _config(self, generation_config: Optional[GenerationConfig], kwargs: Dict[str, Any]) -> GenerationConfig:
        base = generation_config if generation_config is not None else self.generation_config
        if not isinstance(base, GenerationConfig):
            raise TypeError(f"generation_config must be a cw.GenerationConfig, got {type(base).__name__}")
        return base.replace(**kwargs) if kwargs else base

    @overload
    def generate(self, prompt: _Prompt, generation_config: Optional[GenerationConfig] = None, *,
                 num_return_sequences: Literal[1] = 1, progress: Optional[bool] = None,
                 **kwargs: Any) -> GenerationOutput: ...
    @overload
    def generate(self, prompt: Sequence[_Prompt], generation_config: Optional[GenerationConfig] = None, *,
                 num_return_sequences: Literal[1] = 1, progress: Optional[bool] = None,
                 **kwargs: Any) -> List[GenerationOutput]: ...
    @overload
    def generate(self, prompt: _Prompt, generation_config: Optional[GenerationConfig] = None, *,
                 num_return_sequences: int, progress: Optional[bool] = None, **kwargs: Any) -> List[GenerationOutput]: ...
    @overload
    def generate(self, prompt: Sequence[_Prompt], generation_config: Optional[GenerationConfig] = None, *,
                 num_return_sequences: int, progress: Optional[bool] = None, **kwargs: Any) -> List[List[GenerationOutput]]: ...
    def generate(self, prompt: Any, generation_config: Optional[GenerationConfig] = None, *,
                 progress: Optional[bool] = None, **kwargs: Any) -> Any:
        """Generate a continuation of `prompt` (str or token ids). A list of prompts generates
        together as one batch (each step runs all unfinished rows through the model at once) and
        gives a list of results, each equal to what its prompt gives alone. Greedy by default;
        do_sample=True draws from the distribution shaped by the controls of cw.GenerationConfig
        (temperature, top_k, top_p, min_p, typical_p, penalties, stop strings, seed, ...), given as
        keyword arguments or as a GenerationConfig. num_return_sequences=N gives N results per
        prompt (seeds seed, seed+1, ...); num_beams > 1 runs beam search (with length_penalty) and
        returns its N best hypotheses. progress: a bar over the batch's tokens (None: only for a
        batch, on a terminal; True: always; False: never). (For type checkers the result's shape follows the prompt and
        a num_return_sequences keyword; one set in generation_config alone types as one result.)

            out = model.generate("The capital of France is", max_new_tokens=8)   # out.text == ' Paris.\\n\\nThe answer is:'
            outs = model.generate(["a", "b"], max_new_tokens=4, do_sample=True, seed=0)   # one per prompt
        """
        cfg = self._config(generation_config, kwargs)
        batch = isinstance(prompt, (list, tuple)) and bool(prompt) and not _is_int_seq(prompt)
        prompts = list(prompt) if batch else [prompt]
        with _progress.bar(progress, "generate", "tok", many=len(prompts) > 1) as cb:
            outs = self._m.generate([_prompt(p) for p in prompts], cfg, cb)
        results = [[_output(o, p) for o in row] for row, p in zip(outs, prompts)]
        picked: List[Any] = [r[0] if cfg.num_return_sequences == 1 else r for r in results]
        return picked if batch else picked[0]

    def stream(self, prompt: _Prompt, generation_config: Optional[GenerationConfig] = None, **kwargs: Any) -> _native.Stream:
        """Like generate, but yields text pieces as they are produced (never a split UTF-8
        character, never part of a stop string). Breaking out of the loop, or close(), frees the
        request. The iterator's token_ids, finish_reason and logprobs are readable as it goes.

            s = model.stream("Once upon a time", max_new_tokens=32)
            for piece in s: print(piece, end="", flush=True)
            s.finish_reason, len(s.token_ids)   # ('length', 32)
        """
        return self._m.stream(_prompt(prompt), self._config(generation_config, kwargs))

    def score(self, context: str, continuations: Union[str, Sequence[str]], progress: Optional[bool] = None) -> List[ScoreResult]:
        """Log-likelihood of each continuation after `context`, with lm-evaluation-harness's
        boundary handling: trailing spaces of the context move to the continuation, and the
        continuation's tokens are those of tokenize(context + continuation) past the context's.
        is_greedy tells whether greedy decoding would produce exactly that continuation.
        progress: a bar over the candidates (None: for several, on a terminal; True/False).

            model.score("The capital of France is", [" Paris", " London"])   # Paris: -0.27, greedy; London: -4.33
        """
        if not isinstance(context, str):
            raise TypeError("context must be a str")
        if isinstance(continuations, str):
            continuations = [continuations]
        continuations = list(continuations)
        if not all(isinstance(c, str) for c in continuations):
            raise TypeError("continuations must be strings")
        with _progress.bar(progress, "score", "cand", many=len(continuations) > 1) as cb:
            scores = self._m.score(context, continuations, cb)
        return [ScoreResult(lp, greedy, toks) for lp, greedy, toks in scores]

    def perplexity(self, texts: Union[str, Sequence[str], _IdsOrBatch], stride: Optional[int] = None, max_length: Optional[int] = None, batch_size: int = 1,
                   return_token_nll: bool = False, progress: Optional[bool] = None) -> PerplexityResult:
        """Perplexity of `texts` (a string, a list of strings, or token ids: one list or a list
        of lists) as transformers' sliding-window guide computes it: each text is read in windows
        of max_length tokens (default: the model's context) starting every `stride` tokens
        (default: max_length, no overlap); the labels a window shares with the previous one are
        not counted again, so with a smaller stride every token is predicted with more context.
        Texts of fewer than two tokens are skipped (result.skipped). progress: a bar over the
        windows (None: on a terminal; True: always; False: never). Decoders and recurrent LMs.

            >>> model.perplexity(open("wiki.txt").read(), max_length=1024, stride=512).perplexity
        """
        for name, v in (("stride", stride), ("max_length", max_length)):
            _optional_length(name, v)
        batch_size = _check_number("batch_size", batch_size, int)
        text_list: Optional[List[str]] = None
        ids: Optional[List[List[int]]] = None
        if isinstance(texts, str):
            text_list = [texts]
        elif _is_2d(texts):
            ids = [_ids(r, "texts") for r in texts]
        elif _is_int_seq(texts) and len(texts) > 0:
            ids = [_ids(texts, "texts")]
        else:
            text_list = list(texts)  # type: ignore[arg-type]  # checked next
            if not text_list or not all(isinstance(t, str) for t in text_list):
                raise TypeError("texts must be a string, a non-empty list of strings, or token ids")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        with _progress.bar(progress, "perplexity", "window") as cb:
            r = self._m.perplexity(text_list, ids, max_length, stride, batch_size, bool(return_token_nll), cb)
        return PerplexityResult(
            perplexity=r["perplexity"], nll=r["nll"], tokens=r["tokens"], windows=r["windows"], texts=r["texts"],
            skipped=r["skipped"], text_perplexities=[float(np.exp(s / n)) for s, n in r["per_text"]],
            token_nll=r["token_nll"] if return_token_nll else None)

    @overload
    def chat(self, messages: _Messages, *, num_return_sequences: Literal[1] = 1, progress: Optional[bool] = None,
                 **kwargs: Any) -> GenerationOutput: ...
    @overload
    def chat(self, messages: _Messages, *, num_return_sequences: int, progress: Optional[bool] = None, **kwargs: Any) -> List[GenerationOutput]: ...
    def chat(self, messages: _Messages, **kwargs: Any) -> Any:
        """Apply the chat template to `messages` and generate the assistant's reply (keyword
        arguments as for generate).

            reply = model.chat([{"role": "user", "content": "Name a color."}], max_new_tokens=16).text
        """
        return self.generate(self._tokenizer().apply_chat_template(messages, add_generation_prompt=True), **kwargs)


def load(source: _Path, threads: Optional[int] = None, dtype: Optional[str] = None,
         revision: Optional[str] = None, filename: Optional[str] = None, progress: Optional[bool] = None,
         kv_cache_dtype: Optional[str] = None) -> Model:
    """Load a model: a .gguf file, an HF folder (config.json + *.safetensors, and tokenizer.json
    when it has one), the short name of an installed model package (e.g.
    "smollm2-135m-instruct"), or a hub repo id ("HuggingFaceTB/SmolLM2-135M-Instruct") found in
    the local Hugging Face cache at `revision` (default "main"; nothing is downloaded), with
    `filename` (a name or glob) choosing among a GGUF repo's files. `threads` fixes the compute
    threads for this process (progress: a bar while a chunked model package is assembled, the
    first time). dtype="float32" dequantizes a GGUF model's weights (4 bytes a
    parameter), which training it needs; None keeps them as stored. kv_cache_dtype ("float16" or
    "float32") sets how generation's KV caches store keys and values; None: float16 for GGUF
    models (llama.cpp's default), float32 for others (see Model.kv_cache_dtype).

        model = cw.load("smollm2-135m-instruct")
        model = cw.load("bartowski/SmolLM2-135M-Instruct-GGUF", filename="*Q4_K_M.gguf")
    """
    if threads is not None:
        threads = _check_number("threads", threads, int)
        if threads <= 0:
            raise ValueError(f"threads must be a positive integer, got {threads}")
    if dtype is not None and not isinstance(dtype, str):
        raise TypeError(f"dtype must be a str or None, got {type(dtype).__name__}")
    if kv_cache_dtype is not None and not isinstance(kv_cache_dtype, str):
        raise TypeError(f"kv_cache_dtype must be a str or None, got {type(kv_cache_dtype).__name__}")
    if kv_cache_dtype not in (None, "float16", "float32"):
        raise ValueError(f"kv_cache_dtype must be 'float16' or 'float32', got {kv_cache_dtype!r}")
    model = Model(_native.load(resolve(source, revision, filename, progress=progress), threads, dtype))
    if kv_cache_dtype is not None:
        model.kv_cache_dtype = kv_cache_dtype
    return model


def sample(logits: Union[np.ndarray, Sequence[float]], temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           min_p: float = 0.0, typical_p: float = 1.0, seed: Optional[int] = None, num_samples: int = 1) -> np.ndarray:
    """Draw token ids from one distribution (1-D logits) with the sampler `generate` uses:
    temperature -> top-k -> top-p -> min-p -> typical-p -> draw (temperature 0 or top_k 1: argmax).
    Returns an int64 array of num_samples ids.

        ids = cw.sample(model.logits([1, 2, 3])[-1], temperature=0.8, top_p=0.95, seed=0, num_samples=4)
    """
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
