"""Hybrid retrieval: dense (FAISS) and lexical (BM25) rankings fused by reciprocal rank fusion.

Names and numbers ("Kirin 9000S", "11.4 per cent") are where embeddings alone fail, and paraphrases are
where BM25 alone fails; RRF (score = sum of 1 / (rrf_k + rank)) needs no score calibration between them.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import replace
from typing import Any

import Stemmer

from .errors import InputError
from .records import Passage
from .settings import Settings
from .store import IndexStore

_TOKEN = re.compile(r"\d+(?:[.,]\d+)*[^\W\d_]*|[^\W\d_]+(?:[-'’][^\W\d_]+)*\d*[a-z]*|\w+", re.UNICODE)
STOPWORDS = frozenset(
    (
        "a an and are as at be been but by did do does for from had has have he her his how i if in into is "
        "it its of on or our she so than that the their them then there these they this to was we were what "
        "when which while who whom why will with would you your about after also can could may might more "
        "most said says say according article articles"
    ).split()
)


def tokenize(text: str) -> list[str]:
    """Lower-cased word and number tokens without stopwords; "11.4" and "9000s" stay whole."""
    return [t for t in (m.group(0).lower() for m in _TOKEN.finditer(text)) if t not in STOPWORDS]


_STEMMER = Stemmer.Stemmer("english")


def terms(text: str) -> list[str]:
    """BM25 terms: ``tokenize`` then Snowball stemming, so "launched" finds "launch"."""
    return _STEMMER.stemWords(tokenize(text))


class Retriever:
    """Retrieves passages from a loaded index; BM25 is built in memory at load (milliseconds per 1k chunks)."""

    def __init__(self, store: IndexStore, embedder: Any, settings: Settings | None = None) -> None:
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets itself to DEBUG on import
        self.store = store
        self.embedder = embedder
        self.settings = settings or Settings()
        self.bm25 = bm25s.BM25()
        # Title and source go into each chunk's terms: questions name them ("the China Daily piece").
        sources = {n: f"{a.title} {a.source or ''}" for n, a in store.articles.items()}
        corpus = [terms(f"{sources.get(c.article, c.title)} {c.text}") or ["∅"] for c in store.chunks]
        if corpus:
            self.bm25.index(corpus, show_progress=False)
        df = Counter(t for doc in corpus for t in set(doc))
        n = len(corpus)
        self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def idf(self, term: str) -> float:
        """BM25 inverse document frequency of a stemmed term: rare words weigh more, and a word no
        chunk contains weighs nothing (it cannot tell passages apart)."""
        return self._idf.get(term, 0.0)

    def dense(self, query: str, n: int) -> list[tuple[int, float]]:
        vec = self.embedder.embed_cached([query], "query")[0]
        return self.store.search(vec, n)

    def lexical(self, query: str, n: int) -> list[tuple[int, float]]:
        tokens = terms(query)
        if not tokens or not self.store.chunks:
            return []
        n = min(n, len(self.store.chunks))
        ids, scores = self.bm25.retrieve([tokens], k=n, show_progress=False, n_threads=1)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if s > 0]

    def search_parts(self, question: str, k: int | None = None, per_part: int = 2) -> list[Passage]:
        """``search``, plus the top ``per_part`` passages of each part of a compound question, ranked
        after the others: "Which chip ..., and how much ...?" often needs two articles."""
        passages = self.search(question, k)
        parts = question_parts(question)
        if len(parts) > 1:
            have = {p.chunk.chunk_id for p in passages}
            for part in parts:
                for p in self.search(part, per_part):
                    if p.chunk.chunk_id not in have:
                        have.add(p.chunk.chunk_id)
                        passages.append(replace(p, rank=len(passages) + 1))
        return passages

    def search(self, query: str, k: int | None = None, mode: str = "hybrid") -> list[Passage]:
        """Top ``k`` passages for ``query``; ``mode`` is hybrid, dense or lexical."""
        query = check_question(query, self.settings.max_question_chars)
        k = k or self.settings.k
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        n = max(self.settings.candidates, k)
        dense = self.dense(query, n) if mode in ("hybrid", "dense") else []
        lexical = self.lexical(query, n) if mode in ("hybrid", "lexical") else []
        if mode not in ("hybrid", "dense", "lexical"):
            raise InputError(f"unknown retrieval mode {mode!r}; use hybrid, dense or lexical")
        fused: dict[int, float] = {}
        d_rank = {i: r for r, (i, _) in enumerate(dense, 1)}
        l_rank = {i: r for r, (i, _) in enumerate(lexical, 1)}
        for ranking, weight in ((dense, self.settings.dense_weight), (lexical, 1.0)):
            for r, (i, _) in enumerate(ranking, 1):
                fused[i] = fused.get(i, 0.0) + weight / (self.settings.rrf_k + r)
        order = sorted(fused, key=lambda i: (-fused[i], d_rank.get(i, 1e9)))[:k]
        return [Passage(rank=r, chunk=self.store.chunks[i], score=fused[i], dense_rank=d_rank.get(i),
                        lexical_rank=l_rank.get(i)) for r, i in enumerate(order, 1)]


_PART = re.compile(r"(?:,?\s+and\s+|;\s*|\?\s+)(?=(?:which|what|who|whom|whose|how|when|where|why|in which|"
                   r"on which|at which)\b)", re.IGNORECASE)


def question_parts(question: str) -> list[str]:
    """The parts of a compound question ("Which chip ..., and how much ...?"), or the question alone.

    >>> question_parts("Who founded it, and which city is it in?")
    ['Who founded it', 'which city is it in?']
    """
    parts = [p.strip(" ,;") for p in _PART.split(question)]
    parts = [p for p in parts if len(p.split()) >= 3]
    return parts if len(parts) > 1 else [question]


def check_question(question: str, max_chars: int = 2000) -> str:
    """Normalise a question; refuse empty or oversized ones with a clear message."""
    if not isinstance(question, str):
        raise InputError("the question must be text")
    q = " ".join(question.replace("\x00", " ").split())
    if not q:
        raise InputError("the question is empty; type a question about the articles")
    if len(q) > max_chars:
        raise InputError(f"the question is {len(q)} characters long; the limit is {max_chars} "
                         "(max_question_chars)")
    return q
