"""Zero- vs one- vs few-shot sentiment classification with SmolLM2, by scoring the labels.

    python examples/few_shot.py [--model smollm2-135m-instruct] [--chat]

Each test sentence gets a prompt with 0, 1 or 4 labelled examples (cw.prompts); the model scores
each label as a continuation (model.score, lm-evaluation-harness boundaries) and the likelier one
is the prediction. Prints accuracy per setting. The labelled set is written for this example.
"""

import argparse
import time
from typing import Any, Dict

import candlewick as cw

INSTRUCTION = "Decide whether the sentiment of the review is positive or negative."
LABELS = ["positive", "negative"]

# Examples shown to the model (never in the test set).
SHOTS = [
    ("The food was delicious and the staff were friendly.", "positive"),
    ("It broke after two days and support never answered.", "negative"),
    ("A wonderful film, I would watch it again tomorrow.", "positive"),
    ("Boring plot, terrible acting, a waste of money.", "negative"),
]

TEST = [
    ("Absolutely loved this phone, the battery lasts forever.", "positive"),
    ("The hotel room was dirty and smelled of smoke.", "negative"),
    ("Great value for the price, I am very happy with it.", "positive"),
    ("The delivery was late and the box arrived crushed.", "negative"),
    ("Best concert I have been to in years!", "positive"),
    ("I regret buying this; it stopped working within a week.", "negative"),
    ("The teacher explains everything clearly and patiently.", "positive"),
    ("Awful customer service, they hung up on me twice.", "negative"),
    ("My kids adore this game and play it every day.", "positive"),
    ("The soup was cold and far too salty.", "negative"),
    ("A charming little cafe with the best coffee in town.", "positive"),
    ("The app crashes every time I open it.", "negative"),
    ("Comfortable shoes, I walked all day without any pain.", "positive"),
    ("The book was dull and I gave up halfway through.", "negative"),
    ("Fast shipping and the quality exceeded my expectations.", "positive"),
    ("Loud neighbours, thin walls and a broken heater.", "negative"),
    ("The new update made everything faster and smoother.", "positive"),
    ("Overpriced and underwhelming, I will not be back.", "negative"),
    ("What a beautiful hike, the views were breathtaking.", "positive"),
    ("The instructions were confusing and parts were missing.", "negative"),
    ("Friendly staff who went out of their way to help us.", "positive"),
    ("The movie dragged on for three hours with no point.", "negative"),
    ("This blender is powerful, quiet and easy to clean.", "positive"),
    ("My order was wrong and the refund took a month.", "negative"),
]


def classify(model, prompt):
    scores = model.score(prompt, [" " + label for label in LABELS] if not prompt.endswith("\n") else LABELS)
    return LABELS[max(range(len(LABELS)), key=lambda i: scores[i].logprob)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--chat", action="store_true", help="build the prompts with the model's chat template")
    args = ap.parse_args()
    model = cw.load(args.model)
    kw: Dict[str, Any] = {"input_prefix": "Review: ", "output_prefix": "Sentiment:"}
    if args.chat:
        kw = {"tokenizer": model.tokenizer}
    settings = {"zero-shot": [], "one-shot": SHOTS[:1], "few-shot (4)": SHOTS}
    print(f"{len(TEST)} reviews, labels {LABELS}, {'chat template' if args.chat else 'plain prompts'}")
    for name, shots in settings.items():
        t0 = time.perf_counter()
        correct = sum(classify(model, cw.prompts.build(INSTRUCTION, shots, x, **kw)) == y for x, y in TEST)
        dt = time.perf_counter() - t0
        print(f"{name:>13}: accuracy {correct}/{len(TEST)} = {correct / len(TEST):.0%}  ({dt:.1f} s)")


if __name__ == "__main__":
    main()
