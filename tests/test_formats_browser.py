"""Browser test with fakes: a two-column PDF uploaded in the chat is indexed, and an answer from it shows
a source card naming the file and the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .documents import make_news_pdf
from .test_ui_browser import _ask, fake_app, page  # noqa: F401 - the fixtures are used by name

pytestmark = pytest.mark.browser


def test_upload_a_pdf_then_ask_about_it(page: Any, fake_app: Any, tmp_path: Path) -> None:  # noqa: F811
    _, llm, settings = fake_app
    pdf = make_news_pdf(tmp_path / "courier.pdf")
    page.set_input_files("#rag-upload input[type=file]", str(pdf))
    # The status is written by the upload event when indexing ends: wait for it, then read it.
    page.wait_for_function("() => /courier\\.pdf/.test(document.querySelector('#rag-upload-status').innerText)",
                           timeout=120_000)
    assert "Added" in page.inner_text("#rag-upload-status"), page.inner_text("#rag-upload-status")
    assert (settings.index_dir / "uploads" / "courier.pdf").read_bytes() == pdf.read_bytes()
    llm.delay = 0.0
    llm.enqueue("Under the approved plan, 48 turbines will be installed [1].")
    _ask(page, "How many turbines will be installed in Valmora bay?")
    page.wait_for_selector("#rag-chat sup.rag-cite a", timeout=30_000)
    # The sources panel is another output of the answer event: wait for its card, not just the chat.
    page.wait_for_function("() => { const c = document.querySelector('#rag-sources .rag-src');"
                           " return c && c.innerText.includes('courier.pdf'); }", timeout=30_000)
    card = page.locator("#rag-sources .rag-src").first.inner_text()
    assert "courier.pdf" in card and "p. 2" in card and "48 turbines" in card
