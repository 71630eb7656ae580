"""Where the index lives, behind one small protocol: the folder store (default) or Milvus.

``folder``
    FAISS + bm25s + JSON Lines in ``index_dir`` (``rag.store``): one analyst, one laptop, no server.
``milvus:URI``
    one Milvus collection per index, dense vectors and Milvus's built-in BM25 function side by side
    (``rag.stores.milvus``); URI is what ``pymilvus.MilvusClient`` takes: a path ending in ``.db`` runs
    the embedded Milvus Lite engine, ``http://HOST:19530`` reaches a Milvus server.

Retrieval, answering, eval and bench only use ``Store``; fusion (weighted RRF) stays in
``rag.retrieve``, so answers do not depend on the store. Writers are reached through
``rag.store.build_index``, which hands a Milvus setting to ``rag.stores.milvus.build_index``.
Nothing here imports ``pymilvus``: the default path never loads it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from ..errors import InputError

if TYPE_CHECKING:
    import numpy as np

    from ..records import Article, Chunk
    from ..settings import Settings


@runtime_checkable
class Store(Protocol):
    """A loaded, read-only version of the index. Chunks are named by ``chunk_id`` everywhere."""

    version: str  # changes whenever the index is rewritten (answer caches key on it)
    manifest: dict[str, Any]  # format version, embedder, chunking, index type, counts

    @property
    def articles(self) -> Mapping[str, Article]:
        """Articles by name, with their original text (citations are checked against it)."""

    @property
    def texts(self) -> Mapping[str, str]:
        """Original article text by name."""

    @property
    def chunks(self) -> Sequence[Chunk]:
        """Every chunk (eval reads them all to find which gold quotes are indexed at all)."""

    def __len__(self) -> int:
        """How many chunks."""

    def dense(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        """Top ``n`` chunk ids by inner product with a normalised query vector, best first: with the
        chunk's vector, or its best sentence's (``Settings.dense_unit``, as the index was built)."""

    def lexical(self, terms: list[str], n: int) -> list[tuple[str, float]]:
        """Top ``n`` chunk ids by BM25 over ``rag.vocab.terms`` of title, source and chunk text."""

    def fetch(self, ids: Sequence[str]) -> list[Chunk]:
        """The chunks with these ids, in the same order."""

    def idf(self, term: str) -> float:
        """BM25 inverse document frequency of a stemmed term; 0 for a term no chunk holds."""

    def article_hashes(self) -> dict[str, str]:
        """Article name -> sha256 of its file: what incremental indexing compares against."""


K = TypeVar("K", bound=Hashable)
# Sentences searched per chunk asked for: a chunk has about five, and the hits of one question cluster in
# a few chunks. If fewer than n distinct chunks come back, four times as many are searched, and so on.
SENTENCES_PER_CHUNK = 8


def rank_by_best_sentence(search: Callable[[int], Iterable[tuple[K, float]]], n: int, total: int,
                          order: Callable[[K], Any], most: int | None = None) -> list[tuple[K, float]]:
    """The top ``n`` chunks by their best sentence's score, ties in chunk order (``order``), from
    ``search(limit)``: the ``limit`` best sentences of ``total`` as (chunk, score). ``most`` caps
    ``limit`` where the engine does (Milvus: 16,384). Both stores rank this way, so they agree."""
    cap = min(total, most or total)
    limit = min(cap, SENTENCES_PER_CHUNK * n)
    best: dict[K, float] = {}
    while limit > 0:
        best = {}
        for chunk, score in search(limit):
            if chunk not in best or score > best[chunk]:
                best[chunk] = score
        if len(best) >= n or limit >= cap:
            break
        limit = min(cap, limit * 4)
    return sorted(best.items(), key=lambda kv: (-kv[1], order(kv[0])))[:n]


def store_kind(settings: Settings) -> tuple[str, str]:
    """("folder", "") or ("milvus", URI) from ``settings.store``; anything else is an ``InputError``."""
    spec = settings.store.strip()
    if spec in ("", "folder"):
        return "folder", ""
    if spec.startswith("milvus:") and spec[len("milvus:"):].strip():
        return "milvus", spec[len("milvus:"):].strip()
    raise InputError(f"unknown store {settings.store!r}; use 'folder' or 'milvus:URI' (a Milvus Lite file "
                     "such as milvus:archive/news.db, or a server such as milvus:http://127.0.0.1:19530)")


def open_store(settings: Settings) -> Store:
    """Load the live index of ``settings.store``; checks the manifest against the settings."""
    kind, _ = store_kind(settings)
    if kind == "milvus":
        from .milvus import MilvusStore

        return MilvusStore.open(settings)
    from .folder import FolderStore

    return FolderStore.load(settings)


def as_store(store: Any) -> Store:
    """A ``Store`` as is; a bare ``rag.store.IndexStore`` (older callers, tests) wrapped as a folder store."""
    from ..store import IndexStore

    if isinstance(store, IndexStore):
        from .folder import FolderStore

        return FolderStore(store)
    return store
