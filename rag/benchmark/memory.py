"""Memory: peak RSS (children included) of ``rag ui`` answering questions, or of an Assistant process."""

from __future__ import annotations

import sys
import time
from typing import Any

from ..errors import RagError
from ..settings import Settings
from .context import QUESTIONS, Context, rounded
from .processes import Sampled, child_env, free_port, rag_command


def run(ctx: Context) -> dict[str, Any]:
    """Peak RSS (with children) of ``rag ui`` answering questions over HTTP; without the UI package, of
    a process that loads an Assistant and answers the same questions."""
    import importlib.util

    s = ctx.seed_settings
    questions = QUESTIONS[len(QUESTIONS) - ctx.plan.memory_questions:]
    errors = []
    if importlib.util.find_spec("ui.app") is not None:
        try:
            return _memory_ui(s, questions, ctx)
        except Exception as e:  # noqa: BLE001 - the UI is optional here: fall back to the library
            errors.append(f"ui: {type(e).__name__}: {e}")
            ctx.echo(f"  rag ui could not be measured ({e}); measuring an Assistant process instead")
    script = ("import sys; from rag.answer import Assistant; from rag.settings import Settings; "
              "a = Assistant(Settings.load()); a.warm_up(); print('ready', flush=True); "
              "[a.ask(q) for q in sys.argv[1:]]")
    with Sampled([sys.executable, "-c", script, *questions], child_env(s), ctx.work / "memory.log") as proc:
        ready_rss = proc.wait_for_line("ready", timeout=600)
        if proc.popen.wait(timeout=1800) != 0:
            raise RagError(f"the assistant process failed: {proc.log_tail()}")
    return {"mode": "assistant-process", "questions": len(questions), "peak_rss_mb": rounded(proc.peak / 2**20),
            "ready_rss_mb": rounded(ready_rss / 2**20), "errors": errors}


def _memory_ui(s: Settings, questions: tuple[str, ...], ctx: Context) -> dict[str, Any]:
    import httpx

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with Sampled([*rag_command(), "ui", "--port", str(port)], child_env(s), ctx.work / "ui.log") as proc:
        deadline = time.monotonic() + 600
        while True:
            if proc.popen.poll() is not None:
                raise RagError(f"rag ui exited with {proc.popen.returncode}: {proc.log_tail()}")
            try:
                if httpx.get(f"{base}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RagError("rag ui did not answer on /v1/models within 600 s")
            time.sleep(0.5)
        ready_rss = proc.current
        for q in questions:
            r = httpx.post(f"{base}/v1/chat/completions", timeout=600,
                           json={"model": s.model, "messages": [{"role": "user", "content": q}]})
            if r.status_code != 200:
                raise RagError(f"POST /v1/chat/completions answered {r.status_code}: {r.text[:200]}")
    return {"mode": "ui", "questions": len(questions), "peak_rss_mb": rounded(proc.peak / 2**20),
            "ready_rss_mb": rounded(ready_rss / 2**20)}


def markdown(mem: dict[str, Any]) -> list[str]:
    """The memory paragraph of bench.md."""
    if "peak_rss_mb" not in mem:
        return []
    return ["## Memory", "", f"Peak RSS with children ({mem['mode']}, {mem['questions']} questions): "
            f"**{mem['peak_rss_mb']} MB** (ready: {mem['ready_rss_mb']} MB).", ""]
