"""Prompts for in-context learning: zero-, one- and few-shot, plain or through a chat template.

    p = cw.prompts.few_shot("Classify the sentiment.", [("I loved it", "positive"),
                             ("Awful.", "negative")], "What a great day")
    model.score(p, [" positive", " negative"])   # pick the likelier label

Plain prompts read::

    {instruction}

    {input_prefix}{example input}
    {output_prefix} {example output}

    {input_prefix}{query}
    {output_prefix}

so a label is scored as the continuation " label". With `tokenizer=` (a cw.Tokenizer with a chat
template) each example becomes a user/assistant turn and the result ends with the assistant prompt.
"""

from typing import Optional, Sequence, Tuple

Example = Tuple[str, str]


def _check(instruction, examples, query):
    if instruction is not None and not isinstance(instruction, str):
        raise TypeError("instruction must be a str or None")
    if not isinstance(query, str):
        raise TypeError("query must be a str")
    out = []
    for e in examples:
        if not (isinstance(e, (tuple, list)) and len(e) == 2 and all(isinstance(x, str) for x in e)):
            raise TypeError("examples must be (input, output) pairs of strings")
        out.append((e[0], e[1]))
    return out


def build(
    instruction: Optional[str],
    examples: Sequence[Example],
    query: str,
    input_prefix: str = "Input: ",
    output_prefix: str = "Output:",
    separator: str = "\n\n",
    tokenizer=None,
    system: Optional[str] = None,
) -> str:
    """A prompt with any number of labelled examples (0 = zero-shot)."""
    examples = _check(instruction, examples, query)
    if tokenizer is not None:
        messages = [{"role": "system", "content": system}] if system else []
        head = f"{instruction}\n\n" if instruction else ""
        for i, (x, y) in enumerate(examples):
            messages.append({"role": "user", "content": (head if i == 0 else "") + x})
            messages.append({"role": "assistant", "content": y})
        messages.append({"role": "user", "content": (head if not examples else "") + query})
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    parts = [instruction] if instruction else []
    parts += [f"{input_prefix}{x}\n{output_prefix} {y}" for x, y in examples]
    parts.append(f"{input_prefix}{query}\n{output_prefix}")
    return separator.join(parts)


def zero_shot(instruction: Optional[str], query: str, **kw) -> str:
    return build(instruction, [], query, **kw)


def one_shot(instruction: Optional[str], example: Example, query: str, **kw) -> str:
    return build(instruction, [example], query, **kw)


def few_shot(instruction: Optional[str], examples: Sequence[Example], query: str, **kw) -> str:
    return build(instruction, examples, query, **kw)
