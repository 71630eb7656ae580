"""Nearest-neighbour scaling: single-query latency and recall@10 of each FAISS index kind at 10k-1M synthetic
vectors (the recall here is the share of the exact ten nearest neighbours found, not evidence recall)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from .context import Context, rounded


def synthetic_vectors(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    """Unit vectors from a two-level Gaussian mixture: topics, then stories of ~20 vectors per topic.

    Tuned to look like MiniLM neighbourhoods of news chunks: a query's 10th neighbour has cosine
    ~0.46, its 100th ~0.28, a random pair ~0.01. Stories of one topic overlap, so the ten nearest
    neighbours are not one well-separated blob (100-vector blobs put all of them in one IVF list
    and gave recall 1.0 at any nprobe, which says nothing).
    """
    rng = np.random.default_rng(seed)
    n_topics = max(8, n // 20_000)
    n_stories = max(16, n // 20)
    topics = _unit(rng.standard_normal((n_topics, dim), dtype=np.float32))
    stories = _unit(0.6 * topics[rng.integers(0, n_topics, n_stories)]
                    + 0.8 * _unit(rng.standard_normal((n_stories, dim), dtype=np.float32)))
    spread = rng.uniform(0.75, 1.25, n_stories).astype(np.float32)
    labels = rng.integers(0, n_stories, n)
    x = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):  # in blocks: the noise for 1M x 384 at once would need another 1.5 GB
        e = min(n, s + 100_000)
        noise = rng.standard_normal((e - s, dim), dtype=np.float32) / np.float32(np.sqrt(dim))
        x[s:e] = stories[labels[s:e]] + noise * spread[labels[s:e], None]
    return _unit(x, inplace=True)


def near_queries(x: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    """Queries near stored vectors (a paraphrase of an indexed passage), not copies of them."""
    rng = np.random.default_rng(seed)
    q = x[rng.integers(0, len(x), n)]
    return _unit(q + rng.standard_normal(q.shape, dtype=np.float32) * np.float32(0.5 / np.sqrt(x.shape[1])))


def _unit(x: np.ndarray, inplace: bool = False) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if inplace:
        x /= norms
        return x
    return x / norms


def search_latencies(index: Any, queries: np.ndarray, k: int = 10) -> list[float]:
    """Seconds per single-query search: the assistant asks one question at a time."""
    out = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None, :], k)
        out.append(time.perf_counter() - t)
    return out


def ann_recall_at_k(index: Any, queries: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    _, ids = index.search(queries, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, truth, strict=True)]))


def _latency(index: Any, queries: np.ndarray, runs: int) -> dict[str, float]:
    p50s, p95s = [], []
    for _ in range(runs):
        lat = search_latencies(index, queries)
        p50s.append(float(np.percentile(lat, 50)) * 1e3)
        p95s.append(float(np.percentile(lat, 95)) * 1e3)
    return {"p50_ms": rounded(statistics.median(p50s)), "p95_ms": rounded(statistics.median(p95s))}


def run(ctx: Context) -> dict[str, Any]:
    """Single-query latency and recall@10 of each index kind the store can build, at each size."""
    import faiss

    from ..store import APPROXIMATE_KINDS, auto_index_kind, make_faiss_index, tune_for_search

    faiss.omp_set_num_threads(2)
    plan = ctx.plan
    sizes = []
    for n in plan.vector_sizes:
        t = time.perf_counter()
        x = synthetic_vectors(n)
        q = near_queries(x, plan.queries)
        entry: dict[str, Any] = {"vectors": n, "dim": x.shape[1], "generate_s": rounded(time.perf_counter() - t),
                                 "auto_kind": auto_index_kind(n), "kinds": {}}
        for kind in ("flat", *APPROXIMATE_KINDS):
            if kind == "hnsw" and n > plan.hnsw_max_vectors:
                entry["kinds"][kind] = {"skipped": f"above hnsw_max_vectors={plan.hnsw_max_vectors}"}
                continue
            t = time.perf_counter()
            index, _ = make_faiss_index(x, kind)
            build_s = time.perf_counter() - t
            if kind == "flat":
                _, truth = index.search(q, 10)
            params = tune_for_search(index)
            row: dict[str, Any] = {"build_s": rounded(build_s), **params, **_latency(index, q, plan.search_runs),
                                   "recall_at_10": round(ann_recall_at_k(index, q, truth), 4)}
            if kind != "flat":
                row["sweep"] = _sweep(index, q, truth)
                tune_for_search(index)
            entry["kinds"][kind] = row
            ctx.echo(f"  {n:>9,} vectors {kind:5}: build {build_s:6.1f}s  p50 {row['p50_ms']:.3f} ms  "
                     f"p95 {row['p95_ms']:.3f} ms  recall@10 {row['recall_at_10']:.3f}")
            del index
        sizes.append(entry)
        del x
    return {"threads": 2, "queries_per_run": plan.queries, "runs": plan.search_runs, "k": 10,
            "sizes": sizes}


def _sweep(index: Any, q: np.ndarray, truth: np.ndarray) -> list[dict[str, float]]:
    """Latency and recall for other search-time settings: what the store's choice trades against."""
    values: tuple[int, ...]
    if hasattr(index, "hnsw"):
        param, values = "efSearch", (16, 32, 64, 128, 256)
    else:
        param, values = "nprobe", (4, 8, 16, 32, 64, 128)
    rows = []
    for v in values:
        if param == "efSearch":
            index.hnsw.efSearch = v
        else:
            index.nprobe = v
        rows.append({param: v, "p50_ms": rounded(float(np.percentile(search_latencies(index, q), 50)) * 1e3),
                     "recall_at_10": round(ann_recall_at_k(index, q, truth), 4)})
    return rows


def markdown(ret: dict[str, Any]) -> list[str]:
    """The retrieval table of bench.md."""
    if "sizes" not in ret:
        return []
    lines = [f"## Retrieval (single query, k=10, {ret['threads']} threads, median of {ret['runs']} × "
             f"{ret['queries_per_run']} queries)", "",
             "| vectors | index | params | build s | p50 ms | p95 ms | recall@10 | auto picks |",
             "| ---: | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for size in ret["sizes"]:
        for kind, row in size["kinds"].items():
            if "skipped" in row:
                continue
            params = ", ".join(f"{k}={v}" for k, v in row.items() if k in ("efSearch", "nlist", "nprobe"))
            pick = "✓" if kind == size["auto_kind"] else ""
            lines.append(f"| {size['vectors']:,} | {kind} | {params} | {row['build_s']} | "
                         f"{row['p50_ms']} | {row['p95_ms']} | {row['recall_at_10']} | {pick} |")
    lines.append("")
    return lines
