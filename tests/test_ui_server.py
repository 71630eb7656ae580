"""The real app (real embedder, index and default GGUF model) served on a free local port, driven through
gradio_client, the ``openai`` client library and headless Chromium. One server (and one model load)
serves the whole module; LLM questions are few because each costs seconds on 2 cores."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rag.answer import Assistant
from rag.settings import Settings
from rag.store import IndexStore
from rag.vocab import terms

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ANSWER_TIMEOUT_S = 300  # one answer on a busy 2-core machine

# question, words the answer must contain, words one cited quote must contain
FACTS = {
    "kirin": ("Which chip powers Huawei's Mate 60 series phone?", "Kirin 9000S", "Kirin 9000S"),
    "sora": ("How much did the Sora Index rise?", "11.4 per cent", "11.4 per cent"),
    "aisphere": ("How much did AIsphere raise?", "14 million", "US$14 million"),
}
FIRST_Q = "Which company's chips does ByteDance use for AI model training?"
STAGED_Q = "Which company's AI chip has ByteDance begun using to train its large models?"
LANTERN_TITLE = "Quillbridge opens a museum of paper lanterns"
LANTERN = (f"{LANTERN_TITLE}\n\n2031-05-04 09:00 Quillbridge Courier\n\n"
           "The town of Quillbridge opened the Zephyrine Lantern Museum on Saturday, its mayor said.\n\n"
           "The museum holds exactly 4,217 paper lanterns, collected over forty years by the retired ferry "
           "captain Odile Marsk.\n\nTickets cost three crowns for adults and nothing for children.\n")


@dataclass
class Live:
    url: str
    settings: Settings
    assistant: Assistant

    def store(self) -> IndexStore:
        return IndexStore.load(self.settings.index_dir, self.settings)


@pytest.fixture(scope="module")
def live(real_settings: Settings, real_index: IndexStore, real_embedder: object,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The app on 127.0.0.1 with a free port, over its own copy of the real index (uploads stay local)."""
    from ui.app import ServerThread, create_app

    settings = real_settings.replace(index_dir=tmp_path_factory.mktemp("ui") / "index")
    shutil.copytree(real_settings.index_dir, settings.index_dir, ignore=shutil.ignore_patterns(".lock"))
    assistant = Assistant(settings, embedder=real_embedder)
    assistant.warm_up()  # loads the model before the clock of any test starts
    server = ServerThread(create_app(assistant))
    url = server.start()
    yield Live(url, settings, assistant)
    server.stop()


def _check_citations(citations: list[dict], store: IndexStore, quote_has: str | None = None) -> None:
    assert citations, "an answer without citations"
    for c in citations:
        assert store.articles[c["article"]].text[c["start"]:c["end"]] == c["quote"]
        assert c["title"] and c["chunk_id"].startswith(c["article"].rsplit(".", 1)[0])
    if quote_has:
        assert any(quote_has in c["quote"] for c in citations), citations


@pytest.mark.real
def test_models_and_a_bad_question(live: Live) -> None:
    from openai import BadRequestError, OpenAI

    oa = OpenAI(base_url=f"{live.url}/v1", api_key="not-needed")
    ids = [m.id for m in oa.models.list()]
    assert ids[0] == live.settings.model
    with pytest.raises(BadRequestError, match="empty"):
        oa.chat.completions.create(model=ids[0], messages=[{"role": "user", "content": " "}])


@pytest.mark.real
@pytest.mark.llm
@pytest.mark.slow
def test_five_concurrent_questions_get_their_own_cited_answers(live: Live) -> None:
    """Three openai-client requests (one streamed) and two gradio_client calls at once; three distinct
    questions, so the repeats also check that concurrent requests never get each other's answers."""
    from gradio_client import Client
    from openai import OpenAI

    oa = OpenAI(base_url=f"{live.url}/v1", api_key="not-needed", timeout=ANSWER_TIMEOUT_S * 5)
    gc = Client(f"{live.url}/", verbose=False)
    results: dict[str, dict] = {}
    errors: list[BaseException] = []

    def openai_plain(key: str) -> dict:
        r = oa.chat.completions.create(model=live.settings.model,
                                       messages=[{"role": "user", "content": FACTS[key][0]}])
        return {"answer": r.choices[0].message.content, "citations": r.citations,  # type: ignore[attr-defined]
                "answerable": r.answerable}  # type: ignore[attr-defined]

    def openai_stream(key: str) -> dict:
        chunks = list(oa.chat.completions.create(model=live.settings.model, stream=True,
                                                 messages=[{"role": "user", "content": FACTS[key][0]}]))
        final = chunks[-1]
        raw = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert final.choices[0].finish_reason == "stop" and raw.strip()
        return {"answer": final.answer, "citations": final.citations,  # type: ignore[attr-defined]
                "answerable": final.answerable}  # type: ignore[attr-defined]

    def gradio(key: str) -> dict:
        return gc.predict(FACTS[key][0], 0, "", "", api_name="/ask")

    jobs = {"kirin/openai": (openai_plain, "kirin"), "kirin/gradio": (gradio, "kirin"),
            "sora/openai": (openai_plain, "sora"), "sora/gradio": (gradio, "sora"),
            "aisphere/openai-stream": (openai_stream, "aisphere")}

    def run(name: str) -> None:
        fn, key = jobs[name]
        try:
            results[name] = fn(key)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(n,)) for n in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(ANSWER_TIMEOUT_S * 5)
    print(f"5 concurrent questions answered in {time.perf_counter() - t0:.1f} s")
    assert not errors, errors
    store = live.store()
    for name, (_, key) in jobs.items():
        _, must, quote_has = FACTS[key]
        r = results[name]
        assert r["answerable"] is True and must in r["answer"], (name, r)
        _check_citations(r["citations"], store, quote_has)


def _wait_answer(page, n: int) -> str:  # type: ignore[no-untyped-def]
    """Wait until the n-th answer (1-based) is verified; return its inner HTML."""
    page.wait_for_function(
        """n => { const bots = document.querySelectorAll('#rag-chat [data-testid="bot"]');
                  if (bots.length < n) return false;
                  const h = bots[n - 1].innerHTML;
                  return !h.includes('\u258c') && !h.includes('rag-wait') &&
                         (h.includes('rag-cite') || h.includes('rag-refusal')); }""",
        arg=n, timeout=ANSWER_TIMEOUT_S * 1000)
    return page.eval_on_selector_all('#rag-chat [data-testid="bot"]',
                                     "(els, n) => els[n - 1].innerHTML", n)


def _ask(page, question: str) -> None:  # type: ignore[no-untyped-def]
    page.fill("#rag-question textarea", question)
    page.click("#rag-ask")


@pytest.mark.real
@pytest.mark.llm
@pytest.mark.browser
@pytest.mark.slow
def test_browser_chat_sources_follow_up_and_upload(live: Live, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); the browser test needs it")
    from playwright.sync_api import sync_playwright

    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{live.url}/")
            page.wait_for_selector("#rag-question textarea", timeout=60_000)
            # Record whether raw tokens were ever shown (with the cursor) before the verified answer.
            page.evaluate("""() => { window.__sawStream = false;
                new MutationObserver(() => { const c = document.querySelector('#rag-chat');
                  if (c && c.innerText.includes('\u258c')) window.__sawStream = true; })
                .observe(document.body, {subtree: true, childList: true, characterData: true}); }""")

            # 1. A question: streamed, then verified with a citation link.
            _ask(page, FIRST_Q)
            first = _wait_answer(page, 1)
            assert page.evaluate("window.__sawStream"), "no streamed tokens were shown"
            assert "rag-cite" in first and ("Huawei" in first or "Ascend" in first), first

            # 2. Open its source: the card is highlighted, in view, and quotes the article exactly.
            page.click("#rag-chat sup.rag-cite a >> nth=0")
            card = page.locator(".rag-src.rag-active")
            card.wait_for(timeout=10_000)
            assert card.get_attribute("id") == "src-0-1"
            page.wait_for_function("() => { const r = document.querySelector('.rag-src.rag-active')"
                                   ".getBoundingClientRect(); return r.top >= 0 && r.top < innerHeight; }",
                                   timeout=10_000)  # scrolled into view
            mark = card.locator("mark").inner_text()
            texts = [a.text for a in live.store().articles.values()]
            assert mark and any(" ".join(mark.split()) in " ".join(t.split()) for t in texts)
            page.screenshot(path=str(out / "ui-source-open.png"))

            # 3. A follow-up is rewritten with the conversation and the rewrite is shown. Which company the
            # small model's rewrite names differs across CPUs (greedy decoding takes other SIMD paths), so
            # this proves what any rewrite holds: it is shown, it is not the bare follow-up, and it carries
            # the conversation (a content term of the first question).
            _ask(page, "What about Baidu?")
            second = _wait_answer(page, 2)
            rewritten = page.locator("#rag-sources .rag-turn[open] .rag-rewritten").inner_text()
            shown = rewritten.split("“", 1)[-1].rstrip("”").strip()
            assert shown and shown != "What about Baidu?", rewritten
            assert set(terms(shown)) & set(terms(FIRST_Q)), rewritten
            assert "rag-cite" in second or "rag-refusal" in second

            # 4. Upload a new article; it is searchable at once and cited.
            src = tmp_path / "quillbridge-lanterns.txt"
            src.write_text(LANTERN, encoding="utf-8")
            page.set_input_files("#rag-upload input[type=file]", str(src))
            page.wait_for_function("() => document.querySelector('#rag-upload-status').innerText"
                                   ".includes('quillbridge-lanterns.txt')", timeout=120_000)
            assert "Added" in page.inner_text("#rag-upload-status")
            assert (live.settings.index_dir / "uploads" / src.name).is_file()
            _ask(page, "How many paper lanterns does the Zephyrine Lantern Museum hold?")
            third = _wait_answer(page, 3)
            assert "4,217" in third and "rag-cite" in third, third
            newest = page.locator("#rag-sources .rag-turn").first
            assert LANTERN_TITLE in newest.inner_text()
            assert "4,217" in newest.locator("mark").first.inner_text()
            assert "2031-05-04" in newest.inner_text()
            page.wait_for_timeout(300)
            page.screenshot(path=str(out / "ui-chat.png"), full_page=True)
            (out / "ui-chat.json").write_text(json.dumps({"answers": [first, second, third]}, indent=1))
        finally:
            browser.close()


# Records every text the status line shows, and whether the "Searching…" placeholder outlived the stream.
_WATCH = """() => { window.__statuses = []; window.__staleWait = false;
  new MutationObserver(() => {
    const s = document.querySelector('#rag-status'); const c = document.querySelector('#rag-chat');
    const t = s ? s.innerText.trim() : '';
    if (t && window.__statuses[window.__statuses.length - 1] !== t) window.__statuses.push(t);
    if (c && c.innerText.includes('\u258c') && c.innerHTML.includes('rag-wait')) window.__staleWait = true;
  }).observe(document.body, {subtree: true, childList: true, characterData: true}); }"""


def _axe(page, name: str, out: Path) -> None:  # type: ignore[no-untyped-def]
    """Run axe-core on the page; fail on serious or critical violations (the full result is saved)."""
    from axe_playwright_python.sync_playwright import Axe

    page.wait_for_timeout(1000)  # let the last update render
    result = Axe().run(page)
    violations = result.response["violations"]
    (out / f"axe-{name}.json").write_text(json.dumps(violations, indent=1))
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in violations
           if v["impact"] in ("serious", "critical")]
    assert not bad, bad


def _bubbles(page) -> int:  # type: ignore[no-untyped-def]
    return page.locator('#rag-chat [data-testid="bot"]').count()


@pytest.mark.real
@pytest.mark.llm
@pytest.mark.browser
@pytest.mark.slow
def test_browser_shows_its_work_resets_and_fits_a_phone(live: Live, tmp_path: Path) -> None:
    """Refusal with the closest passages, staged progress, trash and New conversation resetting the
    memory, the live article count after an upload, a phone-width layout, and axe-core at each step."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); the browser test needs it")
    from playwright.sync_api import sync_playwright

    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.goto(f"{live.url}/")
            page.wait_for_selector("#rag-question textarea", timeout=60_000)
            n_articles = len(live.store().articles)
            # The header's count comes from the page-load event, which may finish after the textarea shows.
            page.wait_for_function(f"() => document.querySelector('#rag-count').innerText"
                                   f".includes('{n_articles} articles indexed')", timeout=30_000)
            # An empty chat offers questions drawn from the articles; the placeholder fits its box.
            examples = [b for b in page.locator("#rag-examples button").all_inner_texts() if b.strip()]
            assert examples, "no example questions"
            assert page.evaluate("""() => { const t = document.querySelector('#rag-question textarea');
                const st = getComputedStyle(t); const c = document.createElement('canvas').getContext('2d');
                c.font = `${st.fontSize} ${st.fontFamily}`;
                return c.measureText(t.placeholder).width <= t.clientWidth - parseFloat(st.paddingLeft)
                                                                  - parseFloat(st.paddingRight); }""")
            assert page.get_attribute("#rag-question textarea", "aria-label") in (None, "Question") \
                and page.locator("#rag-question textarea").evaluate("e => e.labels.length || e.ariaLabel") != 0
            page.screenshot(path=str(out / "ui-empty.png"))
            _axe(page, "empty", out)

            # 1. A refusal shows the closest passages, the question's words marked.
            _ask(page, "In which year did Huawei open its first store in Lisbon?")  # no article says
            refusal = _wait_answer(page, 1)
            assert "rag-refusal" in refusal, refusal
            panel = page.locator("#rag-sources .rag-turn[open]")
            assert "Closest passages (not judged to answer the question)" in panel.inner_text()
            assert panel.locator(".rag-near").count() >= 1 and panel.locator("mark.rag-term").count() >= 1
            page.screenshot(path=str(out / "ui-refusal.png"), full_page=True)
            _axe(page, "refusal", out)

            # 2. An answer after visible stages with elapsed seconds; the placeholder goes once tokens stream.
            page.evaluate(_WATCH)
            _ask(page, STAGED_Q)  # not asked by another test of this server: a cached answer has no stages
            assert "rag-cite" in _wait_answer(page, 2)
            statuses = page.evaluate("window.__statuses")
            stages = ["Searching the articles", "Reading", "Writing the answer", "Checking the citations"]
            seen = [next((i for i, s in enumerate(statuses) if stage in s), -1) for stage in stages]
            assert -1 not in seen and seen == sorted(seen), statuses
            assert all(s.endswith(" s") for s in statuses if "…" in s), statuses  # elapsed seconds
            assert "Answered in" in statuses[-1], statuses
            assert not page.evaluate("window.__staleWait"), "'Searching…' stayed up while the answer streamed"

            # 3. The trash icon: bubbles, sources and memory go; a follow-up is not rewritten.
            page.locator("#rag-chat").hover()
            page.locator('#rag-chat button[aria-label="Clear"], #rag-chat button[title="Clear"]').first.click()
            page.wait_for_function("() => !document.querySelector('#rag-chat [data-testid=\"bot\"]')",
                                   timeout=10_000)
            page.wait_for_function("() => !document.querySelector('#rag-sources .rag-turn')",
                                   timeout=30_000)  # the reset's round trip, slower than the client-side clear
            assert page.locator("#rag-copy").is_disabled()
            page.evaluate(_WATCH)
            _ask(page, "When did he take over?")
            _wait_answer(page, 1)
            assert page.locator("#rag-sources .rag-rewritten").count() == 0
            assert not any("Searching for" in s for s in page.evaluate("window.__statuses"))

            # 4. New conversation resets the same way.
            page.click("#rag-new")
            page.wait_for_function("() => !document.querySelector('#rag-chat [data-testid=\"bot\"]')",
                                   timeout=10_000)
            page.wait_for_function("() => !document.querySelector('#rag-sources .rag-turn')",
                                   timeout=30_000)  # the reset's round trip, slower than the client-side clear
            assert page.locator("#rag-examples button").first.is_visible()
            _ask(page, "What about Baidu?")
            _wait_answer(page, 1)
            assert page.locator("#rag-sources .rag-rewritten").count() == 0

            # 5. An upload; a fresh page reads the new count and offers a question about the new article.
            src = tmp_path / "ondrel-glassworks.txt"
            src.write_text("Ondrel glassworks reopens after the flood\n\n2031-06-01 10:00 Ondrel Gazette\n\n"
                           "The Vessarine Glassworks in Ondrel reopened on Monday after a year of repairs. The "
                           "Vessarine Glassworks employs 312 glassblowers, its owner said.\n", encoding="utf-8")
            page.set_input_files("#rag-upload input[type=file]", str(src))
            page.wait_for_function("() => document.querySelector('#rag-upload-status').innerText"
                                   ".includes('ondrel-glassworks.txt')", timeout=120_000)
            page.wait_for_function(f"() => document.querySelector('#rag-count').innerText"
                                   f".includes('{n_articles + 1} articles')", timeout=30_000)
            fresh = browser.new_page(viewport={"width": 1366, "height": 900})
            fresh.goto(f"{live.url}/")
            fresh.wait_for_selector("#rag-question textarea", timeout=60_000)
            fresh.wait_for_function(f"() => document.querySelector('#rag-count').innerText"
                                    f".includes('{n_articles + 1} articles')", timeout=30_000)
            fresh.wait_for_function("() => document.querySelector('#rag-examples').innerText"
                                    ".includes('Vessarine Glassworks')", timeout=30_000)
            fresh.close()

            # 6. Phone width: the marker stays with its word; sources link back to the answer.
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
            phone.goto(f"{live.url}/")
            phone.wait_for_selector("#rag-question textarea", timeout=60_000)
            _ask(phone, STAGED_Q)  # answered before: from the cache
            assert "rag-cite" in _wait_answer(phone, 1)
            alone = phone.evaluate("""() => { const out = [];
                for (const sup of document.querySelectorAll('#rag-chat sup.rag-cite')) {
                  const prev = sup.previousSibling; if (!prev || !prev.textContent.trim()) continue;
                  const r = document.createRange(); const n = prev.textContent.length;
                  r.setStart(prev, Math.max(0, n - 3)); r.setEnd(prev, n);
                  const a = r.getBoundingClientRect(), b = sup.getBoundingClientRect();
                  out.push(b.top < a.bottom && b.bottom > a.top); }
                return out; }""")
            assert alone and all(alone), alone
            phone.screenshot(path=str(out / "ui-phone-answer.png"), full_page=True)
            phone.click("#rag-chat sup.rag-cite a >> nth=0")
            phone.locator(".rag-src.rag-active").wait_for(timeout=10_000)
            phone.wait_for_timeout(800)
            phone.screenshot(path=str(out / "ui-phone-source.png"))
            phone.locator("#rag-sources .rag-turn[open] .rag-back").click()
            phone.wait_for_function("() => { const r = document.querySelector('#rag-chat')"
                                    ".getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight; }",
                                    timeout=10_000)
            _axe(phone, "phone", out)
        finally:
            browser.close()
