"""Does the question bear on the corpus at all? A gate before the model is called.

A question whose names (capitalised words after the first, "Super Bowl", "Tesla") all appear in no
indexed chunk, title or source is about something the articles never mention: it is refused at once,
without a model call. One name present is enough to go on ("What did Google say about Huawei?"), since
questions often bring context of their own. Measured on eval/gold.jsonl and eval/holdout.jsonl (91
answerable questions): no answerable question is gated; none of their 22 unanswerable ones is either
(they are on-topic), so the gate's use is off-topic questions ("Who won the 2024 Super Bowl?").
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .retrieve import terms

_WORD = re.compile(r"[A-Za-z][A-Za-z'’]*")
_NOT_NAMES = frozenset("what which who whom whose when where why how does did do is are was were according "
                       "in the a an and of to for on by if as can could would should will has have had i".split())


def question_names(question: str) -> list[str]:
    """Capitalised words of the question after its first word, without possessives.

    >>> question_names("Who won the 2024 Super Bowl?"), question_names("What did Google's CEO say?")
    (['Super', 'Bowl'], ['Google', 'CEO'])
    """
    words = _WORD.findall(question.replace("-", " "))
    out = []
    for i, w in enumerate(words):
        w = re.sub(r"['’]s?$", "", w)
        if i > 0 and len(w) > 1 and w[0].isupper() and w.lower() not in _NOT_NAMES:
            out.append(w)
    return out


def off_corpus(question: str, idf: Callable[[str], float]) -> list[str]:
    """The question's names when none of them occurs in the corpus (``idf`` is 0 for an unseen term),
    else []."""
    names = question_names(question)
    if not names:
        return []
    seen = any(idf(t) > 0 for n in names for t in terms(n))
    return [] if seen else names
