"""The pure metrics of rag.metrics on hand-made cases; each expected value is worked out in the docstring."""

from __future__ import annotations

import doctest

import pytest

from rag import metrics as M
from rag.metrics import MetricResult

A, B = "a.txt", "b.txt"


def test_docstring_examples_run() -> None:
    """The examples in the metric docstrings are executable and correct."""
    failed, attempted = doctest.testmod(M)
    assert attempted >= 15 and failed == 0


def test_locate_and_evidence_spans() -> None:
    """"ab" sits at [1,3) and [4,6) of "xabyab"; a quote missing from a doc gives no span."""
    assert M.locate("ab", "xabyab") == [(1, 3), (4, 6)]
    assert M.locate("", "abc") == []
    texts = {A: "Huawei made the Kirin 9000S.", B: "Nothing here."}
    assert M.evidence_spans(["Kirin 9000S", "absent"], [A, B], texts) == [[(A, 16, 27)], []]


def test_overlaps_is_half_open_and_per_article() -> None:
    """[0,10) and [9,20) share offset 9; [0,10) and [10,20) share nothing; other articles never overlap."""
    assert M.overlaps((A, 0, 10), (A, 9, 20))
    assert not M.overlaps((A, 0, 10), (A, 10, 20))
    assert not M.overlaps((A, 0, 10), (B, 0, 10))
    assert M.overlaps((A, 5, 6), (A, 0, 100))  # containment


def test_recall_at_k() -> None:
    """Question 1 has quotes q1=[A 0,10) and q2=[B 100,120); passages ranked A 5-50, C, B 110-200.

    recall@1 = 1/2 (only q1 in the top 1), recall@3 = 2/2.
    Question 2 has one quote A [500,510) that no passage overlaps: 0 at every k.
    Question 3 is unanswerable (no quotes): None, left out of the mean.
    Means: recall@1 = (0.5 + 0) / 2 = 0.25; recall@3 = (1 + 0) / 2 = 0.5.
    """
    ranked = [[(A, 5, 50), ("c", 0, 9), (B, 110, 200)], [(A, 0, 400)], [(A, 0, 9)]]
    evidence = [[[(A, 0, 10)], [(B, 100, 120)]], [[(A, 500, 510)]], []]
    r1 = M.recall_at_k(ranked, evidence, 1)
    assert r1.individual_scores == [0.5, 0.0, None] and r1.score == pytest.approx(0.25) and r1.n == 2
    r3 = M.recall_at_k(ranked, evidence, 3)
    assert r3.individual_scores == [1.0, 0.0, None] and r3.score == pytest.approx(0.5)
    assert r3.name == "recall@3"


def test_recall_counts_a_quote_found_in_any_of_its_occurrences() -> None:
    """A quote occurring twice ([0,5) and [50,55)) is found by a passage over either: recall 1/1."""
    assert M.recall_at_k([[(A, 48, 60)]], [[[(A, 0, 5), (A, 50, 55)]]], 1).score == 1.0


def test_mrr() -> None:
    """First hits at ranks 1, 3 and none: MRR = (1 + 1/3 + 0) / 3 = 4/9 ≈ 0.4444."""
    ev = [[(A, 0, 10)]]
    ranked = [[(A, 0, 5)], [(B, 0, 5), (B, 6, 9), (A, 9, 12)], [(B, 0, 5)]]
    r = M.mrr(ranked, [ev, ev, ev])
    assert r.individual_scores == pytest.approx([1.0, 1 / 3, 0.0])
    assert r.score == pytest.approx(4 / 9)


def test_mentions_is_whole_word_case_insensitive_and_normalised() -> None:
    """Whole words: "L2" is not inside "L20", "open" not inside "OpenAI"; curly quotes match straight."""
    assert M.mentions("The H20, L20 and L2 GPUs.", "L2")
    assert not M.mentions("The H20 and L20 GPUs.", "L2")
    assert not M.mentions("OpenAI launched it.", "open")
    assert M.mentions("kirin 9000s", "Kirin 9000S")
    assert M.mentions("The gap isn’t as big.", "isn't as big")
    assert M.mentions("It rose 11.4%.", "11.4%") and M.mentions("It rose 11.4 per cent.", "11.4")
    assert not M.mentions("It rose 11.45 per cent.", "11.4")
    assert M.mentions("raised US$14 million", "14 million")
    assert M.mentions("a 1.5-year\ngap", "1.5-year gap")


def test_answer_accuracy() -> None:
    """Four answerable questions and one unanswerable:

    1. "Kirin 9000S and SMIC [1]." with must [[Kirin 9000S], [SMIC]]: both groups present -> 1
    2. "Kirin 9000S [1]." with the same must: the SMIC group is missing -> 0
    3. refused -> 0 even if the refusal text happened to contain the phrase
    4. "In Feb [1]." with must [[February, Feb]]: an alternative counts -> 1
    5. unanswerable -> None
    Mean over the four answerable = (1 + 0 + 0 + 1) / 4 = 0.5.
    """
    must = [[["Kirin 9000S"], ["SMIC"]], [["Kirin 9000S"], ["SMIC"]], [["2019"]], [["February", "Feb"]], []]
    r = M.answer_accuracy(
        ["Kirin 9000S and SMIC [1].", "Kirin 9000S [1].", "Not in 2019? The articles do not say.",
         "In Feb [1].", "Something"],
        [False, False, True, False, False], [True, True, True, True, False], must)
    assert r.individual_scores == [1.0, 0.0, 0.0, 1.0, None]
    assert r.score == 0.5


def test_refusal_accuracy_and_false_refusal_rate() -> None:
    """refused = [T, F, T, T, F], answerable = [F, F, T, F, T].

    Refusal accuracy over the unanswerable items 1, 2, 4: (1 + 0 + 1) / 3 = 2/3.
    False-refusal rate over the answerable items 3, 5: (1 + 0) / 2 = 0.5.
    """
    refused = [True, False, True, True, False]
    answerable = [False, False, True, False, True]
    ra = M.refusal_accuracy(refused, answerable)
    assert ra.individual_scores == [1.0, 0.0, None, 1.0, None] and ra.score == pytest.approx(2 / 3)
    fr = M.false_refusal_rate(refused, answerable)
    assert fr.individual_scores == [None, None, 1.0, None, 0.0] and fr.score == 0.5


def test_citation_precision_and_coverage() -> None:
    """Gold quote A [100,150) for items 1-3; item 4 is unanswerable (no quotes).

    1. citations A 120-130 (hit), A 0-50 (miss), B 100-150 (other article: miss) -> precision 1/3, covered
    2. citation A 0-99 (miss, ends before 100) -> precision 0, not covered
    3. refused, no citations -> precision None, coverage None (only answered items count)
    4. unanswerable with a citation -> None for both
    Precision = (1/3 + 0) / 2 = 1/6; coverage = (1 + 0) / 2 = 0.5.
    """
    ev = [[(A, 100, 150)]]
    cits = [[(A, 120, 130), (A, 0, 50), (B, 100, 150)], [(A, 0, 99)], [], [(A, 0, 10)]]
    evidence = [ev, ev, ev, []]
    p = M.citation_precision(cits, evidence)
    assert p.individual_scores == pytest.approx([1 / 3, 0.0, None, None]) and p.score == pytest.approx(1 / 6)
    c = M.citation_coverage(cits, evidence, [False, False, True, False])
    assert c.individual_scores == [1.0, 0.0, None, None] and c.score == 0.5


def test_verbatim_rate() -> None:
    """Text "abcdef". Item 1: "abc" at [0,3) matches, "bcX" at [1,4) does not -> 1/2.
    Item 2: an unknown article -> 0/1. Item 3: no citations -> None. Mean = (0.5 + 0) / 2 = 0.25.
    """
    texts = {A: "abcdef"}
    r = M.verbatim_rate([[(A, 0, 3, "abc"), (A, 1, 4, "bcX")], [("zz", 0, 1, "a")], []], texts)
    assert r.individual_scores == [0.5, 0.0, None] and r.score == 0.25


def test_support_rate() -> None:
    """Item 1: 3 of 4 sentences supported -> 0.75; item 2 refused -> None; item 3: 1 of 1 -> 1;
    item 4: no sentences -> None. Mean = (0.75 + 1) / 2 = 0.875."""
    r = M.support_rate([[True, True, True, False], [False], [True], []], [False, True, False, False])
    assert r.individual_scores == [0.75, None, 1.0, None] and r.score == 0.875


def test_percentiles_and_distribution() -> None:
    """Sorted [1, 2, 3, 4, 10]: p50 is the middle value 3; p95 sits at position 4 * 0.95 = 3.8, i.e.
    4 + 0.8 * (10 - 4) = 8.8; the mean is 20 / 5 = 4. One value is every percentile; none gives None."""
    assert M.percentile([10, 1, 4, 3, 2], 50) == 3
    assert M.percentile([10, 1, 4, 3, 2], 95) == pytest.approx(8.8)
    assert M.percentile([7.0], 95) == 7.0 and M.percentile([], 50) is None
    assert M.distribution([10, 1, 4, 3, 2]) == {"mean": 4.0, "p50": 3.0, "p95": 8.8}
    assert M.distribution([]) == {"mean": None, "p50": None, "p95": None}


def test_empty_and_mismatched_inputs() -> None:
    """No applicable items gives score None (not 0 or a division error); unequal lists are refused."""
    assert M.refusal_accuracy([True], [True]) == MetricResult("refusal_accuracy", None, [None])
    with pytest.raises(ValueError, match="differ in length"):
        M.false_refusal_rate([True, False], [True])
