"""The Pythonic front door. Thin: arguments are checked and converted here, all work is in Rust."""

import dataclasses
import json
import numbers
import os
from dataclasses import dataclass, field
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._native import UnsupportedError
from ._generation import GenerationConfig
from ._registry import resolve


_CHOICES = {
    "architecture": ("encoder", "decoder", "encoder-decoder"),
    "activation": ("gelu", "gelu_tanh", "relu", "silu"),
    "norm": ("layer_norm", "rms_norm"),
    "position": ("learned", "sinusoidal", "rope", "relative_bias"),
}


@dataclass(frozen=True)
class ModelConfig:
    """One description of a transformer: encoder, decoder or encoder-decoder, and its options.
    Checked on construction: an inconsistent config is a ValueError naming the field.

    Feed-forward: activation (gelu, gelu_tanh, relu, silu) with gated_mlp=True for SwiGLU
    (silu) or gated-GELU; norm layer_norm (norm_bias) or rms_norm; position learned,
    sinusoidal, rope (rope_theta) or relative_bias (T5, relative_attention_num_buckets and
    relative_attention_max_distance). Biases: attention_bias (q, k, v and output projections),
    qkv_bias (q, k and v only, as Qwen2), mlp_bias, norm_bias. A llama-family config with qkv_bias
    saves as Qwen2, with a sliding_window as Mistral."""

    family: str = "llama"
    architecture: str = "decoder"
    vocab_size: int = 32000
    hidden_size: int = 512
    num_layers: int = 4
    num_heads: int = 8
    num_kv_heads: int = 8
    head_dim: int = 64
    intermediate_size: int = 1376
    activation: str = "silu"
    gated_mlp: bool = True
    norm: str = "rms_norm"
    norm_eps: float = 1e-5
    position: str = "rope"
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    qkv_bias: bool = False
    sliding_window: Optional[int] = None
    post_norm: bool = False
    type_vocab_size: int = 0
    norm_bias: bool = False
    mlp_bias: bool = False
    pooler: bool = False
    mlm_head: bool = False
    num_decoder_layers: int = 0
    relative_attention_num_buckets: int = 0
    relative_attention_max_distance: int = 128
    sliding_window_pattern: int = 0
    rope_local_theta: float = 0.0

    def __post_init__(self):
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"ModelConfig.{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}")
        for f in self.__dataclass_fields__.values():
            v = getattr(self, f.name)
            if f.type in (int, "int") and (isinstance(v, bool) or not isinstance(v, numbers.Integral)):
                raise TypeError(f"ModelConfig.{f.name} must be an int, got {type(v).__name__}")
            if f.type in (int, "int") and v < 0:
                raise ValueError(f"ModelConfig.{f.name} must be >= 0, got {v}")
            if f.type in (bool, "bool") and not isinstance(v, bool):
                raise TypeError(f"ModelConfig.{f.name} must be a bool, got {type(v).__name__}")
        _, n = _native.check_model_config(json.dumps(self.to_dict()))
        object.__setattr__(self, "_num_parameters", n)

    @classmethod
    def for_family(cls, family: str, **overrides) -> "ModelConfig":
        """A config with the options of a family's architecture (llama: RoPE, RMSNorm, SwiGLU,
        GQA-ready; gpt2: learned positions, pre-norm LayerNorm, GELU-tanh, tied head; bert:
        encoder, learned positions + token types, post-norm LayerNorm, GELU; t5: encoder-decoder,
        relative position bias, pre-norm RMSNorm, ReLU MLP (gated_mlp=True with gelu_tanh for
        T5 v1.1's gated-GELU), tied head, as many decoder as encoder layers) and small default
        sizes; every field can be overridden."""
        base = {
            "llama": dict(family="llama"),
            "gpt2": dict(family="gpt2", activation="gelu_tanh", gated_mlp=False, norm="layer_norm", norm_bias=True,
                         position="learned", tie_word_embeddings=True, attention_bias=True, mlp_bias=True,
                         intermediate_size=2048, max_position_embeddings=1024),
            "bert": dict(family="bert", architecture="encoder", activation="gelu", gated_mlp=False, norm="layer_norm",
                         norm_bias=True, norm_eps=1e-12, position="learned", post_norm=True, type_vocab_size=2,
                         tie_word_embeddings=True, attention_bias=True, mlp_bias=True, intermediate_size=2048,
                         max_position_embeddings=512),
            "t5": dict(family="t5", architecture="encoder-decoder", activation="relu", gated_mlp=False,
                       norm_eps=1e-6, position="relative_bias", relative_attention_num_buckets=32,
                       tie_word_embeddings=True, intermediate_size=2048, max_position_embeddings=512),
        }
        if family not in base:
            raise ValueError(f"family must be one of {', '.join(base)}, got {family!r}")
        kw = {**base[family], **overrides}
        if "hidden_size" in overrides or "num_heads" in overrides:
            kw.setdefault("head_dim", kw.get("hidden_size", 512) // kw.get("num_heads", 8))
            if "head_dim" not in overrides:
                kw["head_dim"] = kw.get("hidden_size", 512) // kw.get("num_heads", 8)
        if "num_kv_heads" not in overrides and "num_heads" in overrides:
            kw["num_kv_heads"] = overrides["num_heads"]
        if family == "t5" and "num_decoder_layers" not in overrides:
            kw["num_decoder_layers"] = kw.get("num_layers", 4)
        return cls(**kw)

    @property
    def num_parameters(self) -> int:
        """Parameters of the checkpoint this config describes (tied weights once)."""
        return self._num_parameters

    def to_dict(self):
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_hf(cls, path) -> "ModelConfig":
        """From an HF config.json (or the folder holding it): llama, mistral, qwen2, bert, gpt2, t5."""
        import os

        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        return cls(**json.loads(_native.config_from_hf(path)))


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
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"texts must be strings, got {type(t).__name__}")
        return self._t.encode_batch(texts, add_special_tokens)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._t.decode(_ids(ids, "ids"), skip_special_tokens)

    def apply_chat_template(self, messages, add_generation_prompt: bool = True) -> str:
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
        for tok in ("[MASK]", "<mask>"):
            ids = self._t.encode(tok, False)
            if len(ids) == 1 and self._t.decode(ids, False) == tok:
                return ids[0]
        return None

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


def _check_number(name, v, kind=float):
    if isinstance(v, bool) or not isinstance(v, numbers.Real if kind is float else numbers.Integral):
        raise TypeError(f"{name} must be {'a number' if kind is float else 'an int'}, got {type(v).__name__}")
    return kind(v)


def _output(native, prompt, score=None) -> GenerationOutput:
    text, token_ids, finish, n_prompt, lp, plp = native
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


class Model:
    """A loaded model. Verbs: logits, generate, stream (decoders)."""

    def __init__(self, native):
        self._m = native
        self.tokenizer = Tokenizer(native.tokenizer)
        self.config = ModelConfig(**json.loads(native.config_json()))
        # Defaults for generate/stream; HF folders with a generation_config.json fill it in
        # (its end ids are the model's own end-of-generation ids, already known to the engine).
        self.generation_config = GenerationConfig()
        info = self.info
        gc = os.path.join(info["path"], "generation_config.json")
        if info["format"] == "safetensors" and os.path.isfile(gc):
            self.generation_config = dataclasses.replace(GenerationConfig.from_file(gc), stop_token_ids=[])

    @classmethod
    def from_config(cls, config: "ModelConfig", seed: int = 0, tokenizer=None) -> "Model":
        """A model with random weights (HF's initialisation: N(0, 0.02) matrices, norms 1, biases
        0; the same seed gives the same weights everywhere). config must be a llama, gpt2, bert or
        t5 family layout. tokenizer: a cw.Tokenizer or a tokenizer.json path; without one, token i
        reads as the text "[i]"."""
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a cw.ModelConfig, got {type(config).__name__}")
        seed = _check_number("seed", seed, int)
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
            tokenizer = Tokenizer.from_file(tokenizer)
        native = _native.model_from_config(json.dumps(config.to_dict()), seed, None if tokenizer is None else tokenizer._t)
        return cls(native)

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
        return json.loads(self._m.info_json())

    @property
    def context_length(self) -> int:
        return self._m.context_length

    # ---- encoders -----------------------------------------------------------------------------

    def _require(self, verb: str, encoder: bool):
        is_encoder = self.config.architecture == "encoder"
        if is_encoder != encoder:
            if encoder:
                raise UnsupportedError(f"{verb} is for encoders; this model is a {self.config.architecture}: use generate or logits")
            raise UnsupportedError(f"{verb} is for decoders; this model is an encoder: use encode, embed or fill_mask")

    def _encode_texts(self, texts, truncation, max_length):
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a string or a non-empty list of strings")
        limit = self.context_length if max_length is None else _check_number("max_length", max_length, int)
        if limit <= 0:
            raise ValueError(f"max_length must be positive, got {limit}")
        if limit > self.context_length:
            raise ValueError(f"max_length {limit} exceeds the {self.context_length} positions the model has")
        if truncation:
            ids = [self.tokenizer._t.encode_truncated(t, True, limit) for t in texts]
        else:
            ids = [self.tokenizer.encode(t) for t in texts]
            for t, row in zip(texts, ids):
                if len(row) > limit:
                    raise ValueError(
                        f"a text of {len(row)} tokens is longer than the {limit} positions allowed "
                        f"(model context {self.context_length}); pass truncation=True or shorten it: {t[:40]!r}"
                    )
        return single, ids

    def encode(self, texts, truncation: bool = True, max_length: Optional[int] = None) -> "EncoderOutput":
        """Encoders: one vector per token. texts: a string or a list of strings, tokenized with
        special tokens and (by default) truncated to max_length (default: the model's positions).
        Returns last_hidden_state float32 [batch, seq, hidden] (zero past each row's end),
        attention_mask int64 [batch, seq] (1 = real token) and input_ids (one list per text)."""
        self._require("encode", encoder=True)
        _, ids = self._encode_texts(texts, truncation, max_length)
        states = self._m.encode(ids)
        longest = max(len(r) for r in ids)
        out = np.zeros((len(ids), longest, self.config.hidden_size), dtype=np.float32)
        mask = np.zeros((len(ids), longest), dtype=np.int64)
        for i, st in enumerate(states):
            out[i, : len(st)] = st
            mask[i, : len(st)] = 1
        return EncoderOutput(out, mask, ids)

    def embed(self, texts, pooling: Optional[str] = None, normalize: bool = True, truncation: bool = True,
              max_length: Optional[int] = None) -> np.ndarray:
        """Encoders: one vector per text, as sentence-transformers computes it: tokens pooled
        ("mean" over the text's tokens, "cls" = the first token, "max"), then L2-normalised.
        Defaults come from the model folder's sentence-transformers files (pooling mode,
        max_seq_length), else mean pooling and the model's positions. A string gives [hidden],
        a list [n, hidden]."""
        self._require("embed", encoder=True)
        st = self._m.sentence_config
        if pooling is None:
            pooling = (st[1] if st else None) or "mean"
        if pooling not in ("mean", "cls", "max"):
            raise ValueError(f"pooling must be 'mean', 'cls' or 'max', got {pooling!r}")
        if max_length is None and st and st[0]:
            max_length = min(st[0], self.context_length)
        single, ids = self._encode_texts(texts, truncation, max_length)
        vecs = self._m.embed(ids, pooling, bool(normalize))
        return vecs[0] if single else vecs

    def fill_mask(self, text: str, top_k: int = 5):
        """Encoders with a masked-LM head: the top_k candidates for each mask token in `text`, as
        lists of {"token": id, "token_str": str, "score": probability, "sequence": filled text}
        (one list per mask, in order)."""
        self._require("fill_mask", encoder=True)
        if not self._m.has_mlm_head:
            raise UnsupportedError("this encoder has no masked-LM head (load a *ForMaskedLM checkpoint)")
        if not isinstance(text, str):
            raise TypeError("text must be a str")
        top_k = _check_number("top_k", top_k, int)
        if top_k <= 0:
            raise ValueError(f"top_k must be positive, got {top_k}")
        mask_id = self.tokenizer.mask_token_id
        if mask_id is None:
            raise UnsupportedError("the tokenizer has no mask token")
        _, (ids,) = self._encode_texts(text, False, None)
        where = [i for i, t in enumerate(ids) if t == mask_id]
        if not where:
            raise ValueError(f"text has no mask token ({self.tokenizer.decode([mask_id])})")
        logits = self._m.mlm_logits(ids)
        results = []
        for pos in where:
            row = logits[pos].astype(np.float64)
            probs = np.exp(row - row.max())
            probs /= probs.sum()
            best = np.argsort(-probs, kind="stable")[:top_k]
            cands = []
            for t in best:
                filled = list(ids)
                filled[pos] = int(t)
                cands.append({
                    "token": int(t), "token_str": self.tokenizer.decode([int(t)]).strip(),
                    "score": float(probs[t]), "sequence": self.tokenizer.decode(filled, skip_special_tokens=True),
                })
            results.append(cands)
        return results

    def forward(self, ids, output_hidden_states: bool = False, output_attentions: bool = False) -> ForwardOutput:
        """One sequence (token ids, or a str tokenized with special tokens) through the model,
        returning its logits and, when asked, every layer's hidden states and attention weights."""
        if isinstance(ids, str):
            ids = self.tokenizer.encode(ids)
        row = _ids(ids, "ids")
        for name, v in (("output_hidden_states", output_hidden_states), ("output_attentions", output_attentions)):
            if not isinstance(v, bool):
                raise TypeError(f"{name} must be a bool")
        logits, hidden, attn = self._m.inspect(row)
        return ForwardOutput(logits, hidden if output_hidden_states else None, attn if output_attentions else None)

    # ---- logits -------------------------------------------------------------------------------

    def logits(self, ids, attention_mask=None, decoder_input_ids=None, logits_to_keep: int = 0) -> np.ndarray:
        """float32 logits: [seq, vocab] for 1-D ids, [batch, seq, vocab] for 2-D ids.
        With attention_mask (same shape, 1 = real token), padded positions are skipped and their
        rows are zeros; the real tokens of a row must be contiguous (left or right padding), and
        their positions count from the row's first real token (as transformers' generate sets
        position_ids; a plain transformers forward without position_ids would shift them).
        logits_to_keep (as in transformers): only the last n positions (0 = all); a decoder
        asked for the last one alone runs its LM head on that row only, as generate's prefill
        does (a matmul over one row may round differently from one over many, as in llama.cpp)."""
        keep = _check_number("logits_to_keep", logits_to_keep, int)
        if keep < 0:
            raise ValueError(f"logits_to_keep must be >= 0, got {keep}")
        if keep:
            if keep == 1 and self.config.architecture == "decoder" and attention_mask is None and not (
                isinstance(ids, np.ndarray) and ids.ndim == 2
                or isinstance(ids, (list, tuple)) and ids and isinstance(ids[0], (list, tuple, np.ndarray))
            ):
                return self._m.logits(_ids(ids, "ids"), True)
            full = self.logits(ids, attention_mask, decoder_input_ids)
            return full[..., -keep:, :]
        if self.config.architecture == "encoder-decoder":
            return self._seq2seq_logits(ids, attention_mask, decoder_input_ids)
        if decoder_input_ids is not None:
            raise ValueError(f"decoder_input_ids is for encoder-decoder models; this model is a {self.config.architecture}")
        if self.config.architecture == "encoder" and not self._m.has_mlm_head:
            raise UnsupportedError("this encoder has no LM head to give logits: use encode or embed")
        if isinstance(ids, np.ndarray) and ids.ndim == 2 or (
            isinstance(ids, (list, tuple)) and ids and isinstance(ids[0], (list, tuple, np.ndarray))
        ):
            rows = [_ids(r, "ids") for r in ids]
            if len({len(r) for r in rows}) != 1:
                raise ValueError("2-D ids must be rectangular (pad the rows and pass attention_mask)")
            masks = [None] * len(rows) if attention_mask is None else [list(map(int, m)) for m in attention_mask]
            if len(masks) != len(rows) or any(m is not None and len(m) != len(r) for m, r in zip(masks, rows)):
                raise ValueError("attention_mask must have the same shape as ids")
            return np.stack([self._row_logits(r, m) for r, m in zip(rows, masks)])
        row = _ids(ids, "ids")
        mask = None if attention_mask is None else list(map(int, attention_mask))
        if mask is not None and len(mask) != len(row):
            raise ValueError("attention_mask must have the same shape as ids")
        return self._row_logits(row, mask)

    def _seq2seq_logits(self, ids, attention_mask, decoder_input_ids):
        """Encoder-decoder: logits of the decoder tokens, [dec_seq, vocab] or [batch, dec_seq, vocab];
        attention_mask masks padding of the encoder input."""
        if decoder_input_ids is None:
            raise ValueError("an encoder-decoder needs decoder_input_ids (e.g. [[decoder_start_token_id]])")
        two_d = isinstance(ids, np.ndarray) and ids.ndim == 2 or (
            isinstance(ids, (list, tuple)) and ids and isinstance(ids[0], (list, tuple, np.ndarray)))
        rows = [_ids(r, "ids") for r in ids] if two_d else [_ids(ids, "ids")]
        dec = [_ids(r, "decoder_input_ids") for r in decoder_input_ids] if two_d else [_ids(decoder_input_ids, "decoder_input_ids")]
        masks = [None] * len(rows) if attention_mask is None else ([list(map(int, m)) for m in attention_mask] if two_d else [list(map(int, attention_mask))])
        if len(dec) != len(rows) or len(masks) != len(rows):
            raise ValueError("ids, attention_mask and decoder_input_ids must have the same batch size")
        out = []
        for r, m, d in zip(rows, masks, dec):
            if m is not None:
                if len(m) != len(r):
                    raise ValueError("attention_mask must have the same shape as ids")
                r = [t for t, k in zip(r, m) if k]
            out.append(self._m.seq2seq_logits(r, d))
        return np.stack(out) if two_d else out[0]

    def _row_logits(self, row, mask):
        if self.config.architecture == "encoder":
            if mask is not None and not all(mask):
                pos = [i for i, m in enumerate(mask) if m]
                out = np.zeros((len(row), self.config.vocab_size), dtype=np.float32)
                out[pos[0] : pos[-1] + 1] = self._m.mlm_logits(row[pos[0] : pos[-1] + 1])
                return out
            return self._m.mlm_logits(row)
        if mask is None:
            return self._m.logits(row)
        if any(m not in (0, 1) for m in mask):
            raise ValueError("attention_mask must contain only 0 and 1")
        pos = [i for i, m in enumerate(mask) if m]
        if not pos:
            raise ValueError("attention_mask masks every token of a row")
        if pos != list(range(pos[0], pos[-1] + 1)):
            raise ValueError("the unmasked tokens of a row must be contiguous (left or right padding)")
        out = np.zeros((len(row), self.config.vocab_size), dtype=np.float32)
        out[pos[0] : pos[-1] + 1] = self._m.logits(row[pos[0] : pos[-1] + 1])
        return out

    # ---- generation ---------------------------------------------------------------------------

    def _prompt_ids(self, prompt):
        if isinstance(prompt, str):
            return self.tokenizer.encode(prompt, add_special_tokens=True)
        if _is_int_seq(prompt):
            return _ids(prompt, "prompt")
        raise TypeError(f"prompt must be a str or a list of token ids, got {type(prompt).__name__}")

    def _config(self, generation_config, kwargs) -> GenerationConfig:
        base = generation_config if generation_config is not None else self.generation_config
        if not isinstance(base, GenerationConfig):
            raise TypeError(f"generation_config must be a cw.GenerationConfig, got {type(base).__name__}")
        return base.replace(**kwargs) if kwargs else base.validated()

    def generate(self, prompt, generation_config: Optional[GenerationConfig] = None, **kwargs):
        """Generate a continuation of `prompt` (str or token ids). A list of prompts generates
        together as one batch (each step runs all unfinished rows through the model at once) and
        gives a list of results, each equal to what its prompt gives alone. Greedy by default;
        do_sample=True draws from the distribution shaped by the controls of cw.GenerationConfig
        (temperature, top_k, top_p, min_p, typical_p, penalties, stop strings, seed, ...), given as
        keyword arguments or as a GenerationConfig. num_return_sequences=N gives N results per
        prompt (seeds seed, seed+1, ...); num_beams > 1 runs beam search (with length_penalty) and
        returns its N best hypotheses."""
        self._require("generate", encoder=False)
        cfg = self._config(generation_config, kwargs)
        batch = isinstance(prompt, (list, tuple)) and bool(prompt) and not _is_int_seq(prompt)
        prompts = list(prompt) if batch else [prompt]
        ids = [self._prompt_ids(p) for p in prompts]
        n = cfg.num_return_sequences
        if cfg.num_beams > 1:
            params = cfg.native_params()
            results = []
            for p, row in zip(prompts, ids):
                hyps = self._m.beam_search(row, params, cfg.num_beams, cfg.length_penalty, n)
                results.append([_output(o, p, score) for o, score in hyps])
        else:
            requests = [(row, cfg.native_params(seed_offset=i)) for row in ids for i in range(n)]
            outs = self._m.generate(requests)
            results = [[_output(outs[j * n + i], p) for i in range(n)] for j, p in enumerate(prompts)]
        results = [r[0] if n == 1 else r for r in results]
        return results if batch else results[0]

    def stream(self, prompt, generation_config: Optional[GenerationConfig] = None, **kwargs) -> Iterator[str]:
        """Like generate, but yields text pieces as they are produced (never a split UTF-8
        character, never part of a stop string). Breaking out of the loop, or close(), frees the
        request. The iterator's token_ids, finish_reason and logprobs are readable as it goes."""
        self._require("stream", encoder=False)
        cfg = self._config(generation_config, kwargs)
        if cfg.num_return_sequences != 1:
            raise ValueError("stream generates one sequence: num_return_sequences must be 1")
        if cfg.num_beams != 1:
            raise ValueError("stream does not run beam search: num_beams must be 1")
        return self._m.stream(self._prompt_ids(prompt), cfg.native_params())

    def score(self, context: str, continuations) -> List[ScoreResult]:
        """Log-likelihood of each continuation after `context`, with lm-evaluation-harness's
        boundary handling: trailing spaces of the context move to the continuation, and the
        continuation's tokens are those of tokenize(context + continuation) past the context's.
        is_greedy tells whether greedy decoding would produce exactly that continuation."""
        self._require("score", encoder=False)
        if self.config.architecture == "encoder-decoder":
            raise UnsupportedError("score for encoder-decoders is not built yet")
        if not isinstance(context, str):
            raise TypeError("context must be a str")
        if isinstance(continuations, str):
            continuations = [continuations]
        if not continuations or not all(isinstance(c, str) and c for c in continuations):
            raise ValueError("continuations must be a non-empty list of non-empty strings")
        enc = lambda t: self.tokenizer.encode(t, add_special_tokens=False)  # noqa: E731
        results = []
        for cont in continuations:
            ctx = context
            n_spaces = len(ctx) - len(ctx.rstrip())
            if n_spaces:
                cont, ctx = ctx[-n_spaces:] + cont, ctx[:-n_spaces]
            whole = enc(ctx + cont)
            ctx_ids = enc(ctx) if ctx else []
            cont_ids = whole[len(ctx_ids):]
            if not ctx_ids:
                # no context: condition on the start/end-of-text token, as the harness does
                start = self.tokenizer.bos_token_id
                ctx_ids = [start if start is not None else self.tokenizer.eos_token_id]
            (lp, greedy, toks), = self._m.score(ctx_ids, [cont_ids])
            results.append(ScoreResult(lp, greedy, toks))
        return results

    def chat(self, messages, **kwargs):
        """Apply the chat template to `messages` and generate the assistant's reply."""
        return self.generate(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True), **kwargs)


def load(source, threads: Optional[int] = None) -> Model:
    """Load a model: a .gguf file, or the short name of an installed model package
    (e.g. "smollm2-135m-instruct"). `threads` fixes the compute threads for this process."""
    if threads is not None:
        threads = _check_number("threads", threads, int)
        if threads <= 0:
            raise ValueError(f"threads must be a positive integer, got {threads}")
    return Model(_native.load(resolve(source), threads))


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
