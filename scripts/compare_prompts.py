"""What the LLM is sent for every gold question, and what verification makes of a fixed draft, as JSON
lines, so two checkouts can be compared without running the LLM.

    scripts/compare_prompts.py /work/main /work/wt/formats2   # builds a seeds index with each, diffs

Each checkout builds its own index of ``seeds/`` (in a temp folder) with its own code, then answers
every question of ``eval/gold.jsonl`` through its real ``Assistant`` with a recording LLM whose draft
cites the first evidence line it was given ("<line> [1]"). Identical output means the model sees
byte-identical prompts (greedy decoding then gives identical answers) and the checks treat the same
draft identically; fields one checkout adds to the answer (``page``) are left out of the comparison.
One checkout's lines alone: ``scripts/compare_prompts.py --dump INDEX_DIR``.
"""

from __future__ import annotations

import json
import operator
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class RecordingLLM:
    """Records every message list; answers the answering prompt with its first evidence line, cited."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[list[dict[str, str]]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream_chat(self, messages: list[dict[str, str]], max_tokens: int,
                    stop: list[str] | None = None) -> Iterator[str]:
        self.calls.append(messages)
        m = re.search(r"^\[1\] (.+)$", messages[-1]["content"], re.MULTILINE)
        yield f"{m.group(1)} [1]" if m else "The articles do not say."


def dump(index_dir: Path) -> None:
    """Print one JSON line per gold question, using the ``rag`` on ``sys.path``."""
    from rag.answer import Assistant
    from rag.settings import Settings

    llm = RecordingLLM()
    assistant = Assistant(Settings(index_dir=index_dir), llm=llm)  # type: ignore[arg-type]
    with open(ROOT / "eval" / "gold.jsonl", encoding="utf-8") as fh:
        questions = [json.loads(line)["question"] for line in fh if line.strip()]
    for q in questions:
        llm.calls.clear()
        a = assistant.ask(q).to_dict()
        for key in ("timings", "cached", "model"):
            a.pop(key, None)
        print(json.dumps({"q": q, "sent": llm.calls, "answer": a}, ensure_ascii=False, sort_keys=True))


def run(checkout: Path, work: Path) -> Path:
    env = {**os.environ, "PYTHONPATH": str(checkout), "HF_HUB_OFFLINE": "1"}
    index_dir = work / "index"
    python = str(checkout / ".venv" / "bin" / "python")
    subprocess.run([python, "-m", "rag.cli", "index", str(ROOT / "seeds"), "--index-dir", str(index_dir)],
                   check=True, env=env, cwd=checkout, stdout=subprocess.DEVNULL)
    out = work / "prompts.jsonl"
    with open(out, "w", encoding="utf-8") as fh:
        subprocess.run([python, __file__, "--dump", str(index_dir)], check=True, env=env, cwd=checkout, stdout=fh)
    return out


def common(a: Any, b: Any) -> tuple[Any, Any]:
    """``a`` and ``b`` with dict keys only one side has left out (fields a version added, like "page")."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = a.keys() & b.keys()
        pairs = {k: common(a[k], b[k]) for k in keys}
        return {k: v[0] for k, v in pairs.items()}, {k: v[1] for k, v in pairs.items()}
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        pairs = [common(x, y) for x, y in zip(a, b, strict=True)]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    return a, b


def main() -> int:
    if sys.argv[1:2] == ["--dump"]:
        dump(Path(sys.argv[2]))
        return 0
    a, b = (Path(p).resolve() for p in sys.argv[1:3])
    with tempfile.TemporaryDirectory() as tmp:
        outs = [run(c, Path(tmp) / str(i)) for i, c in enumerate((a, b))]
        left, right = ([json.loads(line) for line in o.read_text(encoding="utf-8").splitlines()] for o in outs)
    sent = sum(x["sent"] == y["sent"] for x, y in zip(left, right, strict=False))
    answers = sum(operator.eq(*common(x["answer"], y["answer"])) for x, y in zip(left, right, strict=False))
    print(f"{len(left)} vs {len(right)} questions ({a} vs {b}): LLM messages byte-identical for {sent}, "
          f"answers identical for {answers} (fields only one side has left out)")
    for x, y in zip(left, right, strict=False):
        if x["sent"] != y["sent"] or operator.ne(*common(x["answer"], y["answer"])):
            print("differs:", x["q"])
    return 0 if sent == answers == len(left) == len(right) else 1


if __name__ == "__main__":
    raise SystemExit(main())
