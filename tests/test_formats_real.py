"""``rag ask`` answers from a PDF, a DOCX and a saved web page, with the real embedder and GGUF model.

Each answer must hold the fact any correct answer holds and cite the file it came from verbatim
(``quote == text[start:end]``); the PDF citation names the page the fact is printed on.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.cli import main
from rag.settings import Settings
from rag.store import IndexStore, build_index

from .conftest import SEEDS
from .documents import make_news_docx, make_news_pdf

HTML = Path(__file__).parent / "data" / "html" / "harbour.html"


@pytest.fixture(scope="module")
def formats_index(tmp_path_factory: pytest.TempPathFactory, real_embedder) -> Path:
    corpus = tmp_path_factory.mktemp("formats") / "corpus"
    shutil.copytree(SEEDS, corpus)
    make_news_pdf(corpus / "courier.pdf")
    make_news_docx(corpus / "clip.docx")
    shutil.copy(HTML, corpus / "harbour.html")
    index_dir = corpus.parent / "index"
    report = build_index([corpus], Settings(index_dir=index_dir), real_embedder)
    assert not report.skipped and report.total_articles == 8
    return index_dir


@pytest.mark.real
def test_search_names_the_pdf_page(formats_index: Path) -> None:
    result = CliRunner().invoke(main, ["search", "How many turbines will be installed in the bay?", "--json",
                                       "--index-dir", str(formats_index)])
    assert result.exit_code == 0, result.output
    passages = json.loads(result.output)["passages"]
    assert len(passages) == Settings().k  # --k defaults to the k setting
    top = passages[0]
    assert top["article"] == "courier.pdf" and top["page"] == 2 and "48 turbines" in top["text"]
    assert all(p["page"] is None for p in passages if p["article"] != "courier.pdf")


@pytest.mark.real
@pytest.mark.llm
@pytest.mark.parametrize(("question", "facts", "article", "page"), [
    ("How many turbines will be installed under the Valmora tidal power plan?", ("48",), "courier.pdf", 2),
    ("How many electric cargo bikes can members of the Hollund library borrow?", ("six", "6"), "clip.docx", None),
    ("What pay rise did the Valmora dockworkers accept?", ("6.5",), "harbour.html", None),
])
def test_ask_answers_from_each_format_with_a_verbatim_citation(
        formats_index: Path, question: str, facts: tuple[str, ...], article: str, page: int | None) -> None:
    result = CliRunner().invoke(main, ["ask", question, "--json", "--index-dir", str(formats_index)])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["answerable"], answer["raw_answer"]
    assert any(f in answer["answer"].lower() for f in facts), answer["answer"]
    store = IndexStore.load(formats_index, Settings(index_dir=formats_index))
    for c in answer["citations"]:
        a = store.articles[c["article"]]
        assert c["quote"] == a.text[c["start"]:c["end"]]
        assert c["page"] == a.page_at(c["start"])
    assert all(c["role"] for c in answer["citations"])  # every citation says where on the page it sits
    cited = [c for c in answer["citations"] if c["article"] == article]
    assert cited and any(any(f in c["quote"].lower() for f in facts) for c in cited), answer["citations"]
    assert all(c["page"] == page for c in cited)
