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

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from ._model import Tokenizer

Example = Tuple[str, str]


def _check(instruction: Any, examples: Sequence[Any], query: Any) -> List[Example]:
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
    tokenizer: Optional["Tokenizer"] = None,
    system: Optional[str] = None,
) -> str:
    """A prompt with any number of labelled examples (0 = zero-shot): plain text, or with
    `tokenizer` (a cw.Tokenizer with a chat template) the chat of one user/assistant turn per
    example, after `system` when given, ending with the assistant's prompt.

        >>> print(cw.prompts.build("Translate to French.", [("cat", "chat")], "dog"))
        Translate to French.
        <BLANKLINE>
        Input: cat
        Output: chat
        <BLANKLINE>
        Input: dog
        Output:
    """
    examples = _check(instruction, examples, query)
    if tokenizer is not None:
        messages: List[Dict[str, str]] = [{"role": "system", "content": system}] if system else []
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


def zero_shot(instruction: Optional[str], query: str, *, input_prefix: str = "Input: ", output_prefix: str = "Output:",
              separator: str = "\n\n", tokenizer: Optional["Tokenizer"] = None, system: Optional[str] = None) -> str:
    """A prompt without examples (`build` with none).

        >>> cw.prompts.zero_shot("Answer the question.", "What is 2 + 2?", output_prefix="A:")
        'Answer the question.\\n\\nInput: What is 2 + 2?\\nA:'
    """
    return build(instruction, [], query, input_prefix, output_prefix, separator, tokenizer, system)


def one_shot(instruction: Optional[str], example: Example, query: str, *, input_prefix: str = "Input: ",
             output_prefix: str = "Output:", separator: str = "\n\n", tokenizer: Optional["Tokenizer"] = None,
             system: Optional[str] = None) -> str:
    """A prompt with one labelled (input, output) example (`build` with one).

        p = cw.prompts.one_shot(None, ("2 + 2", "4"), "3 + 5")   # 'Input: 2 + 2\\nOutput: 4\\n\\nInput: 3 + 5\\nOutput:'
    """
    return build(instruction, [example], query, input_prefix, output_prefix, separator, tokenizer, system)


def few_shot(instruction: Optional[str], examples: Sequence[Example], query: str, *, input_prefix: str = "Input: ",
             output_prefix: str = "Output:", separator: str = "\n\n", tokenizer: Optional["Tokenizer"] = None,
             system: Optional[str] = None) -> str:
    """A prompt with several labelled (input, output) examples (`build` with them).

        p = cw.prompts.few_shot("Classify the sentiment.", [("I loved it", "positive"), ("Awful.", "negative")],
                                "What a great day")
        model.score(p, [" positive", " negative"])   # the likelier label is the answer
    """
    return build(instruction, examples, query, input_prefix, output_prefix, separator, tokenizer, system)
