"""Property-based tests: arbitrary files and questions never crash ingestion or retrieval.

The only allowed failure is ``InputError`` (a one-line message for the user). Whatever is kept maps back
to the original text by offsets, and nothing kept is lost on the way into the index.
"""

from __future__ import annotations

import contextlib
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rag.chunk import chunk_article, sections
from rag.errors import InputError
from rag.ingest import load_article, parse_article
from rag.records import Article
from rag.retrieve import Retriever, check_question
from rag.roles import split_lines
from rag.settings import Settings
from rag.store import IndexStore, build_index

from .conftest import SEEDS
from .fakes import HashEmbedder

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that looks like news often enough to keep blocks: sentences, blank lines, chrome, odd characters.
WORDS = st.sampled_from(["Huawei", "said", "the", "chip", "Kirin", "9000S", "on", "Monday", "11.4",
                         "per cent", "华为", "芯片", "Кирин", "مرحبا", "🚀", "Mr.", "U.S.", "Share",
                         "Advertisement", "—"])
SENTENCE = st.lists(WORDS, min_size=1, max_size=25).map(" ".join).map(lambda s: s + "." * (len(s) % 3 > 0))
NOISE = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
LINE = st.one_of(SENTENCE, NOISE, st.sampled_from(["", " ", "\t", "Related news", "03:48", "© 2024 News",
                                                   "2024-03-11 08:48:49 China Daily", "# Heading"]))
SEPARATOR = st.sampled_from(["\n", "\n\n", "\r\n", "\n \n", "\n\n\n", "\u2028", "\x0b", "\x0c", "\x1c"])
ARTICLE_TEXT = st.lists(st.tuples(LINE, SEPARATOR), max_size=40).map(lambda xs: "".join(a + b for a, b in xs))
ANY_TEXT = st.one_of(ARTICLE_TEXT, st.text(max_size=400))


def check_offsets(article: Article, chunk_size: int = 700, overlap: int = 100) -> None:
    """Blocks and chunks are exact spans; every non-space character of a kept section is in some chunk."""
    text = article.text
    last = 0
    for b in article.blocks:
        assert last <= b.start < b.end <= len(text)
        assert text[b.start:b.end].strip() == text[b.start:b.end] != ""
        last = b.end
    chunks = chunk_article(article, chunk_size, overlap)
    covered = bytearray(len(text))
    for c in chunks:
        assert text[c.start:c.end] == c.text and c.text.strip()
        covered[c.start:c.end] = b"\x01" * (c.end - c.start)
        for s, e in c.sentences:
            assert c.start <= s < e <= c.end and text[s:e].strip() == text[s:e]
    for s_start, s_end, role in sections(article):
        lost = [i for i in range(s_start, s_end) if not covered[i] and not text[i].isspace()]
        assert not lost, f"characters {lost[:5]} of a kept section are in no chunk"
        inside = [c for c in chunks if s_start <= c.start and c.end <= s_end]
        assert all(c.role is role for c in inside)  # a chunk holds one role only
    assert all(any(s <= c.start and c.end <= e for s, e, _ in sections(article)) for c in chunks)
    # Label, don't delete: every line is kept with a role or dropped with a reason, never silently lost.
    spans = sorted([(b.start, b.end) for b in article.blocks] + [(d.start, d.end) for d in article.dropped])
    lines = [(s, e) for s, e in ((ln.start, ln.end) for ln in split_lines(text))]
    assert spans == lines
    assert all(d.reason in ("no words", "repeat") for d in article.dropped)
    kept_text = {text[b.start:b.end] for b in article.blocks}
    assert all(text[d.start:d.end] in kept_text for d in article.dropped if d.reason == "repeat")


@PROPS
@given(text=ANY_TEXT, markdown=st.booleans())
@example(text="", markdown=False)
@example(text=" \n\t\n ", markdown=True)
@example(text="A sentence that is long enough to be kept by the cleaner.\n" * 3000, markdown=False)
@example(text="x" * 100_000, markdown=False)
@example(text="Huawei said the Kirin 9000S chip works. " * 2500, markdown=False)
@example(text="\x00\x01\x02 control \x7f characters in a sentence that goes on and on.\n", markdown=False)
def test_parse_article_keeps_exact_spans(text: str, markdown: bool) -> None:
    article = parse_article(text, "a.txt", markdown=markdown)
    assert article.text == text
    check_offsets(article)


@PROPS
@given(text=ARTICLE_TEXT, size=st.integers(40, 900), overlap=st.integers(0, 39))
def test_chunking_any_size_keeps_exact_spans(text: str, size: int, overlap: int) -> None:
    check_offsets(parse_article(text, "a.txt"), size, overlap)


@PROPS
@given(data=st.one_of(st.binary(max_size=2000), ARTICLE_TEXT.map(lambda t: t.encode("utf-8")),
                      st.tuples(ARTICLE_TEXT, st.binary(max_size=8)).map(lambda p: p[0].encode() + p[1])),
       suffix=st.sampled_from([".txt", ".md", ".html", ".htm", ".pdf"]))
@example(data=b"\xff\xfe\x00t\x00e\x00x\x00t", suffix=".txt")
@example(data=b"Caf\xe9 au lait is a sentence in Latin-1, not UTF-8 at all.", suffix=".txt")
@example(data=b"<html><body><p>Only a paragraph inside markup that is long enough.</p></body></html>",
         suffix=".html")
@example(data=b"<p>unclosed <b>tags <i>everywhere", suffix=".html")
def test_load_article_arbitrary_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes,
                                      suffix: str) -> None:
    path = tmp_path_factory.mktemp("bytes") / f"file{suffix}"
    path.write_bytes(data)
    try:
        article = load_article(path)
    except InputError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return
    assert article.blocks and suffix != ".pdf"
    check_offsets(article)


@pytest.mark.slow
@PROPS
@given(texts=st.lists(st.one_of(ARTICLE_TEXT, st.binary(max_size=300).map(lambda b: b.decode("latin-1"))),
                      min_size=1, max_size=6))
@example(texts=["Huawei said the chip works.\u2028 It is fast.\u2029 Next\x85 line of the sentence here."])
def test_nothing_usable_is_lost_in_the_index(tmp_path_factory: pytest.TempPathFactory,
                                             texts: list[str]) -> None:
    """Every file is either indexed with all its kept chunks or skipped with a reason; none vanish."""
    folder = tmp_path_factory.mktemp("corpus")
    for i, t in enumerate(texts):
        (folder / f"doc{i}.txt").write_text(t, encoding="utf-8")
    settings = Settings(index_dir=tmp_path_factory.mktemp("idx"), embedder="fake-hash")
    usable = {}
    for p in sorted(folder.iterdir()):
        with contextlib.suppress(InputError):
            usable[p.name] = chunk_article(load_article(p), settings.chunk_size, settings.chunk_overlap)
    try:
        report = build_index([folder], settings, HashEmbedder())
    except InputError:
        assert not usable  # only when no file at all is usable
        return
    assert len(report.skipped) + report.total_articles == len(texts)
    store = IndexStore.load(settings.index_dir, settings)
    assert set(store.articles) == set(usable)
    for name, chunks in usable.items():
        stored = [(c.start, c.end, c.text) for c in store.chunks if c.article == name]
        assert stored == [(c.start, c.end, c.text) for c in chunks]
        text = store.articles[name].text
        assert all(text[s:e] == t for s, e, t in stored)


def test_html_keeps_paragraphs_and_labels_chrome(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text("<html><head><title>Site</title></head><body><nav>Home | World | Tech</nav>"
                    "<article><h1>Huawei unveils the Mate 60 phone today</h1><div><p>The phone is powered by "
                    "the Kirin 9000S chip, testers said.</p></div><ul><li>Shipments began in August, the "
                    "firm said.</li></ul><script>track()</script></article><footer>© 2024 Site</footer>"
                    "</body></html>",
                    encoding="utf-8")
    article = load_article(page)
    kept = [(article.text[b.start:b.end], b.role.value) for b in article.blocks]
    assert kept == [("Huawei unveils the Mate 60 phone today", "headline"),
                    ("The phone is powered by the Kirin 9000S chip, testers said.", "body"),
                    ("Shipments began in August, the firm said.", "body"),
                    ("Home | World | Tech", "site"), ("© 2024 Site", "footer")]  # chrome: after, labelled
    assert "track()" not in article.text  # a script is not readable text
    assert article.title == "Huawei unveils the Mate 60 phone today"
    check_offsets(article)


QUESTIONS = st.one_of(st.text(max_size=300), st.text(alphabet=string.whitespace, max_size=50),
                      st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=50),
                      st.lists(WORDS, max_size=30).map(" ".join))


@PROPS
@given(q=QUESTIONS)
@example(q="")
@example(q="   \n\t ")
@example(q="\x00" * 50)
@example(q="x" * 100_000)
@example(q="Huawei 华为 Кирин ٩٠٠٠S 🚀 ¿qué? " * 10)
def test_check_question_only_input_errors(q: str) -> None:
    try:
        out = check_question(q)
    except InputError as e:
        assert "\n" not in str(e)
        return
    assert out and out == out.strip() and len(out) <= 2000 and "\x00" not in out


@pytest.fixture(scope="module")
def fake_retriever(tmp_path_factory: pytest.TempPathFactory) -> Retriever:
    settings = Settings(index_dir=tmp_path_factory.mktemp("idx"), embedder="fake-hash")
    embedder = HashEmbedder()
    build_index([SEEDS], settings, embedder)
    return Retriever(IndexStore.load(settings.index_dir, settings), embedder, settings)


@PROPS
@given(q=QUESTIONS, k=st.integers(1, 12), mode=st.sampled_from(["hybrid", "dense", "lexical"]))
@example(q="x" * 100_000, k=4, mode="hybrid")
@example(q="the of and a", k=4, mode="lexical")  # only stopwords: no lexical tokens
@example(q="华为芯片", k=3, mode="hybrid")
def test_search_any_question(fake_retriever: Retriever, q: str, k: int, mode: str) -> None:
    try:
        passages = fake_retriever.search(q, k, mode=mode)
    except InputError as e:
        assert "\n" not in str(e)
        return
    assert len(passages) <= k
    assert [p.rank for p in passages] == list(range(1, len(passages) + 1))
    assert len({p.chunk.chunk_id for p in passages}) == len(passages)
