"""The index on disk: chunks, their vectors, a FAISS index and a manifest, swapped in atomically.

Layout of ``index_dir``::

    CURRENT            name of the live version folder (replaced atomically with os.replace)
    v-<time>-<id>/     manifest.json, articles.jsonl, chunks.jsonl, vectors.npy, faiss.index, bm25/,
                       and with dense_unit "sentence": sentences.npy, sentence_owner.npy, sentences.faiss
    uploads/           articles added from the UI (indexed with the corpus by default)
    .lock              serialises writers

A writer builds a complete new version folder, fsyncs it, then points CURRENT at it; a crash at any
moment leaves the previous version loadable, and the next writer removes the half-written folder.
Unchanged articles (same name and sha256) keep their chunks and vectors (sentence vectors too): only new or
changed ones are embedded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .chunk import chunk_article, search_text, sentence_texts
from .errors import IndexCorruptError, IndexMismatchError, IndexMissingError, InputError, RagError
from .files import write_atomic
from .ingest import CLEANER_VERSION, coverage, iter_paths, load_article
from .readers import formats
from .records import Article, Chunk, Coverage
from .settings import Settings
from .stores import rank_by_best_sentence

log = logging.getLogger(__name__)

FORMAT_VERSION = 4  # 2: blocks and chunks carry a role; dropped lines are recorded. 3: pages (PDF).
# 4: sentence vectors (dense_unit "sentence": sentences.npy, sentence_owner.npy, sentences.faiss)
DENSE_UNITS = ("sentence", "chunk")
SENTENCE_FILES = ("sentences.npy", "sentence_owner.npy", "sentences.faiss")
# The automatic index choice, from `rag bench` (2 cores, 2 threads, 384-dim clustered vectors whose
# neighbourhoods look like MiniLM's on news chunks, single queries, k=10):
# - flat (exact): p50 1.6 ms at 10k, 17 ms at 100k, 154 ms at 1M. Exact and free to build, so it is
#   used while it stays in the tens of milliseconds, small next to a first token of seconds.
# - from 100k on, IVF-Flat with nlist = 4 sqrt(n) trained on 40 sampled vectors per list, nprobe 64:
#   100k: build 4 s, p50 1.0 ms, recall@10 0.996; 1M: build 56 s, p50 2.0 ms, recall@10 0.999
#   (nprobe 32: 0.956, 16: 0.857). HNSW (M 32, efConstruction 80) is as fast to search (100k: 0.9 ms,
#   recall@10 0.992 at efSearch 128) but took 33 s to build at 100k and 13 min at 1M, and the index is
#   rebuilt from all vectors on every `rag index`, so it is only used when asked for.
APPROX_MIN_VECTORS = 100_000
APPROX_KIND = "ivf"
APPROXIMATE_KINDS = ("hnsw", "ivf")
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128  # only when asked for (index_type = "hnsw")
IVF_LISTS_PER_SQRT_N, IVF_NPROBE, IVF_TRAIN_PER_LIST = 4, 64, 40


@dataclass
class IndexReport:
    """What one ``rag index`` run did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    embedded_chunks: int = 0
    embedded_sentences: int = 0  # distinct sentence texts embedded (dense_unit "sentence")
    total_chunks: int = 0
    total_articles: int = 0
    rebuilt_reason: str | None = None
    seconds: float = 0.0
    coverage: dict[str, Coverage] = field(default_factory=dict)  # per article read: characters per role

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        if not self.changed and not self.rebuilt_reason:
            head = f"index up to date: nothing re-embedded ({self.total_articles} articles, " \
                   f"{self.total_chunks} chunks)"
        else:
            head = (f"indexed {self.total_articles} articles, {self.total_chunks} chunks: "
                    f"{len(self.added)} added, {len(self.updated)} changed, {len(self.removed)} removed, "
                    f"{len(self.unchanged)} unchanged; embedded {self.embedded_chunks} chunks"
                    + (f" and {self.embedded_sentences} sentences" if self.embedded_sentences else "")
                    + f" in {self.seconds:.1f}s")
        if self.rebuilt_reason:
            head += f" (full rebuild: {self.rebuilt_reason})"
        return head


@dataclass(frozen=True)
class SentenceVectors:
    """The vectors of every chunk's sentences (``chunk.sentence_texts``), in chunk order."""

    vectors: np.ndarray  # (sentences, dim) float32, normalised
    owner: np.ndarray  # int64, non-decreasing: the position of each sentence's chunk in the chunk list

    def __len__(self) -> int:
        return len(self.owner)

    def of(self, position: int) -> np.ndarray:
        """The sentence vectors of the chunk at ``position``."""
        lo, hi = np.searchsorted(self.owner, [position, position + 1])
        return np.asarray(self.vectors[lo:hi])


def embed_sentences(embedder: Any, chunks: Sequence[Chunk], articles: Mapping[str, Article], context: bool
                    ) -> tuple[SentenceVectors, int]:
    """The sentence vectors of ``chunks`` and how many texts were embedded: a sentence two chunks share
    (their overlap) is embedded once."""
    unique: dict[str, int] = {}
    rows: list[int] = []
    owner: list[int] = []
    for j, c in enumerate(chunks):
        for t in sentence_texts(c, articles[c.article], context):
            rows.append(unique.setdefault(t, len(unique)))
            owner.append(j)
    vecs = embedder.embed(list(unique)) if unique else np.zeros((0, embedder.dim), np.float32)
    return SentenceVectors(np.asarray(vecs, np.float32)[np.array(rows, np.int64)],
                           np.array(owner, np.int64)), len(unique)


class IndexStore:
    """A loaded, read-only version of the index."""

    def __init__(self, path: Path, manifest: dict[str, Any], articles: dict[str, Article],
                 chunks: list[Chunk], vectors: np.ndarray, faiss_index: Any,
                 sentences: SentenceVectors | None = None, sentence_index: Any = None) -> None:
        self.path = path
        self.manifest = manifest
        self.articles = articles
        self.chunks = chunks
        self.vectors = vectors
        self.faiss_index = faiss_index
        self.sentences = sentences  # with dense_unit "sentence"; None with "chunk"
        self.sentence_index = sentence_index
        self.texts = {name: a.text for name, a in articles.items()}  # original text by article name

    def __repr__(self) -> str:
        return f"IndexStore({str(self.path)!r}, articles={len(self.articles)}, chunks={len(self.chunks)})"

    @property
    def version(self) -> str:
        return self.path.name

    def search(self, query: np.ndarray, n: int) -> list[tuple[int, float]]:
        """Top ``n`` chunk positions by inner product with the (normalised) query vector."""
        if not self.chunks:
            return []
        scores, ids = self.faiss_index.search(query.reshape(1, -1).astype(np.float32), min(n, len(self.chunks)))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def search_sentences(self, query: np.ndarray, n: int) -> list[tuple[int, float]]:
        """Top ``n`` chunk positions by their best sentence's inner product with the query vector."""
        if self.sentences is None:
            raise IndexMismatchError(f"index at {self.path} has no sentence vectors (built with dense_unit "
                                     "chunk); run 'rag index --rebuild'")
        q = query.reshape(1, -1).astype(np.float32)
        owner = self.sentences.owner

        def search(limit: int) -> list[tuple[int, float]]:
            scores, ids = self.sentence_index.search(q, limit)
            return [(int(owner[i]), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

        return rank_by_best_sentence(search, min(n, len(self.chunks)), len(owner), order=lambda p: p)

    @classmethod
    def load(cls, index_dir: Path, settings: Settings | None = None) -> IndexStore:
        """Load the live version; check it against the settings and say what to do on a mismatch."""
        import faiss

        settings = settings or Settings()
        version_dir = current_version(index_dir)
        fix = f"run 'rag index --index-dir {index_dir} --rebuild'"
        try:
            manifest = json.loads((version_dir / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise IndexCorruptError(f"index manifest in {version_dir} is unreadable ({e}); {fix}") from e
        check_manifest(manifest, settings, index_dir)
        _verify_checksums(version_dir, manifest, fix)
        try:
            articles = {a.name: a for a in _read_articles(version_dir / "articles.jsonl")}
            chunks = [Chunk.from_dict(json.loads(ln)) for ln in _jsonl_lines(version_dir / "chunks.jsonl")]
            vectors = np.load(version_dir / "vectors.npy", allow_pickle=False)
            faiss_index = faiss.read_index(str(version_dir / "faiss.index"))
            sentences: SentenceVectors | None = None
            sentence_index: Any = None
            if manifest["chunking"].get("dense_unit") == "sentence":  # as the settings ask (checked above)
                # mapped, not read: searching uses sentences.faiss, only the next `rag index` reads these
                sentences = SentenceVectors(np.load(version_dir / "sentences.npy", mmap_mode="r"),
                                            np.load(version_dir / "sentence_owner.npy", allow_pickle=False))
                sentence_index = faiss.read_index(str(version_dir / "sentences.faiss"))
        except Exception as e:  # noqa: BLE001 - any read failure of these files is corruption
            raise IndexCorruptError(f"index files in {version_dir} are unreadable or truncated ({e}); "
                                    f"{fix}") from e
        n = len(chunks)
        if vectors.shape != (n, manifest["embedder"]["dim"]) or faiss_index.ntotal != n \
                or n != manifest.get("chunks"):
            raise IndexCorruptError(f"index files in {version_dir} disagree ({n} chunks, vectors "
                                    f"{vectors.shape}, faiss {faiss_index.ntotal}); {fix}")
        if sentences is not None:
            m, owner = len(sentences), sentences.owner
            if sentences.vectors.shape != (m, vectors.shape[1]) or sentence_index.ntotal != m \
                    or m != manifest.get("sentences") or owner.ndim != 1 \
                    or (m and (owner[0] < 0 or owner[-1] >= n or bool((np.diff(owner) < 0).any()))):
                raise IndexCorruptError(f"sentence files in {version_dir} disagree ({m} sentences, vectors "
                                        f"{sentences.vectors.shape}, faiss {sentence_index.ntotal}, {n} "
                                        f"chunks); {fix}")
            tune_for_search(sentence_index)
        listed = set(manifest.get("articles", {}))
        missing = listed - set(articles) or {c.article for c in chunks} - set(articles)
        if missing or not articles:
            raise IndexCorruptError(f"index files in {version_dir} disagree: articles.jsonl lacks "
                                    f"{len(missing) or 'all'} article(s) the index lists; {fix}")
        tune_for_search(faiss_index)
        return cls(version_dir, manifest, articles, chunks, vectors, faiss_index, sentences, sentence_index)


def current_version(index_dir: Path) -> Path:
    pointer = index_dir / "CURRENT"
    if not pointer.is_file():
        raise IndexMissingError(f"no index at {index_dir}/; run 'rag index seeds/ --index-dir {index_dir}' "
                                "first")
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise IndexCorruptError(f"{pointer} is unreadable ({e}); run 'rag index --index-dir {index_dir} "
                                "--rebuild'") from None
    version_dir = index_dir / name
    if not name or "/" in name or name.startswith(".") or not version_dir.is_dir():
        raise IndexCorruptError(f"{pointer} names a missing version {name!r}; run 'rag index --index-dir "
                                f"{index_dir} --rebuild'")
    return version_dir


def check_manifest(manifest: dict[str, Any], settings: Settings, index_dir: Path) -> None:
    fix = f"run 'rag index --index-dir {index_dir} --rebuild' to rebuild it with the current settings"
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatchError(f"index at {index_dir} has format version {manifest.get('format_version')}, "
                                 f"this rag reads version {FORMAT_VERSION}; {fix}")
    emb = manifest.get("embedder", {})
    built = (emb.get("name"), emb.get("backend", "sentence-transformers"), emb.get("passage_prefix", ""))
    if built != (settings.embedder, settings.embed_backend, settings.passage_prefix):
        raise IndexMismatchError(f"index at {index_dir} was built with embedder {emb.get('name')!r} "
                                 f"({built[1]}, passage prefix {built[2]!r}), settings ask for "
                                 f"{settings.embedder!r} ({settings.embed_backend}, passage prefix "
                                 f"{settings.passage_prefix!r}); {fix}")
    chunking = manifest.get("chunking", {})
    want = chunking_of(settings)
    if chunking != want:
        raise IndexMismatchError(f"index at {index_dir} was built with chunking {chunking}, settings ask "
                                 f"for {want}; {fix}")


def embedder_record(settings: Settings, name: str, dim: int) -> dict[str, Any]:
    """What the manifest records of the embedder that made the vectors (``check_manifest`` compares it)."""
    return {"name": name, "dim": dim, "backend": settings.embed_backend, "passage_prefix": settings.passage_prefix}


def chunking_of(settings: Settings) -> dict[str, int | str]:
    """What shapes the chunks and their vectors; an index built otherwise must be rebuilt."""
    if settings.dense_unit not in DENSE_UNITS:
        raise InputError(f"unknown dense_unit {settings.dense_unit!r}; use {' or '.join(DENSE_UNITS)}")
    return {"chunk_size": settings.chunk_size, "chunk_overlap": settings.chunk_overlap,
            "cleaner_version": CLEANER_VERSION, "role_context": int(settings.role_context),
            "dense_unit": settings.dense_unit}


@contextmanager
def write_lock(index_dir: Path) -> Iterator[None]:
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        fh = open(index_dir / ".lock", "w")  # noqa: SIM115 - closed below
    except OSError as e:
        raise InputError(f"cannot write the index at {index_dir} ({e.strerror or e}); make the folder writable "
                         "or pass --index-dir") from None
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def default_paths(settings: Settings) -> list[Path]:
    paths = [settings.corpus]
    uploads = settings.index_dir / "uploads"
    if uploads.is_dir() and any(uploads.iterdir()):
        paths.append(uploads)
    return paths


def build_index(paths: Iterable[Path], settings: Settings, embedder: Any = None, *, rebuild: bool = False,
                keep_existing: bool = False, progress: Callable[[str], None] | None = None) -> IndexReport:
    """Bring the index in ``settings.index_dir`` up to date with the articles under ``paths``.

    ``keep_existing`` adds to the index (articles not under ``paths`` stay); otherwise the index holds
    exactly the given articles and others are dropped. Bad files are skipped with a reason.
    """
    from .stores import store_kind

    if store_kind(settings)[0] == "milvus":  # the same contract, in a Milvus collection
        from .stores.milvus import build_index as build_milvus_index

        return build_milvus_index(paths, settings, embedder, rebuild=rebuild, keep_existing=keep_existing,
                                  progress=progress)
    t0 = time.perf_counter()
    index_dir = settings.index_dir
    say = progress or (lambda msg: None)
    report = IndexReport()
    articles = read_articles(paths, settings, report)
    with write_lock(index_dir):
        old = _load_previous(index_dir, settings, rebuild, report)
        if keep_existing and old is not None:
            for name, a in old.articles.items():
                articles.setdefault(name, a)
        if not articles:
            where = ", ".join(str(p) for p in paths)
            raise InputError(f"no usable articles in {where} ({formats()}; "
                             f"{len(report.skipped)} skipped)")
        old_by_article: dict[str, list[int]] = {}
        if old is not None:
            for i, c in enumerate(old.chunks):
                old_by_article.setdefault(c.article, []).append(i)
        chunks: list[Chunk] = []
        rows: list[np.ndarray | int] = []  # per chunk: its old vector, or its position in to_embed
        carried: list[int] = []  # per chunk: its position in the old index, or -1
        to_embed: list[Chunk] = []
        for name in sorted(articles):
            a = articles[name]
            prev = old.articles.get(name) if old is not None else None
            if old is not None and prev is not None and prev.sha256 == a.sha256:
                report.unchanged.append(name)
                for i in old_by_article.get(name, []):
                    chunks.append(old.chunks[i])
                    rows.append(old.vectors[i])
                    carried.append(i)
                continue
            (report.updated if prev is not None else report.added).append(name)
            for c in chunk_article(a, settings.chunk_size, settings.chunk_overlap):
                chunks.append(c)
                rows.append(len(to_embed))
                carried.append(-1)
                to_embed.append(c)
        if old is not None:
            report.removed = sorted(set(old.articles) - set(articles))
        dim = old.vectors.shape[1] if old is not None else 0
        new_vecs = np.zeros((0, dim), np.float32)
        if to_embed:
            if embedder is None:
                from .embed import get_embedder

                embedder = get_embedder(settings)
            say(f"embedding {len(to_embed)} chunks from {len(report.added) + len(report.updated)} articles")
            new_vecs = embedder.embed([search_text(c, articles[c.article], settings.role_context)
                                       for c in to_embed])
            dim = embedder.dim
        report.embedded_chunks = len(to_embed)
        vectors = np.stack([new_vecs[r] if isinstance(r, int) else r for r in rows]).astype(np.float32) \
            if rows else np.zeros((0, dim), np.float32)
        sentences = None
        if settings.dense_unit == "sentence":
            fresh, report.embedded_sentences = embed_sentences(embedder, to_embed, articles, settings.role_context) \
                if to_embed else (SentenceVectors(np.zeros((0, dim), np.float32), np.zeros(0, np.int64)), 0)
            kept = old.sentences if old is not None else None  # present: old was checked against the settings
            parts = [kept.of(i) if kept is not None and i >= 0 else fresh.of(r) if isinstance(r, int)
                     else np.zeros((0, dim), np.float32) for i, r in zip(carried, rows, strict=True)]
            sentences = SentenceVectors(np.concatenate(parts).astype(np.float32) if parts
                                        else np.zeros((0, dim), np.float32),
                                        np.repeat(np.arange(len(parts), dtype=np.int64), [len(p) for p in parts]))
        report.total_chunks = len(chunks)
        report.total_articles = len(articles)
        if old is not None and not report.changed and report.rebuilt_reason is None:
            report.seconds = time.perf_counter() - t0
            return report  # nothing to write: the live version stays
        _write_version(index_dir, settings, articles, chunks, vectors, settings.embedder, sentences)
    report.seconds = time.perf_counter() - t0
    return report


def read_articles(paths: Iterable[Path], settings: Settings, report: IndexReport) -> dict[str, Article]:
    """Read every article file under ``paths``; a bad file or a second article of the same name is
    skipped with its reason in ``report``, and each article's characters per role go to ``report``."""
    articles: dict[str, Article] = {}
    for f in iter_paths(paths):
        try:
            a = load_article(f, settings.max_file_bytes)
        except InputError as e:
            report.skipped.append((str(f), str(e)))
            continue
        if a.name in articles:
            report.skipped.append((str(f), f"{f}: another article is already named {a.name!r}; rename it"))
            continue
        articles[a.name] = a
        report.coverage[a.name] = coverage(a)
    return articles


def _load_previous(index_dir: Path, settings: Settings, rebuild: bool, report: IndexReport) -> IndexStore | None:
    _remove_stale_versions(index_dir)
    if rebuild:
        report.rebuilt_reason = "--rebuild" if (index_dir / "CURRENT").exists() else None
        return None
    try:
        return IndexStore.load(index_dir, settings)
    except IndexMissingError:
        return None
    except RagError as e:
        report.rebuilt_reason = str(e).split(";")[0]
        log.warning("previous index not reusable (%s); rebuilding from scratch", report.rebuilt_reason)
        return None


def auto_index_kind(n: int) -> str:
    """Exact search while it is fast enough, an approximate index from ``APPROX_MIN_VECTORS`` on."""
    return APPROX_KIND if n >= APPROX_MIN_VECTORS else "flat"


def make_faiss_index(vectors: np.ndarray, index_type: str = "auto") -> tuple[Any, str]:
    """An inner-product index of ``vectors``: flat (exact), hnsw or ivf; "auto" picks by size."""
    import faiss

    n, dim = vectors.shape
    kind = auto_index_kind(n) if index_type == "auto" else index_type
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index: Any
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    elif kind == "ivf":
        nlist = max(1, min(int(IVF_LISTS_PER_SQRT_N * np.sqrt(n)), n // IVF_TRAIN_PER_LIST))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        # k-means on a sample: IVF_TRAIN_PER_LIST points per list is enough for the centroids and
        # keeps training at 1M vectors to about a minute on 2 cores.
        rng = np.random.default_rng(0)
        sample = vectors if n <= nlist * IVF_TRAIN_PER_LIST else \
            vectors[np.sort(rng.choice(n, nlist * IVF_TRAIN_PER_LIST, replace=False))]
        if n:
            index.train(sample)
    elif kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        raise InputError(f"unknown index_type {index_type!r}; use auto, flat, hnsw or ivf")
    if n:
        index.add(vectors)
    tune_for_search(index)
    return index, kind


def tune_for_search(faiss_index: Any) -> dict[str, int]:
    """Set the search-time parameters of an approximate index (also on load, so a change applies to
    existing indexes); return them for the manifest and the bench."""
    import faiss

    if hasattr(faiss_index, "hnsw"):
        faiss_index.hnsw.efSearch = HNSW_EF_SEARCH
        return {"M": HNSW_M, "efConstruction": faiss_index.hnsw.efConstruction, "efSearch": HNSW_EF_SEARCH}
    ivf = faiss.try_extract_index_ivf(faiss_index) if hasattr(faiss_index, "nprobe") else None
    if ivf is not None:
        ivf.nprobe = min(IVF_NPROBE, ivf.nlist)
        return {"nlist": int(ivf.nlist), "nprobe": int(ivf.nprobe)}
    return {}


def _write_version(index_dir: Path, settings: Settings, articles: dict[str, Article], chunks: list[Chunk],
                   vectors: np.ndarray, embedder_name: str, sentences: SentenceVectors | None = None) -> Path:
    """Write a complete version folder, then point CURRENT at it. ``sentences``: required with
    dense_unit "sentence", ignored with "chunk"."""
    import faiss

    from .stores.folder import LEXICAL_DIR, write_lexical

    name = f"v-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    tmp = index_dir / f".tmp-{name}"
    tmp.mkdir(parents=True)
    faiss_index, kind = make_faiss_index(vectors, settings.index_type)
    if settings.dense_unit != "sentence":
        sentences = None
    elif sentences is None:
        raise ValueError("dense_unit 'sentence' needs the sentence vectors")
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "embedder": embedder_record(settings, embedder_name, int(vectors.shape[1])),
        "chunking": chunking_of(settings),
        "splitter": "langchain_text_splitters.RecursiveCharacterTextSplitter",
        "index_type": kind,
        "index_params": tune_for_search(faiss_index),
        "chunks": len(chunks),
        **({"sentences": len(sentences)} if sentences is not None else {}),
        "articles": {n: {"sha256": a.sha256, "title": a.title, "chunks": sum(c.article == n for c in chunks)}
                     for n, a in sorted(articles.items())},
    }
    with open(tmp / "articles.jsonl", "w", encoding="utf-8") as fh:
        for a in articles.values():
            fh.write(json.dumps(a.to_dict(), ensure_ascii=False) + "\n")
    with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as fh:
        for c in chunks:
            fh.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
    np.save(tmp / "vectors.npy", vectors)
    faiss.write_index(faiss_index, str(tmp / "faiss.index"))
    checked: tuple[str, ...] = CHECKED_FILES
    if sentences is not None:
        np.save(tmp / "sentences.npy", np.asarray(sentences.vectors, np.float32))
        np.save(tmp / "sentence_owner.npy", sentences.owner.astype(np.int64))
        sentence_index, manifest["sentence_index_type"] = make_faiss_index(sentences.vectors, settings.index_type)
        faiss.write_index(sentence_index, str(tmp / "sentences.faiss"))
        checked += SENTENCE_FILES
    write_lexical(tmp / LEXICAL_DIR, chunks, articles, settings.role_context)
    lexical = sorted(f"{LEXICAL_DIR}/{p.name}" for p in (tmp / LEXICAL_DIR).iterdir())
    # sha256 of each data file, checked on load: same-size damage (a flipped byte in vectors.npy or
    # faiss.index) passes every shape check. Hashing costs about 1 s per GB on load.
    manifest["files"] = {f: _sha256(tmp / f) for f in (*checked, *lexical)}
    # The manifest goes last: a version folder without one was never finished.
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    for f in (*tmp.iterdir(), *(tmp / LEXICAL_DIR).iterdir()):
        _fsync(f)
    final = index_dir / name
    os.replace(tmp, final)
    write_atomic(index_dir / "CURRENT", name + "\n")
    _fsync(index_dir)
    _remove_stale_versions(index_dir)
    return final


def _remove_stale_versions(index_dir: Path) -> None:
    """Delete half-written and superseded version folders (called with the write lock held)."""
    try:
        live = (index_dir / "CURRENT").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):  # a garbled pointer must not stop --rebuild from recovering
        live = ""
    for p in index_dir.glob("*"):
        if (p.name.startswith(".tmp-v-") or p.name.startswith("v-")) and p.name != live and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(".CURRENT."):
            p.unlink(missing_ok=True)


CHECKED_FILES = ("articles.jsonl", "chunks.jsonl", "vectors.npy", "faiss.index")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verify_checksums(version_dir: Path, manifest: dict[str, Any], fix: str) -> None:
    """Compare the data files with the sha256 sums in the manifest (indexes written before the sums
    were recorded have none and are read as they are)."""
    for name, want in (manifest.get("files") or {}).items():
        try:
            got = _sha256(version_dir / name)
        except OSError as e:
            raise IndexCorruptError(f"index file {version_dir / name} is unreadable ({e.strerror}); {fix}") from None
        if got != want:
            raise IndexCorruptError(f"index file {version_dir / name} is damaged (its sha256 differs from the "
                                    f"manifest's); {fix}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _jsonl_lines(path: Path) -> list[str]:
    # Split on "\n" only: json.dumps(ensure_ascii=False) leaves U+2028, U+2029 and U+0085 unescaped,
    # and str.splitlines() would cut a record there.
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line]


def _read_articles(path: Path) -> Iterator[Article]:
    for line in _jsonl_lines(path):
        yield Article.from_dict(json.loads(line))
