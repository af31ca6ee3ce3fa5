"""Type stubs of candlewick's engine module (rust/candlewick-py). ModelConfig and GenerationConfig
are the engine's own types; their fields, defaults and validation are written once, in
rust/candlewick/src/config/. tests/test_stubs.py checks these stubs against the module: every
name and member, its kind, its parameters and their defaults (and the config fields' choices and
defaults against the engine's)."""

from os import PathLike
from typing import Any, Callable, ClassVar, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__version__: str

# aliases of the stubs only (not names of the module)
_Path = Union[str, PathLike[str]]
# npt.NDArray[...] spelled out: numpy >= 2.3's own aliases do not load when mypy targets Python 3.9
_F32 = np.ndarray[Any, np.dtype[np.float32]]
# a progress bar's update: told (done, total) in the work's units
_Progress = Callable[[int, int], Any]
_I64 = np.ndarray[Any, np.dtype[np.int64]]
_U32 = np.ndarray[Any, np.dtype[np.uint32]]
_Architecture = Literal["encoder", "decoder", "encoder-decoder", "rnn"]
_Activation = Literal["gelu", "gelu_tanh", "relu", "silu"]
_Norm = Literal["layer_norm", "rms_norm"]
_Position = Literal["learned", "sinusoidal", "rope", "relative_bias"]
_Cell = Literal["lstm", "gru"]
_RopeScaling = Literal["none", "linear", "llama3", "yarn"]

class CandlewickError(Exception):
    """Base class of candlewick's own errors.

        try:
            model = cw.load("model.gguf")
        except cw.CandlewickError as e:
            print(e)
    """

class ModelFileError(CandlewickError):
    """A model or tokenizer file is invalid, truncated or corrupt.

        try:
            model = cw.load("truncated.gguf")
        except cw.ModelFileError as e:
            print("not a model file:", e)
    """

class UnsupportedError(CandlewickError):
    """The file or option is valid but candlewick does not support it (yet).

        try:
            model = cw.Model.from_config(cw.ModelConfig.for_family("gemma3"))
        except cw.UnsupportedError as e:
            print(e)   # gemma3 models are read from GGUF files, not built from a config
    """

class ModelConfig:
    """One description of a transformer: encoder, decoder or encoder-decoder (or a recurrent LM),
    and its options. Checked on construction: an inconsistent config is a ValueError naming the
    field, a value of the wrong type a TypeError. Frozen: `replace` makes a changed copy. The
    defaults describe a small Llama-shaped decoder; architecture="rnn" alone starts from the
    recurrent family's preset instead.

        cfg = cw.ModelConfig(vocab_size=512, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=4,
                             head_dim=16, intermediate_size=128)
        cfg.num_parameters, cfg.to_dict()["family"]   # (147776, 'llama')
    """

    __dataclass_fields__: ClassVar[Dict[str, Any]]
    family: str
    architecture: _Architecture
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    activation: _Activation
    gated_mlp: bool
    norm: _Norm
    norm_eps: float
    position: _Position
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool
    qkv_bias: bool
    sliding_window: Optional[int]
    post_norm: bool
    type_vocab_size: int
    norm_bias: bool
    mlp_bias: bool
    pooler: bool
    mlm_head: bool
    num_decoder_layers: int
    relative_attention_num_buckets: int
    relative_attention_max_distance: int
    sliding_window_pattern: int
    rope_local_theta: float
    rope_adjacent_pairs: bool
    rope_scaling: _RopeScaling
    rope_scaling_factor: float
    rope_original_max_position_embeddings: int
    rope_low_freq_factor: float
    rope_high_freq_factor: float
    rope_beta_fast: float
    rope_beta_slow: float
    rope_attention_factor: float
    qk_norm: bool
    attn_logit_softcapping: float
    final_logit_softcapping: float
    query_pre_attn_scalar: float
    decoder_start_token_id: int
    scale_decoder_outputs: bool
    cell: _Cell  # architecture "rnn"
    def __init__(
        self,
        *,
        family: str = "llama",
        architecture: _Architecture = "decoder",
        vocab_size: int = 32000,
        hidden_size: int = 512,
        num_layers: int = 4,
        num_heads: int = 8,
        num_kv_heads: int = 8,
        head_dim: int = 64,
        intermediate_size: int = 1376,
        activation: _Activation = "silu",
        gated_mlp: bool = True,
        norm: _Norm = "rms_norm",
        norm_eps: float = 1e-05,
        position: _Position = "rope",
        rope_theta: float = 10000.0,
        max_position_embeddings: int = 2048,
        tie_word_embeddings: bool = False,
        attention_bias: bool = False,
        qkv_bias: bool = False,
        sliding_window: Optional[int] = None,
        post_norm: bool = False,
        type_vocab_size: int = 0,
        norm_bias: bool = False,
        mlp_bias: bool = False,
        pooler: bool = False,
        mlm_head: bool = False,
        num_decoder_layers: int = 0,
        relative_attention_num_buckets: int = 0,
        relative_attention_max_distance: int = 128,
        sliding_window_pattern: int = 0,
        rope_local_theta: float = 0.0,
        rope_adjacent_pairs: bool = False,
        rope_scaling: _RopeScaling = "none",
        rope_scaling_factor: float = 1.0,
        rope_original_max_position_embeddings: int = 0,
        rope_low_freq_factor: float = 1.0,
        rope_high_freq_factor: float = 4.0,
        rope_beta_fast: float = 32.0,
        rope_beta_slow: float = 1.0,
        rope_attention_factor: float = 0.0,
        qk_norm: bool = False,
        attn_logit_softcapping: float = 0.0,
        final_logit_softcapping: float = 0.0,
        query_pre_attn_scalar: float = 0.0,
        decoder_start_token_id: int = 0,
        scale_decoder_outputs: bool = False,
        cell: _Cell = "lstm",
    ) -> None: ...
    @classmethod
    def for_family(
        cls,
        family: str,
        *,
        architecture: _Architecture = ...,
        vocab_size: int = ...,
        hidden_size: int = ...,
        num_layers: int = ...,
        num_heads: int = ...,
        num_kv_heads: int = ...,
        head_dim: int = ...,
        intermediate_size: int = ...,
        activation: _Activation = ...,
        gated_mlp: bool = ...,
        norm: _Norm = ...,
        norm_eps: float = ...,
        position: _Position = ...,
        rope_theta: float = ...,
        max_position_embeddings: int = ...,
        tie_word_embeddings: bool = ...,
        attention_bias: bool = ...,
        qkv_bias: bool = ...,
        sliding_window: Optional[int] = ...,
        post_norm: bool = ...,
        type_vocab_size: int = ...,
        norm_bias: bool = ...,
        mlp_bias: bool = ...,
        pooler: bool = ...,
        mlm_head: bool = ...,
        num_decoder_layers: int = ...,
        relative_attention_num_buckets: int = ...,
        relative_attention_max_distance: int = ...,
        sliding_window_pattern: int = ...,
        rope_local_theta: float = ...,
        rope_adjacent_pairs: bool = ...,
        rope_scaling: _RopeScaling = ...,
        rope_scaling_factor: float = ...,
        rope_original_max_position_embeddings: int = ...,
        rope_low_freq_factor: float = ...,
        rope_high_freq_factor: float = ...,
        rope_beta_fast: float = ...,
        rope_beta_slow: float = ...,
        rope_attention_factor: float = ...,
        qk_norm: bool = ...,
        attn_logit_softcapping: float = ...,
        final_logit_softcapping: float = ...,
        query_pre_attn_scalar: float = ...,
        decoder_start_token_id: int = ...,
        scale_decoder_outputs: bool = ...,
        cell: _Cell = ...,
    ) -> "ModelConfig":
        """A config with a family's options (one of `ModelConfig.families()`) and small sizes; every
        field can be given.

            cw.ModelConfig.for_family("bert", vocab_size=1000, num_layers=2)
        """
    @classmethod
    def from_hf(cls, path: _Path) -> "ModelConfig":
        """From an HF config.json (or the folder holding it).

            cw.ModelConfig.from_hf("models/bert-base-uncased/config.json")
        """
    @staticmethod
    def families() -> List[str]:
        """The families a config can name.

            >>> "llama" in cw.ModelConfig.families()
            True
        """
    @property
    def num_parameters(self) -> int:
        """Parameters of the checkpoint this config describes (tied weights once)."""
    def to_dict(self) -> Dict[str, Any]:
        """Every field and its value, in the engine's order.

            >>> cw.ModelConfig().to_dict()["vocab_size"]
            32000
        """
    def replace(
        self,
        *,
        family: str = ...,
        architecture: _Architecture = ...,
        vocab_size: int = ...,
        hidden_size: int = ...,
        num_layers: int = ...,
        num_heads: int = ...,
        num_kv_heads: int = ...,
        head_dim: int = ...,
        intermediate_size: int = ...,
        activation: _Activation = ...,
        gated_mlp: bool = ...,
        norm: _Norm = ...,
        norm_eps: float = ...,
        position: _Position = ...,
        rope_theta: float = ...,
        max_position_embeddings: int = ...,
        tie_word_embeddings: bool = ...,
        attention_bias: bool = ...,
        qkv_bias: bool = ...,
        sliding_window: Optional[int] = ...,
        post_norm: bool = ...,
        type_vocab_size: int = ...,
        norm_bias: bool = ...,
        mlp_bias: bool = ...,
        pooler: bool = ...,
        mlm_head: bool = ...,
        num_decoder_layers: int = ...,
        relative_attention_num_buckets: int = ...,
        relative_attention_max_distance: int = ...,
        sliding_window_pattern: int = ...,
        rope_local_theta: float = ...,
        rope_adjacent_pairs: bool = ...,
        rope_scaling: _RopeScaling = ...,
        rope_scaling_factor: float = ...,
        rope_original_max_position_embeddings: int = ...,
        rope_low_freq_factor: float = ...,
        rope_high_freq_factor: float = ...,
        rope_beta_fast: float = ...,
        rope_beta_slow: float = ...,
        rope_attention_factor: float = ...,
        qk_norm: bool = ...,
        attn_logit_softcapping: float = ...,
        final_logit_softcapping: float = ...,
        query_pre_attn_scalar: float = ...,
        decoder_start_token_id: int = ...,
        scale_decoder_outputs: bool = ...,
        cell: _Cell = ...,
    ) -> "ModelConfig":
        """A copy with some fields changed (validated).

            cfg.replace(num_layers=8, sliding_window=256)
        """

class GenerationConfig:
    """Generation controls, with the names HF transformers, vLLM and llama.cpp users know. Checked on
    construction: a bad value is a TypeError or ValueError naming the field. `stop` takes a string
    or a list of them, `logit_bias` token ids (or strings holding them, as in JSON) to numbers; None
    for either of them, or for stop_token_ids, is the empty default. Frozen: `replace` makes a
    changed copy.

        g = cw.GenerationConfig(max_new_tokens=32, do_sample=True, temperature=0.7, top_p=0.9, seed=0)
        model.generate("Once upon a time", g).text
    """

    __dataclass_fields__: ClassVar[Dict[str, Any]]
    max_new_tokens: int
    min_new_tokens: int
    do_sample: bool
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    typical_p: float
    repetition_penalty: float
    presence_penalty: float
    frequency_penalty: float
    no_repeat_ngram_size: int
    logit_bias: Dict[int, float]
    stop: List[str]
    stop_token_ids: List[int]
    ignore_eos: bool
    seed: Optional[int]
    num_return_sequences: int
    num_beams: int
    length_penalty: float
    logprobs: Optional[int]
    prompt_logprobs: bool
    def __init__(
        self,
        *,
        max_new_tokens: int = 128,
        min_new_tokens: int = 0,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        min_p: float = 0.0,
        typical_p: float = 1.0,
        repetition_penalty: float = 1.0,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        no_repeat_ngram_size: int = 0,
        logit_bias: Union[Mapping[int, float], Mapping[str, float], None] = None,
        stop: Union[str, Sequence[str], None] = None,
        stop_token_ids: Optional[Sequence[int]] = None,
        ignore_eos: bool = False,
        seed: Optional[int] = None,
        num_return_sequences: int = 1,
        num_beams: int = 1,
        length_penalty: float = 1.0,
        logprobs: Optional[int] = None,
        prompt_logprobs: bool = False,
    ) -> None: ...
    def replace(
        self,
        *,
        max_new_tokens: int = ...,
        min_new_tokens: int = ...,
        do_sample: bool = ...,
        temperature: float = ...,
        top_k: int = ...,
        top_p: float = ...,
        min_p: float = ...,
        typical_p: float = ...,
        repetition_penalty: float = ...,
        presence_penalty: float = ...,
        frequency_penalty: float = ...,
        no_repeat_ngram_size: int = ...,
        logit_bias: Union[Mapping[int, float], Mapping[str, float], None] = ...,
        stop: Union[str, Sequence[str], None] = ...,
        stop_token_ids: Optional[Sequence[int]] = ...,
        ignore_eos: bool = ...,
        seed: Optional[int] = ...,
        num_return_sequences: int = ...,
        num_beams: int = ...,
        length_penalty: float = ...,
        logprobs: Optional[int] = ...,
        prompt_logprobs: bool = ...,
    ) -> "GenerationConfig":
        """A copy with some fields changed; unknown names are a TypeError.

            greedy = cw.GenerationConfig(max_new_tokens=16)
            sampled = greedy.replace(do_sample=True, seed=1)
        """
    def validated(self) -> "GenerationConfig":
        """This config, checked (configs are checked when made: kept for compatibility).

            g = cw.GenerationConfig(top_k=40).validated()
        """
    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "GenerationConfig":
        """From HF-style keys (generation_config.json): known keys are taken, `eos_token_id`
        becomes stop_token_ids, other HF keys are ignored.

            >>> cw.GenerationConfig.from_dict({"eos_token_id": 2, "max_length": 20}).stop_token_ids
            [2]
        """
    @classmethod
    def from_file(cls, path: _Path) -> "GenerationConfig":
        """Read a generation_config.json (the file, or the folder holding it).

            cw.GenerationConfig.from_file("models/gpt2/generation_config.json")
        """
    def to_dict(self) -> Dict[str, Any]:
        """Every field and its value, in the engine's order.

            >>> cw.GenerationConfig(stop="###").to_dict()["stop"]
            ['###']
        """

class StreamDecoder:
    """Feed ids one at a time; `step` returns the text they complete (never half a character).

        d = model.tokenizer.stream_decoder()
        pieces = [d.step(i) for i in ids]; rest = d.flush()
    """

    def step(self, id: int) -> Optional[str]: ...
    def flush(self) -> Optional[str]: ...

class Tokenizer:
    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]: ...
    def encode_truncated(self, text: str, add_special_tokens: bool, max_length: int) -> List[int]: ...
    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = True) -> List[List[int]]: ...
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str: ...
    def apply_chat_template_json(self, messages_json: str, add_generation_prompt: bool) -> str: ...
    def stream_decoder(self, skip_special_tokens: bool = False) -> StreamDecoder: ...
    @property
    def chat_template(self) -> Optional[str]: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def bos_token_id(self) -> Optional[int]: ...
    @property
    def eos_token_id(self) -> Optional[int]: ...
    @property
    def mask_token_id(self) -> Optional[int]: ...
    @property
    def eog_token_ids(self) -> List[int]: ...
    def token_to_id(self, token: str) -> Optional[int]: ...
    def id_to_token(self, id: int) -> Optional[str]: ...

# per generated token: (id, logprob, [(alternative id, logprob)])
_Logprobs = List[Tuple[int, float, List[Tuple[int, float]]]]
# (text, token_ids, finish_reason, prompt_tokens, logprobs, prompt_logprobs, score)
_GenOut = Tuple[str, List[int], str, int, Optional[_Logprobs], Optional[List[float]], Optional[float]]
# (label, num_parameters, [(key, bytes, formula)], notes, seq_len, dtype)
_Estimate = Tuple[str, int, List[Tuple[str, int, str]], List[str], Optional[int], str]
# training data: token id lists, or prepared int64 arrays by name (input_ids, labels, ...)
_TrainData = Union[Sequence[Sequence[int]], Dict[str, _I64]]
# the training callback: (step, loss, lr, grad_norm, tokens_per_s, (eval step, loss, perplexity) or None)
_OnStep = Callable[[int, float, float, float, float, Optional[Tuple[int, float, float]]], object]

class Stream:
    """Iterator of text pieces of one request (what `Model.stream` returns); the ids, finish reason
    and log-probabilities so far stay readable, and `close()` (or dropping it) frees its KV cache.

        s = model.stream("Once upon a time", max_new_tokens=16)
        text = "".join(s); s.token_ids, s.finish_reason
    """

    def __iter__(self) -> "Stream": ...
    def __next__(self) -> str: ...
    @property
    def token_ids(self) -> List[int]: ...
    @property
    def finish_reason(self) -> Optional[str]: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def logprobs(self) -> Optional[_Logprobs]: ...
    @property
    def kv_cache_bytes(self) -> int: ...
    def close(self) -> None: ...

class NativeModel:
    @property
    def tokenizer(self) -> Optional[Tokenizer]: ...
    def require_tokenizer(self) -> Tokenizer: ...
    @property
    def config(self) -> ModelConfig: ...
    @property
    def generation_config(self) -> GenerationConfig: ...
    @property
    def kv_cache_dtype(self) -> str: ...
    @kv_cache_dtype.setter
    def kv_cache_dtype(self, dtype: str) -> None: ...
    @property
    def info(self) -> Dict[str, Any]: ...
    @property
    def context_length(self) -> int: ...
    def logits(self, rows: Sequence[Sequence[int]], masks: Optional[Sequence[Sequence[int]]] = None,
               decoder: Optional[Sequence[Sequence[int]]] = None, keep: int = 0, single: bool = False) -> _F32: ...
    def generate(self, prompts: Sequence[Union[str, Sequence[int]]], config: GenerationConfig,
                 progress: Optional[_Progress] = None) -> List[List[_GenOut]]: ...
    def stream(self, prompt_: Union[str, Sequence[int]], config: GenerationConfig) -> Stream: ...
    def forward(self, ids: Sequence[int], hidden_states: bool = True, attentions: bool = True) -> Tuple[Optional[_F32], List[_F32], List[_F32]]: ...
    def save(self, path: _Path) -> None: ...
    def encode(self, texts: Sequence[str], truncation: bool = True, max_length: Optional[int] = None) -> Tuple[_F32, _I64, List[List[int]]]: ...
    def embed(self, texts: Sequence[str], pooling: Optional[str] = None, normalize: bool = True, truncation: bool = True,
              max_length: Optional[int] = None, progress: Optional[_Progress] = None) -> _F32: ...
    def fill_mask(self, text: str, top_k: int) -> List[List[Dict[str, Any]]]: ...
    def score(self, context: str, continuations: Sequence[str],
              progress: Optional[_Progress] = None) -> List[Tuple[float, bool, List[float]]]: ...
    def perplexity(self, texts: Optional[Sequence[str]], ids: Optional[Sequence[Sequence[int]]], max_length: Optional[int] = None,
                   stride: Optional[int] = None, batch_size: int = 1, token_nll: bool = False,
                   progress: Optional[_Progress] = None) -> Dict[str, Any]: ...

def load(path: _Path, threads: Optional[int] = None, dtype: Optional[str] = None) -> NativeModel: ...
def model_from_config(config: ModelConfig, seed: int, tokenizer: Optional[Tokenizer] = None) -> NativeModel: ...
def tokenizer_from_file(path: _Path) -> Tokenizer: ...
def set_num_threads(threads: int) -> None: ...
def simd_report() -> Tuple[List[str], List[Tuple[str, str]], int]: ...
def profile_start() -> None: ...
def profile_take() -> List[Tuple[str, Optional[int], float, int]]: ...
def sample(logits: _F32, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0,
           typical_p: float = 1.0, seed: Optional[int] = None, num_samples: int = 1) -> _U32: ...
def sampling_stages(logits: _F32, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                    min_p: float = 0.0) -> List[Tuple[str, _F32]]: ...
def estimate_memory(source: Union[int, ModelConfig, NativeModel, _Path], dtype: Optional[str] = None,
                    kv_dtype: Optional[str] = None, batch_size: int = 1, seq_len: Optional[int] = None,
                    training: bool = False, optimizer: str = "adamw", mixed_precision: bool = False,
                    gradient_checkpointing: str = "none", zero_stage: int = 0, num_devices: int = 1) -> _Estimate: ...
def assemble_parts(manifest: _Path, parts: Sequence[_Path], cache_dir: _Path, progress: Optional[_Progress] = None) -> str: ...
def quantize_gguf(src: _Path, out: _Path, kind: str, progress: Optional[_Progress] = None) -> List[Tuple[str, str]]: ...
def quantize_model(model: NativeModel, out: _Path, kind: str, progress: Optional[_Progress] = None) -> List[Tuple[str, str]]: ...
def quantize_types() -> List[str]: ...
def _model_config(fields: Dict[str, Any]) -> ModelConfig: ...
def _generation_config(fields: Dict[str, Any]) -> GenerationConfig: ...

# ---- training (cw.objectives, cw.train, Model.loss / gradients / state_dict) -----------------
def objective_mlm(input_ids: _I64, mask_token_id: int, vocab_size: int, special_token_ids: Sequence[int],
                  probability: float, mask_replace_prob: float, random_replace_prob: float,
                  word_ids: Optional[_I64], seed: Optional[int]) -> Tuple[_I64, _I64]: ...
def objective_clm(input_ids: _I64, pad_token_id: Optional[int]) -> Tuple[_I64, _I64, _I64]: ...
def objective_span_corruption(input_ids: _I64, vocab_size: int, eos_token_id: int, noise_density: float,
                              mean_noise_span_length: float, seed: Optional[int]) -> Tuple[_I64, _I64]: ...
def objective_pack(token_lists: Sequence[Sequence[int]], block_size: int) -> _I64: ...
def t5_input_length(target_inputs_length: int, noise_density: float, mean_noise_span_length: float) -> Tuple[int, int]: ...
def model_loss(model: NativeModel, input_ids: _I64, labels: _I64, attention_mask: Optional[_I64] = None,
               decoder_input_ids: Optional[_I64] = None) -> float: ...
def model_gradients(model: NativeModel, input_ids: _I64, labels: _I64, attention_mask: Optional[_I64] = None,
                    decoder_input_ids: Optional[_I64] = None) -> Tuple[float, Dict[str, _F32]]: ...
def model_state_dict(model: NativeModel) -> Dict[str, _F32]: ...
def tokenize_corpus(model: NativeModel, texts: Sequence[str]) -> List[List[int]]: ...
def train(model: NativeModel, data: _TrainData, eval_data: Optional[_TrainData],
          objective: str, steps: int, batch_size: int, seq_len: int, lr: float, warmup_steps: int, schedule: str,
          weight_decay: float, grad_clip: Optional[float], grad_accum_steps: int, seed: Optional[int], eval_every: Optional[int],
          checkpoint_dir: Optional[_Path], checkpoint_every: Optional[int], resume: bool, mask_token_id: Optional[int],
          mlm_probability: float, noise_density: float, mean_noise_span_length: float,
          callback: Optional[_OnStep]) -> Tuple[NativeModel, Dict[str, Any]]: ...
def heap_bytes(reset: bool = False) -> Tuple[int, int]: ...
