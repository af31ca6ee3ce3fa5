"""candlewick's public API used with the types a user writes: mypy checks this file (mypy.ini;
tests/test_typing.py runs it), so a signature or a stub that stops saying what the API takes and
gives fails there. The annotated assignments and `assert_type` calls are the checks; nothing here
needs to run, though `python tests/typing/usage.py` does run it on the installed SmolLM2 (and
all-MiniLM-L6-v2, when installed)."""

import os
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

import candlewick as cw

if TYPE_CHECKING:
    from typing_extensions import assert_type
else:
    def assert_type(value, _type):
        return value


def load_and_generate() -> cw.Model:
    model: cw.Model = cw.load("smollm2-135m-instruct", threads=2)
    out = model.generate("The capital of France is", max_new_tokens=8)
    assert_type(out, cw.GenerationOutput)
    text: str = out.text
    ids: List[int] = out.token_ids
    reason: str = out.finish_reason
    assert isinstance(text, str) and reason in ("length", "eos", "stop") and ids

    # a batch gives a list; num_return_sequences a list per prompt
    batch = model.generate(["The sky is", "Water is"], max_new_tokens=4)
    assert_type(batch, List[cw.GenerationOutput])
    n = model.generate("Once", num_return_sequences=2, do_sample=True, seed=0, max_new_tokens=4)
    assert_type(n, List[cw.GenerationOutput])
    grid = model.generate(["Once", "Twice"], num_return_sequences=2, do_sample=True, seed=0, max_new_tokens=4)
    assert_type(grid, List[List[cw.GenerationOutput]])
    assert len(grid) == 2 and len(grid[0]) == 2

    # a GenerationConfig, token ids as the prompt, log-probabilities
    g = cw.GenerationConfig(max_new_tokens=6, do_sample=True, temperature=0.7, top_p=0.9, seed=0,
                            stop=["\n"], logit_bias={0: -1.0}, logprobs=2)
    tok = model.tokenizer
    assert tok is not None
    prompt_ids: List[int] = tok.encode("Hello")
    sampled = model.generate(prompt_ids, g)
    lp: Optional[List[cw.TokenLogprob]] = sampled.logprobs
    if lp:
        first: cw.TokenLogprob = lp[0]
        alternatives: List[Tuple[int, float]] = first.top
        assert isinstance(first.logprob, float) and len(alternatives) == 2
    greedy: cw.GenerationConfig = g.replace(do_sample=False, logprobs=None)
    top_k: int = greedy.top_k
    stops: List[str] = greedy.stop
    fields: Dict[str, Any] = greedy.to_dict()
    assert top_k == 0 and stops == ["\n"] and fields["max_new_tokens"] == 6

    reply = model.chat([{"role": "user", "content": "Name a color."}], max_new_tokens=8)
    assert_type(reply, cw.GenerationOutput)
    return model


def stream(model: cw.Model) -> str:
    s = model.stream("Once upon a time", max_new_tokens=8)
    pieces: Iterator[str] = iter(s)
    text = "".join(pieces)
    generated: List[int] = s.token_ids
    reason: Optional[str] = s.finish_reason
    s.close()
    assert len(generated) == 8 and reason == "length"
    return text


def score_and_logits(model: cw.Model) -> None:
    results: List[cw.ScoreResult] = model.score("The capital of France is", [" Paris", " London"])
    best = max(results, key=lambda r: r.logprob)
    assert best.is_greedy
    logits: np.ndarray = model.logits([1, 2, 3])
    batch_logits: np.ndarray = model.logits([[1, 2, 3], [4, 5, 6]], logits_to_keep=1)
    assert logits.ndim == 2 and batch_logits.shape[:2] == (2, 1)
    fwd: cw.ForwardOutput = model.forward("Hello world", output_hidden_states=True)
    hidden: Optional[List[np.ndarray]] = fwd.hidden_states
    assert hidden is not None and fwd.logits is not None
    ppl: cw.PerplexityResult = model.perplexity("The quick brown fox jumps over the lazy dog.", max_length=64)
    value: float = float(ppl)
    per_text: List[float] = ppl.text_perplexities
    assert value > 1 and len(per_text) == 1
    ids = cw.sample(np.array([0.0, 1.0, 2.0], dtype=np.float32), temperature=0.8, seed=0, num_samples=4)
    assert ids.shape == (4,)
    info: Dict[str, Any] = model.info
    ctx: int = model.context_length
    assert info["format"] == "gguf" and ctx > 0


def embed() -> None:
    encoder = cw.load("all-minilm-l6-v2")
    vecs: np.ndarray = encoder.embed(["A cat sits.", "A kitten is sitting."])
    one: np.ndarray = encoder.embed("A cat sits.", pooling="mean", normalize=True)
    enc: cw.EncoderOutput = encoder.encode(["a sentence", "another one"], max_length=32)
    mask: np.ndarray = enc.attention_mask
    rows: List[List[int]] = enc.input_ids
    assert vecs.shape[0] == 2 and one.ndim == 1 and mask.shape[0] == len(rows) == 2


def sizes(model: cw.Model) -> None:
    est: cw.MemoryEstimate = cw.estimate_memory("1B", dtype="q4_0")
    total: int = est.total_bytes
    fits: bool = est.fits("8GB")
    breakdown: Dict[str, int] = est.breakdown
    training = cw.estimate_memory(model, training=True, batch_size=2, seq_len=256, gradient_checkpointing="selective",
                                  zero_stage=2, num_devices=2)
    from_config = cw.estimate_memory(cw.ModelConfig.for_family("llama"), kv_dtype="float16")
    from_count = cw.estimate_memory(135_000_000, dtype="bfloat16")
    as_dict: Dict[str, Any] = from_count.to_dict()
    assert total > 0 and fits and "weights" in breakdown and training.training and from_config.num_parameters
    assert as_dict["dtype"] == "bfloat16"


def build_and_train() -> cw.TrainResult:
    cfg = cw.ModelConfig.for_family("llama", vocab_size=300, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=2,
                                    head_dim=16, intermediate_size=64, max_position_embeddings=64)
    bigger: cw.ModelConfig = cfg.replace(num_layers=2)
    arch: str = bigger.architecture
    params: int = bigger.num_parameters
    families: List[str] = cw.ModelConfig.families()
    assert arch == "decoder" and params > 0 and "llama" in families
    model = cw.Model.from_config(bigger, seed=0)
    assert_type(model, cw.Model)
    ids = [[5, 6, 7, 8, 9, 10, 11, 12]] * 4
    result: cw.TrainResult = cw.train(model, ids, "clm", steps=2, batch_size=2, seq_len=8, lr=1e-3, seed=0,
                                      eval_data=ids, eval_every=1, progress=False)
    final: Optional[float] = result.final_loss
    losses: List[float] = result.losses
    ppl: Optional[float] = result.eval_perplexity
    assert final is not None and len(losses) == 2 and ppl is not None
    loss: float = model.loss([[5, 6, 7]], [[5, 6, 7]])
    grad_loss, grads = model.gradients([[5, 6, 7]], [[5, 6, 7]])
    weights: Dict[str, np.ndarray] = model.state_dict()
    assert loss > 0 and grad_loss > 0 and grads.keys() == weights.keys()
    return result


def prompts_and_objectives() -> None:
    p: str = cw.prompts.few_shot("Classify the sentiment.", [("I loved it", "positive"), ("Awful.", "negative")],
                                 "What a great day", input_prefix="Review: ", output_prefix="Sentiment:")
    z: str = cw.prompts.zero_shot(None, "2 + 2 =")
    o: str = cw.prompts.one_shot("Add.", ("1 + 1", "2"), "2 + 2")
    example: cw.prompts.Example = ("in", "out")
    b: str = cw.prompts.build(None, [example], "query", separator="\n")
    assert p.endswith("Sentiment:") and z and o and b

    batch: Dict[str, np.ndarray] = cw.objectives.mlm(np.array([[101, 7592, 2088, 102]]), mask_token_id=103,
                                                      vocab_size=30522, special_token_ids=[0, 101, 102], seed=0)
    clm = cw.objectives.clm([[5, 6, 7, 0]], pad_token_id=0)
    spans = cw.objectives.span_corruption(np.arange(2, 32)[None], vocab_size=32128, eos_token_id=1, seed=0)
    raw, targets = cw.objectives.t5_input_length(512)
    blocks: np.ndarray = cw.objectives.pack([[1, 2, 3], [4, 5]], 2)
    assert batch["labels"].shape == (1, 4) and clm["attention_mask"].shape == (1, 4) and "labels" in spans
    assert (raw, targets) == (568, 114) and blocks.shape == (2, 2)


def tokenizer_names_and_errors() -> None:
    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
    tok = cw.Tokenizer.from_file(os.path.join(fixtures, "tiny-gpt2", "tokenizer.json"))
    ids: List[int] = tok.encode("hello world")
    text: str = tok.decode(ids, skip_special_tokens=True)
    rows: List[List[int]] = tok.encode_batch(["a", "b"])
    token: Optional[str] = tok.id_to_token(ids[0])
    size: int = len(tok)
    assert text == "hello world" and len(rows) == 2 and token is not None and size == tok.vocab_size
    tiny = cw.Model.from_config(cw.ModelConfig.for_family("gpt2", vocab_size=tok.vocab_size, hidden_size=32, num_layers=1,
                                                          num_heads=2, head_dim=16, intermediate_size=64),
                                tokenizer=tok)
    bert = cw.load(os.path.join(fixtures, "tiny-bert-mlm"))
    fills: List[List[Dict[str, Any]]] = bert.fill_mask("paris is the [MASK] of france.", top_k=2)
    assert tiny.tokenizer is not None and len(fills[0]) == 2

    names: List[str] = cw.available_models()
    path: str = cw.resolve("smollm2-135m-instruct")
    assert "smollm2-135m-instruct" in names and path.endswith(".gguf")
    try:
        cw.load(os.devnull)
    except cw.ModelFileError as e:
        message: str = str(e)
        assert message
    version: str = cw.__version__
    assert version


if __name__ == "__main__":
    m = load_and_generate()
    stream(m)
    score_and_logits(m)
    sizes(m)
    build_and_train()
    prompts_and_objectives()
    tokenizer_names_and_errors()
    try:
        embed()
    except FileNotFoundError as missing:  # all-MiniLM-L6-v2 not installed
        print(f"skipped embed: {missing}")
    print("ok")
