"""``rag bench``: run the sections, keep each one's result in bench.json as it finishes, render bench.md."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import RagError
from ..files import write_atomic
from ..settings import Settings
from . import ann, answer, cold_start, ingest, memory, store
from .context import FULL, QUICK, Context, Echo, Plan

# The sections in the order they run, by their key in bench.json; each has ``run(ctx)`` and ``markdown(result)``.
SECTIONS: dict[str, Any] = {"ingest": ingest, "retrieval": ann, "answer": answer, "cold_start": cold_start,
                            "memory": memory, "store": store}


def cli(settings: Settings, out: Path, quick: bool = False, echo: Echo = print,
        only: Sequence[str] = ()) -> dict[str, Any]:
    """Run every section (or ``only`` some, keeping the others of an earlier ``bench.json`` in ``out``),
    write ``bench.json`` and ``bench.md`` to ``out``; raise if a section failed."""
    plan = QUICK if quick else FULL
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    if only and (out / "bench.json").is_file():
        results = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    results["meta"] = {**results.get("meta", {}), **_meta(settings, plan)}
    work = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    ctx = Context(settings, plan, work, echo)
    try:
        for name, section in SECTIONS.items():
            if only and name not in only:
                continue
            echo(f"bench: {name} …")
            t = time.perf_counter()
            try:
                results[name] = section.run(ctx)
            except Exception as e:  # noqa: BLE001 - one broken section must not lose the others
                results[name] = {"error": f"{type(e).__name__}: {e}"}
                echo(f"bench: {name} failed: {e}")
            results[name]["section_s"] = round(time.perf_counter() - t, 1)
            results[name]["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")  # sections may come from several runs
            results["meta"]["load_avg_end"] = _load_avg()
            write_results(out, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    echo(f"bench: wrote {out / 'bench.json'} and {out / 'bench.md'}")
    failed = [n for n in SECTIONS if "error" in results.get(n, {})]
    if failed:
        raise RagError(f"bench sections failed: {', '.join(failed)}; see {out / 'bench.json'}")
    return results


def write_results(out: Path, results: dict[str, Any]) -> None:
    """Write bench.json and bench.md atomically (a crash never leaves half a file)."""
    for name, text in (("bench.json", json.dumps(results, indent=1, ensure_ascii=False)),
                       ("bench.md", render_markdown(results))):
        write_atomic(out / name, text + "\n")


def render_markdown(results: dict[str, Any]) -> str:
    """A short human summary of bench.json; the JSON holds every run."""
    m = results["meta"]
    lines = [f"# rag bench ({m['plan']['name']})", "",
             f"{m['started']} · {m['cpus']} CPUs, {m['memory_gib']} GiB · Python {m['python']} · "
             f"load average {m['load_avg_start']} at start, {m.get('load_avg_end', '?')} at end · "
             f"model {m['settings']['model']}, embedder {m['settings']['embedder']}", ""]
    for name, part in results.items():
        if isinstance(part, dict) and "error" in part:
            lines += [f"**{name} failed:** {part['error']}", ""]
    for name, section in SECTIONS.items():
        lines += section.markdown(results.get(name, {}))
    return "\n".join(lines)


def _meta(settings: Settings, plan: Plan) -> dict[str, Any]:
    import psutil

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": commit,
            "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1), "load_avg_start": _load_avg(),
            "plan": asdict(plan),
            "settings": {k: str(getattr(settings, k)) for k in (
                "model", "embedder", "chunk_size", "chunk_overlap", "index_type", "n_threads", "n_ctx",
                "context_tokens", "k", "max_tokens")}}


def _load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []
