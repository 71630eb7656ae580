"""Ingestion throughput: chunks per second of ``build_index`` on a synthetic corpus recombined from the seeds."""

from __future__ import annotations

import random
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from ..errors import RagError
from ..settings import Settings
from .context import Context, rounded


def synthesize_corpus(seed_dir: Path, dest: Path, min_chunks: int, settings: Settings, seed: int = 0) -> int:
    """Write distinct articles made of shuffled seed paragraphs until they hold ``min_chunks`` chunks.

    Each article gets a title, a dateline, 5-12 paragraphs drawn from all seeds and one sentence of its
    own, so no two files share a hash and chunking sees real news prose. Returns the chunk count.
    """
    from ..chunk import chunk_article
    from ..ingest import iter_paths, load_article, parse_article

    paragraphs = []
    for path in iter_paths([seed_dir]):
        a = load_article(path, settings.max_file_bytes)
        paragraphs += [a.text[b.start:b.end] for b in a.blocks if len(a.text[b.start:b.end]) > 80]
    if len(paragraphs) < 5:
        raise RagError(f"{seed_dir}: too few article paragraphs to build a synthetic corpus")
    rng = random.Random(seed)
    dest.mkdir(parents=True, exist_ok=True)
    chunks = i = 0
    while chunks < min_chunks:
        body = rng.sample(paragraphs, min(len(paragraphs), rng.randint(5, 12)))
        body.insert(rng.randrange(len(body) + 1), f"This is briefing number {i} of the synthetic benchmark "
                                                  f"corpus, filed under code {rng.getrandbits(40):x}.")
        text = (f"Synthetic briefing {i} on technology and trade\n\n2024-03-{1 + i % 28:02d} Bench Desk\n\n"
                + "\n\n".join(body) + "\n")
        (dest / f"syn_{i:05d}.txt").write_text(text, encoding="utf-8")
        chunks += len(chunk_article(parse_article(text, f"syn_{i:05d}.txt"), settings.chunk_size,
                                    settings.chunk_overlap))
        i += 1
    return chunks


def run(ctx: Context) -> dict[str, Any]:
    """Chunks per second of ``build_index`` (read, clean, chunk, embed, write) on a fresh index."""
    from ..chunk import chunk_article
    from ..ingest import iter_paths, load_article
    from ..store import build_index

    corpus = ctx.work / "synthetic"
    n_chunks = synthesize_corpus(ctx.settings.corpus, corpus, ctx.plan.corpus_chunks, ctx.settings)
    t = time.perf_counter()
    embedder = ctx.embedder
    load_s = time.perf_counter() - t
    files = list(iter_paths([corpus]))
    parse_rates, embed_rates, total_rates = [], [], []
    for run in range(ctx.plan.ingest_runs):
        t = time.perf_counter()
        texts = [c.text for f in files for c in chunk_article(load_article(f), ctx.settings.chunk_size,
                                                               ctx.settings.chunk_overlap)]
        parse_rates.append(len(texts) / (time.perf_counter() - t))
        t = time.perf_counter()
        embedder.embed(texts)
        embed_rates.append(len(texts) / (time.perf_counter() - t))
        s = ctx.settings.replace(index_dir=ctx.work / f"ingest-index-{run}")
        report = build_index([corpus], s, embedder)
        total_rates.append(report.total_chunks / report.seconds)
        shutil.rmtree(s.index_dir, ignore_errors=True)
        ctx.echo(f"  run {run + 1}: {report.total_chunks} chunks in {report.seconds:.1f}s "
                 f"({total_rates[-1]:.1f} chunks/s)")
    return {"articles": len(files), "chunks": n_chunks, "runs": ctx.plan.ingest_runs,
            "embedder": ctx.settings.embedder, "embedder_load_s": round(load_s, 2),
            "index_chunks_per_s": rounded(statistics.median(total_rates)),
            "parse_chunk_per_s": rounded(statistics.median(parse_rates)),
            "embed_chunks_per_s": rounded(statistics.median(embed_rates)),
            "all_runs_chunks_per_s": [rounded(x) for x in total_rates]}


def markdown(ing: dict[str, Any]) -> list[str]:
    """The ingestion paragraph of bench.md."""
    if "index_chunks_per_s" not in ing:
        return []
    return ["## Ingestion", "",
            f"{ing['chunks']} chunks from {ing['articles']} synthetic articles, median of "
            f"{ing['runs']} runs: **{ing['index_chunks_per_s']} chunks/s** end to end (read, clean, "
            f"chunk, embed, write); parse+chunk alone {ing['parse_chunk_per_s']} chunks/s, embedding "
            f"alone {ing['embed_chunks_per_s']} chunks/s.", ""]
