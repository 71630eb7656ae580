"""The default store: today's index folder (``rag.store.IndexStore``) with BM25 (bm25s) built in memory.

It wraps ``IndexStore`` rather than replacing it: the files, their checks and the writer stay in
``rag.store``. BM25 is built on first use (milliseconds per 1k chunks), as the retriever did before.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..records import Article, Chunk
from ..settings import Settings
from ..store import IndexStore


class FolderStore:
    """``Store`` over a loaded ``IndexStore``; unknown attributes (path, vectors, ...) pass through."""

    def __init__(self, index: IndexStore) -> None:
        self.index = index
        self.version = index.version
        self.manifest = index.manifest
        self._pos = {c.chunk_id: i for i, c in enumerate(index.chunks)}
        self._bm25: Any = None
        self._idf: dict[str, float] = {}

    @classmethod
    def load(cls, settings: Settings) -> FolderStore:
        return cls(IndexStore.load(settings.index_dir, settings))

    def __repr__(self) -> str:
        return f"FolderStore({self.index!r})"

    def __getattr__(self, name: str) -> Any:  # path, vectors, faiss_index, search ...
        return getattr(self.index, name)

    @property
    def articles(self) -> dict[str, Article]:
        return self.index.articles

    @property
    def texts(self) -> dict[str, str]:
        return self.index.texts

    @property
    def chunks(self) -> list[Chunk]:
        return self.index.chunks

    def __len__(self) -> int:
        return len(self.index.chunks)

    def dense(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        chunks = self.index.chunks
        return [(chunks[i].chunk_id, s) for i, s in self.index.search(vector, n)]

    def _bm25_index(self) -> Any:
        if self._bm25 is None:
            import bm25s

            from ..chunk import lexical_text
            from ..retrieve import terms

            logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets itself to DEBUG on import
            bm25 = bm25s.BM25()
            context = bool(self.manifest.get("chunking", {}).get("role_context"))  # as the vectors were built
            articles = self.index.articles
            corpus = [terms(lexical_text(c, articles.get(c.article), context)) or ["∅"] for c in self.index.chunks]
            if corpus:
                bm25.index(corpus, show_progress=False)
            df = Counter(t for doc in corpus for t in set(doc))
            n = len(corpus)
            self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
            self._bm25 = bm25
        return self._bm25

    def lexical(self, terms: list[str], n: int) -> list[tuple[str, float]]:
        if not terms or not self.index.chunks:
            return []
        bm25 = self._bm25_index()
        n = min(n, len(self.index.chunks))
        ids, scores = bm25.retrieve([terms], k=n, show_progress=False, n_threads=1)
        chunks = self.index.chunks
        return [(chunks[int(i)].chunk_id, float(s)) for i, s in zip(ids[0], scores[0], strict=True) if s > 0]

    def idf(self, term: str) -> float:
        self._bm25_index()
        return self._idf.get(term, 0.0)

    def fetch(self, ids: Sequence[str]) -> list[Chunk]:
        return [self.index.chunks[self._pos[i]] for i in ids]

    def article_hashes(self) -> dict[str, str]:
        return {name: a.sha256 for name, a in self.index.articles.items()}
