"""Articles as people save them: the reader table, HTML pages with heavy chrome, a two-column PDF, a DOCX.

The HTML pages under tests/data/html/ are written in the shape of big news sites (cookie banner,
navigation, inline ads, related links, newsletter boxes, comments, ``<script>``); each has a
``.truth.txt`` with its body sentences marked by hand, one per line. Precision and recall of kept body
sentences (lines labelled ``body``) are computed for trafilatura (today's reader) and for the
selectolax extractor it replaced, both through the same line labelling (``rag.roles``).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

from rag.chunk import chunk_article, sentence_spans
from rag.errors import InputError
from rag.ingest import iter_paths, load_article, parse_article
from rag.readers import READERS, SUFFIXES, Read, formats, read_pdf
from rag.records import Article
from rag.roles import Role
from rag.settings import Settings

from .baseline_html import html_to_text as selectolax_html_to_text
from .documents import DOCX_PARAGRAPHS, DOCX_TITLE, PDF_HEAD, PDF_PAGES, PDF_TITLE, make_news_docx, make_news_pdf

HTML_DIR = Path(__file__).parent / "data" / "html"
PAGES = sorted(p.stem for p in HTML_DIR.glob("*.html"))


def _norm(s: str) -> str:
    return " ".join(s.replace("“", '"').replace("”", '"').replace("’", "'").split())


def kept_sentences(article: Article) -> list[str]:
    """The sentences labelled as body text; every other line is kept too, under its role (caption, related,
    site, footer), so precision here is how much of what is labelled body is the article's body."""
    return [_norm(article.text[s:e]) for b in article.blocks if b.role is Role.BODY
            for s, e in sentence_spans(article.text, b.start, b.end)]


def precision_recall(kept: list[str], truth: list[str]) -> tuple[float, float]:
    """A kept sentence is right when it is one of the truth's; a truth sentence is found when kept."""
    truth_set, kept_set = {_norm(t) for t in truth}, set(kept)
    right = sum(1 for k in kept if k in truth_set)
    found = sum(1 for t in truth_set if t in kept_set)
    return right / max(1, len(kept)), found / max(1, len(truth_set))


def _truth(stem: str) -> list[str]:
    return [ln for ln in (HTML_DIR / f"{stem}.truth.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]


def html_scores() -> dict[str, dict[str, tuple[float, float]]]:
    """Per page, (precision, recall) of kept body sentences for each extractor, through the same line rules."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for stem in PAGES:
        path = HTML_DIR / f"{stem}.html"
        new = load_article(path)
        text, title = selectolax_html_to_text(path.read_text(encoding="utf-8"))
        old = parse_article(text, path.name, title_hint=title)
        out[stem] = {"trafilatura": precision_recall(kept_sentences(new), _truth(stem)),
                     "selectolax": precision_recall(kept_sentences(old), _truth(stem))}
    return out


# -- the reader table ---------------------------------------------------------------------------------------

def test_one_table_lists_the_formats_everywhere(tmp_path: Path) -> None:
    from ui.service import UPLOAD_SUFFIXES

    assert tuple(READERS) == SUFFIXES and UPLOAD_SUFFIXES == SUFFIXES
    for suffix in (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"):
        assert suffix in READERS and suffix in formats()
    for name in ("a.PDF", "b.docx", "c.htm", "d.odt", ".hidden.pdf"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in iter_paths([tmp_path])] == ["a.PDF", "b.docx", "c.htm"]
    with pytest.raises(InputError, match=r"d\.odt: unsupported file type '\.odt'; use \.txt, .*\.pdf, .*\.docx"):
        load_article(tmp_path / "d.odt")


def test_a_new_format_is_one_function_and_one_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_csv_notes(data: bytes, path: Path) -> Read:
        return Read(data.decode().replace(";", "\n\n"), title=path.stem.title())

    monkeypatch.setitem(READERS, ".notes", read_csv_notes)
    f = tmp_path / "harbour.notes"
    f.write_text("The harbour reopened on Monday after a long strike.;Ships queued for days.")
    a = load_article(f)
    assert a.title == "Harbour" and a.text[a.blocks[0].start:a.blocks[0].end].startswith("The harbour")


# -- HTML ---------------------------------------------------------------------------------------------------

def test_html_body_precision_and_recall_against_the_hand_marked_truth(capsys: pytest.CaptureFixture[str]) -> None:
    scores = html_scores()
    rows = ["| page | trafilatura P | trafilatura R | selectolax P | selectolax R |", "|---|---|---|---|---|"]
    for stem, s in scores.items():
        rows.append(f"| {stem} | {s['trafilatura'][0]:.2f} | {s['trafilatura'][1]:.2f} | "
                    f"{s['selectolax'][0]:.2f} | {s['selectolax'][1]:.2f} |")
    with capsys.disabled():
        print("\n" + "\n".join(rows))
    for s in scores.values():
        p, r = s["trafilatura"]
        assert p >= 0.9 and r >= 0.9, scores
    mean = {k: sum(s[k][0] + s[k][1] for s in scores.values()) for k in ("trafilatura", "selectolax")}
    assert mean["trafilatura"] >= mean["selectolax"], scores


@pytest.mark.parametrize(("stem", "title", "date", "author", "source"), [
    ("harbour", "Port of Valmora reopens after three-week strike", "2024-03-14", "Marta Ilves", "The Daily Ledger"),
    ("rail", "Northern rail line to close for 18 months of repairs", "2024-05-02", "Jonas Pihl", "World Wire"),
    ("chips", "Lumen unveils 3-nanometre laptop chip, claims 40% longer battery life", "2024-09-20",
     "Ada Okafor", "TechPulse"),
])
def test_html_metadata(stem: str, title: str, date: str, author: str, source: str) -> None:
    a = load_article(HTML_DIR / f"{stem}.html")
    assert (a.title, a.date, a.author, a.source) == (title, date, author, source)
    for script in ("gtag", "dataLayer", "googletag"):  # scripts are not readable text
        assert script not in a.text
    for chrome in ("cookies", "Subscribe", "Most read", "Advertisement", "Sign in", "Got it!"):
        for at in (m.start() for m in re.finditer(re.escape(chrome), a.text)):  # kept, labelled, never body
            assert [b.role for b in a.blocks if b.start <= at < b.end] not in ([], [Role.BODY]), (chrome, a.name)


def test_html_text_outside_the_main_text_stays_findable_labelled() -> None:
    """Every line the old extractor found, and more (nav, banner, standfirst, captions), is in the text,
    after trafilatura's main text and labelled by role, never body; the figcaption is a caption, the line
    naming the author a byline."""
    for stem in PAGES:
        path = HTML_DIR / f"{stem}.html"
        a = load_article(path)
        flat = " ".join(a.text.split())
        old, _ = selectolax_html_to_text(path.read_text(encoding="utf-8"))
        assert [ln for ln in old.split("\n\n") if " ".join(ln.split()) not in flat] == [], stem
    a = load_article(HTML_DIR / "harbour.html")
    for line, roles in (("Dockworkers accept a 6.5 per cent pay rise as ships queue off the coast", None),
                        ("Container cranes stood idle at the Port of Valmora", [Role.CAPTION]),
                        ("Switch your energy supplier today", [Role.SITE]),
                        ("By Marta Ilves, Business correspondent", [Role.BYLINE])):  # names the author
        at = a.text.index(line)
        got = [b.role for b in a.blocks if b.start <= at < b.end]
        assert got == (roles or got) and got and got != [Role.BODY], (line, got)


def test_html_comments_are_kept_labelled_not_body() -> None:
    a = load_article(HTML_DIR / "harbour.html")
    comment = "nowhere near enough given what inflation has done"
    at = a.text.index(comment)  # still in the text and in a block: findable, and shown in context
    assert [b.role for b in a.blocks if b.start <= at < b.end] == [Role.SITE]  # but labelled, never body


# -- PDF ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def news_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_news_pdf(tmp_path_factory.mktemp("pdf") / "courier.pdf")


def test_pdf_file_draws_lines_across_the_columns(news_pdf: Path) -> None:
    """The fixture is a real test of reading order: PDFium's own stream-order text interleaves the columns."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(news_pdf)
    stream = " ".join(pdf[0].get_textpage().get_text_range().split())
    pdf.close()
    assert PDF_PAGES[0][0] not in stream


def test_pdf_two_columns_in_reading_order_with_pages(news_pdf: Path) -> None:
    a = load_article(news_pdf)
    assert a.title == PDF_TITLE and a.author == "Ines Carvalho"
    body = " ".join(_norm(a.text[b.start:b.end]) for b in a.blocks if b.role is Role.BODY)
    positions = [body.find(_norm(p)) for page in PDF_PAGES for p in page]
    assert -1 not in positions and positions == sorted(positions), positions  # every paragraph, in order
    assert len(a.pages) == 2
    for n, page in enumerate(PDF_PAGES, start=1):
        for p in page:
            assert a.page_at(a.text.index(p[:40])) == n
    # running heads, feet and page numbers stay findable, labelled as the page's furniture, never body
    for furniture, role in ((PDF_HEAD, Role.SITE), ("Page 1", Role.FOOTER), ("Page 2", Role.FOOTER),
                            ("News desk: 0800 555 014", Role.FOOTER)):
        at = a.text.index(furniture)
        assert [b.role for b in a.blocks if b.start <= at < b.end] == [role], furniture


def test_pdf_chunks_carry_their_page_and_never_cross_one(news_pdf: Path) -> None:
    a = load_article(news_pdf)
    chunks = chunk_article(a, 300, 50)
    assert {c.page for c in chunks} == {1, 2}
    for c in chunks:
        assert a.text[c.start:c.end] == c.text and "\f" not in c.text
        assert a.page_at(c.start) == c.page == a.page_at(c.end - 1)
    turbines = next(c for c in chunks if "48 turbines" in c.text)
    assert turbines.page == 2


def test_pdf_title_falls_back_to_the_headline(tmp_path: Path) -> None:
    path = make_news_pdf(tmp_path / "untitled.pdf", title=None)
    assert read_pdf(path.read_bytes(), path).title == PDF_TITLE


def test_pdf_without_text_or_broken_gets_a_clear_error(tmp_path: Path) -> None:
    from reportlab.pdfgen import canvas

    blank = tmp_path / "scan.pdf"
    c = canvas.Canvas(str(blank))
    c.rect(100, 100, 200, 200)
    c.showPage()
    c.save()
    with pytest.raises(InputError, match="scan.pdf: the PDF has no text layer"):
        load_article(blank)
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 not really a pdf")
    with pytest.raises(InputError, match="broken.pdf: not a readable PDF"):
        load_article(broken)


def test_pdf_reader_is_pure_over_bytes(news_pdf: Path) -> None:
    one, two = read_pdf(news_pdf.read_bytes(), news_pdf), read_pdf(news_pdf.read_bytes(), news_pdf)
    assert one == two and re.search(r"Page 1\n\f\n", one.text)


# -- DOCX ---------------------------------------------------------------------------------------------------

def test_docx_title_from_properties_paragraphs_and_table(tmp_path: Path) -> None:
    a = load_article(make_news_docx(tmp_path / "clip.docx"))
    assert (a.title, a.author, a.date) == (DOCX_TITLE, "Nils Berg", "2024-04-03")
    assert [a.text[b.start:b.end] for b in a.blocks if b.role is Role.BODY] == DOCX_PARAGRAPHS
    assert [a.text[b.start:b.end] for b in a.blocks if b.role is Role.HEADLINE][0] == DOCX_TITLE
    assert "Loan period | 3 days" in [a.text[b.start:b.end] for b in a.blocks]  # table rows: findable
    assert "Loan period | 3 days" in a.text and "clipping service" not in a.text  # page header not read
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(InputError, match="broken.docx: not a readable .docx"):
        load_article(broken)


# -- uploads in the chat --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["pdf", "docx", "html"])
def test_chat_upload_reads_every_format(kind: str, settings, fake_embedder, fake_llm, tmp_path: Path,
                                        news_pdf: Path) -> None:
    """The upload path goes through the same table and checks: the file is copied byte for byte, indexed,
    and an answer from it cites it (with the page for the PDF)."""
    from rag.answer import Assistant
    from rag.store import build_index
    from ui.service import Service

    from .conftest import SEEDS

    build_index([SEEDS], settings, embedder=fake_embedder)
    service = Service(Assistant(settings, embedder=fake_embedder, llm=fake_llm))
    src = {"pdf": lambda: news_pdf, "docx": lambda: make_news_docx(tmp_path / "clip.docx"),
           "html": lambda: HTML_DIR / "rail.html"}[kind]()
    added = service.add_article(src, f"upload.{kind}")
    assert (service.uploads_dir / f"upload.{kind}").read_bytes() == src.read_bytes()
    assert "Added" in added.message()
    question, claim = {
        "pdf": ("How many turbines will be installed?", "Under the plan, 48 turbines will be installed [1]."),
        "docx": ("How many cargo bikes can members borrow?", "Members can borrow one of six bikes [1]."),
        "html": ("How long will the rail line close?", "The rail line will close for 18 months [1]."),
    }[kind]
    fake_llm.enqueue(claim)
    answer = service.assistant().ask(question)
    assert answer.answerable and answer.citations[0].article == f"upload.{kind}", answer
    c = answer.citations[0]
    assert c.quote == service.assistant().store.articles[c.article].text[c.start:c.end]
    assert c.page == (2 if kind == "pdf" else None)


def test_chat_upload_of_a_broken_pdf_is_refused_and_changes_nothing(settings, fake_embedder, fake_llm,
                                                                    tmp_path: Path) -> None:
    from rag.answer import Assistant
    from rag.store import build_index
    from ui.service import Service

    from .conftest import SEEDS

    build_index([SEEDS], settings, embedder=fake_embedder)
    service = Service(Assistant(settings, embedder=fake_embedder, llm=fake_llm))
    bad = tmp_path / "gradio-tmp.pdf"
    bad.write_bytes(b"%PDF-1.7 truncated")
    with pytest.raises(InputError, match=r"^paper\.pdf: not a readable PDF"):
        service.add_article(bad, "paper.pdf")
    assert not (service.uploads_dir / "paper.pdf").exists()


def test_eml_plain_and_html_bodies(tmp_path: Path) -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "Harbour Weekly <news@harbour.example>"
    msg["Subject"] = "Ferry timetable changes from June"
    msg["Date"] = "Mon, 06 May 2024 07:30:00 +0000"
    msg.set_content("The island ferry will run every 40 minutes from June, the operator said on Monday.\n")
    plain = tmp_path / "ferry.eml"
    plain.write_bytes(msg.as_bytes())
    a = load_article(plain)
    assert (a.title, a.source, a.date) == ("Ferry timetable changes from June", "Harbour Weekly", "2024-05-06")
    assert [a.text[b.start:b.end] for b in a.blocks] == [
        "The island ferry will run every 40 minutes from June, the operator said on Monday."]
    html_only = EmailMessage()
    for h in ("From", "Subject", "Date"):
        html_only[h] = msg[h]
    html_only.set_content((HTML_DIR / "rail.html").read_text(encoding="utf-8"), subtype="html")
    (tmp_path / "rail.eml").write_bytes(html_only.as_bytes())
    b = load_article(tmp_path / "rail.eml")
    assert b.title == "Ferry timetable changes from June" and "Skarp viaduct" in b.text
    assert all(b.text[k.start:k.end].find("cookies") < 0 for k in b.blocks if k.role is Role.BODY)
    (tmp_path / "junk.eml").write_bytes(b"no headers here, just words in a file that is not mail")
    with pytest.raises(InputError, match="junk.eml: not an e-mail message"):
        load_article(tmp_path / "junk.eml")


# -- both stores ----------------------------------------------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("milvus_lite") is None, reason="needs pymilvus and milvus-lite")
def test_a_pdf_through_milvus_lite_keeps_pages_and_roles(settings, fake_embedder, fake_llm, news_pdf: Path,
                                                         tmp_path: Path) -> None:
    """Both stores read articles through ``rag.store.read_articles``: Milvus gets every format, and its
    stored articles and chunks carry the same pages and role labels as the folder store's."""
    from rag.answer import Assistant
    from rag.store import build_index
    from rag.stores import open_store
    from rag.stores.milvus import disconnect

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(news_pdf, corpus / "courier.pdf")
    uri = str(tmp_path / "lite" / "x.db")
    milvus = settings.replace(store=f"milvus:{uri}")
    try:
        build_index([corpus], settings, fake_embedder)
        build_index([corpus], milvus, fake_embedder)
        folder, store = open_store(settings), open_store(milvus)
        assert store.articles["courier.pdf"].to_dict() == folder.articles["courier.pdf"].to_dict()
        assert sorted(repr(c.to_dict()) for c in store.chunks) == sorted(repr(c.to_dict()) for c in folder.chunks)
        assert {(c.page, c.role) for c in store.chunks} >= {(1, Role.BODY), (2, Role.BODY), (1, Role.SITE),
                                                            (2, Role.FOOTER)}
        fake_llm.enqueue("Under the plan, 48 turbines will be installed [1].")
        answer = Assistant(milvus, embedder=fake_embedder, llm=fake_llm).ask("How many turbines will be installed?")
        cited = answer.to_dict()["citations"]
        assert answer.answerable and cited and cited[0]["page"] == 2 and cited[0]["role"] == "body", cited
        assert "48 turbines" in cited[0]["quote"]
    finally:
        disconnect(uri)


def test_a_citation_names_the_page_of_its_quote_when_evidence_runs_past_its_chunk(news_pdf: Path) -> None:
    """``select_evidence`` merges adjacent chosen sentences of one article into one span, so evidence that
    starts in the last chunk of page 1 can run on into page 2: the citation names the quote's page."""
    from rag.cite import verify
    from rag.records import Evidence

    from .fakes import HashEmbedder

    a = load_article(news_pdf)
    chunks = [c for c in chunk_article(a, 700, 100) if c.role is Role.BODY]
    last_on_1 = [c for c in chunks if c.page == 1][-1]
    first_on_2 = next(c for c in chunks if c.page == 2)
    s, e = first_on_2.sentences[0]
    ev = Evidence(1, last_on_1, last_on_1.start, e, a.text[last_on_1.start:e])
    quote = a.text[s:e]
    checked = verify(f"{quote[:-1]} [1].", [ev], HashEmbedder(), {a.name: a.text}, about={a.name: a.about})
    (c,) = checked.citations
    assert c.quote == a.text[c.start:c.end] and quote in c.quote and c.page == 2 == a.page_at(c.start)


def test_a_body_sentence_after_a_headline_is_cited_as_body(tmp_path: Path) -> None:
    """Evidence never merges a headline with the paragraph after it, so the citation names the quote's role."""
    from rag.cite import verify
    from rag.prompt import select_evidence
    from rag.records import Passage

    from .fakes import HashEmbedder

    a = load_article(make_news_docx(tmp_path / "clip.docx"))
    chunks = chunk_article(a, 700, 100)
    headline = next(c for c in chunks if c.role is Role.HEADLINE)
    body = next(c for c in chunks if c.role is Role.BODY)
    assert a.text[headline.end:body.start].strip() == ""  # adjacent: they would merge if roles were ignored
    s, e = body.sentences[0]
    passages = [Passage(rank=1, chunk=headline, score=1.0), Passage(rank=2, chunk=body, score=0.9)]
    evidence = select_evidence(a.text[s:e], passages, HashEmbedder(), {a.name: a.text}, Settings(context_tokens=500))
    assert {ev.chunk.role for ev in evidence} == {Role.HEADLINE, Role.BODY}
    assert all(ev.chunk.start <= ev.start and ev.end <= ev.chunk.end for ev in evidence)
    marker = next(ev.marker for ev in evidence if ev.chunk is body)
    checked = verify(f"{a.text[s:e - 1]} [{marker}].", evidence, HashEmbedder(), {a.name: a.text},
                     about={a.name: a.about})
    (c,) = checked.citations
    assert a.text[s:e] in c.quote and c.role is Role.BODY
