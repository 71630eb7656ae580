"""The question's analysis, done once and handed down as a record: its parts, key terms, the kind of answer it
asks for, its names and numbers. Retrieval, evidence selection, the relevance gate and the checks read this
record instead of each re-deriving pieces of the question.

Rules, not a parser: a part is split off at ", and which/how/...", a name is a word holding a capital after the
first, and the kind comes from a few phrasings ("how many", "in what year", "(in points)").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .vocab import MEASURES, NAME_GROUP, NUMBER, QUESTION_WORDS, terms

_PART = re.compile(r"(?:,?\s+and\s+|;\s*|\?\s+)(?=(?:which|what|who|whom|whose|how|when|where|why|in which|"
                   r"on which|at which)\b)", re.IGNORECASE)
_KINDS = (
    ("date", re.compile(r"\b(what|which|exact)\s+(exact\s+)?(date|dates|day|days)\b|\bon what day\b", re.I)),
    ("month", re.compile(r"\b(what|which) month\b", re.I)),
    ("year", re.compile(r"\b(what|which) year\b|\bin what year\b", re.I)),
    ("money", re.compile(r"\bhow much\b.*\b(money|funding|raise|raised|pay|paid|spend|spent|invest|invested|"
                         r"cost|costs|worth)\b|\b(what|which)\s+(\w+\s+){0,3}(price|cost|valuation|salary|fee|fine)\b",
                         re.I)),
    ("number", re.compile(r"\bhow (many|much|old)\b|\b(what|which) (percentage|share|number|amount|sum|figure)\b",
                          re.I)),
    ("time", re.compile(r"^\W*(and\s+)?when\b", re.I)),  # "When did ...?": any date, year, month or time phrase
)
# "(in points)", or "in <unit>" for a unit of measure: "What is its performance in teraflops?"
_UNIT = re.compile(r"\(in ([a-z]+)\)|\bin (" + MEASURES + r")\b", re.IGNORECASE)
_WORDS = re.compile(r"[A-Za-z][A-Za-z'’]*(?:-[A-Za-z0-9][A-Za-z0-9'’]*)*")


@dataclass(frozen=True)
class Question:
    """One question, analysed. ``terms`` are stemmed (``vocab.terms``, in order); ``idf`` weighs each term of
    the question and its parts when an index was at hand (0 for a term no chunk holds); ``kind`` is what
    ``expected_kind`` says; ``names`` are its capitalised words after the first (``question_names``),
    ``name_groups`` its runs of capitalised words ("Zhou Hongyi"), ``numbers`` its digit strings."""

    text: str
    parts: tuple[str, ...]
    terms: tuple[str, ...]
    kind: str | None
    names: tuple[str, ...]
    name_groups: tuple[str, ...]
    numbers: tuple[str, ...]
    idf: dict[str, float] | None = field(default=None, compare=False)

    @classmethod
    def analyse(cls, text: str, idf: Callable[[str], float] | None = None) -> Question:
        """The record for ``text``; ``idf`` (e.g. ``Retriever.idf``) is looked up once per term.

        >>> q = Question.analyse("Which chip powers Huawei's Mate 60, and how many did it sell in 2023?")
        >>> q.parts
        ("Which chip powers Huawei's Mate 60", 'how many did it sell in 2023?')
        >>> q.kind, q.names, q.numbers, q.part(1).kind
        ('number', ('Huawei', 'Mate'), ('60', '2023'), 'number')
        """
        parts = tuple(question_parts(text))
        weights = None
        if idf is not None:
            weights = {t: idf(t) for p in (text, *parts) for t in terms(p)}
        return cls(text=text, parts=parts, terms=tuple(terms(text)), kind=expected_kind(text),
                   names=tuple(question_names(text)), name_groups=tuple(NAME_GROUP.findall(text)),
                   numbers=tuple(NUMBER.findall(text)), idf=weights)

    @property
    def compound(self) -> bool:
        return len(self.parts) > 1

    def weight(self, term: str) -> float:
        """The term's idf, or 1.0 without an index (every term counts the same)."""
        return 1.0 if self.idf is None else self.idf.get(term, 1.0)

    def part(self, i: int) -> Question:
        """Part ``i`` as a question of its own (its kind, its terms)."""
        return Question.analyse(self.parts[i]) if self.compound else self


def as_question(question: str | Question, idf: Callable[[str], float] | None = None) -> Question:
    """``question`` itself when already analysed, else its analysis."""
    return question if isinstance(question, Question) else Question.analyse(question, idf)


def question_parts(question: str) -> list[str]:
    """The parts of a compound question ("Which chip ..., and how much ...?"), or the question alone.

    >>> question_parts("Who founded it, and which city is it in?")
    ['Who founded it', 'which city is it in?']
    """
    parts = [p.strip(" ,;") for p in _PART.split(question)]
    parts = [p for p in parts if len(p.split()) >= 3]
    return parts if len(parts) > 1 else [question]


def question_names(question: str) -> list[str]:
    """Words of the question after its first word that hold a capital (names, "USB-C", "myNEWS"),
    without possessives; a hyphenated word stays whole.

    >>> question_names("Who won the 2024 Super Bowl?"), question_names("What did Google's CEO say?")
    (['Super', 'Bowl'], ['Google', 'CEO'])
    >>> question_names("Which article is about a USB-C cable on myNEWS?")
    ['USB-C', 'myNEWS']
    """
    words = _WORDS.findall(question)
    out = []
    for i, w in enumerate(words):
        w = re.sub(r"['’]s?$", "", w)
        if i > 0 and len(w) > 1 and any(c.isupper() for c in w) and w.lower() not in QUESTION_WORDS:
            out.append(w)
    return out


def expected_kind(question: str) -> str | None:
    """What the question asks for: ``date``, ``month``, ``year``, ``money``, ``number``, ``time``,
    ``unit:<word>`` or None.

    >>> expected_kind("On what exact dates was the fair held?"), expected_kind("How many firms joined?")
    ('date', 'number')
    >>> expected_kind("What level (in points) did the index reach?"), expected_kind("Who said it?")
    ('unit:points', None)
    >>> expected_kind("What is the chip's performance in teraflops?"), expected_kind("Who invested in AI?")
    ('unit:teraflops', None)
    >>> expected_kind("How old is the founder?"), expected_kind("When did Sinodata join?")
    ('number', 'time')
    >>> expected_kind("What did he say when the ban came?")
    """
    unit = _UNIT.search(question)
    if unit:
        return f"unit:{(unit.group(1) or unit.group(2)).lower()}"
    return next((kind for kind, pattern in _KINDS if pattern.search(question)), None)
