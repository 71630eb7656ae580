"""The default store: the index folder (``rag.store.IndexStore``) with its BM25 index (bm25s).

It wraps ``IndexStore`` rather than replacing it: the files, their checks and the writer stay in
``rag.store``. Dense search uses the chunk vectors, or with ``dense_unit = "sentence"`` ranks chunks by
their best sentence (``IndexStore.search_sentences``). The BM25 index is written beside the vectors at
indexing time (``bm25/``) and memory-mapped on first use, so a start does not rebuild it; an index
written before that is indexed in memory on first use instead. Equal BM25 scores are ranked in chunk
order, as the Milvus store ranks them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..records import Article, Chunk

if TYPE_CHECKING:
    from ..settings import Settings
    from ..store import IndexStore

LEXICAL_DIR = "bm25"  # in a version folder: bm25s's saved index of the chunks' BM25 terms


def lexical_corpus(chunks: Sequence[Chunk], articles: dict[str, Article], context: bool) -> list[list[str]]:
    """Each chunk's BM25 terms (``chunk.lexical_text``), in chunk order; "∅" stands for none."""
    from ..chunk import lexical_text
    from ..vocab import terms

    return [terms(lexical_text(c, articles.get(c.article), context)) or ["∅"] for c in chunks]


def _bm25s() -> Any:
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets itself to DEBUG on import
    return bm25s


def build_lexical(corpus: list[list[str]]) -> Any:
    bm25 = _bm25s().BM25()
    if corpus:
        bm25.index(corpus, show_progress=False)
    return bm25


def write_lexical(folder: Path, chunks: Sequence[Chunk], articles: dict[str, Article], context: bool) -> None:
    """Save the BM25 index of ``chunks`` into ``folder`` (part of a version being written)."""
    build_lexical(lexical_corpus(chunks, articles, context)).save(str(folder))


class FolderStore:
    """``Store`` over a loaded ``IndexStore``; unknown attributes (path, vectors, ...) pass through."""

    def __init__(self, index: IndexStore) -> None:
        self.index = index
        self.version = index.version
        self.manifest = index.manifest
        self._pos = {c.chunk_id: i for i, c in enumerate(index.chunks)}
        self._bm25: Any = None

    @classmethod
    def load(cls, settings: Settings) -> FolderStore:
        from ..store import IndexStore

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
        hits = self.index.search(vector, n) if self.index.sentences is None else \
            self.index.search_sentences(vector, n)
        return [(chunks[i].chunk_id, s) for i, s in hits]

    def _bm25_index(self) -> Any:
        if self._bm25 is None:
            saved = self.index.path / LEXICAL_DIR
            if saved.is_dir():
                bm25 = _bm25s().BM25.load(str(saved), mmap=True)
            else:  # an index written before BM25 was saved with it
                context = bool(self.manifest.get("chunking", {}).get("role_context"))  # as the vectors were
                bm25 = build_lexical(lexical_corpus(self.index.chunks, self.index.articles, context))
            self._bm25 = bm25
        return self._bm25

    def lexical(self, terms: list[str], n: int) -> list[tuple[str, float]]:
        if not terms or not self.index.chunks:
            return []
        bm25 = self._bm25_index()
        n = min(n, len(self.index.chunks))
        ids, scores = bm25.retrieve([terms], k=n, show_progress=False, n_threads=1)
        chunks = self.index.chunks
        hits = sorted((-float(s), int(i)) for i, s in zip(ids[0], scores[0], strict=True) if s > 0)  # ties in
        return [(chunks[i].chunk_id, -s) for s, i in hits]  # chunk order, as the Milvus store ranks them

    def idf(self, term: str) -> float:
        """BM25 idf of ``term``, from its document frequency: the entries of its column in bm25s's sparse
        score matrix (0 for a term no chunk holds). Looked up per term, so a start builds no table."""
        bm25 = self._bm25_index()
        i = bm25.vocab_dict.get(term)
        indptr = bm25.scores["indptr"]
        if i is None or i + 1 >= len(indptr):
            return 0.0
        df = int(indptr[i + 1] - indptr[i])
        n = len(self.index.chunks)
        return math.log(1 + (n - df + 0.5) / (df + 0.5)) if df else 0.0

    def fetch(self, ids: Sequence[str]) -> list[Chunk]:
        return [self.index.chunks[self._pos[i]] for i in ids]

    def sentence_vectors(self, chunk: Chunk) -> list[tuple[str, np.ndarray]]:
        """Each sentence of ``chunk`` as it was embedded (``chunk.sentence_texts``) with its stored vector;
        none when the index holds no sentence vectors (``dense_unit = "chunk"``)."""
        from ..chunk import sentence_texts

        position = self._pos.get(chunk.chunk_id)
        if self.index.sentences is None or position is None:
            return []
        context = bool(self.manifest.get("chunking", {}).get("role_context"))  # as the vectors were
        texts = sentence_texts(chunk, self.index.articles[chunk.article], context)
        vectors = self.index.sentences.of(position)
        return list(zip(texts, vectors, strict=True)) if len(vectors) == len(texts) else []

    def article_hashes(self) -> dict[str, str]:
        return {name: a.sha256 for name, a in self.index.articles.items()}
