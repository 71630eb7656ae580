"""The gold loader's validation, and the checks our own eval/gold.jsonl must pass."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from rag.errors import GoldError
from rag.evaluation.gold import load_gold
from rag.ingest import load_article

from .conftest import ROOT, SEEDS

GOLD = ROOT / "eval" / "gold.jsonl"
TEXTS = {"a.txt": "Huawei unveiled the Mate 60, powered by the Kirin 9000S chip, in 2023.",
         "b.txt": "SMIC made the chip."}
GOOD = {"id": "q1", "question": "Which chip?", "answerable": True, "answer": "Kirin 9000S",
        "must": [["Kirin 9000S"]], "docs": ["a.txt"], "evidence": ["powered by the Kirin 9000S chip"]}
NEG = {"id": "n1", "question": "What price?", "answerable": False, "answer": "Not said.", "must": [],
       "docs": [], "evidence": []}


def write(tmp_path: Path, *lines: str | dict) -> Path:
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n",
                    encoding="utf-8")
    return path


def test_valid_file_loads_with_evidence_spans(tmp_path: Path) -> None:
    """Blank lines are skipped; spans are [start, end) of each quote in its article."""
    items = load_gold(write(tmp_path, GOOD, "", NEG), TEXTS)
    assert [it.id for it in items] == ["q1", "n1"]
    q = items[0]
    start = TEXTS["a.txt"].index("powered by")
    assert q.spans == (((("a.txt", start, start + len(q.evidence[0]))),),)
    assert q.line == 1 and items[1].line == 3
    assert items[1].spans == () and items[1].must == ()


def test_unanswerable_may_omit_optional_fields(tmp_path: Path) -> None:
    items = load_gold(write(tmp_path, {"id": "n", "question": "Price?", "answerable": False}), TEXTS)
    assert items[0].answer == "" and items[0].docs == ()


def test_multi_doc_quotes_resolve_to_their_own_article(tmp_path: Path) -> None:
    item = {**GOOD, "docs": ["a.txt", "b.txt"], "evidence": ["Kirin 9000S", "SMIC made"]}
    (q,) = load_gold(write(tmp_path, item), TEXTS)
    assert [s[0][0] for s in q.spans] == ["a.txt", "b.txt"]


@pytest.mark.parametrize("line, field, words", [
    ('{"id": "q2", "question": "x", ', None, "not valid JSON"),
    ('[1, 2]', None, "expected a JSON object"),
    ({k: v for k, v in GOOD.items() if k != "question"}, "question", "missing"),
    ({**GOOD, "answerable": "yes"}, "answerable", "true or false"),
    ({**GOOD, "must": ["Kirin"]}, "must", "list of non-empty lists"),
    ({**GOOD, "must": []}, "must", "answerable question needs it"),
    ({**GOOD, "evidence": []}, "evidence", "answerable question needs it"),
    ({**GOOD, "docs": ["c.txt"]}, "docs", "unknown article 'c.txt'"),
    ({**GOOD, "evidence": ["powered by the Kirin 9000 chip"]}, "evidence", "not verbatim in a.txt"),
    ({**GOOD, "evidnce": []}, "evidnce", "unknown field"),
    ({**GOOD, "id": ""}, "id", "non-empty string"),
    ({**GOOD}, "id", "duplicate id 'q1' (first on line 1)"),
])
def test_bad_line_names_file_line_and_field(tmp_path: Path, line: str | dict, field: str | None,
                                            words: str) -> None:
    """The bad item is on line 2 after a good one; the message names the file, line 2, field, problem."""
    path = write(tmp_path, GOOD, line)
    with pytest.raises(GoldError) as e:
        load_gold(path, TEXTS, where="the index at idx")
    msg = str(e.value)
    assert f"{path} line 2" in msg and words in msg
    if field:
        assert f"field '{field}'" in msg
    assert f"{path} line 1" not in msg  # the good line is not blamed


def test_near_verbatim_quote_gets_a_hint(tmp_path: Path) -> None:
    """A quote that differs only in whitespace or case says so, since that is the usual copy mistake."""
    with pytest.raises(GoldError, match="differs only in case"):
        load_gold(write(tmp_path, {**GOOD, "evidence": ["powered by the  kirin 9000S chip"]}), TEXTS)


def test_every_problem_is_listed(tmp_path: Path) -> None:
    path = write(tmp_path, {**GOOD, "docs": ["x.txt"]}, GOOD, "{oops", {**NEG, "answerable": 1})
    with pytest.raises(GoldError) as e:
        load_gold(path, TEXTS)
    msg = str(e.value)
    assert "3 problem(s)" in msg
    assert "line 1, field 'docs'" in msg and "line 3: not valid JSON" in msg
    assert "line 4, field 'answerable'" in msg


def test_missing_empty_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(GoldError, match="not found"):
        load_gold(tmp_path / "nope.jsonl", TEXTS)
    with pytest.raises(GoldError, match="no questions"):
        load_gold(write(tmp_path, ""), TEXTS)
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"id": "caf\xe9"}\n')
    with pytest.raises(GoldError, match="UTF-8"):
        load_gold(bad, TEXTS)


def test_our_gold_file() -> None:
    """eval/gold.jsonl: every quote verbatim in its seeds/ article, >= 60 questions, >= 10 unanswerable,
    >= 5 multi-document, all five articles covered, and each gold doc backed by at least one quote."""
    texts = {p.name: load_article(p).text for p in sorted(SEEDS.iterdir())}
    assert len(texts) == 5
    items = load_gold(GOLD, texts, where="seeds/")
    assert len(items) >= 60
    assert sum(not it.answerable for it in items) >= 10
    multi = [it for it in items if len(set(it.docs)) >= 2]
    assert len(multi) >= 5
    assert {d for it in items for d in it.docs} == set(texts)
    for it in items:
        if not it.answerable:
            assert not it.must and not it.docs and not it.evidence, it.id
            continue
        for quote, spans in zip(it.evidence, it.spans, strict=True):
            assert spans, f"{it.id}: {quote!r} not verbatim in {it.docs}"
            assert all(texts[a][s:e] == quote for a, s, e in spans)
        covered = Counter(s[0] for spans in it.spans for s in spans)
        assert set(covered) == set(it.docs), f"{it.id}: a gold doc has no evidence quote"
