"""The naive pipeline a first RAG tutorial builds, kept as the yardstick: each article cut into 1000-character
chunks, the top 4 by embedding cosine in a flat FAISS index, stuffed into one generic prompt, the model's
text returned as the answer. No roles, no BM25, no evidence selection, no checks, no citations.

``rag bench`` times it against ours; ``rag eval --baseline naive`` scores its answers with the same scorer,
so ``rag eval --compare`` can say, question by question, whether our pipeline is right more often.
"""

from __future__ import annotations

import re
import time
from typing import Any

from .cite import is_refusal
from .llm import prompt_tokens
from .prompt import REFUSAL
from .records import Answer, Chunk, Passage
from .retrieve import check_question
from .settings import Settings

SYSTEM = ("Use the following pieces of context to answer the question at the end. If you don't know "
          "the answer, just say that you don't know. Keep the answer concise.")
CHUNK_SIZE, CHUNK_OVERLAP, TOP_K = 1000, 200, 4
# How the model says it does not know, under the prompt above ("I don't know.", "The context does not
# mention ...", "... is not mentioned in the given context"): such an answer counts as a refusal, as a reader
# would take it. "Huawei does not have the chips" is an answer, so only the context is the subject of "does not".
_DONT_KNOW = re.compile(
    r"\b(?:don't|do not) know\b|\b(?:context|passages?|text|articles?|information|sources?)\b[^.]{0,40}?"
    r"\b(?:does|do|did)(?: not|n't) (?:provide|mention|specify|say|state|contain|include|give|indicate)\b|"
    r"\bnot (?:mentioned|provided|specified|stated|given)\b|\bno (?:information|mention)\b|"
    r"\bcannot (?:be determined|determine|answer)\b|\bunable to (?:determine|answer|find)\b",
    re.IGNORECASE)


def says_dont_know(text: str) -> bool:
    """The answer is a refusal: empty, our own refusal, or a "don't know" phrasing.

    >>> says_dont_know("I don't know."), says_dont_know("The context does not mention Baidu.")
    (True, True)
    >>> says_dont_know("In 2019."), says_dont_know("China does not have enough advanced chips.")
    (False, False)
    """
    return not text.strip() or is_refusal(text) or bool(_DONT_KNOW.search(text))


class NaivePipeline:
    """Answers like ``Assistant.ask`` (same record, same store, embedder and model), the tutorial way.

    The ``k`` a caller passes is ignored: top 4 is part of the design being measured."""

    pipeline = "naive"

    def __init__(self, settings: Settings, store: Any, embedder: Any, llm: Any) -> None:
        import faiss
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        self.settings, self.store, self.embedder, self.llm = settings, store, embedder, llm
        split = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP,
                                               add_start_index=True)
        self.chunks: list[Chunk] = []
        for name, article in store.articles.items():
            for i, doc in enumerate(split.create_documents([article.text])):
                start = int(doc.metadata["start_index"])
                end = start + len(doc.page_content)
                if article.text[start:end] == doc.page_content:  # offsets exact, as every Chunk's
                    self.chunks.append(Chunk(f"naive:{name}:{i}", name, article.title, start, end, doc.page_content))
        self.index = faiss.IndexFlatIP(embedder.dim)
        if self.chunks:
            self.index.add(embedder.embed([c.text for c in self.chunks]))

    @classmethod
    def like(cls, assistant: Any) -> NaivePipeline:
        """The baseline over what ``assistant`` has loaded: its settings, store, embedder and model."""
        return cls(assistant.settings, assistant.store, assistant.embedder, assistant.llm)

    @staticmethod
    def messages(question: str, contexts: list[str]) -> list[dict[str, str]]:
        context = "\n\n".join(contexts)
        return [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {question}"}]

    def prompt(self, question: str) -> tuple[list[Passage], list[dict[str, str]]]:
        """The top chunks for ``question`` and the prompt stuffed with them."""
        passages = self.retrieve(question)
        return passages, self.messages(question, [p.chunk.text for p in passages])

    def retrieve(self, question: str) -> list[Passage]:
        if not self.chunks:
            return []
        scores, ids = self.index.search(self.embedder.embed([question]), min(TOP_K, len(self.chunks)))
        return [Passage(rank=r, chunk=self.chunks[i], score=float(s))
                for r, (i, s) in enumerate(zip(ids[0], scores[0], strict=True), 1) if i >= 0]

    def warm_up(self) -> None:
        """Load the model and put the fixed system prompt in its cache."""
        for _ in self.llm.stream_chat(self.messages("warm up", []), max_tokens=1):
            pass

    def ask(self, question: str, *, k: int | None = None, history: Any = None) -> Answer:
        """The tutorial answer: no conversation (a follow-up is searched as typed), no checks."""
        t0 = time.perf_counter()
        question = check_question(question, self.settings.max_question_chars)
        passages, messages = self.prompt(question)
        t_retrieved = time.perf_counter()
        pieces: list[str] = []
        first = None
        for piece in self.llm.stream_chat(messages, self.settings.max_tokens):
            first = first or time.perf_counter()
            pieces.append(piece)
        raw = "".join(pieces).strip()
        answerable = not says_dont_know(raw)
        return Answer(question=question, answer=raw or REFUSAL, answerable=answerable,
                      citations=(), passages=tuple(passages), model=self.llm.name, raw_answer=raw,
                      timings={"retrieve_s": t_retrieved - t0, "first_token_s": (first or time.perf_counter()) - t0,
                               "total_s": time.perf_counter() - t0},
                      prompt_tokens=prompt_tokens(self.llm, messages),
                      completion_tokens=self.llm.count_tokens(raw) if raw else 0)
