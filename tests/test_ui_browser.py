"""Browser tests of the app with fakes (no real models, a few seconds): hostile article text stays text,
Stop interrupts a running answer, copy and download work, and a bad upload gets a clear message."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.answer import Assistant
from rag.settings import Settings
from rag.store import build_index
from ui.app import slug

from .conftest import SEEDS
from .fakes import FakeLLM, HashEmbedder
from .test_ui_server import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser

EVIL = ("Harbour council approves the new lighthouse budget\n\n"
        "The harbour council approved a lighthouse budget of 12 million crowns <script>window.__pwned = 1"
        "</script> on Tuesday, the clerk said.\n\n"
        "Critics said the <img src=x onerror=\"window.__pwned = 2\"> lighthouse plan ignored the old pier.\n")
EVIL_Q = "How large is the lighthouse budget approved by the harbour council?"
EVIL_A = "The harbour council approved a lighthouse budget of 12 million crowns <b onclick=x>now</b> [1]."


class PacedLLM(FakeLLM):
    """A fake LLM that streams slowly enough to be stopped from the browser."""

    def __init__(self) -> None:
        super().__init__()
        self.delay = 0.0

    def stream_chat(self, messages: Any, max_tokens: int, stop: Any = None) -> Iterator[str]:
        for piece in super().stream_chat(messages, max_tokens, stop):
            time.sleep(self.delay)
            yield piece


@pytest.fixture(scope="module")
def fake_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, PacedLLM, Settings]]:
    from ui.app import ServerThread, create_app

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); the browser tests need it")
    tmp = tmp_path_factory.mktemp("ui-fake")
    corpus = tmp / "corpus"
    corpus.mkdir()
    for f in SEEDS.iterdir():
        (corpus / f.name).write_bytes(f.read_bytes())
    (corpus / "evil.txt").write_text(EVIL, encoding="utf-8")
    settings = Settings(index_dir=tmp / "index", embedder="fake-hash")
    embedder = HashEmbedder()
    build_index([corpus], settings, embedder=embedder)
    llm = PacedLLM()
    server = ServerThread(create_app(Assistant(settings, embedder=embedder, llm=llm)))
    url = server.start()
    yield url, llm, settings
    server.stop()


@pytest.fixture
def page(fake_app: tuple[str, PacedLLM, Settings]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=fake_app[0])
            pg = context.new_page()
            pg.goto(f"{fake_app[0]}/")
            pg.wait_for_selector("#rag-question textarea", timeout=60_000)
            yield pg
        finally:
            browser.close()


def _ask(page: Any, question: str) -> None:
    page.fill("#rag-question textarea", question)
    page.click("#rag-ask")


def test_hostile_article_and_answer_text_is_shown_as_text(page: Any, fake_app: Any) -> None:
    _, llm, _ = fake_app
    llm.delay = 0.0
    llm.enqueue(EVIL_A)
    _ask(page, EVIL_Q)
    page.wait_for_selector("#rag-chat sup.rag-cite a", timeout=30_000)
    card = page.locator("#rag-sources .rag-src").first
    assert "evil.txt" in card.inner_text()
    assert "<script>window.__pwned = 1</script>" in card.inner_text()  # shown, not run
    assert "<b onclick=x>now</b>" in page.inner_text('#rag-chat [data-testid="bot"]')
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#rag-sources script, #rag-sources img, #rag-chat b[onclick]").count() == 0

    page.click("#rag-copy")
    page.wait_for_function("() => navigator.clipboard.readText().then(t => t.includes('### References'))",
                           timeout=10_000)
    assert page.inner_text("#rag-copy") == "Copied"  # feedback, then back to its label
    page.wait_for_function("() => document.querySelector('#rag-copy').innerText === 'Copy answer'",
                           timeout=10_000)
    with page.expect_download() as download:
        page.click("#rag-download")
    assert download.value.suggested_filename == slug(EVIL_Q) + ".md"
    assert "lighthouse budget" in Path(download.value.path()).read_text(encoding="utf-8")


def test_copy_is_disabled_with_nothing_to_copy_and_stop_is_secondary(page: Any) -> None:
    assert page.locator("#rag-copy").is_disabled() and page.locator("#rag-download").is_disabled()
    assert "secondary" in (page.get_attribute("#rag-stop", "class") or "")
    assert "primary" in (page.get_attribute("#rag-ask", "class") or "")


def test_trash_icon_resets_sources_and_memory(page: Any, fake_app: Any) -> None:
    _, llm, _ = fake_app
    llm.delay = 0.0
    llm.enqueue("The Mate 60 phone has the Kirin 9000S chip [1].")
    _ask(page, "What chip does the Huawei Mate 60 phone have?")  # not asked elsewhere: not from the cache
    page.wait_for_selector("#rag-chat sup.rag-cite a", timeout=30_000)
    assert page.locator("#rag-sources .rag-turn").count() == 1
    page.locator("#rag-chat").hover()
    page.click('#rag-chat button[aria-label="Clear"]')
    page.wait_for_function("() => !document.querySelector('#rag-chat [data-testid=\"bot\"]')", timeout=10_000)
    page.wait_for_function("() => !document.querySelector('#rag-sources .rag-turn')", timeout=10_000)
    assert page.locator("#rag-copy").is_disabled()
    calls = len(llm.calls)
    llm.enqueue("The articles do not say.")
    _ask(page, "When did he take over?")
    page.wait_for_selector("#rag-chat .rag-refusal", timeout=30_000)
    assert len(llm.calls) == calls + 1  # answered alone: no rewrite against the cleared conversation
    assert page.locator("#rag-sources .rag-rewritten").count() == 0


def test_labels_are_plain_text_and_axe_finds_no_serious_violation(page: Any, fake_app: Any) -> None:
    from axe_playwright_python.sync_playwright import Axe

    _, llm, _ = fake_app
    llm.delay = 0.0
    llm.enqueue(EVIL_A)
    question = "How large is the <b>lighthouse</b> budget & who approved it?"
    _ask(page, question)
    page.wait_for_selector("#rag-chat sup.rag-cite a", timeout=30_000)
    page.wait_for_timeout(300)
    labels = page.eval_on_selector_all("#rag-chat [aria-label*=\"s message: \"]",
                                       "els => els.map(e => e.getAttribute('aria-label'))")
    assert labels and labels[0] == f"user's message: {question}", labels
    assert not any("&#" in x or "&amp;" in x or "<sup" in x for x in labels), labels
    assert page.locator("#rag-question textarea").evaluate("e => [...e.labels].map(l => l.innerText)") \
        == ["Question"]
    violations = Axe().run(page).response["violations"]
    bad = [(v["id"], v["impact"]) for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, bad


def test_stop_interrupts_a_running_answer(page: Any, fake_app: Any) -> None:
    _, llm, _ = fake_app
    llm.delay = 0.05
    llm.enqueue(" ".join(["Huawei"] * 400) + " [1].")
    _ask(page, "Which chip powers Huawei's Mate 60 series phone?")
    page.wait_for_function("() => document.querySelector('#rag-chat').innerText.includes('\u258c')",
                           timeout=30_000)
    page.click("#rag-stop")
    page.wait_for_function("() => document.querySelector('#rag-chat').innerText.includes('(stopped)')",
                           timeout=10_000)
    llm.delay = 0.0
    llm.enqueue("The Mate 60 series phone is powered by the Kirin 9000S chip [1].")
    _ask(page, "What chip powers the Mate 60 series phone?")  # the assistant is free again
    page.wait_for_selector("#rag-chat sup.rag-cite a", timeout=30_000)


def test_bad_upload_gets_a_clear_message(page: Any, fake_app: Any, tmp_path: Path) -> None:
    _, _, settings = fake_app
    bad = tmp_path / "scan.pdf"
    bad.write_bytes(b"%PDF-1.4\x00\x01binary")
    page.set_input_files("#rag-upload input[type=file]", str(bad))
    page.wait_for_function("() => document.querySelector('#rag-upload-status').innerText"
                           ".includes('Not added')", timeout=30_000)
    status = page.inner_text("#rag-upload-status")
    assert "scan.pdf" in status and "/tmp/gradio" not in status
    assert not (settings.index_dir / "uploads" / "scan.pdf").exists()
