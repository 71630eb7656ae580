"""Hybrid retrieval: dense (FAISS) and lexical (BM25) rankings fused by reciprocal rank fusion.

Names and numbers ("Kirin 9000S", "11.4 per cent") are where embeddings alone fail, and paraphrases are
where BM25 alone fails; RRF (score = sum of 1 / (rrf_k + rank)) needs no score calibration between them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .errors import InputError
from .question import Question, as_question
from .records import Passage
from .roles import RANKED_DOWN, Role, asked_roles
from .settings import Settings
from .store import IndexStore
from .stores import Store, as_store
from .vocab import STOPWORDS, terms, tokenize


class Retriever:
    """Retrieves passages from a loaded index: the store ranks (dense, BM25), the weighted RRF here fuses."""

    def __init__(self, store: Store | IndexStore, embedder: Any, settings: Settings | None = None, *,
                 load_embedder: Callable[[], Any] | None = None) -> None:
        """``embedder`` may be None with ``load_embedder`` given: lexical search then never loads it."""
        self.store = as_store(store)
        self._embedder = embedder
        self._load_embedder = load_embedder
        self.settings = settings or Settings()
        # Non-body chunks are many and short (41 of 92 on the seeds) and crowd a fixed candidate pool:
        # with 30 candidates per retriever, holdout recall@5 fell from 0.955 to 0.864 once they were
        # indexed (measured with the role weight alone). So the pool grows with their share, to hold
        # about ``candidates`` body passages.
        chunks = self.store.chunks
        body = sum(c.role is Role.BODY for c in chunks)
        self._pool_scale = len(chunks) / body if body else 1.0

    @property
    def embedder(self) -> Any:
        if self._embedder is None and self._load_embedder is not None:
            self._embedder = self._load_embedder()
        return self._embedder

    def idf(self, term: str) -> float:
        """BM25 inverse document frequency of a stemmed term: rare words weigh more, and a word no
        chunk contains weighs nothing (it cannot tell passages apart)."""
        return self.store.idf(term)

    def dense(self, query: str, n: int) -> list[tuple[str, float]]:
        vec = self.embedder.embed_cached([query], "query")[0]
        return self.store.dense(vec, n)

    def lexical(self, query: str, n: int) -> list[tuple[str, float]]:
        tokens = terms(query)
        if not tokens:
            return []
        return self.store.lexical(tokens, n)

    def search_parts(self, question: str | Question, k: int | None = None, per_part: int = 2) -> list[Passage]:
        """``search``, plus the top ``per_part`` passages of each part of a compound question, ranked
        after the others: "Which chip ..., and how much ...?" often needs two articles."""
        q = as_question(question)
        passages = self.search(q.text, k)
        if q.compound:
            have = {p.chunk.chunk_id for p in passages}
            for part in q.parts:
                for p in self.search(part, per_part):
                    if p.chunk.chunk_id not in have:
                        have.add(p.chunk.chunk_id)
                        passages.append(replace(p, rank=len(passages) + 1))
        return passages

    def search(self, query: str, k: int | None = None, mode: str | None = None) -> list[Passage]:
        """Top ``k`` passages for ``query``; ``mode`` is hybrid, dense or lexical (default: the
        ``retrieval_mode`` setting)."""
        query = check_question(query, self.settings.max_question_chars)
        k = k or self.settings.k
        mode = mode or self.settings.retrieval_mode
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        n = math.ceil(max(self.settings.candidates, k) * self._pool_scale)
        dense = self.dense(query, n) if mode in ("hybrid", "dense") else []
        lexical = self.lexical(query, n) if mode in ("hybrid", "lexical") else []
        if mode not in ("hybrid", "dense", "lexical"):
            raise InputError(f"unknown retrieval mode {mode!r}; use hybrid, dense or lexical")
        fused: dict[str, float] = {}
        d_rank = {i: r for r, (i, _) in enumerate(dense, 1)}
        l_rank = {i: r for r, (i, _) in enumerate(lexical, 1)}
        # Roles steer ranking, not existence: in each ranking, article text is ranked among article text
        # (a caption that embeds close to the question does not push a paragraph down), and the fused
        # score of a ranked-down role is multiplied by role_weight, so article text that matches as well
        # comes first.
        # A question that names a kind of line ("the photo", "the related headline") lifts that role's ranking down.
        down = self.settings.role_weight
        lowered = RANKED_DOWN - asked_roles(tokenize(query)) if self.settings.role_intent else RANKED_DOWN
        ids = list(dict.fromkeys([i for i, _ in dense] + [i for i, _ in lexical]))
        by_id = dict(zip(ids, self.store.fetch(ids), strict=True))
        for ranking, weight in ((dense, self.settings.dense_weight), (lexical, 1.0)):
            own = 0
            for r, (i, _) in enumerate(ranking, 1):
                if by_id[i].role not in lowered:
                    own += 1
                    r = own
                fused[i] = fused.get(i, 0.0) + weight / (self.settings.rrf_k + r)
        for i in fused:
            if by_id[i].role in lowered:
                fused[i] *= down
        order = sorted(fused, key=lambda i: (-fused[i], d_rank.get(i, 1e9)))[:k]
        return [Passage(rank=r, chunk=by_id[i], score=fused[i], dense_rank=d_rank.get(i), lexical_rank=l_rank.get(i))
                for r, i in enumerate(order, 1)]


__all__ = ["STOPWORDS", "Retriever", "check_question", "terms", "tokenize"]


def check_question(question: str, max_chars: int = Settings.max_question_chars) -> str:
    """Normalise a question; refuse empty or oversized ones with a clear message."""
    if not isinstance(question, str):
        raise InputError("the question must be text")
    q = " ".join(question.replace("\x00", " ").split())
    try:
        q.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate: bytes that were not UTF-8 (argv), or JSON "\ud800"
        raise InputError(f"the question holds a character that is not valid text (at position {e.start}); "
                         "retype it as plain UTF-8") from None
    if not q:
        raise InputError("the question is empty; type a question about the articles")
    if len(q) > max_chars:
        raise InputError(f"the question is {len(q)} characters long; the limit is {max_chars} "
                         "(max_question_chars)")
    return q
