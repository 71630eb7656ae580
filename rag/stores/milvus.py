"""The index in Milvus (``--store milvus:URI``): one collection per index version, an alias naming the live one.

Each index version is two or three collections; the alias ``<name>`` names the first, and the others'
names are the first's plus ``_meta`` and ``_sent``, so moving the one alias moves them all:

``<name>__v<time>`` (the chunks: every row is a search candidate)
    ``id`` = chunk_id; ``article``; ``start`` (with ``article``, the chunk order: equal scores are ranked
    in it, as the folder store ranks them in its chunk list); ``record`` = the chunk's JSON
    (``Chunk.to_dict``, so new fields such as role labels pass through); ``text`` = the BM25 terms of
    title, source and chunk text; ``dense`` = its embedding; ``sparse`` = Milvus's built-in BM25 function
    of ``text`` (full-text search inside the engine).
``<name>__v<time>_meta`` (the articles and the manifest)
    kind ``article`` / ``article_part``: ``id`` = ``a:<name>:00000``, ``...:00001``; ``record`` =
    consecutive pieces of the article's JSON (original text, kept blocks, metadata), each under
    VARCHAR's 65,535-byte limit; the first piece's row carries ``article`` and ``sha256``, so listing the
    articles reads only those. kind ``manifest``: the manifest (format version, embedder, chunking,
    index type, counts), checked against the settings like the folder store's.
``<name>__v<time>_sent`` (with ``dense_unit = "sentence"``: one row per sentence of every chunk)
    ``chunk_id``, ``article``, ``start`` (the chunk's, for ties in chunk order as the folder store breaks
    them) and ``dense`` = the sentence's embedding (``chunk.sentence_texts``). Dense search takes the best
    sentences and ranks their chunks by the best one (``rag.stores.rank_by_best_sentence``, shared with
    the folder store).

Articles live apart from chunks because BM25 statistics are per collection: Milvus Lite counts a row
with empty text as a document, which lowered avgdl, raised every idf and reordered BM25 results against
bm25s on the gold questions.

Writes are copy-on-write, like the folder store's version folders: a new pair of collections receives
the unchanged rows of the live one (no re-embedding: incremental by sha256) and the new ones, is indexed
and loaded, and only then the alias ``<name>`` is moved to it (``alter_alias`` is atomic). A killed
``rag index`` leaves collections the alias never named, which the next writer drops. The version the
alias left stays until the next write, so a reader that opened it keeps answering.

Milvus Lite 3.2 keeps BM25 statistics per segment (its own TODO in ``engine/collection.py``): once a
collection spans several segments, lexical scores are close to, not equal to, bm25s's.

BM25 terms are ours. Milvus Lite 3.2 offers only the "standard" and "jieba" tokenizers (no
"whitespace"), whose splitting differs from ``rag.vocab.tokenize`` ("11.4", "covid-19"), so ``text``
holds ``rag.vocab.terms`` with each term made one standard token: a plain ``[a-z0-9]+`` term as it
is, any other as ``h`` + 16 hex digits of its blake2b hash. The engine then scores the very terms bm25s
scores, with bm25s's k1 and b, and TEXT_MATCH counts give the same idf.

Not handled: several writers on one archive (the write lock is a local file lock, so run one ingester);
Milvus Lite serves one process at a time (it locks its folder), so ``rag index`` on a Lite file that a
running ``rag ui`` holds open fails with a message: share an archive through a Milvus server.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..chunk import chunk_article, lexical_text, search_text
from ..errors import IndexCorruptError, IndexMissingError, InputError, RagError
from ..readers import formats
from ..records import Article, Chunk
from ..settings import Settings
from ..store import (
    FORMAT_VERSION,
    HNSW_EF_CONSTRUCTION,
    HNSW_EF_SEARCH,
    HNSW_M,
    IVF_LISTS_PER_SQRT_N,
    IVF_NPROBE,
    IndexReport,
    auto_index_kind,
    check_manifest,
    chunking_of,
    embed_sentences,
    embedder_record,
    read_articles,
    write_lock,
)
from . import rank_by_best_sentence, store_kind

log = logging.getLogger(__name__)

DEFAULT_NAME = "rag_news"  # the alias; "milvus:URI#name" picks another, so archives can share a server
BM25_K1, BM25_B = 1.5, 0.75  # bm25s's defaults: both stores score BM25 alike
PIECE_CHARS = 16_000  # article JSON per row: at most 4 UTF-8 bytes a character, under 65,535 bytes
MAX_RECORD_BYTES = 65_535
BATCH = 1_000  # rows per insert and per query page
_PLAIN = re.compile(r"[a-z0-9]+")
_CHUNK_FIELDS = ["id", "article", "start", "text", "record", "dense"]
_META_FIELDS = ["id", "kind", "article", "sha256", "record"]
_SENT_FIELDS = ["chunk_id", "article", "start", "dense"]
META = "_meta"
SENT = "_sent"
MAX_TOPK = 16_384  # the most hits one Milvus search returns
_clients: dict[str, Any] = {}


def bm25_text(terms: Iterable[str]) -> str:
    """Our BM25 terms as one "standard"-tokenizer token each (see the module docstring)."""
    return " ".join(t if _PLAIN.fullmatch(t) else "h" + hashlib.blake2b(t.encode(), digest_size=8).hexdigest()
                    for t in terms)


def target(settings: Settings) -> tuple[str, str]:
    """(URI for MilvusClient, alias name) from ``settings.store`` = "milvus:URI[#name]"."""
    kind, spec = store_kind(settings)
    if kind != "milvus":
        raise InputError(f"store {settings.store!r} is not a Milvus store")
    uri, _, name = spec.partition("#")
    name = name or DEFAULT_NAME
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", name):
        raise InputError(f"Milvus index name {name!r}: use letters, digits and _ (milvus:URI#name)")
    return uri, name


def is_lite(uri: str) -> bool:
    return not re.match(r"^[a-z]+://", uri)


def _not_implemented(record: logging.LogRecord) -> bool:
    """False for the logs of Milvus Lite's missing AllocTimestamp (server side and client side)."""
    msg = record.getMessage()
    return "Method not implemented" not in msg and "failed to get mvccTs" not in msg


def connect(uri: str) -> Any:
    """One ``MilvusClient`` per URI per process (Milvus Lite locks its folder to one process)."""
    if uri in _clients:
        return _clients[uri]
    if is_lite(uri):
        # Milvus Lite's in-process gRPC server lacks AllocTimestamp, which pymilvus asks for and then does
        # without; the server would log each refusal with a traceback. Its C core also logs the client's
        # keepalive pings it throttles; GRPC_VERBOSITY (if unset, read at import) keeps those quiet.
        logging.getLogger("grpc._server").addFilter(_not_implemented)
        logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(_not_implemented)
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    try:
        from pymilvus import MilvusClient
    except ImportError as e:
        raise InputError("the Milvus store needs pymilvus and milvus-lite: pip install 'rag-news[milvus]'") from e
    if is_lite(uri):
        if not uri.endswith(".db"):
            raise InputError(f"Milvus Lite URI {uri!r} must be a path ending in .db (or use http://HOST:19530)")
        Path(uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        client = MilvusClient(str(Path(uri).expanduser()) if is_lite(uri) else uri)
    except Exception as e:  # noqa: BLE001 - the engine's own errors, said in one line
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if is_lite(uri):
            raise RagError(f"cannot open Milvus Lite file {uri} ({msg}); Milvus Lite serves one process at a "
                           "time: if another one has it open (a running 'rag ui'?), stop it, or share the "
                           "archive through a Milvus server (milvus:http://HOST:19530)") from e
        raise RagError(f"cannot open Milvus at {uri} ({msg})") from e
    _clients[uri] = client
    return client


def disconnect(uri: str) -> None:
    """Close this process's client for ``uri``; for Milvus Lite, also stop its in-process engine, which
    frees the file for another process (``rag index`` from a test, a bench step)."""
    client = _clients.pop(uri, None)
    if client is not None:
        client.close()
    if is_lite(uri):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(str(Path(uri).expanduser()))


def _live(client: Any, name: str) -> str | None:
    if name not in client.list_aliases().get("aliases", []):
        return None
    return str(client.describe_alias(name)["collection_name"])


def _versions(client: Any, name: str) -> list[str]:
    """Chunk collections of ``name``'s versions (each with its ``_meta`` and maybe ``_sent`` companion)."""
    return sorted(c for c in client.list_collections()
                  if c.startswith(f"{name}__v") and not c.endswith((META, SENT)))


def _drop_version(client: Any, collection: str) -> None:
    for c in (collection, collection + META, collection + SENT):
        if client.has_collection(c):
            client.drop_collection(c)


def lit(value: str) -> str:
    """A string literal for a filter expression (Milvus Lite 3.2 has no filter templates)."""
    esc = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + esc.replace("\t", "\\t") + '"'


def _iter_rows(client: Any, collection: str, filter: str, fields: list[str]) -> Iterator[dict[str, Any]]:
    """All rows matching ``filter``, a page at a time (query_iterator: no 16,384-row window)."""
    it = client.query_iterator(collection, filter=filter, output_fields=fields, batch_size=BATCH)
    try:
        while rows := it.next():
            yield from rows
    finally:
        it.close()


class _Articles(Mapping[str, Article]):
    """Articles by name, read from the collection on first use (an archive's texts stay in Milvus)."""

    def __init__(self, store: MilvusStore, names: Iterable[str]) -> None:
        self._store = store
        self._names = sorted(names)
        self._known = set(self._names)
        self._cache: dict[str, Article] = {}

    def __getitem__(self, name: str) -> Article:
        if name not in self._known:
            raise KeyError(name)
        if name not in self._cache:
            if len(self._cache) >= 1024:
                self._cache.pop(next(iter(self._cache)))
            self._cache[name] = self._store.read_article(name)
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._known


class _Texts(Mapping[str, str]):
    def __init__(self, articles: _Articles) -> None:
        self._articles = articles

    def __getitem__(self, name: str) -> str:
        return self._articles[name].text

    def __iter__(self) -> Iterator[str]:
        return iter(self._articles)

    def __len__(self) -> int:
        return len(self._articles)


class MilvusStore:
    """``Store`` over the collection an alias names; every search runs inside Milvus."""

    def __init__(self, client: Any, collection: str, manifest: dict[str, Any], hashes: dict[str, str]) -> None:
        self.client = client
        self.collection = collection
        self.version = collection
        self.manifest = manifest
        self._hashes = hashes
        self._articles = _Articles(self, hashes)
        self._texts = _Texts(self._articles)
        self._chunks: list[Chunk] | None = None
        self._df: dict[str, int] = {}
        self._search_params = _search_params(manifest.get("index_type", "flat"))
        self._sentence_params = _search_params(manifest.get("sentence_index_type", "flat"))
        self.sentences = int(manifest.get("sentences", 0))
        self.by_sentence = manifest.get("chunking", {}).get("dense_unit") == "sentence"

    def __repr__(self) -> str:
        return f"MilvusStore({self.collection!r}, articles={len(self._hashes)}, chunks={len(self)})"

    @classmethod
    def open(cls, settings: Settings) -> MilvusStore:
        """The live version; checked against the settings like the folder store's manifest."""
        uri, name = target(settings)
        client = connect(uri)
        collection = _live(client, name)
        if collection is None:
            raise IndexMissingError(f"no index named {name} in Milvus at {uri}; run 'rag index seeds/ --store "
                                    f"{settings.store}' first")
        client.load_collection(collection)
        client.load_collection(collection + META)
        rows = client.query(collection + META, filter='id == "manifest"', output_fields=["record"])
        if not rows:
            raise IndexCorruptError(f"Milvus collection {collection} has no manifest; run 'rag index --store "
                                    f"{settings.store} --rebuild'")
        manifest = json.loads(rows[0]["record"])
        try:
            check_manifest(manifest, settings, settings.index_dir)
        except RagError as e:
            raise type(e)(str(e).replace("rag index", f"rag index --store {settings.store}")) from None
        if manifest.get("chunking", {}).get("dense_unit") == "sentence":
            client.load_collection(collection + SENT)
        hashes = {r["article"]: r["sha256"] for r in
                  _iter_rows(client, collection + META, 'kind == "article"', ["id", "article", "sha256"])}
        return cls(client, collection, manifest, hashes)

    # -- Store ---------------------------------------------------------------------------------------
    @property
    def articles(self) -> Mapping[str, Article]:
        return self._articles

    @property
    def texts(self) -> Mapping[str, str]:
        return self._texts

    @property
    def chunks(self) -> list[Chunk]:
        """Every chunk, read once (eval only: searching never needs them all)."""
        if self._chunks is None:
            rows = _iter_rows(self.client, self.collection, 'id != ""', ["id", "record"])
            chunks = [Chunk.from_dict(json.loads(r["record"])) for r in rows]
            self._chunks = sorted(chunks, key=lambda c: (c.article, c.start, c.chunk_id))
        return self._chunks

    def __len__(self) -> int:
        return int(self.manifest.get("chunks", 0))

    def dense(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        if not len(self):
            return []
        if self.by_sentence:
            return self._dense_by_sentence(vector, n)
        res = self.client.search(self.collection, data=[np.asarray(vector, np.float32).tolist()],
                                 anns_field="dense", limit=min(n, len(self)), output_fields=["id"],
                                 search_params={"metric_type": "IP", "params": self._search_params})
        return [(str(h["id"]), float(h["distance"])) for h in res[0]]

    def _dense_by_sentence(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        """Chunks ranked by their best sentence, ties in chunk order (article, start) like the folder store."""
        where: dict[str, tuple[str, int]] = {}
        query = [np.asarray(vector, np.float32).tolist()]

        def search(limit: int) -> list[tuple[str, float]]:
            res = self.client.search(self.collection + SENT, data=query, anns_field="dense", limit=limit,
                                     output_fields=["chunk_id", "article", "start"],
                                     search_params={"metric_type": "IP", "params": self._sentence_params})
            out = []
            for h in res[0]:
                row = _entity(h)
                where[row["chunk_id"]] = (row["article"], int(row["start"]))
                out.append((str(row["chunk_id"]), float(h["distance"])))
            return out

        return rank_by_best_sentence(search, min(n, len(self)), self.sentences, order=lambda c: where[c],
                                     most=MAX_TOPK)

    def lexical(self, terms: list[str], n: int) -> list[tuple[str, float]]:
        text = bm25_text(terms)
        if not text or not len(self):
            return []
        res = self.client.search(self.collection, data=[text], anns_field="sparse", limit=min(n, len(self)),
                                 output_fields=["id", "article", "start"], search_params={"metric_type": "BM25"})
        # Milvus Lite reports BM25 as a negated distance, a server as a score: the order is what counts.
        hits = [(_entity(h), abs(float(h["distance"]))) for h in res[0] if h["distance"]]
        hits.sort(key=lambda hs: (-hs[1], hs[0]["article"], hs[0]["start"]))  # ties in chunk order
        return [(str(e["id"]), s) for e, s in hits]

    def fetch(self, ids: Sequence[str]) -> list[Chunk]:
        if not ids:
            return []
        expr = "id in [" + ", ".join(lit(i) for i in ids) + "]"
        rows = self.client.query(self.collection, filter=expr, output_fields=["id", "record"])
        by_id = {r["id"]: Chunk.from_dict(json.loads(r["record"])) for r in rows}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise IndexCorruptError(f"Milvus collection {self.collection} lacks chunks {missing[:3]}")
        return [by_id[i] for i in ids]

    def idf(self, term: str) -> float:
        token = bm25_text([term])
        if token not in self._df:
            rows = self.client.query(self.collection, filter=f'TEXT_MATCH(text, "{token}")',
                                     output_fields=["count(*)"])
            self._df[token] = int(rows[0]["count(*)"]) if rows else 0
        f, n = self._df[token], len(self)
        return float(np.log(1 + (n - f + 0.5) / (f + 0.5))) if f else 0.0

    def article_hashes(self) -> dict[str, str]:
        return dict(self._hashes)

    # -- articles ------------------------------------------------------------------------------------
    def read_article(self, name: str) -> Article:
        rows = self.client.query(self.collection + META, output_fields=["id", "record"],
                                 filter=f'article == {lit(name)} and kind in ["article", "article_part"]')
        if not rows:
            raise KeyError(name)
        return Article.from_dict(json.loads("".join(r["record"] for r in sorted(rows, key=lambda r: r["id"]))))


def _entity(hit: Any) -> Any:
    """A search hit's output fields (pymilvus nests them under "entity")."""
    return hit.get("entity", hit)


def _search_params(kind: str) -> dict[str, Any]:
    return {"nprobe": IVF_NPROBE} if kind == "ivf" else {"ef": HNSW_EF_SEARCH} if kind == "hnsw" else {}


# -- writing ---------------------------------------------------------------------------------------------
def _sentence_schema(client: Any, dim: int) -> Any:
    from pymilvus import DataType

    sent = client.create_schema(auto_id=True, enable_dynamic_field=False)
    sent.add_field("sid", DataType.INT64, is_primary=True)
    sent.add_field("chunk_id", DataType.VARCHAR, max_length=2048)
    sent.add_field("article", DataType.VARCHAR, max_length=1024)
    sent.add_field("start", DataType.INT64)
    sent.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
    return sent


def _schemas(client: Any, dim: int) -> tuple[Any, Any]:
    """(chunks, meta) schemas; the meta collection's 2-d vector only satisfies Milvus (one is required)."""
    from pymilvus import DataType, Function, FunctionType

    chunks = client.create_schema(auto_id=False, enable_dynamic_field=False)
    chunks.add_field("id", DataType.VARCHAR, is_primary=True, max_length=2048)
    chunks.add_field("article", DataType.VARCHAR, max_length=1024)
    chunks.add_field("start", DataType.INT64)  # with article: chunk order, for ties (as the folder store's)
    chunks.add_field("text", DataType.VARCHAR, max_length=MAX_RECORD_BYTES, enable_analyzer=True,
                     enable_match=True, analyzer_params={"tokenizer": "standard"})
    chunks.add_field("record", DataType.VARCHAR, max_length=MAX_RECORD_BYTES)
    chunks.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
    chunks.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    chunks.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                 output_field_names=["sparse"]))
    meta = client.create_schema(auto_id=False, enable_dynamic_field=False)
    meta.add_field("id", DataType.VARCHAR, is_primary=True, max_length=2048)
    meta.add_field("kind", DataType.VARCHAR, max_length=16)
    meta.add_field("article", DataType.VARCHAR, max_length=1024)
    meta.add_field("sha256", DataType.VARCHAR, max_length=64)
    meta.add_field("record", DataType.VARCHAR, max_length=MAX_RECORD_BYTES)
    meta.add_field("dense", DataType.FLOAT_VECTOR, dim=2)
    return chunks, meta


def dense_index(n: int, index_type: str = "auto") -> tuple[str, str, dict[str, Any]]:
    """(our kind, Milvus index type, build params): the folder store's choice, by the same rule."""
    kind = auto_index_kind(n) if index_type == "auto" else index_type
    if kind == "ivf":
        nlist = max(1, min(int(IVF_LISTS_PER_SQRT_N * np.sqrt(n)), 65_536))
        return kind, "IVF_FLAT", {"nlist": nlist}
    if kind == "hnsw":
        return kind, "HNSW", {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION}
    if kind == "flat":
        return kind, "FLAT", {}
    raise InputError(f"unknown index_type {index_type!r}; use auto, flat, hnsw or ivf")


class CollectionWriter:
    """Fills a new version collection; ``commit`` indexes it and moves the alias to it. ``sentences``:
    keep each chunk's sentence vectors too (``dense_unit = "sentence"``)."""

    def __init__(self, client: Any, name: str, dim: int, *, sentences: bool) -> None:
        self.client, self.name, self.dim = client, name, dim
        self.collection = f"{name}__v{time.strftime('%Y%m%dT%H%M%S')}_{uuid.uuid4().hex[:6]}"
        self.sentences = sentences
        chunks, meta = _schemas(client, dim)
        client.create_collection(self.collection + META, schema=meta)  # companions first: see _drop_unfinished
        if sentences:
            client.create_collection(self.collection + SENT, schema=_sentence_schema(client, dim))
        client.create_collection(self.collection, schema=chunks)
        self.n_chunks = 0
        self.n_articles = 0
        self.n_sentences = 0
        self._rows: dict[str, list[dict[str, Any]]] = {self.collection: [], self.collection + META: [],
                                                       self.collection + SENT: []}

    def _put(self, collection: str, row: dict[str, Any]) -> None:
        rows = self._rows[collection]
        rows.append(row)
        if len(rows) >= BATCH:
            self.client.insert(collection, rows)
            rows.clear()

    def _flush_rows(self) -> None:
        for collection, rows in self._rows.items():
            if rows:
                self.client.insert(collection, rows)
                rows.clear()

    def copy(self, source: str, names: set[str]) -> None:
        """Carry the rows of the articles ``names`` over from version ``source`` unchanged (vectors too)."""
        for row in _iter_rows(self.client, source, 'id != ""', _CHUNK_FIELDS):
            if row["article"] in names:
                self.n_chunks += 1
                self._put(self.collection, {f: row[f] for f in _CHUNK_FIELDS}
                          | {"dense": [float(x) for x in row["dense"]]})
        for row in _iter_rows(self.client, source + META, 'kind != "manifest"', _META_FIELDS):
            if row["article"] in names:
                self.n_articles += row["kind"] == "article"
                self._put(self.collection + META, {f: row[f] for f in _META_FIELDS} | {"dense": [0.0, 0.0]})
        if self.sentences:
            for row in _iter_rows(self.client, source + SENT, 'chunk_id != ""', _SENT_FIELDS):
                if row["article"] in names:
                    self.n_sentences += 1
                    self._put(self.collection + SENT, {f: row[f] for f in _SENT_FIELDS}
                              | {"dense": [float(x) for x in row["dense"]]})

    def add_article(self, article: Article) -> None:
        full = json.dumps(article.to_dict(), ensure_ascii=False)
        pieces = [full[i:i + PIECE_CHARS] for i in range(0, len(full), PIECE_CHARS)]
        for i, piece in enumerate(pieces):
            self._put(self.collection + META, {
                "id": f"a:{article.name}:{i:05d}", "kind": "article_part" if i else "article",
                "article": article.name, "sha256": "" if i else article.sha256, "record": piece,
                "dense": [0.0, 0.0]})
        self.n_articles += 1

    def add_chunk(self, chunk: Chunk, vector: np.ndarray, lexical: str, sentences: np.ndarray | None = None
                  ) -> None:
        """``lexical``: what BM25 indexes (``chunk.lexical_text``); ``sentences``: the vectors of its
        sentences (``chunk.sentence_texts``), needed when the writer keeps them."""
        from ..vocab import terms

        if self.sentences:
            if sentences is None or not len(sentences):
                raise ValueError(f"chunk {chunk.chunk_id}: dense_unit 'sentence' needs its sentence vectors")
            for v in sentences:
                self.n_sentences += 1
                self._put(self.collection + SENT, {"chunk_id": chunk.chunk_id, "article": chunk.article,
                                                   "start": chunk.start, "dense": np.asarray(v, np.float32).tolist()})

        record = json.dumps(chunk.to_dict(), ensure_ascii=False)
        if len(record.encode()) > MAX_RECORD_BYTES:
            raise InputError(f"chunk {chunk.chunk_id} is too large for a Milvus row ({len(record)} characters); "
                             "lower chunk_size")
        self.n_chunks += 1
        self._put(self.collection, {"id": chunk.chunk_id, "article": chunk.article, "start": chunk.start,
                                    "text": bm25_text(terms(lexical)), "record": record,
                                    "dense": np.asarray(vector, np.float32).tolist()})

    def commit(self, settings: Settings, embedder_name: str) -> str:
        """Manifest row last, then indexes, load, and the atomic alias swap; return the collection."""
        if self.sentences != (settings.dense_unit == "sentence"):
            raise ValueError(f"the writer {'keeps' if self.sentences else 'lacks'} sentence vectors, settings ask "
                             f"for dense_unit {settings.dense_unit!r}")
        kind, index_type, params = dense_index(self.n_chunks, settings.index_type)
        s_kind, s_index_type, s_params = dense_index(self.n_sentences, settings.index_type)
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "store": "milvus",
            "embedder": embedder_record(settings, embedder_name, self.dim),
            "chunking": chunking_of(settings),
            "splitter": "langchain_text_splitters.RecursiveCharacterTextSplitter",
            "index_type": kind,
            "index_params": {"milvus_index": index_type, **params,
                             **({"nprobe": IVF_NPROBE} if kind == "ivf" else {}),
                             **({"efSearch": HNSW_EF_SEARCH} if kind == "hnsw" else {})},
            "bm25": {"k1": BM25_K1, "b": BM25_B},
            "chunks": self.n_chunks,
            "article_count": self.n_articles,
        }
        if self.sentences:
            manifest |= {"sentences": self.n_sentences, "sentence_index_type": s_kind}
        self._put(self.collection + META, {"id": "manifest", "kind": "manifest", "article": "", "sha256": "",
                                           "record": json.dumps(manifest, ensure_ascii=False), "dense": [0.0, 0.0]})
        self._flush_rows()
        meta_ip = self.client.prepare_index_params()
        meta_ip.add_index("dense", index_type="FLAT", metric_type="L2")
        self.client.flush(self.collection + META)
        self.client.create_index(self.collection + META, meta_ip)
        self.client.load_collection(self.collection + META)
        if self.sentences:
            sent_ip = self.client.prepare_index_params()
            sent_ip.add_index("dense", index_type=s_index_type, metric_type="IP", params=s_params)
            self.client.flush(self.collection + SENT)
            self.client.create_index(self.collection + SENT, sent_ip)
            self.client.load_collection(self.collection + SENT)
        ip = self.client.prepare_index_params()
        ip.add_index("dense", index_type=index_type, metric_type="IP", params=params)
        ip.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                     params={"bm25_k1": BM25_K1, "bm25_b": BM25_B})
        self.client.flush(self.collection)
        self.client.create_index(self.collection, ip)  # last: a chunk collection with indexes is complete
        self.client.load_collection(self.collection)
        previous = _live(self.client, self.name)
        if previous is None:
            self.client.create_alias(self.collection, self.name)
        else:
            self.client.alter_alias(self.collection, self.name)
        for c in _versions(self.client, self.name):  # keep the one just replaced: open readers use it
            if c not in (self.collection, previous):
                _drop_version(self.client, c)
        return self.collection


def _drop_unfinished(client: Any, name: str) -> None:
    """Drop versions whose chunk collection never got its indexes (what a killed writer left), and
    ``_meta`` and ``_sent`` collections without their chunk collection (killed between the creations)."""
    live = _live(client, name)
    names = set(client.list_collections())
    for c in _versions(client, name):
        if c != live and not client.list_indexes(c):
            log.warning("dropping unfinished Milvus collection %s (an interrupted 'rag index')", c)
            _drop_version(client, c)
    for c in names:
        for suffix in (META, SENT):
            if c.startswith(f"{name}__v") and c.endswith(suffix) and c[: -len(suffix)] not in names:
                client.drop_collection(c)


def build_index(paths: Iterable[Path], settings: Settings, embedder: Any = None, *, rebuild: bool = False,
                keep_existing: bool = False, progress: Callable[[str], None] | None = None) -> IndexReport:
    """``rag.store.build_index`` for a Milvus store: same report, same incremental and crash guarantees."""
    t0 = time.perf_counter()
    say = progress or (lambda msg: None)
    paths = list(paths)
    report = IndexReport()
    articles = read_articles(paths, settings, report)
    uri, name = target(settings)
    with write_lock(settings.index_dir):
        client = connect(uri)
        _drop_unfinished(client, name)
        old: MilvusStore | None = None
        if rebuild:
            report.rebuilt_reason = "--rebuild" if _live(client, name) else None
        else:
            try:
                old = MilvusStore.open(settings)
            except IndexMissingError:
                old = None
            except RagError as e:
                report.rebuilt_reason = str(e).split(";")[0]
                log.warning("previous index not reusable (%s); rebuilding from scratch", report.rebuilt_reason)
        old_hashes = old.article_hashes() if old is not None else {}
        kept = set(old_hashes) - set(articles) if keep_existing else set()
        if not articles and not kept:
            where = ", ".join(str(p) for p in paths)
            raise InputError(f"no usable articles in {where} ({formats()}; {len(report.skipped)} skipped)")
        carry = set(kept)
        fresh: list[Article] = []
        for a_name in sorted(articles):
            a = articles[a_name]
            if old is not None and old_hashes.get(a_name) == a.sha256:
                report.unchanged.append(a_name)
                carry.add(a_name)
                continue
            (report.updated if a_name in old_hashes else report.added).append(a_name)
            fresh.append(a)
        if old is not None:
            report.removed = sorted(set(old_hashes) - set(articles) - kept)
        report.total_articles = len(articles) + len(kept)
        if old is not None and not report.changed and report.rebuilt_reason is None:
            report.total_chunks = len(old)
            report.seconds = time.perf_counter() - t0
            return report  # nothing to write: the live version stays
        chunks = [c for a in fresh for c in chunk_article(a, settings.chunk_size, settings.chunk_overlap)]
        named = {a.name: a for a in fresh}
        if (chunks or old is None) and embedder is None:
            from ..embed import get_embedder

            embedder = get_embedder(settings)
        vectors = np.zeros((0, 0), np.float32)
        by_sentence = settings.dense_unit == "sentence"
        sentences = None
        if chunks:
            say(f"embedding {len(chunks)} chunks from {len(fresh)} articles")
            vectors = embedder.embed([search_text(c, named[c.article], settings.role_context) for c in chunks])
            if by_sentence:
                sentences, report.embedded_sentences = embed_sentences(embedder, chunks, named, settings.role_context)
        dim = int(embedder.dim) if embedder is not None else int(old.manifest["embedder"]["dim"])  # type: ignore[union-attr]
        report.embedded_chunks = len(chunks)
        writer = CollectionWriter(client, name, dim, sentences=by_sentence)
        if old is not None and carry:
            writer.copy(old.collection, carry)
        for a in fresh:
            writer.add_article(a)
        for j, (c, v) in enumerate(zip(chunks, vectors, strict=True)):
            writer.add_chunk(c, v, lexical_text(c, named[c.article], settings.role_context),
                             sentences.of(j) if sentences is not None else None)
        writer.commit(settings, settings.embedder)
        report.total_chunks = writer.n_chunks
    report.seconds = time.perf_counter() - t0
    return report
