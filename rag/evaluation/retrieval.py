"""Retrieval only (no LLM): recall@k and MRR of dense, BM25 and fused retrieval over the gold evidence."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import metrics as M
from ..files import write_atomic as _write_atomic
from ..records import short as _short
from .gold import GoldItem, file_sha256
from .report import fmt
from .runner import Echo

if TYPE_CHECKING:
    from ..answer import Assistant
    from ..retrieve import Retriever


MODES = {"dense": "dense", "lexical": "BM25", "hybrid": "fused (RRF)"}


def retrieval_eval(retriever: Retriever, items: Sequence[GoldItem], ks: Sequence[int] = (1, 5),
                   depth: int = 10) -> dict[str, Any]:
    """recall@k for each k and MRR@depth for dense, BM25 and fused retrieval, over answerable items;
    per question, the rank of each gold quote's first hit (to see why a question misses)."""
    items = [it for it in items if it.answerable]
    depth = max(depth, *ks)
    evidence = [it.spans for it in items]
    modes: dict[str, dict[str, float | None]] = {}
    ranks: dict[str, list[list[int | None]]] = {}
    for mode in MODES:
        ranked = [[(p.article, p.chunk.start, p.chunk.end)
                   for p in retriever.search(it.question, depth, mode)] for it in items]
        modes[mode] = {f"recall@{k}": M.recall_at_k(ranked, evidence, k).score for k in ks}
        modes[mode][f"mrr@{depth}"] = M.mrr(ranked, evidence).score
        ranks[mode] = [[next((r for r, p in enumerate(passages, 1) if any(M.overlaps(p, e) for e in q)), None)
                        for q in quotes] for passages, quotes in zip(ranked, evidence, strict=True)]
    # Evidence that no chunk overlaps was dropped at ingestion (taken for page chrome): no retriever can
    # find it, so it is reported apart from ranking misses, with the recall that is reachable at all.
    chunks = [(c.article, c.start, c.end) for c in retriever.store.chunks]
    ceiling = M.recall_at_k([chunks] * len(items), evidence, len(chunks))
    per_question = [{"id": it.id, "question": it.question, "evidence": list(it.evidence),
                     "indexed": [any(M.overlaps(c, e) for c in chunks for e in q) for q in it.spans],
                     "ranks": {mode: ranks[mode][i] for mode in MODES}} for i, it in enumerate(items)]
    return {"questions": len(items), "ks": list(ks), "depth": depth, "modes": modes,
            "recall_ceiling": ceiling.score, "per_question": per_question}


def retrieval_markdown(result: Mapping[str, Any]) -> str:
    """The side-by-side table, then every question the fused ranking misses within the largest k."""
    cols = [*(f"recall@{k}" for k in result["ks"]), f"mrr@{result['depth']}"]
    lines = [f"Retrieval over {result['questions']} answerable questions "
             "(a passage hits when it overlaps a gold evidence quote)", "",
             "| Retriever | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for mode, label in MODES.items():
        lines.append(f"| {label} | " + " | ".join(fmt(result["modes"][mode][c]) for c in cols) + " |")
    lost = [(q["id"], quote) for q in result["per_question"]
            for quote, ok in zip(q["evidence"], q["indexed"], strict=True) if not ok]
    lines += ["", f"Recall ceiling {fmt(result['recall_ceiling'])}: {len(lost)} gold quote(s) lie in no "
              "indexed chunk (ingestion dropped that text as page chrome), so no retriever can find them."]
    kmax = max(result["ks"])
    misses = [q for q in result["per_question"]
              if any(r is None or r > kmax for r in q["ranks"]["hybrid"])]
    lines += ["", f"## Questions whose gold evidence fused retrieval misses in the top {kmax} "
              f"({len(misses)})", ""]
    if not misses:
        lines.append("_None._")
    for q in misses:
        lines.append(f"- `{q['id']}` {q['question']}")
        for j, quote in enumerate(q["evidence"]):
            r = {m: q["ranks"][m][j] for m in MODES}
            where = ", ".join(f"{MODES[m]} {r[m] if r[m] else '>' + str(result['depth'])}" for m in MODES)
            if not q["indexed"][j]:
                where = "none: not in any indexed chunk"
            lines.append(f"  - “{_short(quote, 100)}”: rank {where}")
    return "\n".join(lines) + "\n"


def run_retrieval(assistant: Assistant, items: Sequence[GoldItem], gold: Path, out: Path, *,
                  ks: Sequence[int] = (1, 5), echo: Echo = print) -> dict[str, Any]:
    """Retrieval-only evaluation (no LLM): writes retrieval.md and retrieval.json to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = retrieval_eval(assistant.retriever, items, ks)
    s = assistant.settings
    result["config"] = {"gold": str(gold), "gold_sha256": file_sha256(gold),
                        "index_version": assistant.store.version, "embedder": s.embedder,
                        "candidates": s.candidates, "rrf_k": s.rrf_k, "dense_weight": s.dense_weight,
                        "role_weight": s.role_weight}
    result["seconds"] = round(time.perf_counter() - t0, 2)
    text = retrieval_markdown(result)
    _write_atomic(out / "retrieval.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    _write_atomic(out / "retrieval.md", "# Retrieval evaluation\n\n" + text)
    echo(text.rstrip())
    echo(f"wrote {out / 'retrieval.md'}, {out / 'retrieval.json'}")
    return result
