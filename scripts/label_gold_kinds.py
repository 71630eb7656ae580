"""Add a ``kind`` to each line of a gold file that has none, from its id and fields; re-runnable.

Only lines without a kind change, and only by appending ``"kind": ...`` before their closing brace, so
every other byte (questions, answers, quotes, formatting) stays as it is and a rebase merges cleanly:

    single-article   answerable from one article
    two-articles     answerable only from two articles
    unanswerable     the articles do not hold the answer

Usage: python scripts/label_gold_kinds.py [eval/gold.jsonl]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def kind_of(item: dict) -> str:
    if not item.get("answerable"):
        return "unanswerable"
    return "two-articles" if len(set(item.get("docs", []))) >= 2 else "single-article"


def label(path: Path) -> int:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    changed = 0
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        if not body.strip():
            continue
        item = json.loads(body)
        if "kind" in item:
            continue
        end = body.rstrip()
        assert end.endswith("}"), f"{path} line {i + 1} does not end with a closing brace"
        lines[i] = end[:-1] + f', "kind": {json.dumps(kind_of(item))}' + "}" + line[len(body):]
        assert json.loads(lines[i]) == {**item, "kind": kind_of(item)}
        changed += 1
    path.write_text("".join(lines), encoding="utf-8")
    return changed


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "eval/gold.jsonl")
    print(f"{target}: labelled {label(target)} line(s)")
