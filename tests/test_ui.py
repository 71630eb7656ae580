"""Fast tests of the UI layer with fakes: HTML rendering and escaping, the OpenAI API shape, uploads,
the chat handlers (streaming, follow-ups, errors) and stopping an answer."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import gradio as gr
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rag.answer import Answer, Assistant, Token
from rag.errors import InputError
from rag.ingest import parse_article
from rag.records import Citation, SentenceCheck
from rag.settings import Settings
from rag.store import IndexStore, build_index, current_version
from ui import render
from ui.api import completion_body, create_router, split_messages
from ui.app import WAITING, ChatUI, create_app
from ui.service import Service

from .conftest import SEEDS
from .fakes import FakeLLM, HashEmbedder

KIRIN_Q = "Which chip powers Huawei's Mate 60 series phone?"
KIRIN_A = "The Mate 60 series phone is powered by the Kirin 9000S chip [1]."


@pytest.fixture
def index_settings(settings: Settings, fake_embedder: HashEmbedder) -> Settings:
    build_index([SEEDS], settings, embedder=fake_embedder)
    return settings


@pytest.fixture
def service(index_settings: Settings, fake_embedder: HashEmbedder, fake_llm: FakeLLM) -> Service:
    return Service(Assistant(index_settings, embedder=fake_embedder, llm=fake_llm))


@pytest.fixture
def client(service: Service) -> TestClient:
    app = FastAPI()
    app.include_router(create_router(service))
    return TestClient(app)


def _check_quotes(citations: list[dict], settings: Settings) -> None:
    store = IndexStore.load(settings.index_dir, settings)
    assert citations
    for c in citations:
        assert set(c) == {"marker", "article", "title", "chunk_id", "start", "end", "quote"}
        assert store.articles[c["article"]].text[c["start"]:c["end"]] == c["quote"]


# -- rendering ------------------------------------------------------------------------------------------
def test_escape_chat_neutralises_html_and_markdown() -> None:
    out = render.escape_chat("<script>alert(1)</script> *x* [1] `c` $y$ & ok")
    assert "<" not in out and ">" not in out and "*" not in out and "[" not in out and "$" not in out
    assert "&#60;script&#62;" in out and " ok" in out


def _answer(text: str, citations: tuple[Citation, ...] = (), answerable: bool = True, **kw) -> Answer:
    return Answer(question=kw.pop("question", "Q?"), answer=text, answerable=answerable, citations=citations,
                  passages=(), **kw)


def _citation(article_text: str, quote: str, marker: int = 1, name: str = "a.txt") -> Citation:
    start = article_text.index(quote)
    return Citation(marker=marker, article=name, title="T", chunk_id=f"{name}#0", start=start,
                    end=start + len(quote), quote=quote)


def test_answer_html_links_known_markers_and_escapes() -> None:
    text = "A <b>bold</b> claim [1]. Another [2]."
    html_ = render.answer_html(_answer(text, (_citation("x claim y", "claim"),)), turn=3)
    assert '<a href="#src-3-1"' in html_ and "<sup" in html_
    assert "src-3-2" not in html_ and "&#91;2&#93;" in html_  # a marker without a citation stays text
    assert "<b>" not in html_ and "&#60;b&#62;bold" in html_


def test_refusal_is_a_plain_notice() -> None:
    html_ = render.answer_html(_answer("The articles do not say.", answerable=False), turn=0)
    assert "rag-refusal" in html_ and "<sup" not in html_ and "error" not in html_.lower()


def test_answer_says_its_confidence_in_words() -> None:
    """Every band of the calibrated confidence reads as words, in the chat, the CLI and the markdown; a
    refusal says the articles may still hold the answer; none is said when there is none."""
    from rag.report import confidence_note, single_markdown

    cite = (_citation("x claim y", "claim"),)
    said = {c: confidence_note(_answer("A claim [1].", cite, confidence=c)) for c in (0.93, 0.7, 0.5, 0.2)}
    assert said[0.93] == "Confidence 93%: likely right."
    assert "probably right" in said[0.7] and "uncertain" in said[0.5] and "doubtful" in said[0.2]
    assert confidence_note(_answer("The articles do not say.", answerable=False, confidence=0.58)) == \
        "Confidence 58%: the articles may still hold the answer; see the closest passages."
    assert confidence_note(_answer("A claim [1].", cite)) == ""
    html_ = render.answer_html(_answer("A claim [1].", cite, confidence=0.5), turn=0)
    assert 'class="rag-confidence"' in html_ and "uncertain" in html_
    assert "rag-confidence" not in render.answer_html(_answer("A claim [1].", cite), turn=0)
    assert "_Confidence 93%: likely right._" in single_markdown(_answer("A claim [1].", cite, confidence=0.93))


def test_answer_says_what_the_checks_removed() -> None:
    cite = (_citation("x claim y", "claim"),)
    kept = SentenceCheck("A claim.", (1,), 0.9, True)
    assert "rag-check" not in render.answer_html(_answer("A claim [1].", cite, sentences=(kept,)), turn=0)
    dropped = SentenceCheck("Acme <b>bought</b> Mars.", (2,), 0.2, False, "unsupported")
    html_ = render.answer_html(_answer("A claim [1].", cite, sentences=(kept, dropped)), turn=0)
    assert "1 sentence of the draft left out" in html_ and "<b>" not in html_
    echo = SentenceCheck("Q restated.", (), 0.0, False, "echo")
    quoted = SentenceCheck("claim", (1,), 1.0, True, "extract")
    html_ = render.answer_html(_answer("claim [1].", cite, sentences=(echo, quoted)), turn=0)
    assert "most relevant passage, quoted" in html_
    refused = render.answer_html(_answer("The articles do not say.", answerable=False, sentences=(dropped,)), 0)
    assert "rag-refusal" in refused and "passages do not support it" in refused


def test_source_card_escapes_article_text_and_marks_quote_in_its_paragraph() -> None:
    text = ("Evil title here for the test\n\n2024-03-11 08:00 Example News\n\n"
            "The first paragraph has <script>alert('x')</script> inside it. The cited sentence is here. "
            "And the paragraph goes on after it.\n\n"
            "A second paragraph that is not part of the quote at all.\n")
    article = parse_article(text, "a.txt")
    cit = _citation(text, "The cited sentence is here.")
    card = render.source_card(cit, article, turn=0)
    assert 'id="src-0-1"' in card
    assert "<script>" not in card and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in card
    assert "<mark>The cited sentence is here.</mark>" in card
    assert "The first paragraph has" in card and "goes on after it." in card  # its whole paragraph
    assert "second paragraph" not in card
    assert "2024-03-11" in card


def test_quote_without_its_article_is_still_shown() -> None:
    cit = Citation(1, "gone.txt", "Gone <i>", "gone#0", 0, 5, "a <q>")
    card = render.source_card(cit, None, turn=1)
    assert "<mark>a &lt;q&gt;</mark>" in card and "Gone &lt;i&gt;" in card


def test_turn_html_shows_rewritten_question() -> None:
    html_ = render.turn_html(_answer("No.", answerable=False, question="What about <Baidu>?",
                                     rewritten_question="Which chips does Baidu use?"), 1, {})
    assert "Which chips does Baidu use?" in html_ and "What about &lt;Baidu&gt;?" in html_
    assert "No passage" in html_


# -- OpenAI-compatible API --------------------------------------------------------------------------------
def test_split_messages_takes_last_user_message_as_question() -> None:
    q, hist = split_messages([{"role": "system", "content": "s"}, {"role": "user", "content": "first?"},
                              {"role": "assistant", "content": "a"},
                              {"role": "user", "content": [{"type": "text", "text": "second?"}]}])
    assert (q, hist) == ("second?", [{"role": "user", "content": "first?"}, {"role": "assistant", "content": "a"}])
    with pytest.raises(InputError):
        split_messages([{"role": "system", "content": "s"}])
    with pytest.raises(InputError):
        split_messages("hi")


def test_completion_body_shape() -> None:
    body = completion_body(_answer("A [1].", (_citation("xx A yy", "A"),)), "m", "chatcmpl-1", 5)
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == "A [1]."
    assert body["answerable"] is True and body["citations"][0]["quote"] == "A"
    assert "support" not in body["citations"][0]
    assert body["confidence"] is None
    sure = completion_body(_answer("A [1].", (_citation("xx A yy", "A"),), confidence=0.61234), "m", "c", 5)
    assert sure["confidence"] == 0.612


class ScoringLLM(FakeLLM):
    """A fake model that can score a reply: it is surer of the refusal the less the reply has in common
    with the passages (a stand-in for token log-probabilities)."""

    def __init__(self) -> None:
        super().__init__()
        self.scored: list[str] = []

    def logprobs(self, messages: list[dict[str, str]], reply: str, max_tokens: int = 64) -> list[float]:
        self.scored.append(reply)
        return [-0.1] * len(reply.split()) if reply.startswith("The articles") else [-0.2, -2.5, -0.3]


def test_token_confidence_enters_the_answers_confidence_and_can_be_switched_off(
        index_settings: Settings, fake_embedder: HashEmbedder) -> None:
    on, off = ScoringLLM().enqueue(KIRIN_A), ScoringLLM().enqueue(KIRIN_A)
    a = Assistant(index_settings, embedder=fake_embedder, llm=on).ask(KIRIN_Q)
    b = Assistant(index_settings.replace(token_confidence=False), embedder=fake_embedder, llm=off).ask(KIRIN_Q)
    assert a.answerable and b.answerable and a.answer == b.answer
    assert a.signals["refusal_lp"] == pytest.approx(-0.5) and a.signals["answer_min_lp"] == -2.5
    assert on.scored == ["The articles do not say.", KIRIN_A] and off.scored == []
    assert "refusal_lp" not in b.signals and a.confidence != b.confidence and 0 < a.confidence < 1


def test_chat_completions_non_streaming(client: TestClient, fake_llm: FakeLLM,
                                        index_settings: Settings) -> None:
    fake_llm.enqueue(KIRIN_A)
    r = client.post("/v1/chat/completions", json={"model": "qwen2.5-coder-1.5b",
                                                  "messages": [{"role": "user", "content": KIRIN_Q}]})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and "Kirin 9000S" in body["choices"][0]["message"]["content"]
    assert body["answerable"] is True and body["usage"]["total_tokens"] > 0
    assert 0.0 < body["confidence"] < 1.0  # calibrated on the other signals: a fake model cannot score
    _check_quotes(body["citations"], index_settings)


def test_chat_completions_streaming(client: TestClient, fake_llm: FakeLLM, index_settings: Settings) -> None:
    fake_llm.enqueue(KIRIN_A)
    with client.stream("POST", "/v1/chat/completions",
                       json={"stream": True, "messages": [{"role": "user", "content": KIRIN_Q}]}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [ln[6:] for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(x) for x in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert streamed == KIRIN_A and len(chunks) > 3
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] == "stop" and final["answerable"] is True
    assert "Kirin 9000S" in final["answer"]
    _check_quotes(final["citations"], index_settings)


def test_openai_client_reads_citations(client: TestClient, fake_llm: FakeLLM) -> None:
    from openai import OpenAI

    oa = OpenAI(base_url="http://testserver/v1", api_key="x", http_client=client)
    fake_llm.enqueue(KIRIN_A, KIRIN_A.replace("Mate 60 series phone", "Mate 60"))
    model = "qwen2.5-coder-1.5b"
    r = oa.chat.completions.create(model=model, messages=[{"role": "user", "content": KIRIN_Q}])
    assert r.citations[0]["quote"] and r.answerable is True  # type: ignore[attr-defined]
    follow = [{"role": "user", "content": "What chip is in the Mate 60?"}]
    chunks = list(oa.chat.completions.create(model=model, stream=True, messages=follow))
    assert chunks[-1].citations and chunks[-1].choices[0].finish_reason == "stop"  # type: ignore[attr-defined]
    assert [m.id for m in oa.models.list()][0] == "qwen2.5-coder-1.5b"


def test_earlier_user_messages_are_the_follow_up_history(client: TestClient, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue("Which chips does Baidu source from Huawei?", "Baidu sources chips from Huawei [1].")
    r = client.post("/v1/chat/completions", json={"messages": [
        {"role": "user", "content": "Which company's chips does ByteDance use?"},
        {"role": "assistant", "content": "Huawei's [1]."},
        {"role": "user", "content": "What about Baidu?"}]})
    assert r.status_code == 200
    rewrite_prompt = fake_llm.calls[0][-1]["content"]
    assert "ByteDance" in rewrite_prompt and "What about Baidu?" in rewrite_prompt
    assert r.json()["rewritten_question"] == "Which chips does Baidu source from Huawei?"


@pytest.mark.parametrize(("body", "status"), [
    ({"messages": [{"role": "user", "content": "   "}]}, 400),
    ({"messages": []}, 400),
    ({"messages": [{"role": "user", "content": "q?"}], "model": "gpt-4"}, 404),
    ({"messages": [{"role": "user", "content": "q?"}], "k": 0}, 400),
    ([1, 2], 400),
])
def test_chat_completions_errors(client: TestClient, body: object, status: int) -> None:
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == status and r.json()["error"]["message"]


def test_bad_json_is_a_400(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", content=b"{not json",
                    headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_app_mounts_gradio_and_api(service: Service) -> None:
    with TestClient(create_app(service)) as c:
        assert c.get("/v1/models").json()["data"][0]["id"] == service.default_model
        page = c.get("/")
        assert page.status_code == 200 and "gradio" in page.text.lower()


# -- uploads ----------------------------------------------------------------------------------------------
LANTERN = ("The Zephyrine Lantern Museum opens in Quillbridge\n\n"
           "The town of Quillbridge opened the Zephyrine Lantern Museum on Saturday, officials said.\n\n"
           "The museum holds exactly 4,217 paper lanterns collected by the retired ferry captain "
           "Odile Marsk.\n")


def test_upload_is_indexed_and_searchable(service: Service, tmp_path: Path, fake_llm: FakeLLM) -> None:
    src = tmp_path / "gradio-tmp" / "lanterns.txt"
    src.parent.mkdir()
    src.write_text(LANTERN, encoding="utf-8")
    added = service.add_article(src, "lanterns.txt")
    assert (service.uploads_dir / "lanterns.txt").read_text(encoding="utf-8") == LANTERN
    assert "Added" in added.message() and "6 articles" in added.message()
    assistant = service.assistant()
    assert "lanterns.txt" in assistant.store.articles
    fake_llm.enqueue("The museum holds 4,217 paper lanterns [1].")
    answer = assistant.ask("How many paper lanterns does the Zephyrine Lantern Museum hold?")
    assert answer.answerable and answer.citations[0].article == "lanterns.txt"
    again = service.add_article(src, "lanterns.txt")
    assert not again.report.changed and "already in the index" in again.message()


@pytest.mark.parametrize(("name", "data", "needle"), [
    ("binary.txt", b"\x00\x01\x02PK" * 100, "binary"),
    ("empty.txt", b"", "no article text"),
    ("latin1.txt", "Caf\u00e9 au lait is served daily in the town square.\n".encode("latin-1"), "UTF-8"),
    ("huge.txt", b"A sentence that is long enough to count as prose. " * 40, "limit"),
    ("paper.pdf", b"%PDF-1.4 A sentence that is long enough to count as prose.", "not a readable PDF"),
    ("slides.pptx", b"PK A sentence that is long enough to count as prose.", "unsupported file type"),
    (".hidden.txt", LANTERN.encode(), "dot"),
    ("000_24afeec690d630ed.txt", LANTERN.encode(), "already has this name"),
])
def test_bad_uploads_get_a_clear_message_and_change_nothing(
        index_settings: Settings, fake_embedder: HashEmbedder, fake_llm: FakeLLM, tmp_path: Path,
        name: str, data: bytes, needle: str) -> None:
    settings = index_settings.replace(max_file_bytes=1000)
    service = Service(Assistant(settings, embedder=fake_embedder, llm=fake_llm))
    (service.uploads_dir).mkdir(parents=True)
    (service.uploads_dir / "kept.txt").write_text(LANTERN, encoding="utf-8")  # an earlier upload stays
    version = current_version(settings.index_dir)
    src = tmp_path / "gradio-tmp" / name
    src.parent.mkdir()
    src.write_bytes(data)
    with pytest.raises(InputError) as e:
        service.add_article(src, name)
    assert needle in str(e.value) and str(src) not in str(e.value) and name in str(e.value)
    assert sorted(p.name for p in service.uploads_dir.iterdir()) == ["kept.txt"]
    assert current_version(settings.index_dir) == version


# -- chat handlers ----------------------------------------------------------------------------------------
def _collect(agen) -> list[dict]:
    async def run() -> list[dict]:
        return [x async for x in agen]

    return asyncio.run(run())


@pytest.fixture
def chat_ui(service: Service) -> ChatUI:
    ui = ChatUI(service)
    ui.build()
    return ui


def test_respond_streams_tokens_then_the_verified_answer(chat_ui: ChatUI, fake_llm: FakeLLM) -> None:
    c = chat_ui.components
    fake_llm.enqueue(KIRIN_A)
    updates = _collect(chat_ui.respond(KIRIN_Q, [], [], 4, chat_ui.service.default_model))
    assert updates[0][c["chat"]][-1]["content"] == WAITING and updates[0][c["question"]] == ""
    streamed = [u[c["chat"]][-1]["content"] for u in updates[1:-1] if c["chat"] in u]
    assert len(streamed) > 3 and all(s.endswith(render.CURSOR) for s in streamed)
    last = updates[-1]
    assert '<a href="#src-0-1"' in last[c["chat"]][-1]["content"]
    assert "<mark>" in last[c["sources"]] and 'id="src-0-1"' in last[c["sources"]]
    assert last[c["turns"]][0]["question"] == KIRIN_Q
    assert "### References" in last[c["markdown"]]
    assert Path(last[c["download"]].value["path"]).read_text(encoding="utf-8") == last[c["markdown"]]
    assert "1 citation" in last[c["status"]]


def test_follow_up_gets_previous_questions_and_shows_rewrite(chat_ui: ChatUI, fake_llm: FakeLLM) -> None:
    c = chat_ui.components
    fake_llm.enqueue("ByteDance uses Huawei's Ascend chip for AI model training [1].")
    q1 = "Which company's chips does ByteDance use for AI model training?"
    first = _collect(chat_ui.respond(q1, [], [], 4, ""))[-1]
    fake_llm.enqueue("Which chips does Baidu source from Huawei?",
                     "Baidu has opted to source chips from Huawei [1].")
    second = _collect(chat_ui.respond("What about Baidu?", first[c["chat"]], first[c["turns"]], 4, ""))
    assert "ByteDance" in fake_llm.calls[1][-1]["content"]  # the rewrite saw the previous question
    assert any("Searching for: Which chips does Baidu source" in u.get(c["status"], "") for u in second)
    panel = second[-1][c["sources"]]
    assert "Follow-up searched as" in panel and 'id="src-1-1"' in panel and 'id="src-0-1"' in panel
    assert panel.index("src-1-1") < panel.index("src-0-1")  # latest first
    assert len(second[-1][c["chat"]]) == 4


def test_empty_question_only_warns(chat_ui: ChatUI, fake_llm: FakeLLM) -> None:
    with pytest.warns(UserWarning, match="empty"):
        assert _collect(chat_ui.respond("  ", [], [], 4, "")) == []
    assert fake_llm.calls == []


def test_library_error_is_a_friendly_message(chat_ui: ChatUI) -> None:
    c = chat_ui.components
    with pytest.warns(UserWarning, match="limit"):
        updates = _collect(chat_ui.respond("why? " * 1000, [], [], 4, ""))
    assert updates[-1][c["chat"]] == [] and "Problem" in updates[-1][c["status"]]
    assert updates[-1][c["question"]].startswith("why?")  # the question is given back to edit


def test_stopped_marks_only_an_interrupted_answer() -> None:
    parts = [{"type": "text", "text": "partial" + render.CURSOR}]  # how Gradio gives messages back
    chat, status = ChatUI.stopped([{"role": "user", "content": "q"}, {"role": "assistant", "content": parts}])
    assert chat[-1]["content"].startswith("partial") and "stopped" in chat[-1]["content"]
    assert render.CURSOR not in chat[-1]["content"] and status == "Stopped."
    done = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "An answer."}]
    assert ChatUI.stopped(done) == (gr.skip(), gr.skip())


class SlowLLM(FakeLLM):
    """Streams a long reply slowly and counts the pieces actually generated."""

    def __init__(self) -> None:
        super().__init__(" ".join(["word"] * 300) + " [1].")
        self.generated = 0

    def stream_chat(self, messages, max_tokens, stop=None):  # type: ignore[no-untyped-def]
        for piece in super().stream_chat(messages, max_tokens, stop):
            time.sleep(0.005)
            self.generated += 1
            yield piece


def test_closing_the_stream_stops_generation(index_settings: Settings, fake_embedder: HashEmbedder) -> None:
    llm = SlowLLM()
    service = Service(Assistant(index_settings, embedder=fake_embedder, llm=llm))
    stop = threading.Event()

    async def first_token_then_close() -> None:
        events = service.astream(KIRIN_Q, stop=stop)
        async for event in events:
            if isinstance(event, Token):
                break
        await events.aclose()

    asyncio.run(first_token_then_close())
    assert stop.is_set()
    done = threading.Event()
    threading.Thread(target=lambda: (service.assistant().ask("What chip is in the Mate 60?"), done.set()),
                     daemon=True).start()
    assert done.wait(20), "the stopped answer kept the assistant busy"
    assert llm.generated < 2 * 301 - 50  # the first answer stopped early; the second ran in full


def test_model_choice_uses_another_assistant_that_sees_uploads(service: Service, tmp_path: Path) -> None:
    others = [m for m in service.models() if m != service.default_model]
    if not others:
        pytest.skip("only one model is installed")
    other = service.assistant(others[0])  # created lazily: nothing is loaded yet
    assert other is not service.assistant() and other.settings.model == others[0]
    assert other is service.assistant(others[0])
    src = tmp_path / "lanterns.txt"
    src.write_text(LANTERN, encoding="utf-8")
    service.add_article(src)
    assert "lanterns.txt" in other.store.articles  # reloaded too
    with pytest.raises(InputError, match="unknown model"):
        service.assistant("no-such-model")
