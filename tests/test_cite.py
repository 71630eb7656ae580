"""Prompt building, marker parsing, citation narrowing and verification, with fakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.answer import Assistant, Status, Token
from rag.cite import ANSWER_CHECKS, CHECKS, is_refusal, markers_of, split_sentences, strip_markers, support, verify
from rag.followup import keeps_content, needs_context, substitute, turns
from rag.prompt import (
    REFUSAL,
    SYSTEM_PROMPT,
    build_messages,
    build_rewrite_messages,
    select_evidence,
)
from rag.records import Note
from rag.settings import Settings
from rag.store import IndexStore, build_index

from .fakes import ACME as TEXT
from .fakes import ACME_SPANS as S
from .fakes import FakeLLM, HashEmbedder
from .fakes import acme_chunk as chunk
from .fakes import acme_evidence as evidence


def test_sentence_and_marker_parsing() -> None:
    raw = "Acme sold 3.2 million cars [1]. Exports doubled. [2] Ann Lee leads it [1, 2]."
    sents = split_sentences(raw)
    assert [strip_markers(s) for s in sents] == ["Acme sold 3.2 million cars.", "Exports doubled.",
                                                 "Ann Lee leads it."]
    assert [markers_of(s) for s in sents] == [[1], [2], [1, 2]]


def test_support_score_is_explainable() -> None:
    """0.6 x word overlap + 0.4 x rescaled cosine; a missing number caps it at 0.3."""
    # all 4 content words ("acme", "sold", "cars", "2023") in the quote, cosine 0.8 -> 0.6*1 + 0.4*1 = 1.0
    assert support("Acme sold cars in 2023", "Acme sold 3.2 million cars in 2023.", 0.8) == pytest.approx(1.0)
    # half the words, cosine 0.5 -> 0.6*0.5 + 0.4*0.5 = 0.5
    assert support("Acme sold boats", "Acme sold cars", 0.5) == pytest.approx(0.6 * 2 / 3 + 0.4 * 0.5)
    # an invented number caps support
    assert support("Acme sold 9 million cars in 2023", TEXT, 0.9) == 0.3


def test_verify_keeps_supported_sentences_and_narrows_quotes() -> None:
    raw = "Acme sold 3.2 million cars in 2023 [1]. Ann Lee is the chief executive [1]."
    v = verify(raw, evidence(), HashEmbedder(), {"acme.txt": TEXT})
    assert v.answerable
    assert v.answer == "Acme sold 3.2 million cars in 2023 [1]. Ann Lee is the chief executive [1]."
    [c] = v.citations
    assert (c.start, c.end) == (S[0][0], S[1][1])  # both sentences of evidence 1 are used: the union span
    assert c.quote == TEXT[c.start:c.end]
    narrow = verify("Ann Lee is the chief executive [1].", evidence(), HashEmbedder(), {"acme.txt": TEXT})
    assert narrow.citations[0].quote == "Its chief executive is Ann Lee."  # narrowed to one sentence


def test_verify_repairs_wrong_markers_and_drops_unsupported() -> None:
    raw = "Exports doubled after a plant opened in Hungary [7]. Acme also builds rockets on Mars [2]."
    v = verify(raw, evidence(), HashEmbedder(), {"acme.txt": TEXT})
    assert v.answer == "Exports doubled after a plant opened in Hungary [1]."
    assert v.citations[0].quote == TEXT[S[2][0]:S[2][1]]
    assert [s.supported for s in v.sentences] == [True, False]


def test_verify_refusal_and_invented_numbers() -> None:
    refusal = verify(REFUSAL, evidence(), HashEmbedder(), {"acme.txt": TEXT})
    assert not refusal.answerable and refusal.answer == REFUSAL and refusal.citations == ()
    invented = verify("Acme sold 5.7 million cars in 2023 [1].", evidence(), HashEmbedder(), {"acme.txt": TEXT})
    assert not invented.answerable
    assert is_refusal("The articles do not mention the price.")
    assert not is_refusal("Acme sold cars.")
    # a fact stated in the negative is not a refusal (it removed a right half of a two-part answer)
    assert not is_refusal("It is not available to the general public yet.")


def test_a_sentence_citing_two_passages_is_supported_by_them_together() -> None:
    raw = "Acme, led by Ann Lee, doubled exports after opening a plant in Hungary [1][2]."
    ev = evidence()
    v = verify(raw, ev, HashEmbedder(), {"acme.txt": TEXT})
    assert v.answerable and [c.marker for c in v.citations] == [1, 2]
    assert [(c.start, c.end) for c in v.citations] == [(e.start, e.end) for e in ev]
    # neither passage alone gives both "Ann Lee" and "Hungary": cited to one, the sentence loses the other
    alone = verify("Acme, led by Ann Lee, doubled exports after opening a plant in Hungary [1].", ev,
                   HashEmbedder(), {"acme.txt": TEXT})
    assert "Hungary" not in alone.answer and [c.marker for c in alone.citations] == [1]


def test_the_kind_check_keeps_the_answer_to_one_part_of_a_compound_question() -> None:
    one = "Acme's exports doubled after a plant opened in Hungary [2]."
    part = verify(one, evidence(), HashEmbedder(), {"acme.txt": TEXT},
                  question="In which month did the plant open, and what happened to exports?")
    assert part.answerable and "Hungary" in part.answer
    whole = verify(one, evidence(), HashEmbedder(), {"acme.txt": TEXT}, question="In which month did the plant open?")
    assert not whole.answerable


def test_one_invented_detail_is_trimmed_not_the_whole_answer() -> None:
    raw = "Acme sold 3.2 million cars in 2023, its best year since 1998 [1]."
    v = verify(raw, evidence(), HashEmbedder(), {"acme.txt": TEXT})
    assert v.answerable and v.answer == "Acme sold 3.2 million cars in 2023 [1]."
    assert [s.note for s in v.sentences] == [Note.TRIMMED, Note.TRIM] == ["trimmed", "trim"]
    whole = verify(raw, evidence(), HashEmbedder(), {"acme.txt": TEXT}, Settings(trim_unsupported=0))
    assert not whole.answerable and [s.note for s in whole.sentences] == [Note.UNSUPPORTED]
    # the invented number is the claim itself: nothing is left to keep
    assert not verify("Acme sold 5.7 million cars in 2023 [1].", evidence(), HashEmbedder(), {"acme.txt": TEXT}).answerable


def test_combine_renumbers_the_second_answer_after_the_first() -> None:
    from rag.cite import Verified, combine
    from rag.records import Citation

    def cite(marker: int, start: int) -> Citation:
        return Citation(marker, "acme.txt", "Acme", "acme#0", start, start + 5, TEXT[start:start + 5])

    first = Verified("One [1]. Two [2].", True, (cite(1, 0), cite(2, 10)), ())
    more = Verified("Three [1][2].", True, (cite(1, 20), cite(2, 10)), ())
    both = combine(first, more)
    assert both.answer == "One [1]. Two [2]. Three [3][2]."  # a quote both cite keeps its first number
    assert [(c.marker, c.start) for c in both.citations] == [(1, 0), (2, 10), (3, 20)]


def test_checks_are_declared_in_order_each_with_its_note() -> None:
    assert [(c.name, c.note, c.switch) for c in CHECKS] == [
        ("refusal", Note.REFUSAL, None), ("echo", Note.ECHO, "adequacy_checks"), ("supported", Note.KEPT, None),
        ("trim", Note.TRIMMED, "trim_unsupported"), ("support", Note.UNSUPPORTED, None)]
    assert [(c.name, c.note, c.switch) for c in ANSWER_CHECKS] == [
        ("extract", Note.EXTRACT, "extract_on_echo"), ("all removed", None, None), ("kind", None, "adequacy_checks")]
    assert all(c.doc for c in CHECKS + ANSWER_CHECKS)
    # each switch is a Settings field, and the ablation has a variant turning it off
    from rag.ablation import VARIANTS
    from rag.settings import Settings

    for c in CHECKS + ANSWER_CHECKS:
        if c.switch:
            assert getattr(Settings(), c.switch)
            assert any(not change.get(c.switch, True) for _, change in VARIANTS.values()), c.name
    # the first check that decides a sentence is the one whose note it carries: an echo that no passage
    # supports is an echo; a partial refusal next to a fact is a refusal, not unsupported
    q = "Who is Acme's chief executive?"
    raw = "Acme's chief executive is the chief executive [1]. The articles do not say more. Ann Lee leads Acme [1]."
    v = verify(raw, evidence(), HashEmbedder(), {"acme.txt": TEXT}, question=q)
    assert [s.note for s in v.sentences] == [Note.ECHO, Note.REFUSAL, Note.KEPT]
    assert all(isinstance(s.note, Note) for s in v.sentences)
    # switched off, a check passes every sentence on to the next
    off = verify(raw, evidence(), HashEmbedder(), {"acme.txt": TEXT}, Settings(adequacy_checks=False), question=q)
    assert off.sentences[0].note in (Note.KEPT, Note.UNSUPPORTED)
    # an answer that only restated the question quotes the top passage, or with extraction off is refused
    echo = "Acme's chief executive is Acme's chief executive [1]."
    quoted = verify(echo, evidence(), HashEmbedder(), {"acme.txt": TEXT}, question=q)
    assert quoted.answerable and [s.note for s in quoted.sentences] == [Note.ECHO, Note.EXTRACT]
    assert quoted.citations[0].quote == " ".join(evidence()[0].text.split())
    refused = verify(echo, evidence(), HashEmbedder(), {"acme.txt": TEXT}, Settings(extract_on_echo=False), question=q)
    assert not refused.answerable and [s.note for s in refused.sentences] == [Note.ECHO]
    # notes are strings: read back from JSON they still compare equal, and print as their value
    assert Note("unsupported") is Note.UNSUPPORTED and f"{Note.ECHO}" == "echo" and Note.KEPT == ""


def test_prompt_is_compact_and_has_a_stable_prefix() -> None:
    emb = HashEmbedder()
    c = chunk()
    from rag.records import Passage

    texts = {"acme.txt": TEXT}
    ev = select_evidence("Where did exports double?", [Passage(1, c, 1.0)], emb, texts, Settings(context_tokens=12))
    assert [e.text for e in ev] == ["Exports doubled after a plant opened in Hungary."]
    # a sentence opening with a pronoun ("Its ...") brings the sentence it refers back to, as one span
    ev = select_evidence("Who is the chief executive?", [Passage(1, c, 1.0)], emb, texts, Settings(context_tokens=12))
    assert [e.text for e in ev] == ["Acme sold 3.2 million cars in 2023. Its chief executive is Ann Lee."]
    a = build_messages("q1", ev)
    b = build_messages("q2", [])
    assert a[0] == b[0] and a[0]["content"] == SYSTEM_PROMPT
    assert a[:-1] == b[:-1]  # everything but the last message is the cached prefix
    # a follow-up's rewrite request shares that prefix, so the answer after it does not evaluate it again
    assert build_rewrite_messages("And its maker?", [("Which chip?", "")])[:-1] == a[:-1]
    assert "[1] Acme sold 3.2 million cars in 2023. Its chief" in a[-1]["content"]


def test_a_credit_in_the_prompt_shows_the_lines_around_it() -> None:
    from rag.records import Chunk, Passage
    from rag.roles import Role

    text = "Acme opened a plant in Hungary.\n\nPhoto: Xinhua\nTelecom firms showed AI models at MWC Barcelona."
    s = text.index("Photo")
    credit = Chunk("t#1", "t.txt", "T", s, s + 13, "Photo: Xinhua", ((s, s + 13),), role=Role.CAPTION)
    [ev] = select_evidence("Who supplied the picture?", [Passage(1, credit, 1.0)], HashEmbedder(), {"t.txt": text})
    assert ev.text == "Photo: Xinhua" and ev.context == ("Acme opened a plant in Hungary.",
                                                         "Telecom firms showed AI models at MWC Barcelona.")
    user = build_messages("Who supplied the picture?", [ev])[-1]["content"]
    assert "(from a photo caption or credit, between “Acme opened" in user and "Barcelona.…”) Photo: Xinhua" in user
    [bare] = select_evidence("Who supplied the picture?", [Passage(1, credit, 1.0)], HashEmbedder(), {"t.txt": text},
                             Settings(role_prompt_context=0))
    assert bare.context == () and "[1] (from a photo caption or credit) Photo: Xinhua" in \
        build_messages("q", [bare])[-1]["content"]


def test_follow_up_detection() -> None:
    assert needs_context("What about Baidu?") and needs_context("And their chips?")
    assert needs_context("And the year?") and needs_context("Who runs it?") and needs_context("When did he join?")
    assert not needs_context("Which chip powers Huawei's Mate 60 series phone today?")
    # short, but self-contained: never rewritten (a rewrite once turned it into the previous topic)
    assert not needs_context("Who won the 2024 Super Bowl?")
    assert not needs_context("Which firm that makes GPUs sued Intel?")


def test_a_rewrite_that_drops_the_users_words_is_not_used() -> None:
    assert keeps_content("And who founded it?", "Who founded AIsphere?")
    assert keeps_content("What about Baidu?", "Which chips does Baidu source from Huawei?")
    assert not keeps_content("Who won the 2024 Super Bowl?", "Who founded AIsphere?")


def test_what_about_x_takes_the_previous_question_with_x() -> None:
    assert substitute("What about Baidu?", "Which company's chips does ByteDance use?") == \
        "Which company's chips does Baidu use?"
    assert substitute("Who runs it?", "Which company's chips does ByteDance use?") is None


def test_history_as_messages_pairs_answers_with_questions() -> None:
    msgs = [{"role": "user", "content": "Who founded AIsphere?"}, {"role": "assistant", "content": "Wang Changhu [1]."},
            {"role": "user", "content": "How much did it raise?"}]
    assert turns(msgs) == [("Who founded AIsphere?", "Wang Changhu."), ("How much did it raise?", "")]
    assert turns(["Which chip?", " "]) == [("Which chip?", "")]


def test_assistant_with_fakes(tmp_path: Path, settings, seeds_copy) -> None:
    emb = HashEmbedder()
    build_index([seeds_copy], settings, emb)
    store = IndexStore.load(settings.index_dir, settings)
    llm = FakeLLM().enqueue("Huawei's Mate 60 is powered by the Kirin 9000S chip [1].",
                            "Which company makes the Kirin chip for Baidu?", "The articles do not say.")
    a = Assistant(settings, store=store, embedder=emb, llm=llm)
    events = list(a.stream("Which chip powers the Mate 60 series phone?"))
    tokens = "".join(e.text for e in events if isinstance(e, Token))
    answer = events[-1]
    assert tokens.startswith("Huawei's Mate 60")
    assert answer.answerable and answer.citations
    c = answer.citations[0]
    assert c.quote == store.articles[c.article].text[c.start:c.end] and "Kirin 9000S" in c.quote
    assert answer.to_dict()["timings"].keys() >= {"retrieve_s", "first_token_s", "total_s"}
    # the same question again is served from the answer cache, without calling the LLM
    calls = len(llm.calls)
    again = a.ask("which chip powers the mate 60 series phone?")
    assert again.cached and len(llm.calls) == calls and again.answer == answer.answer
    # a follow-up is rewritten with the previous question before retrieval
    events = list(a.stream("What about Baidu?", history=["Which chip powers the Mate 60 series phone?"]))
    assert any(isinstance(e, Status) for e in events)
    assert events[-1].rewritten_question == "Which company makes the Kirin chip for Baidu?"
    rewrite_prompt = llm.calls[-2][-1]["content"]
    # the rewrite sees the earlier question and, from the cache, its answer (which names what "it" is)
    assert "Q: Which chip powers the Mate 60 series phone?" in rewrite_prompt
    assert "A: Huawei's Mate 60 is powered by the Kirin 9000S chip" in rewrite_prompt


def test_new_question_after_a_conversation_is_answered_as_asked(settings, seeds_copy) -> None:
    """The chat once rewrote "Who won the 2024 Super Bowl?" into the previous topic and answered it from
    the cache. A self-contained question is not rewritten, and one naming nothing in the articles is
    refused without a model call."""
    emb = HashEmbedder()
    build_index([seeds_copy], settings, emb)
    store = IndexStore.load(settings.index_dir, settings)
    llm = FakeLLM().enqueue("Huawei's Mate 60 is powered by the Kirin 9000S chip [1].")
    a = Assistant(settings, store=store, embedder=emb, llm=llm)
    first = a.ask("Which chip powers the Mate 60 series phone?")
    calls = len(llm.calls)
    new = a.ask("Who won the 2024 Super Bowl?", history=[first.question])
    assert new.rewritten_question is None and not new.answerable and not new.cached
    assert len(llm.calls) == calls  # refused before any model call: no rewrite, no answer
    assert new.sentences[0].note == "off-corpus" and "Super" in new.sentences[0].text
    # with the gate off, the question still reaches the model (as asked, not rewritten)
    b = Assistant(settings.replace(relevance_gate=0), store=store, embedder=emb,
                  llm=FakeLLM().enqueue("The articles do not say."))
    assert b.ask("Who won the 2024 Super Bowl?", history=[first.question]).rewritten_question is None
