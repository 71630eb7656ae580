"""Cold start: ``rag ask --json`` in a fresh process, split into imports, loads and answering."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from typing import Any

from ..errors import RagError
from .context import QUESTIONS, Context, round_all, rounded
from .processes import child_env, rag_command


def run(ctx: Context) -> dict[str, Any]:
    """``rag ask --json`` in a fresh process, split by its ``RAG_TRACE_STARTUP`` line into imports (process
    start to command body), index, embedder and LLM loads (the LLM loads in parallel), and answering."""
    s = ctx.seed_settings
    cmd = [*rag_command(), "ask", QUESTIONS[0], "--json"]
    runs = []
    for r in range(ctx.plan.cold_runs):
        spawned = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(s, RAG_TRACE_STARTUP="1"),
                              timeout=900, check=False)
        wall = time.time() - spawned
        if proc.returncode != 0:
            raise RagError(f"rag ask exited with {proc.returncode}: {proc.stderr.strip()[-500:]}")
        line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("rag-startup "))
        trace = json.loads(line.removeprefix("rag-startup "))
        answer = json.loads(proc.stdout)
        row = {"wall_s": wall, "imports_s": trace.pop("imported_at") - spawned, **trace,
               "answer_first_token_s": answer["timings"]["first_token_s"]}
        row["exit_s"] = wall - row["imports_s"] - row["load_s"] - row["answer_s"]
        runs.append(round_all(row))
        ctx.echo(f"  run {r + 1}: {wall:.1f}s (imports {row['imports_s']:.1f}, load {row['load_s']:.1f}: "
                 f"embedder {row['embedder_s']:.1f} ‖ llm {row['llm_s']:.1f}; answer {row['answer_s']:.1f})")
    summary = {k: rounded(statistics.median(r[k] for r in runs)) for k in runs[0]}
    return {**summary, "target_s": 5.0, "runs": runs, "command": "rag ask QUESTION --json"}


def markdown(cold: dict[str, Any]) -> list[str]:
    """The cold-start paragraph of bench.md."""
    if "wall_s" not in cold:
        return []
    return ["## Cold start (`rag ask --json` in a fresh process)", "",
            f"**{cold['wall_s']} s** (target < {cold['target_s']} s), median of {len(cold['runs'])}: "
            f"imports {cold['imports_s']} s, load {cold['load_s']} s (index {cold.get('index_s', 0)} "
            f"s; embedder {cold['embedder_s']} s in parallel with LLM {cold['llm_s']} s), answer "
            f"{cold['answer_s']} s, exit {cold['exit_s']} s.", ""]
