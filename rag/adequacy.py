"""Does an answer sentence answer the question? Two checks on top of citation support (``cite``):

* **Echo**: a small model often restates the question as if it were the answer ("Which chip does X
  match?" -> "X matches the chip [1]."). A sentence that adds no content word to the question's says
  nothing, however well a passage supports it.
* **Kind**: a question that asks for a date (a weekday answers "on what day"), a year, a month, a sum of
  money, a count or an amount in a named unit ("(in points)") is not answered by a sentence without one
  ("held last week", "rose 11.4 per cent"); a "When ...?" question by a sentence without any time
  ("Sinodata has joined the programme").
"""

from __future__ import annotations

import re

from .question import Question, as_question
from .vocab import AMOUNT_WORDS, MARKER, MONTHS, NUMBER_WORDS, UNIT_ABBREV, WEEKDAYS, terms

# Words that add nothing to a restated question ("X was introduced", "the article says ...").
_FILLER = frozenset(terms(
    "said says stated states mentioned mentions noted notes reported reports described describes introduced "
    "introduces according article articles passage passages commentary text question answer thing things "
    "one some specific certain particular"))

_MONTH = re.compile(r"\b(" + "|".join(MONTHS) + r")\b\.?", re.IGNORECASE)
_YEAR = re.compile(r"\b(1[89]|20)\d\d\b")
_ISO_DATE = re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b")
_WEEKDAY = re.compile(r"\b(" + "|".join(WEEKDAYS) + r")\b", re.IGNORECASE)
_DAY_MONTH = re.compile(r"\b\d{1,2}(st|nd|rd|th)?\s+(of\s+)?(" + "|".join(MONTHS) + r")\b|\b("
                        + "|".join(MONTHS) + r")\.?\s+\d{1,2}(st|nd|rd|th)?\b", re.IGNORECASE)
# What answers "when": besides a date, month or year, a weekday, a season or a relative time ("last week",
# "two years ago", "after the holiday").
_TIME = re.compile(r"\b(" + "|".join(WEEKDAYS) + r"|spring|summer|autumn|fall|winter|"
                   r"today|yesterday|tomorrow|tonight|recently|ago|soon|now|currently|earlier|later|week|weekend|"
                   r"month|year|years|decade|quarter|holiday|since|until|before|after|during|once)\b", re.IGNORECASE)
# A quantity: digits not inside a name ("H20", "910B" are models, not amounts), or a number word.
_QUANTITY = re.compile(r"(?<![A-Za-z\d.,])\d[\d.,]*(?-i:(?![A-Z\d]))|\b(" + "|".join((*NUMBER_WORDS, *AMOUNT_WORDS))
                       + r")\b", re.IGNORECASE)
_MONEY = re.compile(r"(US\$|HK\$|\$|£|€|¥|\bRMB|\bUSD)\s?\d|\d[\d.,]*\s*(million|billion|trillion|m|bn)?\s*"
                    r"(yuan|dollars?|euros?|pounds?|yen)\b", re.IGNORECASE)
# A number before a unit: digits, or a number word or magnitude ("seven nanometres", "a million tonnes").
_NUMBER_BEFORE = r"(\d[\d.,]*|\b(?:" + "|".join((*NUMBER_WORDS, "hundred", "thousand", "million")) + r"))"


def new_terms(sentence: str, question: str | Question) -> set[str]:
    """Content terms (stemmed) of ``sentence`` that the question does not already hold."""
    return set(terms(MARKER.sub(" ", sentence))) - set(as_question(question).terms) - _FILLER


def is_echo(sentence: str, question: str | Question) -> bool:
    """The sentence only restates the question.

    >>> is_echo("The Nvidia chip is considered by some to match the Ascend 910B [1].",
    ...         "Which Nvidia chip is the Ascend 910B considered by some to match?")
    True
    >>> is_echo("It matches the Nvidia A100 [1].", "Which Nvidia chip does the Ascend 910B match?")
    False
    """
    return not new_terms(sentence, question)


def gives_kind(answer: str, kind: str | None, question: str | Question = "") -> bool:
    """The answer holds something of the kind asked for (any answer does when ``kind`` is None);
    numbers the question already holds ("sold in 2023") do not count.

    >>> gives_kind("It was held last week.", "date"), gives_kind("It opened on July 4.", "date")
    (False, True)
    >>> gives_kind("It was announced on Friday.", "date")  # "On what day ...?" is answered by a weekday too
    True
    >>> gives_kind("The index rose 11.4 per cent.", "unit:points"), gives_kind("It hit 950 points.", "unit:points")
    (False, True)
    >>> gives_kind("Huawei sold phones in 2023.", "number", "How many phones did Huawei sell in 2023?")
    False
    >>> gives_kind("It makes the H20 and the 910B.", "number"), gives_kind("It costs US$14m.", "number")
    (False, True)
    >>> gives_kind("It made three GPUs.", "money"), gives_kind("It raised US$14 million.", "money")
    (False, True)
    >>> gives_kind("Sinodata has joined the programme.", "time"), gives_kind("The talks are this spring.", "time")
    (False, True)
    >>> gives_kind("It is made on a node (in nanometres) like two-year-old chips.", "unit:nanometres")
    False
    >>> gives_kind("It is made on a 7nm node.", "unit:nanometres")
    True
    """
    if kind is None:
        return True
    for n in set(as_question(question).numbers if question else ()):
        answer = re.sub(r"(?<![\d.,])" + re.escape(n) + r"(?![\d]|[.,]\d)", " ", answer)
    if kind == "date":
        return bool(_DAY_MONTH.search(answer) or _ISO_DATE.search(answer) or _WEEKDAY.search(answer))
    if kind == "month":
        return bool(_MONTH.search(answer) or _ISO_DATE.search(answer))
    if kind == "year":
        return bool(_YEAR.search(answer))
    if kind == "time":
        return any(p.search(answer) for p in (_MONTH, _YEAR, _ISO_DATE, _TIME))
    if kind == "money":
        return bool(_MONEY.search(answer))
    if kind == "number":
        return bool(_QUANTITY.search(answer))
    unit = kind.removeprefix("unit:")
    stem = (terms(unit) or [unit])[0]
    abbrev = next((a for prefix, a in UNIT_ABBREV.items() if stem.startswith(prefix)), None)
    unit_re = re.escape(stem[:5]) + r"\w*" + (f"|{re.escape(abbrev)}" if abbrev else "")
    return bool(re.search(_NUMBER_BEFORE + r"[\s-]*(?:\w+\s+)?(" + unit_re + r")(?!\w)", answer, re.IGNORECASE))
