"""Pictures of what the engine does, drawn with matplotlib (an optional extra:
`pip install 'candlewick[plot]'`). Each function returns a matplotlib Figure and, given
`path`, also saves it as a PNG.

    import candlewick as cw
    model = cw.load("smollm2-135m-instruct")
    cw.plot.sampling(model, "The capital of France is", temperature=0.7, top_k=10, top_p=0.9, path="s.png")
"""

import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

import numpy as np

from . import _native

if TYPE_CHECKING:
    from typing import Protocol

    from ._model import Model

    # what the pictures read of a cw.MemoryEstimate and a cw.TrainResult (whose plot() methods
    # call these functions, so this module does not import theirs)
    class _Estimate(Protocol):
        @property
        def source(self) -> str: ...
        @property
        def num_parameters(self) -> int: ...
        @property
        def breakdown(self) -> Dict[str, int]: ...
        @property
        def seq_len(self) -> Optional[int]: ...
        @property
        def dtype(self) -> str: ...
        @property
        def training(self) -> bool: ...

    class _Run(Protocol):
        @property
        def history(self) -> List[Dict[str, float]]: ...
        @property
        def evals(self) -> List[Dict[str, float]]: ...


__all__ = ["attention", "memory", "sampling", "training"]

# one colour per memory item, fixed so the same item looks the same in every picture
_ITEM_COLOURS = {
    "weights": "#4C72B0", "kv_cache": "#55A868", "activations": "#C44E52", "gradients": "#8172B2",
    "optimizer_states": "#CCB974", "master_weights": "#64B5CD",
}


def _pyplot() -> Any:
    try:
        # matplotlib picks its backend (Agg where there is no display); a user's choice stands
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("candlewick's plots need matplotlib: pip install 'candlewick[plot]'") from None
    return plt


def _finish(fig: Any, path: Optional[Union[str, "os.PathLike[str]"]]) -> Any:
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), format="png", dpi=100)
    return fig


def _label(tokenizer: Any, i: int) -> str:
    if tokenizer is None:
        return str(i)
    text = tokenizer.decode([int(i)])
    return repr(text)[1:-1] if text.strip() else repr(text)


def sampling(source: Union["Model", Sequence[float], np.ndarray], prompt: Optional[str] = None, *,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0,
             top_n: int = 20, tokenizer: Any = None, path: Optional[Union[str, "os.PathLike[str]"]] = None) -> Any:
    """The next-token distribution before and after each step of the sampler: the plain softmax,
    then temperature (flattens above 1, sharpens below), top-k, top-p and min-p (what each cuts),
    as far as each is set, one panel per step over the `top_n` most probable tokens. The steps
    are the engine's own sampler (cw.sample's), not a re-implementation. `source`: 1-D logits, or
    a decoder model with `prompt` (its logits for the next token; tokens labelled as text).

        fig = cw.plot.sampling(model, "Once upon a", temperature=0.8, top_k=8, top_p=0.9, path="sampling.png")
    """
    from ._model import Model

    if isinstance(source, Model):
        if not isinstance(prompt, str):
            raise TypeError("a model needs a prompt (str) for its next-token logits")
        tok = source._tokenizer()
        logits = np.asarray(source.logits(tok.encode(prompt))[-1], dtype=np.float32)
        tokenizer = tokenizer or tok
        title = f"next token after {prompt[-40:]!r}"
    else:
        if prompt is not None:
            raise TypeError("prompt applies to a model; logits were given")
        logits = np.ascontiguousarray(np.asarray(source, dtype=np.float32))
        title = "next-token distribution"
    if logits.ndim != 1 or logits.size == 0:
        raise ValueError(f"logits must be a non-empty 1-D array, got shape {logits.shape}")
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n <= 0:
        raise ValueError(f"top_n must be a positive int, got {top_n!r}")
    stages = _native.sampling_stages(logits, float(temperature), int(top_k), float(top_p), float(min_p))
    plt = _pyplot()
    base = stages[0][1]
    shown = np.argsort(-base, kind="stable")[: min(top_n, logits.size)]
    labels = [_label(tokenizer, int(i)) for i in shown]
    fig, axes = plt.subplots(len(stages), 1, figsize=(max(6.0, 0.42 * len(shown) + 2), 1.9 * len(stages) + 0.8),
                             sharex=True, squeeze=False)
    x = np.arange(len(shown))
    prev = base
    for ax, (name, probs) in zip(axes[:, 0], stages):
        p = probs[shown]
        kept = p > 0
        ax.bar(x[kept], p[kept], color="#4C72B0")
        # a token this step cut: an empty bar as high as it stood before the step
        ax.bar(x[~kept], prev[shown][~kept], color="none", edgecolor="#BBBBBB", hatch="//", linewidth=0.6)
        left = int((probs > 0).sum())
        ax.set_ylabel("p")
        ax.set_title(f"{name}: {left} of {logits.size} tokens kept, most probable {probs.max():.3f}", fontsize=9,
                     loc="left")
        prev = np.where(probs > 0, probs, prev)
        ax.set_ylim(0, max(float(probs.max()), float(base.max())) * 1.12)
    axes[-1, 0].set_xticks(x)
    axes[-1, 0].set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    fig.suptitle(title + " (hatched: cut)", fontsize=10)
    return _finish(fig, path)


def memory(estimates: Union["_Estimate", Sequence["_Estimate"]],
           path: Optional[Union[str, "os.PathLike[str]"]] = None) -> Any:
    """Memory estimates as stacked bars, one bar per estimate (e.g. one per dtype), one colour
    per item (weights, KV cache, activations, training states), in GiB.

        fig = cw.plot.memory([cw.estimate_memory("1B", dtype=d) for d in ("float32", "bfloat16", "q4_0")])
    """
    ests: List[_Estimate] = [estimates] if not isinstance(estimates, Sequence) else list(estimates)
    if not ests or not all(hasattr(e, "breakdown") and hasattr(e, "dtype") for e in ests):
        raise TypeError("estimates must be a cw.MemoryEstimate or a non-empty list of them")
    plt = _pyplot()
    items = [k for k in _ITEM_COLOURS if any(e.breakdown.get(k, 0) for e in ests)]
    items += sorted({k for e in ests for k, v in e.breakdown.items() if v and k not in items})
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(ests) + 2.5), 4.2))
    x = np.arange(len(ests))
    bottom = np.zeros(len(ests))
    for k in items:
        v = np.array([e.breakdown.get(k, 0) for e in ests], dtype=np.float64) / 2**30
        ax.bar(x, v, bottom=bottom, label=k.replace("_", " "), color=_ITEM_COLOURS.get(k))
        bottom += v
    for xi, total in zip(x, bottom):
        ax.annotate(f"{total:.2f}", (xi, total), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{e.dtype}\n{'training' if e.training else 'inference'}" for e in ests], fontsize=8)
    ax.set_ylabel("GiB")
    ax.set_ylim(0, float(bottom.max()) * 1.15 or 1.0)
    seq = f", seq_len {ests[0].seq_len}" if ests[0].seq_len else ""
    ax.set_title(f"{os.path.basename(ests[0].source) or ests[0].source}: {ests[0].num_parameters:,} parameters{seq}",
                 fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _finish(fig, path)


def attention(model: "Model", text: Union[str, Sequence[int]], layer: int = -1, head: Optional[int] = None,
              path: Optional[Union[str, "os.PathLike[str]"]] = None) -> Any:
    """A layer's attention weights over the tokens of `text` as a heatmap: rows are the
    attending (query) tokens, columns the attended (key) tokens; `head` picks one head, None
    averages them. Negative layer numbers count from the last.

        fig = cw.plot.attention(model, "The cat sat on the mat", layer=0, head=3)
    """
    from ._model import Model

    if not isinstance(model, Model):
        raise TypeError(f"model must be a cw.Model, got {type(model).__name__}")
    for name, v in (("layer", layer), ("head", head)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    out = model.forward(text if isinstance(text, str) else list(text), output_attentions=True)
    attn = out.attentions or []
    if not attn:
        raise ValueError(f"this {model.config.architecture} model has no attention weights to draw")
    if not -len(attn) <= layer < len(attn):
        raise ValueError(f"layer {layer} is out of range: the model has {len(attn)} layers")
    a = np.asarray(attn[layer])  # [heads, q, k]
    if head is not None and not -a.shape[0] <= head < a.shape[0]:
        raise ValueError(f"head {head} is out of range: the layer has {a.shape[0]} heads")
    w = a.mean(axis=0) if head is None else a[head]
    tok = model.tokenizer
    ids = tok.encode(text) if isinstance(text, str) and tok is not None else list(text) if not isinstance(text, str) else []
    labels = [_label(tok, i) for i in ids] if len(ids) == w.shape[0] else [str(i) for i in range(w.shape[0])]
    plt = _pyplot()
    n = w.shape[0]
    side = min(12.0, max(4.0, 0.35 * n + 2))
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=float(w.max()) or 1.0)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("attended token (key)")
    ax.set_ylabel("attending token (query)")
    layer_no = layer % len(attn)
    ax.set_title(f"layer {layer_no}, {'mean of ' + str(a.shape[0]) + ' heads' if head is None else 'head ' + str(head % a.shape[0])}",
                 fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _finish(fig, path)


def training(result: "_Run", path: Optional[Union[str, "os.PathLike[str]"]] = None) -> Any:
    """Loss (and evaluation loss, when evaluated) and learning rate by step of a cw.train run.

        fig = cw.plot.training(cw.train(model, texts, steps=100), path="loss.png")
    """
    if not (hasattr(result, "history") and hasattr(result, "evals")):
        raise TypeError(f"result must be a cw.TrainResult, got {type(result).__name__}")
    if not result.history:
        raise ValueError("the run has no steps to plot")
    plt = _pyplot()
    steps = [h["step"] for h in result.history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [h["loss"] for h in result.history], color="#4C72B0", label="train loss")
    if result.evals:
        ax.plot([e["step"] for e in result.evals], [e["loss"] for e in result.evals], "o-", color="#C44E52",
                label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    lr = ax.twinx()
    lr.plot(steps, [h["lr"] for h in result.history], color="#999999", linestyle="--", label="learning rate")
    lr.set_ylabel("learning rate")
    lines = ax.get_legend_handles_labels()
    more = lr.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper right")
    ax.set_title(f"{len(steps)} steps, final loss {result.history[-1]['loss']:.4f}", fontsize=9)
    return _finish(fig, path)
