"""Follow-up questions in a conversation: which ones lean on earlier turns, and whether a rewrite is safe.

A question is rewritten into a standalone one only when it holds an unresolved reference: a pronoun
("Who runs it?"), a demonstrative ("this chip"), or an elliptical opening ("And the year?", "What about
Baidu?"). A self-contained question ("Who won the 2024 Super Bowl?") is never rewritten, however short.
A rewrite that drops any of the user's own content words is not used: the question is answered as asked.

Not handled: references by description alone ("the company" after two companies were named) are left to
the rewrite model; history is the last two turns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .vocab import DEMONSTRATIVES, NAME_GROUP, PRONOUNS, strip_markers, terms

Turn = tuple[str, str]  # (user question, assistant answer or "")

_PRONOUN = re.compile(r"\b(" + "|".join((*PRONOUNS, "itself", "themselves", *DEMONSTRATIVES, "the same", "the former",
                                          "the latter", "there")) + r")\b", re.IGNORECASE)
# "that" is a pronoun only at the end or after a verb/preposition ("about that?", "did that"), not in
# "the fund that invested".
_THAT = re.compile(r"\b(about|of|for|with|is|was|did|does|do|say|said|mean|cause|caused)\s+that\b|\bthat\s*\?*$",
                   re.IGNORECASE)
_ELLIPTIC = re.compile(r"^\W*(and|also|but|so|then|what about|how about|what of|same for|what else|"
                       r"who else|any other|why not)\b", re.IGNORECASE)
# Words a rewrite may drop: the references themselves and question scaffolding.
_REFERENCE_WORDS = frozenset(terms(" ".join((*PRONOUNS, *DEMONSTRATIVES)) + " that there same former latter and also "
                                   "but so then about else other"))


def needs_context(question: str) -> bool:
    """The question leans on an earlier turn.

    >>> needs_context("Who runs it?"), needs_context("And the year?"), needs_context("What about Baidu?")
    (True, True, True)
    >>> needs_context("Who won the 2024 Super Bowl?"), needs_context("Which fund that invested in X led?")
    (False, False)
    """
    q = question.strip()
    return bool(_PRONOUN.search(q) or _THAT.search(q) or _ELLIPTIC.match(q))


# A possessive or demonstrative and the noun it points with ("his company", "these moves"): the whole phrase
# is the reference, and a rewrite may put the name it means in its place ("ByteDance").
_POINTING = re.compile(r"\b(?:his|her|its|their|this|that|these|those)\s+([a-z][\w-]*)", re.IGNORECASE)


def keeps_content(question: str, rewrite: str) -> bool:
    """Every content word of the user's question is still in the rewrite (stemmed), but for the references
    themselves: a pronoun, and the noun a possessive or demonstrative points with.

    >>> keeps_content("And who founded it?", "Who founded AIsphere?")
    True
    >>> keeps_content("Where is his company based?", "Where is ByteDance based?")
    True
    >>> keeps_content("Who won the 2024 Super Bowl?", "Who founded AIsphere?")
    False
    """
    pointed = set(terms(" ".join(m.group(1) for m in _POINTING.finditer(question))))
    own = set(terms(question)) - _REFERENCE_WORDS - pointed
    return own <= set(terms(rewrite))


_ABOUT = re.compile(r"^\W*(?:and\s+)?(?:what|how)\s+about\s+(.+?)\W*$", re.IGNORECASE)
_NAME = re.compile(r"(?<!^)(?<![.?!]\s)" + NAME_GROUP.pattern)  # not the capital that opens a sentence


def substitute(question: str, previous: str) -> str | None:
    """"What about X?" as the previous question with its first name replaced by X, which the small
    model's rewrite often fails to do; None for any other question.

    >>> substitute("What about Baidu?", "Which company's chips does ByteDance use for AI model training?")
    "Which company's chips does Baidu use for AI model training?"
    """
    m = _ABOUT.match(question.strip())
    names = [n for n in _NAME.finditer(previous) if n.group(0) not in ("AI", "US", "I")]
    if not m or not names:
        return None
    n = names[0]
    return previous[:n.start()] + m.group(1) + previous[n.end():]


def turns(history: Sequence[str | Mapping[str, Any]] | None) -> list[Turn]:
    """Earlier turns from either a list of earlier questions or OpenAI-style messages
    (``{"role": "user"|"assistant", "content": str}``); an assistant message belongs to the user message
    before it."""
    out: list[Turn] = []
    for item in history or ():
        if isinstance(item, str):
            if item.strip():
                out.append((item.strip(), ""))
            continue
        role, content = item.get("role"), item.get("content")
        if not isinstance(content, str) or not content.strip():
            continue
        if role == "user":
            out.append((content.strip(), ""))
        elif role == "assistant" and out and not out[-1][1]:
            out[-1] = (out[-1][0], strip_markers(content))
    return out
