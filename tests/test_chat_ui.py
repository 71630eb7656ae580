"""Fast tests (fakes) of what the chat shows of its work: staged progress, refusals with the closest
passages, unanswered parts, resets, live counts, example questions, file names and cited reports."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from rag.answer import STAGES, Answer, Assistant, Status, Token, unanswered_parts
from rag.ingest import parse_article
from rag.records import Chunk, Citation, Passage
from rag.report import md_text, reference, report_markdown, single_markdown
from rag.roles import Role
from rag.settings import Settings
from rag.store import build_index
from ui import render
from ui.app import ChatUI, slug
from ui.service import Service, example_questions

from .conftest import SEEDS
from .fakes import FakeLLM, HashEmbedder

KIRIN_Q = "Which chip powers Huawei's Mate 60 series phone?"
KIRIN_A = "The Mate 60 series phone is powered by the Kirin 9000S chip [1]."
EVIL_TEXT = ("Harbour council <img src=x onerror=alert(1)> approves *budget*\n\n"
             "2024-05-02 09:00 Harbour Times\n\n"
             "The harbour council approved a lighthouse budget of 12 million crowns on Tuesday. "
             "Critics said the <img src=x onerror=alert(2)> lighthouse plan ignored the old pier.\n")


@pytest.fixture
def service(settings: Settings, fake_embedder: HashEmbedder, fake_llm: FakeLLM) -> Service:
    build_index([SEEDS], settings, embedder=fake_embedder)
    return Service(Assistant(settings, embedder=fake_embedder, llm=fake_llm))


@pytest.fixture
def chat_ui(service: Service) -> ChatUI:
    ui = ChatUI(service)
    ui.build()
    return ui


def _collect(agen) -> list[dict]:  # type: ignore[no-untyped-def]
    async def run() -> list[dict]:
        return [x async for x in agen]

    return asyncio.run(run())


# -- stages -----------------------------------------------------------------------------------------------
def test_stream_reports_the_stages_in_order_with_elapsed_seconds(settings: Settings, fake_embedder: HashEmbedder,
                                                                  fake_llm: FakeLLM) -> None:
    build_index([SEEDS], settings, embedder=fake_embedder)
    fake_llm.enqueue(KIRIN_A)
    events = list(Assistant(settings, embedder=fake_embedder, llm=fake_llm).stream(KIRIN_Q))
    stages = [e.stage for e in events if isinstance(e, Status)]
    assert stages == ["searching", "reading", "writing", "checking"]  # the model was given: no loading
    assert all(s in STAGES for s in stages)
    reading = next(e for e in events if isinstance(e, Status) and e.stage == "reading")
    assert reading.text.startswith("Reading ") and "passage" in reading.text
    elapsed = [e.elapsed for e in events if isinstance(e, Status)]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("Token") > kinds.index("Status") and kinds[-1] == "Answer"
    # writing comes before the first token, checking after the last
    writing = next(i for i, e in enumerate(events) if isinstance(e, Status) and e.stage == "writing")
    checking = next(i for i, e in enumerate(events) if isinstance(e, Status) and e.stage == "checking")
    tokens = [i for i, e in enumerate(events) if isinstance(e, Token)]
    assert writing < tokens[0] and checking > tokens[-1]


def test_first_use_of_the_model_is_a_loading_stage(settings: Settings, fake_embedder: HashEmbedder,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    build_index([SEEDS], settings, embedder=fake_embedder)
    llm = FakeLLM().enqueue(KIRIN_A)
    monkeypatch.setattr("rag.answer.get_llm", lambda *_: llm)
    assistant = Assistant(settings, embedder=fake_embedder)
    first = [e.stage for e in assistant.stream(KIRIN_Q) if isinstance(e, Status)]
    assert first[0] == "loading"
    second = [e.stage for e in assistant.stream("What chip is in the Mate 60?") if isinstance(e, Status)]
    assert "loading" not in second


def test_respond_shows_progress_and_replaces_it_when_done(chat_ui: ChatUI, fake_llm: FakeLLM) -> None:
    c = chat_ui.components
    fake_llm.enqueue(KIRIN_A)
    updates = _collect(chat_ui.respond(KIRIN_Q, [], [], 4, ""))
    statuses = [u[c["status"]] for u in updates if c["status"] in u]
    assert any("Searching the articles" in s for s in statuses)
    assert any("Reading" in s and "passage" in s for s in statuses)
    assert any("**Writing the answer…**" in s for s in statuses)
    assert all(s.rstrip().endswith(" s") for s in statuses[:-1])  # elapsed seconds on every stage line
    assert "Answered in" in statuses[-1]
    last = updates[-1]
    assert render.CURSOR not in last[c["chat"]][-1]["content"] and "rag-wait" not in last[c["chat"]][-1]["content"]
    assert last[c["copy"]].interactive is True


# -- refusals ---------------------------------------------------------------------------------------------
def test_refusal_shows_the_closest_passages_with_the_question_terms_marked(chat_ui: ChatUI,
                                                                             fake_llm: FakeLLM) -> None:
    c = chat_ui.components
    fake_llm.enqueue("The articles do not say.")
    last = _collect(chat_ui.respond("Which chip powers the Mate 60 Pro?", [], [], 4, ""))[-1]
    bubble = last[c["chat"]][-1]["content"]
    assert "rag-refusal" in bubble and 'href="#turn-0"' in bubble
    panel = last[c["sources"]]
    assert render.NEAR_LABEL in panel
    assert panel.count('class="rag-src rag-near"') == 3
    assert '<mark class="rag-term">Mate</mark>' in panel or '<mark class="rag-term">chip</mark>' in panel
    assert "Back to the answer" in panel


def test_near_card_escapes_article_text() -> None:
    article = parse_article(EVIL_TEXT, "evil.txt")
    start = EVIL_TEXT.index("The harbour")
    chunk = Chunk("evil#0", "evil.txt", article.title, start, len(EVIL_TEXT), EVIL_TEXT[start:])
    card = render.near_card(Passage(1, chunk, 0.5), article, "How large is the lighthouse budget?")
    assert "<img" not in card and "&lt;img src=x" in card
    assert '<mark class="rag-term">lighthouse</mark>' in card and '<mark class="rag-term">budget</mark>' in card
    assert "2024-05-02" in card and "evil.txt" in card


def test_highlight_marks_stemmed_words_and_escapes() -> None:
    out = render.highlight("Huawei launched <b>phones</b>; the launch went well.", "When did Huawei launch phones?")
    assert out.count('<mark class="rag-term">') == 4  # Huawei, launched, phones, launch
    assert "&lt;b&gt;" in out and "the</mark>" not in out


def test_unanswered_part_of_a_two_part_question() -> None:
    q = "Which chip powers the Mate 60, and how much did AIsphere raise?"
    assert unanswered_parts(q, "The Mate 60 is powered by the Kirin 9000S chip [1].", ()) == \
        ("how much did AIsphere raise?",)
    both = "The Mate 60 is powered by the Kirin 9000S chip [1]. AIsphere raised US$14 million [2]."
    assert unanswered_parts(q, both, ()) == ()
    assert unanswered_parts(KIRIN_Q, "Nothing here.", ()) == ()  # one part: refused whole, not here
    a = Answer(question=q, answer="The Mate 60 is powered by the Kirin 9000S chip [1].", answerable=True,
               citations=(Citation(1, "a.txt", "T", "a#0", 0, 5, "Kirin"),), passages=(),
               unanswered=("how much did AIsphere raise?",))
    html_ = render.answer_html(a, 0)
    assert "rag-unanswered" in html_ and "do not answer this part" in html_ and "AIsphere raise" in html_
    assert "AIsphere raise" in single_markdown(a)


def test_evidence_reuses_the_sentence_vectors_of_the_index(settings: Settings, fake_embedder: HashEmbedder,
                                                            fake_llm: FakeLLM) -> None:
    build_index([SEEDS], settings, embedder=fake_embedder)
    embedded: list[str] = []
    compute = fake_embedder._embed_batch
    def recording(texts: list[str]):  # type: ignore[no-untyped-def]
        embedded.extend(texts)
        return compute(texts)

    fake_embedder._embed_batch = recording  # type: ignore[method-assign]
    fake_llm.enqueue(KIRIN_A)
    a = Assistant(settings, embedder=fake_embedder, llm=fake_llm).ask(KIRIN_Q)
    assert a.answerable and "Kirin 9000S" in a.citations[0].quote
    assert KIRIN_Q in embedded  # the question is embedded; the sentences it is compared with come from the index
    evidence = fake_llm.calls[0][-1]["content"].split("\n\nQuestion:")[0]
    assert not [t for t in embedded if t in evidence]


def test_a_part_left_open_is_asked_alone_and_its_answer_added(settings: Settings, fake_embedder: HashEmbedder,
                                                             fake_llm: FakeLLM) -> None:
    build_index([SEEDS], settings, embedder=fake_embedder)
    q = "Which chip powers Huawei's Mate 60 series phone, and how much did AIsphere raise?"
    fake_llm.enqueue(KIRIN_A, "AIsphere raised US$14 million [1].")
    a = Assistant(settings, embedder=fake_embedder, llm=fake_llm).ask(q)
    assert len(fake_llm.calls) == 2
    second = fake_llm.calls[1][-1]["content"]
    assert "Question: How much did AIsphere raise?" in second and "Mate 60" not in second.split("Question:")[1]
    assert a.answer == f"{KIRIN_A} AIsphere raised US$14 million [2]."
    assert [c.marker for c in a.citations] == [1, 2]
    assert "Kirin 9000S" in a.citations[0].quote and "US$14 million" in a.citations[1].quote
    assert a.unanswered == ()
    # an answer to the part that the checks refuse adds nothing, and the part stays named
    fake_llm.calls.clear()
    fake_llm.enqueue(KIRIN_A, "The articles do not say.")
    a = Assistant(settings, embedder=fake_embedder, llm=fake_llm).ask(q)
    assert a.answer == KIRIN_A and a.unanswered == ("how much did AIsphere raise?",)
    # switched off (ablation), the part is only named
    fake_llm.calls.clear()
    fake_llm.enqueue(KIRIN_A)
    a = Assistant(settings.replace(complete_parts=False), embedder=fake_embedder, llm=fake_llm).ask(q)
    assert len(fake_llm.calls) == 1 and a.unanswered == ("how much did AIsphere raise?",)


def test_marker_stays_on_the_line_of_its_word() -> None:
    a = Answer(question="Q?", answer="It is the Kirin 9000S [1].", answerable=True,
               citations=(Citation(1, "a.txt", "T", "a#0", 0, 5, "Kirin"),), passages=())
    assert "9000S&#160;<sup" in render.answer_html(a, 0)


# -- state ------------------------------------------------------------------------------------------------
def test_reset_clears_everything_and_a_follow_up_is_not_rewritten(chat_ui: ChatUI, fake_llm: FakeLLM) -> None:
    c = chat_ui.components
    fake_llm.enqueue("ByteDance uses Huawei's Ascend chip for AI model training [1].")
    first = _collect(chat_ui.respond("Which company's chips does ByteDance use for AI model training?",
                                     [], [], 4, ""))[-1]
    assert first[c["turns"]]
    chat, turns, sources, status, markdown, download, copy, examples = chat_ui.reset()
    assert chat == [] and turns == [] and markdown == "" and status == ""
    assert "rag-turn" not in sources and copy.interactive is False and download.interactive is False
    calls = len(fake_llm.calls)
    fake_llm.enqueue("The articles do not say.")
    after = _collect(chat_ui.respond("When did he take over?", chat, turns, 4, ""))
    assert len(fake_llm.calls) == calls + 1  # only the answer: no rewrite against the cleared conversation
    assert not any("Searching for" in u.get(c["status"], "") for u in after)


def test_count_and_examples_are_read_live_after_an_upload(chat_ui: ChatUI, service: Service,
                                                          tmp_path: Path) -> None:
    assert "\n5 articles indexed" in chat_ui.count_note()
    before = chat_ui.example_texts()
    assert len([q for q in before if q]) == 3
    src = tmp_path / "lanterns.txt"
    src.write_text("Quillbridge opens the Zephyrine Lantern Museum\n\n2031-05-04 09:00 Quillbridge Courier\n\n"
                   "The town opened the Zephyrine Lantern Museum on Saturday. The Zephyrine Lantern Museum "
                   "holds exactly 4,217 paper lanterns.\n", encoding="utf-8")
    service.add_article(src)
    count, _, *buttons = chat_ui.refresh()
    assert "\n6 articles indexed" in count
    assert any("Zephyrine Lantern Museum" in b.value for b in buttons)  # uploads first


def test_example_questions_come_from_the_articles(service: Service) -> None:
    articles = service.assistant().store.articles
    questions = example_questions(articles, 3)
    assert len(questions) == 3 and len(set(questions)) == 3
    texts = " ".join(a.text for a in articles.values())
    for q in questions:
        name = q.removeprefix("What do the articles say about ").removesuffix("?").removeprefix("the ")
        assert name in texts, q


def test_download_is_named_after_the_question(chat_ui: ChatUI, fake_llm: FakeLLM) -> None:
    c = chat_ui.components
    fake_llm.enqueue(KIRIN_A)
    last = _collect(chat_ui.respond(KIRIN_Q, [], [], 4, ""))[-1]
    assert Path(last[c["download"]].value["path"]).name == "which-chip-powers-huawei-s-mate-60-series-phone.md"
    assert slug("../../etc/passwd <x>") == "etc-passwd-x" and slug("¿?") == "answer"
    assert len(slug("word " * 100)) <= 60


# -- reports ----------------------------------------------------------------------------------------------
def test_reference_reads_like_a_reference_and_article_text_is_escaped() -> None:
    article = replace(parse_article(EVIL_TEXT, "evil.txt"), source="Harbour Times")
    quote = "Critics said the <img src=x onerror=alert(2)> lighthouse plan ignored the old pier."
    start = EVIL_TEXT.index(quote)
    cit = Citation(1, "evil.txt", article.title, "evil#0", start, start + len(quote), quote)
    ref = reference(cit, article)
    assert ref.index("Harbour council") < ref.index("Harbour Times") < ref.index("2024-05-02") < ref.index("evil.txt")
    assert f"characters {start}–{start + len(quote)}" in ref
    a = Answer(question="What did <script>critics</script> say?", answer="They said it ignored the pier [1].",
               answerable=True, citations=(cit,), passages=(), model="m")
    md = report_markdown([a], articles={"evil.txt": article}, date="2031-01-02")
    assert "<img" not in md and "<script>" not in md and "&lt;img src=x onerror=alert(2)&gt;" in md
    assert "2031-01-02 · 1 question (1 answered) · model m" in md
    assert "Harbour Times, 2024-05-02" in md and "[1]" in md


def test_reference_names_role_and_page_when_the_citation_has_them() -> None:
    ref = reference(Citation(1, "r.pdf", "Report", "r#0", 10, 20, "0123456789", role=Role.RELATED, page=3))
    assert "p. 3" in ref and "listed as a related headline" in ref
    body = reference(Citation(1, "r.txt", "Report", "r#0", 10, 20, "0123456789"))
    assert "body" not in body and "related" not in body and "p. " not in body  # article text needs no label


def test_refused_question_in_a_report_says_what_was_searched(fake_embedder: HashEmbedder) -> None:
    chunk = Chunk("a#0", "a.txt", "Lantern museum opens", 0, 10, "0123456789")
    a = Answer(question="Who *won*?", answer="The articles do not say.", answerable=False, citations=(),
               passages=(Passage(1, chunk, 0.3), Passage(2, chunk, 0.2)), model="m")
    md = report_markdown([a], date="2031-01-02")
    assert "Searched 2 passages of: Lantern museum opens." in md and "\\*won\\*" in md
    assert md_text("<a>") == "&lt;a&gt;"
