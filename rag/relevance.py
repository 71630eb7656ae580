"""Does the question bear on the corpus at all? A gate before the model is called.

A question whose names (capitalised words after the first, "Super Bowl", "Tesla") all appear in no
indexed chunk, title or source is about something the articles never mention: it is refused at once,
without a model call. One name present is enough to go on ("What did Google say about Huawei?"), since
questions often bring context of their own. Measured on eval/gold.jsonl and eval/holdout.jsonl (91
answerable questions): no answerable question is gated; none of their 22 unanswerable ones is either
(they are on-topic), so the gate's use is off-topic questions ("Who won the 2024 Super Bowl?").
"""

from __future__ import annotations

from collections.abc import Callable

from .question import Question, as_question
from .vocab import terms


def off_corpus(question: str | Question, idf: Callable[[str], float]) -> list[str]:
    """The question's names when none of them occurs in the corpus (``idf`` is 0 for an unseen term),
    else []."""
    names = as_question(question).names
    if not names:
        return []
    # "US-China" is seen where the articles write "US-China", or "US" and "China" apart
    seen = any(idf(t) > 0 for n in names for t in {*terms(n), *terms(n.replace("-", " "))})
    return [] if seen else list(names)
