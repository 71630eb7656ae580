"""Roles: every line a reader can read is findable, labelled by its role on the page.

The role classifier is measured against ``roles_truth.jsonl``: every non-blank line of the five seeds,
labelled once by hand from reading the files (not from the classifier's output). ``drop`` marks the
lines that carry nothing (a bare "Advertisement", a clip length); an exact repeat keeps its role.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.chunk import chunk_article, search_text
from rag.errors import IndexMismatchError
from rag.evaluation.gold import GOLD_FIELDS, load_gold
from rag.ingest import coverage, load_article, parse_article
from rag.records import Citation
from rag.report import single_markdown
from rag.retrieve import Retriever
from rag.roles import RULES, Role, asked_roles, label_lines, role_phrase, scores, table_label
from rag.settings import Settings
from rag.store import IndexStore, build_index
from rag.vocab import tokenize

from .conftest import ROOT, SEEDS
from .fakes import HashEmbedder

TRUTH = Path(__file__).with_name("roles_truth.jsonl")
FLOOR = 0.9  # precision and recall per role on the seeds; measured 1.00 for every role (in-sample)


def truth() -> list[dict]:
    return [json.loads(line) for line in TRUTH.read_text(encoding="utf-8").splitlines() if line.strip()]


def pairs(off: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    rows = truth()
    got: dict[tuple[str, int], str] = {}
    for name in sorted({r["file"] for r in rows}):
        got.update({(name, ln.number): table_label(ln)
                    for ln in label_lines((SEEDS / name).read_text(encoding="utf-8"), off=off)})
    return [(r["role"], got.get((r["file"], r["line"]), "missing")) for r in rows]


def macro_f1(pairs_: list[tuple[str, str]]) -> float:
    f1 = [2 * p * r / (p + r) if p + r else 0.0 for p, r, n in scores(pairs_).values() if n]
    return sum(f1) / len(f1)


def test_truth_file_labels_every_line_of_every_seed() -> None:
    rows = truth()
    valid = {r.value for r in Role}
    for path in sorted(SEEDS.glob("*.txt")):
        lines = path.read_text(encoding="utf-8").split("\n")
        labelled = {r["line"]: r for r in rows if r["file"] == path.name}
        assert set(labelled) == {n for n, ln in enumerate(lines, 1) if ln.strip()}, path.name
        for n, r in labelled.items():
            assert r["role"] in valid and lines[n - 1].strip().startswith(r["starts"]), (path.name, n)


def test_role_table_precision_and_recall() -> None:
    """The table in the closing note (scripts/roles_table.py prints it): every role at the floor."""
    table = scores(pairs())
    assert set(table) == {r.value for r in Role}
    low = {label: (round(p, 2), round(r, 2)) for label, (p, r, _) in table.items() if min(p, r) < FLOOR}
    assert not low, f"roles below precision/recall {FLOOR}: {low}"


@pytest.mark.parametrize("rule", [r for r in RULES if r != "no-words"])
def test_each_rule_earns_its_place(rule: str) -> None:
    """Switching any rule off makes the seeds' table worse, or (for the drop rules) keeps a line that
    carries nothing. ("no-words" never fires on the seeds; it is pinned by a unit test below.)"""
    off = frozenset({rule})
    dropped = sum(bool(ln.drop) for p in SEEDS.glob("*.txt") for ln in label_lines(p.read_text("utf-8")))
    dropped_off = sum(bool(ln.drop) for p in SEEDS.glob("*.txt")
                      for ln in label_lines(p.read_text("utf-8"), off=off))
    assert macro_f1(pairs(off)) < macro_f1(pairs()) or dropped_off < dropped


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown rule"):
        label_lines("text", off=frozenset({"nope"}))


def test_lines_without_words_are_dropped_and_markdown_headings_are_headlines() -> None:
    text = "# Port reopens\n\n***\n\nThe port reopened on Friday after a storm, officials said.\n—\n"
    got = [(ln.text, ln.role.value, ln.drop) for ln in label_lines(text, markdown=True)]
    assert got == [("# Port reopens", "headline", ""), ("***", "site", "no words"),
                   ("The port reopened on Friday after a storm, officials said.", "body", ""),
                   ("—", "site", "no words")]


def test_seeds_line_by_line_every_line_with_words_is_in_a_chunk_or_named() -> None:
    """Each line of each seed that carries words lies inside indexed chunks, or is dropped with a
    reason that names it: a repeat whose first copy lies inside a chunk."""
    s = Settings()
    for path in sorted(SEEDS.glob("*.txt")):
        a = load_article(path)
        chunks = chunk_article(a, s.chunk_size, s.chunk_overlap)
        dropped = {(d.start, d.end): d for d in a.dropped}

        covered = bytearray(len(a.text))
        for c in chunks:
            covered[c.start:c.end] = b"\x01" * (c.end - c.start)

        def in_chunk(start: int, end: int) -> bool:
            """Every non-space character of the span is in some chunk (a long paragraph spans several)."""
            return all(covered[i] or a.text[i].isspace() for i in range(start, end))  # noqa: B023

        pos = 0
        for n, line in enumerate(a.text.split("\n"), 1):
            stripped = line.strip()
            start = pos + len(line) - len(line.lstrip())
            end = start + len(stripped)
            pos += len(line) + 1
            if not any(ch.isalpha() for ch in stripped):
                continue
            if in_chunk(start, end):
                continue
            d = dropped.get((start, end))
            assert d is not None, f"{path.name} line {n} is in no chunk and not named as dropped: {stripped!r}"
            assert d.reason == "repeat", (path.name, n, d.reason)
            if d.reason == "repeat":
                assert d.same_as is not None and d.same_as < start
                assert a.text[d.same_as:d.same_as + len(stripped)] == stripped
                assert in_chunk(d.same_as, d.same_as + len(stripped)), (path.name, n)


def test_seeds_keep_at_least_99_percent_of_the_characters_with_words() -> None:
    for path in sorted(SEEDS.glob("*.txt")):
        a = load_article(path)
        cov = coverage(a)
        letters = sum(len(ln.strip()) for ln in a.text.splitlines() if any(ch.isalpha() for ch in ln))
        assert cov.word_chars == letters, path.name
        assert cov.share >= 0.99, cov.summary()
        assert sum(cov.by_role.values()) == sum(b.end - b.start for b in a.blocks)
        assert set(cov.dropped) <= {"repeat", "no words"}
        assert "findable" in cov.summary() and "body" in cov.summary()


def _gold_files() -> list[Path]:
    return [p for p in (ROOT / "eval" / n for n in ("gold.jsonl", "holdout.jsonl", "blind.jsonl")) if p.exists()]


@pytest.mark.parametrize("gold", _gold_files(), ids=lambda p: p.name)
def test_every_evidence_quote_lies_inside_an_indexed_chunk(gold: Path, tmp_path: Path) -> None:
    """For eval/blind.jsonl only counts are reported: its items must never be printed."""
    s = Settings()
    articles = {p.name: load_article(p) for p in sorted(SEEDS.glob("*.txt"))}
    chunks = {n: chunk_article(a, s.chunk_size, s.chunk_overlap) for n, a in articles.items()}
    blind = gold.name == "blind.jsonl"
    # Only the fields this loader knows (the blind set also carries kinds and tags).
    known = tmp_path / gold.name
    known.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k in GOLD_FIELDS}) + "\n"
                             for line in gold.read_text(encoding="utf-8").splitlines() if line.strip()),
                     encoding="utf-8")
    try:
        items = load_gold(known, {n: a.text for n, a in articles.items()}, where="seeds/")
    except Exception as e:  # noqa: BLE001
        if blind:
            pytest.fail(f"{gold.name} does not load against seeds/ ({type(e).__name__})", pytrace=False)
        raise
    quotes = lost = 0
    missing = []
    for it in items:
        for quote, spans in zip(it.evidence, it.spans, strict=True):
            quotes += 1
            if not any(c.start <= s_ and e <= c.end for name, s_, e in spans for c in chunks[name]):
                lost += 1
                missing.append(f"{it.id}: {quote[:60]!r}")
    assert quotes > 0
    if blind:
        assert lost == 0, f"{lost} of {quotes} evidence quotes of {gold.name} lie in no indexed chunk"
    else:
        assert not missing, missing


def test_role_phrases_and_json_carry_the_role() -> None:
    assert role_phrase("body") == "" and role_phrase("nonsense") == ""
    assert "related headline" in role_phrase(Role.RELATED)
    assert all(role_phrase(r) for r in Role if r is not Role.BODY)
    c = Citation(1, "a.txt", "T", "a#0", 0, 5, "Hello", 0.9, Role.RELATED)
    assert c.to_dict()["role"] == "related" and c.role_note == role_phrase("related")
    assert Citation(1, "a.txt", "T", "a#0", 0, 5, "Hello").to_dict()["role"] == "body"


def test_report_says_where_a_non_body_quote_comes_from() -> None:
    from rag.records import Answer

    cits = (Citation(1, "a.txt", "T", "a#1", 0, 5, "Hello", 0.9, Role.RELATED),
            Citation(2, "a.txt", "T", "a#0", 10, 15, "World", 0.9))
    md = single_markdown(Answer("Q?", "Hello [1]. World [2].", True, cits, ()))
    ref1, ref2 = [ln for ln in md.splitlines() if ln[:2] in ("1.", "2.")]
    assert role_phrase("related") in ref1 and "related" not in ref2


CORPUS = ("Acme expands its battery plant\n\n"
          "Acme will expand its battery plant in Hungary next year, the company said on Monday, adding "
          "200 jobs to the 900 who already work there.\n\n"
          "Related: Acme battery plant in Hungary to expand\n")


def _acme_index(tmp_path: Path) -> tuple[Settings, HashEmbedder, IndexStore]:
    """An index of CORPUS (a headline, a paragraph, a related link) and one unrelated article."""
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "acme.txt").write_text(CORPUS, encoding="utf-8")
    (tmp_path / "c" / "other.txt").write_text("Rain fell on the valley for the first time in six months, "
                                              "farmers said on Sunday.\n", encoding="utf-8")
    settings = Settings(index_dir=tmp_path / "idx", embedder="fake-hash")
    emb = HashEmbedder()
    build_index([tmp_path / "c"], settings, emb)
    return settings, emb, IndexStore.load(settings.index_dir, settings)


def test_body_text_ranks_before_furniture_that_matches_as_well(tmp_path: Path) -> None:
    settings, emb, store = _acme_index(tmp_path)
    assert {c.role for c in store.chunks if c.article == "acme.txt"} == {Role.HEADLINE, Role.BODY, Role.RELATED}
    query = "Acme battery plant Hungary expand"
    flat = Retriever(store, emb, settings.replace(role_weight=1.0)).search(query, 3)
    ranked = Retriever(store, emb, settings).search(query, 3)
    assert flat[0].role is not Role.BODY  # the short related headline matches best on its own ...
    assert ranked[0].role is Role.BODY  # ... but the body text that matches as well ranks first
    assert {p.role for p in ranked} == {Role.BODY, Role.RELATED, Role.HEADLINE}  # furniture stays findable
    assert ranked[0].to_dict()["role"] == "body"


def test_a_question_naming_a_kind_of_line_lifts_that_role(tmp_path: Path) -> None:
    settings, emb, store = _acme_index(tmp_path)
    query = "Which related link is about the Acme battery plant in Hungary?"
    assert asked_roles(tokenize(query)) == {Role.RELATED} and not asked_roles(tokenize("Acme battery plant"))
    off = Retriever(store, emb, settings.replace(role_intent=False)).search(query, 3)
    on = Retriever(store, emb, settings).search(query, 3)
    assert off[0].role is Role.BODY and on[0].role is Role.RELATED
    assert on[0].score > off[[p.chunk.chunk_id for p in off].index(on[0].chunk.chunk_id)].score


def test_index_reports_characters_per_role_and_an_old_format_is_rebuilt(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "idx", embedder="fake-hash")
    report = build_index([SEEDS], settings, HashEmbedder())
    assert set(report.coverage) == {p.name for p in SEEDS.glob("*.txt")}
    cov = report.coverage["002_03be9f1c06671bc9.txt"]
    assert cov.dropped["repeat"] > 0 and cov.by_role["caption"] > 0 and cov.by_role["site"] > 0
    store = IndexStore.load(settings.index_dir, settings)
    a = store.articles["002_03be9f1c06671bc9.txt"]
    assert a.blocks == load_article(SEEDS / a.name).blocks and a.dropped  # roles survive the round trip
    manifest = store.path / "manifest.json"
    m = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**m, "format_version": 1}))  # an index written before roles
    with pytest.raises(IndexMismatchError, match="format version 1"):
        IndexStore.load(settings.index_dir, settings)
    again = build_index([SEEDS], settings, HashEmbedder())
    assert again.rebuilt_reason and "format version" in again.rebuilt_reason
    assert IndexStore.load(settings.index_dir, settings).chunks


def test_a_file_of_only_furniture_is_refused_with_a_reason(tmp_path: Path) -> None:
    f = tmp_path / "chrome.txt"
    f.write_text("Advertisement\nLeave a Reply\nShare\n", encoding="utf-8")
    from rag.errors import InputError

    with pytest.raises(InputError, match="only page furniture"):
        load_article(f)
    assert parse_article("Leave a Reply\n", "x.txt").blocks  # the parser itself still labels it


def test_search_text_gives_furniture_its_role_and_neighbours_and_leaves_body_alone() -> None:
    article = load_article(SEEDS / "002_03be9f1c06671bc9.txt")
    chunks = chunk_article(article, Settings().chunk_size, Settings().chunk_overlap)
    credit = next(c for c in chunks if c.text == "Photo: Xinhua")
    text = search_text(credit, article)
    assert text.startswith(f"({role_phrase(Role.CAPTION)}) Photo: Xinhua\n")
    assert "The telecommunications industry is rushing" in text  # the item the credit sits on
    assert len(text) < len(credit.text) + 2 * 200 + 80  # neighbours are clipped
    assert search_text(credit, article, context=False) == credit.text
    body = next(c for c in chunks if c.role is Role.BODY)
    assert search_text(body, article) == body.text
    assert article.text[credit.start:credit.end] == credit.text  # the cited span is unchanged


@pytest.mark.real
def test_a_credit_is_found_through_the_item_it_illustrates(real_index, real_embedder, real_settings) -> None:
    retriever = Retriever(real_index, real_embedder, real_settings)
    question = "Which news agency supplied the picture for the item on Huawei and ZTE telecom AI models?"
    assert "Photo: Xinhua" in [p.chunk.text for p in retriever.search(question, 5)]
    plain = real_settings.replace(role_context=False)
    assert search_text(next(c for c in real_index.chunks if c.text == "Photo: Xinhua"),
                       real_index.articles["002_03be9f1c06671bc9.txt"], plain.role_context) == "Photo: Xinhua"
