"""``rag bench --only store``: the folder store and the Milvus (Lite) store at 10k, 100k and 1M chunks.

For each size and store, two fresh processes: one builds the index from synthetic chunks (Zipf-distributed
pseudo-words, ten chunks an article, the bench's clustered 384-d vectors; embedding is left out, it costs
the same for both stores; each chunk is one sentence, so with ``dense_unit = "sentence"`` the sentence
vectors are the chunk vectors, stored and searched a second time), one opens it and times single queries:
dense (``Store.dense``), lexical
(``Store.lexical``) and hybrid (``Retriever.search``: both, fused, chunks fetched), with the query vector
given (no embedding). The query process's resident memory is read after the queries.

Sizes and stores can be narrowed for a partial run: ``RAG_BENCH_STORE_SIZES=10000,100000`` and
``RAG_BENCH_STORES=folder``. Run as a module (``python -m rag.benchmark.store build|query ...``) for one cell.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RagError

SIZES, QUICK_SIZES = (10_000, 100_000, 1_000_000), (2_000,)
STORES = ("folder", "milvus")
CHUNKS_PER_ARTICLE = 10
WORDS_PER_CHUNK = 100  # ~650 characters, like a 700-character chunk
VOCABULARY = 50_000
QUERIES, QUICK_QUERIES = 100, 30


def run(ctx: Any) -> dict[str, Any]:
    """The store section of ``rag bench`` (``ctx`` is ``rag.benchmark.context.Context``)."""
    quick = ctx.plan.name == "quick"
    sizes = _env_list("RAG_BENCH_STORE_SIZES", QUICK_SIZES if quick else SIZES, int)
    stores = _env_list("RAG_BENCH_STORES", STORES, str)
    queries = QUICK_QUERIES if quick else QUERIES
    rows = []
    for n in sizes:
        for store in stores:
            ctx.echo(f"  store {store} at {n:,} chunks …")
            where = ctx.work / f"store-{store}-{n}"
            spec = f"milvus:{where / 'bench.db'}" if store == "milvus" else "folder"
            common = ["--store", spec, "--index-dir", str(where / "index"), "--n", str(n),
                      "--queries", str(queries)]
            try:
                built = _run(["build", *common])
                asked = _run(["query", *common])
                rows.append({"store": store, "chunks": n, **built, **asked})
                ctx.echo(f"  {json.dumps(rows[-1])}")  # a long run shows (and keeps in its log) each cell
            except RagError as e:
                rows.append({"store": store, "chunks": n, "error": str(e)})
                ctx.echo(f"  store {store} at {n:,}: {e}")
    return {"rows": rows, "queries": queries, "candidates": ctx.settings.candidates, "k": ctx.settings.k,
            "not_run": [f"{s} at {n:,}" for n in SIZES for s in STORES if n not in sizes or s not in stores]}


def markdown(part: dict[str, Any]) -> list[str]:
    """The section's table for bench.md."""
    if "rows" not in part:
        return []
    lines = [f"## Stores (synthetic chunks; single queries, {part['queries']} per kind; "
             f"{part['candidates']} candidates per ranking, hybrid k={part['k']}, no embedding)", "",
             "| store | chunks | build s | open s | dense p50/p95 ms | lexical p50/p95 ms | hybrid p50/p95 ms "
             "| query process RSS MB |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in part["rows"]:
        if "error" in r:
            lines.append(f"| {r['store']} | {r['chunks']:,} | failed: {r['error'][:80]} | | | | | |")
            continue
        lines.append(f"| {r['store']} | {r['chunks']:,} | {r['build_s']} | {r['open_s']} | "
                     f"{r['dense_p50_ms']} / {r['dense_p95_ms']} | {r['lexical_p50_ms']} / {r['lexical_p95_ms']} | "
                     f"{r['hybrid_p50_ms']} / {r['hybrid_p95_ms']} | {r['rss_mb']} |")
    if part.get("not_run"):
        lines.append(f"\nNot run: {', '.join(part['not_run'])}.")
    return [*lines, ""]


def _env_list(name: str, default: tuple[Any, ...], kind: type) -> tuple[Any, ...]:
    raw = os.environ.get(name, "").strip()
    return tuple(kind(x.strip()) for x in raw.split(",") if x.strip()) if raw else default


def _run(args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "rag.benchmark.store", *args], capture_output=True, text=True,
                          env=env, check=False)
    out = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not out:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RagError(f"{args[0]} failed ({proc.returncode}): {tail}")
    return dict(json.loads(out[-1]))


# -- synthetic data ----------------------------------------------------------------------------------------

def _vocabulary(seed: int = 7) -> list[str]:
    """Distinct pronounceable pseudo-words, most frequent first."""
    rng = np.random.default_rng(seed)
    cons, vows = list("bcdfghjklmnprstvz"), list("aeiou")
    words: dict[str, None] = {}
    while len(words) < VOCABULARY:
        k = int(rng.integers(2, 5))
        w = "".join(cons[int(rng.integers(len(cons)))] + vows[int(rng.integers(len(vows)))] for _ in range(k))
        words.setdefault(w, None)
    return list(words)


def synthetic_store_data(n: int, seed: int = 0) -> tuple[dict[str, Any], list[Any], np.ndarray]:
    """(articles by name, chunks, vectors) for ``n`` chunks; deterministic."""
    from ..records import Article, Block, Chunk
    from .ann import synthetic_vectors

    vocab = np.array(_vocabulary())
    p = 1.0 / np.arange(1, len(vocab) + 1)
    rng = np.random.default_rng(seed)
    words = vocab[rng.choice(len(vocab), size=(n, WORDS_PER_CHUNK), p=p / p.sum())]
    articles: dict[str, Article] = {}
    chunks: list[Chunk] = []
    for a0 in range(0, n, CHUNKS_PER_ARTICLE):
        name = f"syn_{a0 // CHUNKS_PER_ARTICLE:07d}.txt"
        title = f"Synthetic briefing {a0 // CHUNKS_PER_ARTICLE}"
        texts = [" ".join(words[i]) + "." for i in range(a0, min(n, a0 + CHUNKS_PER_ARTICLE))]
        text, pos, spans = "", 0, []
        for t in texts:
            spans.append((pos, pos + len(t)))
            text += t + "\n\n"
            pos = len(text)
        articles[name] = Article(name=name, text=text, sha256=hashlib.sha256(text.encode()).hexdigest(),
                                 title=title, blocks=tuple(Block(s, e) for s, e in spans))
        chunks += [Chunk(f"{name[:-4]}#{j}", name, title, s, e, t, ((s, e),))
                   for j, ((s, e), t) in enumerate(zip(spans, texts, strict=True))]
    return articles, chunks, synthetic_vectors(n)


def _queries(chunks: list[Any], vectors: np.ndarray, count: int) -> list[dict[str, Any]]:
    """Five words of a stored chunk (so BM25 has hits) with a vector near a stored one."""
    from .ann import near_queries

    rng = np.random.default_rng(3)
    vecs = near_queries(vectors, count)
    out = []
    for q in vecs:
        words = chunks[int(rng.integers(len(chunks)))].text.rstrip(".").split()
        pick = rng.choice(len(words), 5, replace=False)
        out.append({"text": " ".join(words[i] for i in sorted(pick)), "vector": q.tolist()})
    return out


# -- one cell, in its own process ----------------------------------------------------------------------------

def _build(settings: Any, n: int, queries: int) -> dict[str, Any]:
    from ..stores import store_kind

    articles, chunks, vectors = synthetic_store_data(n)
    qfile = settings.index_dir.parent / "queries.json"
    settings.index_dir.mkdir(parents=True, exist_ok=True)
    qfile.write_text(json.dumps(_queries(chunks, vectors, queries)), encoding="utf-8")
    t = time.perf_counter()
    by_sentence = settings.dense_unit == "sentence"  # each synthetic chunk is one sentence: its vector
    if store_kind(settings)[0] == "milvus":
        from ..stores.milvus import CollectionWriter, connect, target

        uri, name = target(settings)
        writer = CollectionWriter(connect(uri), name, vectors.shape[1], sentences=by_sentence)
        from ..chunk import lexical_text

        for a in articles.values():
            writer.add_article(a)
        for c, v in zip(chunks, vectors, strict=True):
            writer.add_chunk(c, v, lexical_text(c, articles[c.article], settings.role_context),
                             v[None] if by_sentence else None)
        writer.commit(settings, settings.embedder)
    else:
        from ..store import SentenceVectors, _write_version, write_lock

        sentences = SentenceVectors(vectors, np.arange(len(chunks), dtype=np.int64)) if by_sentence else None
        with write_lock(settings.index_dir):
            _write_version(settings.index_dir, settings, articles, chunks, vectors, settings.embedder, sentences)
    return {"build_s": round(time.perf_counter() - t, 1),
            "build_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


class _GivenVectors:
    """An embedder that returns the bench's query vectors: latency without the embedding model."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def embed_cached(self, texts: list[str], kind: str = "query") -> np.ndarray:
        return np.array([self.vectors[t] for t in texts], np.float32)


def _query(settings: Any) -> dict[str, Any]:
    import psutil

    from ..retrieve import Retriever
    from ..stores import open_store
    from ..vocab import terms

    qs = json.loads((settings.index_dir.parent / "queries.json").read_text(encoding="utf-8"))
    t = time.perf_counter()
    store = open_store(settings)
    open_s = time.perf_counter() - t
    retriever = Retriever(store, _GivenVectors({q["text"]: q["vector"] for q in qs}), settings)
    t = time.perf_counter()
    retriever.search(qs[0]["text"], settings.k)  # the first query builds BM25 on the folder store
    first_s = time.perf_counter() - t
    n = settings.candidates
    kinds = {"dense": lambda q: store.dense(np.array(q["vector"], np.float32), n),
             "lexical": lambda q: store.lexical(terms(q["text"]), n),
             "hybrid": lambda q: retriever.search(q["text"], settings.k)}
    out: dict[str, Any] = {"open_s": round(open_s, 2), "first_query_s": round(first_s, 2)}
    for kind, fn in kinds.items():
        lat = []
        for q in qs:
            t = time.perf_counter()
            fn(q)
            lat.append((time.perf_counter() - t) * 1e3)
        out[f"{kind}_p50_ms"] = round(statistics.median(lat), 2)
        out[f"{kind}_p95_ms"] = round(float(np.percentile(lat, 95)), 2)
    out["rss_mb"] = round(psutil.Process().memory_info().rss / 2**20)
    return out


def main(argv: list[str] | None = None) -> None:
    from ..settings import Settings

    ap = argparse.ArgumentParser(prog="python -m rag.benchmark.store")
    ap.add_argument("step", choices=["build", "query"])
    ap.add_argument("--store", required=True)
    ap.add_argument("--index-dir", type=Path, required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--queries", type=int, default=QUERIES)
    a = ap.parse_args(argv)
    settings = Settings().replace(store=a.store, index_dir=a.index_dir)
    result = _build(settings, a.n, a.queries) if a.step == "build" else _query(settings)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
