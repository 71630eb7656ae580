"""Pure evaluation metrics: plain inputs in, a ``MetricResult`` (mean and per-item scores) out.

Kept free of I/O, models and the index so each metric can be unit-tested on hand-made cases and its
definition read in one place. Inputs are parallel lists, one entry per question (as in haystack's
evaluators); an item a metric does not apply to (e.g. refusal accuracy of an answerable question) scores
``None`` and is left out of the mean.

Spans are ``(article, start, end)`` with ``[start, end)`` Python string offsets into the article text,
the same convention as ``Citation`` and ``Passage``. A gold *evidence* item is the list of places its
quote occurs in the gold articles (usually exactly one).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

Span = tuple[str, int, int]  # (article, start, end)
Quoted = tuple[str, int, int, str]  # a citation: (article, start, end, quote)
Evidence = Sequence[Span]  # every occurrence of one gold quote

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-", "\u00a0": " "})


@dataclass(frozen=True)
class MetricResult:
    """A metric's mean over the items it applies to, and each item's score (``None``: not applicable)."""

    name: str
    score: float | None
    individual_scores: list[float | None] = field(default_factory=list)

    @property
    def n(self) -> int:
        """How many items the mean is over."""
        return sum(s is not None for s in self.individual_scores)


def _result(name: str, scores: list[float | None]) -> MetricResult:
    vals = [s for s in scores if s is not None]
    return MetricResult(name, sum(vals) / len(vals) if vals else None, scores)


def _same_length(*seqs: Sequence[object]) -> None:
    if len({len(s) for s in seqs}) > 1:
        raise ValueError(f"parallel inputs differ in length: {[len(s) for s in seqs]}")


# -- spans -------------------------------------------------------------------------------------------
def locate(quote: str, text: str) -> list[tuple[int, int]]:
    """Every ``[start, end)`` where ``quote`` occurs verbatim in ``text`` (overlapping hits included).

    >>> locate("ab", "xabyab")
    [(1, 3), (4, 6)]
    """
    out, at = [], text.find(quote) if quote else -1
    while at >= 0:
        out.append((at, at + len(quote)))
        at = text.find(quote, at + 1)
    return out


def evidence_spans(quotes: Sequence[str], docs: Sequence[str], texts: Mapping[str, str]) -> list[list[Span]]:
    """For each gold quote, its spans in the gold articles (empty when it is in none of them).

    >>> evidence_spans(["cold water"], ["a.txt"], {"a.txt": "a barrel of cold water"})
    [[('a.txt', 12, 22)]]
    """
    return [[(d, s, e) for d in docs for s, e in locate(q, texts.get(d, ""))] for q in quotes]


def overlaps(a: Span, b: Span) -> bool:
    """Same article and the half-open ranges intersect (touching ends do not count).

    >>> overlaps(("a", 0, 10), ("a", 9, 20)), overlaps(("a", 0, 10), ("a", 10, 20))
    (True, False)
    """
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def hits_evidence(span: Span, evidence: Sequence[Evidence]) -> bool:
    """Whether ``span`` overlaps any occurrence of any gold quote."""
    return any(overlaps(span, ev) for quote in evidence for ev in quote)


# -- retrieval ---------------------------------------------------------------------------------------
def recall_at_k(ranked: Sequence[Sequence[Span]], evidence: Sequence[Sequence[Evidence]], k: int
                ) -> MetricResult:
    """Per question, the share of its gold quotes overlapped by one of the top ``k`` passages.

    Questions without evidence (unanswerable) score ``None``.

    >>> ev = [[[("a", 0, 10)], [("b", 0, 10)]]]          # one question, two quotes
    >>> recall_at_k([[("a", 5, 30), ("c", 0, 9)]], ev, k=2).score  # 1 of 2 quotes found
    0.5
    """
    _same_length(ranked, evidence)
    scores: list[float | None] = []
    for passages, quotes in zip(ranked, evidence, strict=True):
        if not quotes:
            scores.append(None)
            continue
        top = passages[:k]
        scores.append(sum(any(overlaps(p, ev) for p in top for ev in q) for q in quotes) / len(quotes))
    return _result(f"recall@{k}", scores)


def mrr(ranked: Sequence[Sequence[Span]], evidence: Sequence[Sequence[Evidence]]) -> MetricResult:
    """Mean reciprocal rank of the first passage that overlaps any gold quote (0 when none does).

    >>> ev = [[[("a", 0, 10)]], [[("a", 50, 60)]]]
    >>> mrr([[("b", 0, 5), ("a", 3, 4)], [("a", 0, 5)]], ev).score   # (1/2 + 0) / 2
    0.25
    """
    _same_length(ranked, evidence)
    scores: list[float | None] = []
    for passages, quotes in zip(ranked, evidence, strict=True):
        if not quotes:
            scores.append(None)
            continue
        rank = next((r for r, p in enumerate(passages, 1) if hits_evidence(p, quotes)), None)
        scores.append(1.0 / rank if rank else 0.0)
    return _result("mrr", scores)


# -- answers -----------------------------------------------------------------------------------------
def normalise(text: str) -> str:
    """Case-folded, curly quotes and dashes made plain, whitespace collapsed: "Isn’t" == "isn't"."""
    return " ".join(text.translate(_APOSTROPHES).casefold().split())


def mentions(answer: str, phrase: str) -> bool:
    """``phrase`` occurs in ``answer`` as whole words (case-insensitive): "L2" is not in "L20".

    >>> mentions("Nvidia made the H20, L20 and L2.", "l2"), mentions("the L20", "L2")
    (True, False)
    """
    pattern = r"(?<!\w)" + re.escape(normalise(phrase)) + r"(?!\w)"
    return re.search(pattern, normalise(answer)) is not None


def has_all(answer: str, must: Sequence[Sequence[str]]) -> bool:
    """Every group is present; any phrase of a group counts.

    >>> has_all("26 seven-minute episodes", [["26"], ["seven minutes", "seven-minute"]])
    True
    """
    return all(any(mentions(answer, p) for p in group) for group in must)


def answer_accuracy(answers: Sequence[str], refused: Sequence[bool], answerable: Sequence[bool],
                    must: Sequence[Sequence[Sequence[str]]]) -> MetricResult:
    """On answerable questions: not refused and every ``must`` group present.

    >>> answer_accuracy(["Kirin 9000S [1].", "The articles do not say.", "x"], [False, True, True],
    ...                 [True, True, False], [[["Kirin 9000S"]], [["2019"]], []]).score   # (1 + 0) / 2
    0.5
    """
    _same_length(answers, refused, answerable, must)
    return _result("answer_accuracy", [
        None if not ok else float(not r and has_all(a, m))
        for a, r, ok, m in zip(answers, refused, answerable, must, strict=True)])


def refusal_accuracy(refused: Sequence[bool], answerable: Sequence[bool]) -> MetricResult:
    """On unanswerable questions: the share refused.

    >>> refusal_accuracy([True, False, True], [False, False, True]).score    # (1 + 0) / 2
    0.5
    """
    _same_length(refused, answerable)
    return _result("refusal_accuracy", [None if ok else float(r) for r, ok in zip(refused, answerable,
                                                                                     strict=True)])


def false_refusal_rate(refused: Sequence[bool], answerable: Sequence[bool]) -> MetricResult:
    """On answerable questions: the share refused (lower is better).

    >>> false_refusal_rate([True, False, False, True], [True, True, True, False]).score   # 1 / 3
    0.3333333333333333
    """
    _same_length(refused, answerable)
    return _result("false_refusal_rate", [float(r) if ok else None for r, ok in zip(refused, answerable,
                                                                                      strict=True)])


# -- citations ---------------------------------------------------------------------------------------
def citation_precision(citations: Sequence[Sequence[Span]], evidence: Sequence[Sequence[Evidence]]
                       ) -> MetricResult:
    """Per answer with citations and gold evidence: the share of citations overlapping a gold quote.

    >>> ev = [[[("a", 0, 10)]]]
    >>> citation_precision([[("a", 5, 15), ("a", 40, 50)]], ev).score   # 1 of 2 citations
    0.5
    """
    _same_length(citations, evidence)
    return _result("citation_precision", [
        sum(hits_evidence(c, q) for c in cits) / len(cits) if cits and q else None
        for cits, q in zip(citations, evidence, strict=True)])


def citation_coverage(citations: Sequence[Sequence[Span]], evidence: Sequence[Sequence[Evidence]],
                      refused: Sequence[bool]) -> MetricResult:
    """Per non-refused answer to an answerable question: 1 if at least one citation hits a gold quote.

    >>> ev = [[[("a", 0, 10)]], [[("a", 0, 10)]], [[("a", 0, 10)]]]
    >>> citation_coverage([[("a", 2, 3)], [("b", 2, 3)], []], ev, [False, False, True]).score  # (1+0)/2
    0.5
    """
    _same_length(citations, evidence, refused)
    return _result("citation_coverage", [
        float(any(hits_evidence(c, q) for c in cits)) if q and not r else None
        for cits, q, r in zip(citations, evidence, refused, strict=True)])


def verbatim_rate(citations: Sequence[Sequence[Quoted]], texts: Mapping[str, str]) -> MetricResult:
    """Per answer with citations: the share whose quote is exactly ``text[start:end]`` of its article.

    >>> verbatim_rate([[("a", 0, 3, "abc"), ("a", 0, 3, "abd")]], {"a": "abcdef"}).score
    0.5
    """
    return _result("verbatim_rate", [
        sum(a in texts and texts[a][s:e] == q for a, s, e, q in cits) / len(cits) if cits else None
        for cits in citations])


def support_rate(supported: Sequence[Sequence[bool]], refused: Sequence[bool]) -> MetricResult:
    """Per non-refused answer: the share of its generated sentences the support check passed.

    ALCE-style citation recall with the offline check of ``rag.cite``; sentences the check removed count
    as unsupported, so a model that invents and gets pruned scores low even though its shown answer is clean.

    >>> support_rate([[True, True, False], [False], [True]], [False, True, False]).score   # (2/3 + 1) / 2
    0.8333333333333333
    """
    _same_length(supported, refused)
    return _result("support_rate", [
        sum(s) / len(s) if s and not r else None for s, r in zip(supported, refused, strict=True)])


# -- distributions -----------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile with linear interpolation between order statistics (numpy's default).

    >>> percentile([1, 2, 3, 4], 50), percentile([10, 20], 95)    # 2.5;  10 + 0.95 * 10
    (2.5, 19.5)
    """
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def distribution(values: Sequence[float]) -> dict[str, float | None]:
    """Mean, p50 and p95 of ``values`` (``None`` when empty).

    >>> distribution([1.0, 2.0, 3.0, 10.0])
    {'mean': 4.0, 'p50': 2.5, 'p95': 8.95}
    """
    vals = list(values)

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 4)

    return {"mean": r(sum(vals) / len(vals)) if vals else None, "p50": r(percentile(vals, 50)),
            "p95": r(percentile(vals, 95))}
